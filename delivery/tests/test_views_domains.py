"""The sending-domain pages: list, add, DNS records, verify, DKIM generate/rotate/remove, delete."""

from __future__ import annotations

from collections.abc import Iterator

import dns.exception
import pytest
from django.urls import reverse

from accounts.access import Actor
from accounts.models import AuditEvent
from delivery.dns import NoRecord
from delivery.models import DkimKey, SendingDomain
from delivery.services import dkim_key_rotate, sender_create, sending_domain_create

# --- a fake DNS (settings.DELIVERY_DNS_RESOLVER points here; never the internet) ---------------------

DNS: dict[tuple[str, str], list[str] | Exception] = {}


def fake_resolve(name: str, rdtype: str) -> list[str]:
    """What the test put in DNS; no entry is "no such record"; an exception entry is raised."""
    value = DNS.get((name.lower().rstrip("."), rdtype))
    if value is None:
        raise NoRecord(f"{name} has no {rdtype} record")
    if isinstance(value, Exception):
        raise value
    return list(value)


@pytest.fixture
def fake_dns(settings) -> Iterator[dict[tuple[str, str], list[str] | Exception]]:
    settings.DELIVERY_DNS_RESOLVER = "delivery.tests.test_views_domains.fake_resolve"
    DNS.clear()
    yield DNS
    DNS.clear()


def publish(domain: SendingDomain) -> None:
    """Put the domain's active DKIM record into the fake DNS, as its owner would."""
    key = domain.active_key()
    DNS[(key.record_name, "TXT")] = [key.txt_value]


@pytest.fixture
def shop(acme, olivia) -> SendingDomain:
    return sending_domain_create(account=acme, domain="shop.example", actor=Actor(user=olivia))


# --- who may see the pages ---------------------------------------------------------------------------


def test_it_lists_the_accounts_domains_with_status_and_selector(login, adam, shop, globex, charlie):
    sending_domain_create(account=globex, domain="globex.example", actor=Actor(user=charlie))
    response = login(adam).get(reverse("delivery:domain_list"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "shop.example" in body and shop.active_key().selector in body
    assert "Pending" in body
    assert "globex.example" not in body


def test_it_shows_an_empty_state_without_domains(login, olivia):
    body = login(olivia).get(reverse("delivery:domain_list")).content.decode()
    assert "No sending domains yet" in body


@pytest.mark.parametrize("name", ["delivery:domain_list", "delivery:domain_create"])
def test_it_refuses_marketers_and_analysts(login, alice, bob, name):
    assert login(alice).get(reverse(name)).status_code == 403
    assert login(bob).get(reverse(name)).status_code == 403


def test_it_refuses_a_marketer_the_domain_page_and_its_actions(login, alice, shop):
    client = login(alice)
    assert client.get(reverse("delivery:domain_detail", args=[shop.pk])).status_code == 403
    assert client.post(reverse("delivery:domain_verify", args=[shop.pk])).status_code == 403
    assert client.post(reverse("delivery:dkim_rotate", args=[shop.pk])).status_code == 403
    assert DkimKey.objects.filter(domain=shop).count() == 1


def test_another_accounts_domain_is_a_404_on_every_page(login, charlie, shop):
    client = login(charlie)
    key = shop.active_key()
    for name in ("domain_detail", "domain_delete"):
        assert client.get(reverse(f"delivery:{name}", args=[shop.pk])).status_code == 404
    for name in ("domain_verify", "dkim_generate", "dkim_rotate", "domain_delete"):
        assert client.post(reverse(f"delivery:{name}", args=[shop.pk])).status_code == 404
    assert client.post(reverse("delivery:dkim_remove", args=[shop.pk, key.pk])).status_code == 404
    assert SendingDomain.objects.filter(pk=shop.pk).exists()
    assert DkimKey.objects.filter(domain=shop).count() == 1


# --- adding ------------------------------------------------------------------------------------------


def test_it_adds_a_domain_with_a_dkim_key_and_opens_its_records(login, adam, acme):
    client = login(adam)
    response = client.post(reverse("delivery:domain_create"), {"domain": "https://News.Shop.Example/"})
    domain = SendingDomain.objects.get(account=acme)
    assert response.status_code == 302
    assert response["Location"] == reverse("delivery:domain_detail", args=[domain.pk])
    assert domain.domain == "news.shop.example"
    key = domain.active_key()
    assert key is not None and key.key_size == 2048
    body = client.get(response["Location"]).content.decode()
    assert key.record_name in body
    assert key.txt_value in body  # the whole value, selectable, to copy
    assert "v=spf1" in body and "_dmarc.news.shop.example" in body and "v=DMARC1" in body
    assert 'data-copy="#value-dkim-0"' in body
    assert AuditEvent.objects.filter(account=acme, verb="sending_domain.created").count() == 1


def test_it_stores_an_internationalised_domain_in_its_ascii_form(login, adam, acme):
    login(adam).post(reverse("delivery:domain_create"), {"domain": "bücher.example"})
    domain = SendingDomain.objects.get(account=acme)
    assert domain.domain == "xn--bcher-kva.example"
    assert domain.unicode_domain == "bücher.example"


@pytest.mark.parametrize("value", ["localhost", "not a domain", "news@shop.example", "-bad-.example", "1.2.3.4",
                                   "a" * 64 + ".example", ""])
def test_it_refuses_what_is_not_a_domain_name(login, adam, acme, value):
    response = login(adam).post(reverse("delivery:domain_create"), {"domain": value})
    assert response.status_code == 400
    assert 'aria-invalid="true"' in response.content.decode()
    assert not SendingDomain.objects.filter(account=acme).exists()


def test_it_refuses_a_domain_already_added(login, adam, shop):
    response = login(adam).post(reverse("delivery:domain_create"), {"domain": "SHOP.example."})
    assert response.status_code == 400
    assert "already added" in response.content.decode()
    assert SendingDomain.objects.filter(domain="shop.example").count() == 1


def test_another_account_may_add_the_same_domain(login, charlie, shop, globex):
    response = login(charlie).post(reverse("delivery:domain_create"), {"domain": "shop.example"})
    assert response.status_code == 302
    assert SendingDomain.objects.filter(account=globex, domain="shop.example").exists()


# --- verifying ---------------------------------------------------------------------------------------


def test_verify_marks_the_domain_verified_when_the_dkim_record_matches(login, adam, shop, fake_dns):
    publish(shop)
    fake_dns[("shop.example", "TXT")] = ["v=spf1 include:other.example ~all"]
    client = login(adam)
    response = client.post(reverse("delivery:domain_verify", args=[shop.pk]))
    assert response.status_code == 302
    shop.refresh_from_db()
    assert shop.status == SendingDomain.Status.VERIFIED
    body = client.get(reverse("delivery:domain_detail", args=[shop.pk])).content.decode()
    assert 'data-status="ok"' in body  # DKIM found
    assert 'data-status="missing"' in body  # no DMARC published
    assert "is verified" in body


def test_verify_shows_a_wrong_record_and_what_was_found(login, adam, shop, fake_dns):
    key = shop.active_key()
    fake_dns[(key.record_name, "TXT")] = ["v=DKIM1; k=rsa; p=MIIBIjANBgkqOLDKEY"]
    response = login(adam).post(reverse("delivery:domain_verify", args=[shop.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="records"' in body and "<html" not in body  # the records card only
    assert 'data-status="wrong"' in body
    assert "the published key is a different one" in body
    assert "p=MIIBIjANBgkqOLDKEY" in body  # what DNS has
    assert 'id="domain-status"' in body and 'hx-swap-oob="true"' in body
    shop.refresh_from_db()
    assert shop.status == SendingDomain.Status.PENDING


def test_verify_offline_says_could_not_check_instead_of_failing(login, adam, shop, fake_dns):
    for record_name, rdtype in [(shop.active_key().record_name, "TXT"), ("bounces.shop.example", "TXT"),
                                ("_dmarc.shop.example", "TXT")]:
        fake_dns[(record_name, rdtype)] = dns.exception.Timeout()
    response = login(adam).post(reverse("delivery:domain_verify", args=[shop.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('data-status="unknown"') >= 3
    assert "Could not check" in body and "could not check:" in body
    shop.refresh_from_db()
    assert shop.status == SendingDomain.Status.PENDING and shop.checked_at is not None


def test_a_record_added_after_the_last_check_shows_not_checked(login, adam, olivia, shop, fake_dns):
    publish(shop)
    client = login(adam)
    client.post(reverse("delivery:domain_verify", args=[shop.pk]))
    new = dkim_key_rotate(domain=shop, actor=Actor(user=olivia))
    body = client.get(reverse("delivery:domain_detail", args=[shop.pk])).content.decode()
    row = body.split('data-record="dkim-0"', 1)[1].split("</tr>", 1)[0]  # the active key comes first
    assert new.record_name in row and 'data-status="none"' in row and "Not checked" in row
    retired = body.split('data-record="dkim-1"', 1)[1].split("</tr>", 1)[0]
    assert 'data-status="ok"' in retired  # the old key's record was found at the last check


# --- DKIM --------------------------------------------------------------------------------------------


def test_rotate_makes_a_new_active_key_and_keeps_the_old_one_published(login, adam, shop):
    old = shop.active_key()
    client = login(adam)
    response = client.post(reverse("delivery:dkim_rotate", args=[shop.pk]))
    assert response.status_code == 302
    keys = {k.selector: k.status for k in DkimKey.objects.filter(domain=shop)}
    assert len(keys) == 2 and keys[old.selector] == DkimKey.Status.RETIRED
    new = shop.active_key()
    assert new.selector != old.selector
    body = client.get(reverse("delivery:domain_detail", args=[shop.pk])).content.decode()
    assert old.txt_value in body and new.txt_value in body  # both published
    assert "Retired (still published)" in body
    assert reverse("delivery:dkim_remove", args=[shop.pk, old.pk]) in body


def test_generate_makes_a_key_for_a_domain_without_one(login, adam, acme, olivia):
    domain = sending_domain_create(account=acme, domain="keyless.example", actor=Actor(user=olivia), with_key=False)
    client = login(adam)
    assert 'data-testid="generate"' in client.get(reverse("delivery:domain_detail", args=[domain.pk])).content.decode()
    client.post(reverse("delivery:dkim_generate", args=[domain.pk]))
    assert domain.active_key() is not None
    # A second generate is refused (rotate instead) and leaves one key.
    response = client.post(reverse("delivery:dkim_generate", args=[domain.pk]), follow=True)
    assert "rotate it instead" in response.content.decode()
    assert DkimKey.objects.filter(domain=domain).count() == 1


def test_removing_a_retired_key_asks_first_then_deletes_it(login, adam, olivia, shop):
    old = shop.active_key()
    dkim_key_rotate(domain=shop, actor=Actor(user=olivia))
    client = login(adam)
    url = reverse("delivery:dkim_remove", args=[shop.pk, old.pk])
    page = client.get(url)
    assert page.status_code == 200 and old.record_name in page.content.decode()
    assert DkimKey.objects.filter(pk=old.pk).exists()
    assert client.post(url).status_code == 302
    assert not DkimKey.objects.filter(pk=old.pk).exists()
    assert shop.active_key() is not None


def test_the_active_key_cannot_be_removed(login, adam, shop):
    key = shop.active_key()
    response = login(adam).post(reverse("delivery:dkim_remove", args=[shop.pk, key.pk]))
    assert response.status_code == 400
    assert "Rotate to a new key first" in response.content.decode()
    assert DkimKey.objects.filter(pk=key.pk).exists()


def test_a_key_of_another_domain_is_a_404(login, adam, acme, olivia, shop):
    other = sending_domain_create(account=acme, domain="other.example", actor=Actor(user=olivia))
    response = login(adam).post(reverse("delivery:dkim_remove", args=[shop.pk, other.active_key().pk]))
    assert response.status_code == 404


# --- deleting ----------------------------------------------------------------------------------------


def test_delete_needs_the_typed_name(login, adam, shop):
    client = login(adam)
    url = reverse("delivery:domain_delete", args=[shop.pk])
    assert client.post(url, {"confirm": "shop"}).status_code == 400
    assert SendingDomain.objects.filter(pk=shop.pk).exists()
    response = client.post(url, {"confirm": "shop.example"})
    assert response.status_code == 302 and response["Location"] == reverse("delivery:domain_list")
    assert not SendingDomain.objects.filter(pk=shop.pk).exists()
    assert not DkimKey.objects.filter(domain_id=shop.pk).exists()


def test_delete_is_refused_while_senders_use_the_domain(login, adam, acme, olivia, shop):
    sender_create(account=acme, domain=shop, local_part="news", actor=Actor(user=olivia))
    client = login(adam)
    url = reverse("delivery:domain_delete", args=[shop.pk])
    page = client.get(url).content.decode()
    assert "news@shop.example" in page and 'data-testid="confirm-delete"' not in page
    assert client.post(url, {"confirm": "shop.example"}).status_code == 400
    assert SendingDomain.objects.filter(pk=shop.pk).exists()


def test_the_domain_page_reads_a_bounded_number_of_queries(login, adam, olivia, shop, django_assert_max_num_queries):
    for _ in range(3):
        dkim_key_rotate(domain=shop, actor=Actor(user=olivia))
    client = login(adam)
    with django_assert_max_num_queries(11):
        assert client.get(reverse("delivery:domain_detail", args=[shop.pk])).status_code == 200
