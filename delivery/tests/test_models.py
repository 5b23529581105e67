"""Database-level invariants of the delivery models (they hold even if a service is bypassed)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import RestrictedError

from accounts.access import Actor
from delivery.demo import demo_delivery
from delivery.models import DkimKey, ProviderAccount, Sender, SendingDomain
from delivery.services import sender_create, sending_domain_create

SYSTEM = Actor.system()


@pytest.fixture
def domain(acme):
    return sending_domain_create(account=acme, domain="shop.example", actor=SYSTEM)


def test_a_domain_has_at_most_one_active_key(domain):
    with pytest.raises(IntegrityError), transaction.atomic():
        DkimKey.objects.create(account=domain.account, domain=domain, selector="second", private_key="x",
                               public_key="y", status=DkimKey.Status.ACTIVE)
    DkimKey.objects.create(account=domain.account, domain=domain, selector="old", private_key="x",
                           public_key="y", status=DkimKey.Status.RETIRED)


def test_an_account_has_at_most_one_default_sender_and_one_default_provider_per_channel(domain, acme):
    Sender.objects.create(account=acme, domain=domain, local_part="a", is_default=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        Sender.objects.create(account=acme, domain=domain, local_part="b", is_default=True)

    ProviderAccount.objects.create(account=acme, channel="email", kind="smtp", name="A", is_default=True)
    ProviderAccount.objects.create(account=acme, channel="sms", kind="http_sms", name="B", is_default=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ProviderAccount.objects.create(account=acme, channel="email", kind="smtp", name="C", is_default=True)


def test_the_dkim_private_key_is_encrypted_in_the_database(domain):
    key = domain.active_key()
    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM delivery_dkimkey WHERE id = %s", [key.pk])
        stored = cursor.fetchone()[0]

    assert "PRIVATE KEY" not in stored
    assert DkimKey.objects.get(pk=key.pk).private_key.startswith("-----BEGIN PRIVATE KEY-----")


def test_the_txt_value_is_split_into_strings_of_at_most_255(domain):
    key = domain.active_key()

    assert all(len(s) <= 255 for s in key.txt_strings) and "".join(key.txt_strings) == key.txt_value
    assert len(key.txt_strings) == 2  # RSA-2048: ~410 characters


def test_the_unicode_domain_is_shown_for_an_idna_domain(acme):
    domain = sending_domain_create(account=acme, domain="bücher.example", actor=SYSTEM, with_key=False)

    assert domain.domain == "xn--bcher-kva.example" and domain.unicode_domain == "bücher.example"


def test_the_demo_adds_a_pending_domain_with_a_key_and_a_default_sender_once(acme, olivia):
    demo_delivery(acme, olivia)
    summary = demo_delivery(acme, olivia)

    domain = SendingDomain.objects.get(account=acme, domain="shop.example")
    assert summary == "delivery: nothing made"
    assert domain.status == "pending" and domain.active_key() is not None
    assert [str(s) for s in Sender.objects.for_account(acme)] == ["Northwind <news@shop.example>"]


def test_an_account_with_senders_can_be_deleted_but_a_domain_alone_cannot(acme):
    domain = sending_domain_create(account=acme, domain="gone.example", actor=Actor.system())
    sender_create(account=acme, domain=domain, local_part="news", actor=Actor.system())
    with pytest.raises(RestrictedError):
        domain.delete()

    acme.delete()

    assert not SendingDomain.objects.filter(domain="gone.example").exists()
    assert not Sender.objects.exists()
