"""The sender pages: list, add, edit, delete; the unverified-domain warning."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.access import Actor
from delivery.models import Sender, SendingDomain
from delivery.services import sender_create, sending_domain_create


@pytest.fixture
def shop(acme, olivia) -> SendingDomain:
    return sending_domain_create(account=acme, domain="shop.example", actor=Actor(user=olivia))


@pytest.fixture
def verified(acme, olivia) -> SendingDomain:
    domain = sending_domain_create(account=acme, domain="mail.example", actor=Actor(user=olivia))
    SendingDomain.objects.filter(pk=domain.pk).update(status=SendingDomain.Status.VERIFIED)
    domain.refresh_from_db()
    return domain


@pytest.fixture
def news(acme, olivia, shop) -> Sender:
    return sender_create(account=acme, domain=shop, local_part="news", from_name="Northwind", actor=Actor(user=olivia))


def test_it_adds_a_sender_on_a_domain_of_the_account(login, adam, acme, verified):
    response = login(adam).post(reverse("delivery:sender_create"), {
        "from_name": "Northwind", "local_part": "news", "domain": verified.pk, "reply_to": "help@mail.example",
        "is_default": "on"})
    assert response.status_code == 302
    sender = Sender.objects.get(account=acme)
    assert (sender.from_address, sender.from_name, sender.reply_to, sender.is_default) == (
        "news@mail.example", "Northwind", "help@mail.example", True)


def test_it_accepts_a_whole_address_on_the_chosen_domain(login, adam, acme, verified):
    login(adam).post(reverse("delivery:sender_create"), {"local_part": "hello@mail.example", "domain": verified.pk})
    assert Sender.objects.get(account=acme).from_address == "hello@mail.example"


def test_it_refuses_an_address_on_another_domain(login, adam, acme, verified):
    response = login(adam).post(reverse("delivery:sender_create"),
                                {"local_part": "hello@elsewhere.example", "domain": verified.pk})
    assert response.status_code == 400
    assert "must be on mail.example" in response.content.decode()
    assert not Sender.objects.filter(account=acme).exists()


def test_it_refuses_another_accounts_domain(login, adam, acme, globex, charlie):
    theirs = sending_domain_create(account=globex, domain="globex.example", actor=Actor(user=charlie))
    response = login(adam).post(reverse("delivery:sender_create"), {"local_part": "news", "domain": theirs.pk})
    assert response.status_code == 400
    assert not Sender.objects.exists()


def test_it_refuses_the_same_address_twice(login, adam, news, shop):
    response = login(adam).post(reverse("delivery:sender_create"), {"local_part": "news", "domain": shop.pk})
    assert response.status_code == 400
    assert "already a sender" in response.content.decode()


def test_a_sender_on_an_unverified_domain_shows_a_warning(login, adam, acme, olivia, news, verified):
    sender_create(account=acme, domain=verified, local_part="ok", actor=Actor(user=olivia))
    client = login(adam)
    body = client.get(reverse("delivery:sender_list")).content.decode()
    rows = {r.split('"', 1)[0]: r for r in body.split('data-sender="')[1:]}
    assert 'data-testid="unverified"' in rows["news@shop.example"]
    assert 'data-testid="unverified"' not in rows["ok@mail.example"].split("</tr>")[0]
    assert "not verified" in client.get(reverse("delivery:sender_edit", args=[news.pk])).content.decode()


def test_it_edits_a_sender_but_keeps_its_domain(login, adam, news, verified):
    response = login(adam).post(reverse("delivery:sender_edit", args=[news.pk]), {
        "from_name": "Northwind News", "local_part": "letters", "domain": verified.pk, "reply_to": ""})
    assert response.status_code == 302
    news.refresh_from_db()
    assert (news.from_name, news.from_address) == ("Northwind News", "letters@shop.example")


def test_it_deletes_a_sender(login, adam, news):
    client = login(adam)
    assert client.get(reverse("delivery:sender_delete", args=[news.pk])).status_code == 200
    assert client.post(reverse("delivery:sender_delete", args=[news.pk])).status_code == 302
    assert not Sender.objects.filter(pk=news.pk).exists()


def test_the_add_page_without_domains_points_to_adding_one(login, adam):
    body = login(adam).get(reverse("delivery:sender_create")).content.decode()
    assert reverse("delivery:domain_create") in body and 'data-testid="sender-form"' not in body


def test_a_marketer_is_refused(login, alice, news):
    client = login(alice)
    assert client.get(reverse("delivery:sender_list")).status_code == 403
    assert client.post(reverse("delivery:sender_delete", args=[news.pk])).status_code == 403
    assert Sender.objects.filter(pk=news.pk).exists()


def test_another_accounts_sender_is_a_404(login, charlie, news):
    client = login(charlie)
    assert client.get(reverse("delivery:sender_edit", args=[news.pk])).status_code == 404
    assert client.post(reverse("delivery:sender_edit", args=[news.pk]), {"local_part": "x"}).status_code == 404
    assert client.post(reverse("delivery:sender_delete", args=[news.pk])).status_code == 404
    assert Sender.objects.filter(pk=news.pk, local_part="news").exists()
