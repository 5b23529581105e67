"""Sending domains, DKIM keys and senders: the services and their rules."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404

from accounts.access import Actor
from accounts.models import AuditEvent
from delivery import selectors
from delivery.dns import NoRecord
from delivery.models import DkimKey, Sender, SendingDomain
from delivery.services import (
    dkim_key_generate,
    dkim_key_remove,
    dkim_key_rotate,
    normalize_domain,
    sender_create,
    sender_delete,
    sender_for_sending,
    sender_update,
    sending_domain_create,
    sending_domain_delete,
    sending_domain_verify,
)

SYSTEM = Actor.system()


def publishing(*keys):
    records = {(k.record_name, "TXT"): [k.txt_value] for k in keys}

    def resolve(name, rdtype):
        if (name, rdtype) in records:
            return records[(name, rdtype)]
        raise NoRecord(name)

    return resolve


def offline(name, rdtype):
    raise OSError("Network is unreachable")


@pytest.fixture
def domain(acme, adam):
    return sending_domain_create(account=acme, domain="shop.example", actor=Actor(user=adam))


@pytest.mark.parametrize("raw,expected", [
    ("Shop.Example.", "shop.example"),
    ("  mail.shop.example ", "mail.shop.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
])
def test_domains_are_stored_lowercase_in_idna_form(raw, expected):
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize("raw", ["", "localhost", "news@shop.example", "-bad.example", "a..example",
                                 "shop.123", "x" * 64 + ".example", "https://shop.example", "sh op.example"])
def test_things_that_are_not_domain_names_are_refused(raw):
    with pytest.raises(ValidationError) as info:
        normalize_domain(raw)
    assert "domain" in info.value.message_dict


def test_adding_a_domain_makes_a_pending_domain_with_an_active_key_and_an_audit_entry(domain, acme, adam):
    key = domain.active_key()

    assert domain.status == SendingDomain.Status.PENDING
    assert domain.return_path_domain == "bounces.shop.example"
    assert key.selector.startswith("cdp2") and len(key.selector) == 9
    assert key.key_size == 2048 and key.txt_value.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    assert AuditEvent.objects.filter(account=acme, verb="sending_domain.created", actor=adam).exists()


def test_a_domain_cannot_be_added_twice_to_one_account_but_another_account_may_add_it(domain, acme, globex):
    with pytest.raises(ValidationError, match="already added"):
        sending_domain_create(account=acme, domain="SHOP.example", actor=SYSTEM)

    assert sending_domain_create(account=globex, domain="shop.example", actor=SYSTEM, with_key=False).pk


def test_the_return_path_domain_must_be_the_domain_or_below_it(acme):
    with pytest.raises(ValidationError) as info:
        sending_domain_create(account=acme, domain="shop.example", return_path_domain="evil.example", actor=SYSTEM)
    assert "return_path_domain" in info.value.message_dict
    ok = sending_domain_create(account=acme, domain="shop.example", return_path_domain="shop.example",
                               actor=SYSTEM, with_key=False)
    assert ok.bounce_domain == "shop.example"


def test_verify_marks_the_domain_verified_when_the_dkim_record_matches(domain, adam):
    check = sending_domain_verify(domain=domain, actor=Actor(user=adam), resolve=publishing(domain.active_key()))

    domain.refresh_from_db()
    assert check.dkim_ok
    assert domain.status == SendingDomain.Status.VERIFIED and domain.verified_at and domain.checked_at
    assert domain.last_check["records"][0]["status"] == "ok"


def test_verify_keeps_a_pending_domain_pending_and_a_lost_record_makes_a_verified_one_failing(domain):
    sending_domain_verify(domain=domain, resolve=publishing())
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.PENDING

    sending_domain_verify(domain=domain, resolve=publishing(domain.active_key()))
    sending_domain_verify(domain=domain, resolve=publishing())
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.FAILING


def test_verify_offline_records_could_not_check_and_leaves_the_status_alone(domain):
    sending_domain_verify(domain=domain, resolve=publishing(domain.active_key()))
    check = sending_domain_verify(domain=domain, resolve=offline)

    domain.refresh_from_db()
    assert check.offline
    assert domain.status == SendingDomain.Status.VERIFIED
    assert all(r["message"].startswith("could not check") for r in domain.last_check["records"])


def test_generating_a_second_active_key_is_refused(domain):
    with pytest.raises(ValidationError, match="rotate"):
        dkim_key_generate(domain=domain, actor=SYSTEM)


def test_a_domain_without_keys_gets_one_with_a_chosen_selector(acme):
    bare = sending_domain_create(account=acme, domain="mail.example", actor=SYSTEM, with_key=False)
    key = dkim_key_generate(domain=bare, actor=SYSTEM, selector="Mail2026")

    assert key.selector == "mail2026" and key.status == DkimKey.Status.ACTIVE
    with pytest.raises(ValidationError):
        dkim_key_generate(domain=sending_domain_create(account=acme, domain="x.example", actor=SYSTEM,
                                                       with_key=False), actor=SYSTEM, selector="bad_selector!")


def test_rotation_retires_the_old_key_keeps_it_published_and_needs_a_new_verification(domain):
    old = domain.active_key()
    sending_domain_verify(domain=domain, resolve=publishing(old))
    new = dkim_key_rotate(domain=domain, actor=SYSTEM)

    old.refresh_from_db()
    domain.refresh_from_db()
    assert new.selector != old.selector and new.status == DkimKey.Status.ACTIVE
    assert old.status == DkimKey.Status.RETIRED and old.retired_at
    assert DkimKey.objects.filter(domain=domain, status="active").count() == 1
    assert domain.status == SendingDomain.Status.PENDING
    assert {r.selector for r in selectors.dns_records(domain) if r.purpose == "dkim"} == {old.selector, new.selector}
    sending_domain_verify(domain=domain, resolve=publishing(new))
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED


def test_only_retired_keys_can_be_removed(domain):
    active = domain.active_key()
    with pytest.raises(ValidationError, match="rotate"):
        dkim_key_remove(key=active, actor=SYSTEM)

    dkim_key_rotate(domain=domain, actor=SYSTEM)
    active.refresh_from_db()
    dkim_key_remove(key=active, actor=SYSTEM)
    assert not DkimKey.objects.filter(pk=active.pk).exists()


def test_a_domain_with_senders_cannot_be_deleted_until_they_are_gone(domain, acme):
    sender = sender_create(account=acme, domain=domain, local_part="news", actor=SYSTEM)
    with pytest.raises(ValidationError, match=r"news@shop\.example"):
        sending_domain_delete(domain=domain, actor=SYSTEM)

    sender_delete(sender=sender, actor=SYSTEM)
    sending_domain_delete(domain=domain, actor=SYSTEM)
    assert not SendingDomain.objects.filter(pk=domain.pk).exists()
    assert not DkimKey.objects.filter(domain_id=domain.pk).exists()


def test_a_sender_is_made_from_a_local_part_or_an_address_on_the_domain(domain, acme):
    first = sender_create(account=acme, domain=domain, local_part="news", from_name="Northwind", actor=SYSTEM)
    second = sender_create(account=acme, domain=domain, from_address="Hello.Team@Shop.Example", actor=SYSTEM)

    assert first.is_default and not second.is_default  # the first sender becomes the default
    assert str(first) == "Northwind <news@shop.example>"
    assert second.from_address == "Hello.Team@shop.example"


def test_a_sender_on_another_domain_or_with_a_bad_local_part_is_refused(domain, acme):
    with pytest.raises(ValidationError) as info:
        sender_create(account=acme, domain=domain, from_address="news@evil.example", actor=SYSTEM)
    assert "from_address" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        sender_create(account=acme, domain=domain, local_part="news letter", actor=SYSTEM)
    assert "local_part" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        sender_create(account=acme, domain=domain, local_part="news", reply_to="not an address", actor=SYSTEM)
    assert "reply_to" in info.value.message_dict


def test_a_sender_cannot_use_another_accounts_domain(domain, globex):
    with pytest.raises(ValidationError):
        sender_create(account=globex, domain=domain, local_part="news", actor=SYSTEM)


def test_a_duplicate_sender_address_is_refused(domain, acme):
    sender_create(account=acme, domain=domain, local_part="news", actor=SYSTEM)

    with pytest.raises(ValidationError, match="already a sender"):
        sender_create(account=acme, domain=domain, local_part="news", actor=SYSTEM)


def test_making_a_sender_the_default_unsets_the_previous_one(domain, acme):
    first = sender_create(account=acme, domain=domain, local_part="news", actor=SYSTEM)
    second = sender_create(account=acme, domain=domain, local_part="deals", actor=SYSTEM)

    sender_update(sender=second, is_default=True, from_name="Deals", actor=SYSTEM)
    first.refresh_from_db()
    assert not first.is_default
    assert list(Sender.objects.for_account(acme).filter(is_default=True)) == [second]
    assert selectors.sender_default(acme) == second


def test_sending_needs_a_verified_domain_except_through_a_local_backend(domain, acme):
    sender = sender_create(account=acme, domain=domain, local_part="news", actor=SYSTEM)

    with pytest.raises(ValidationError, match="not verified"):
        sender_for_sending(account=acme)
    assert sender_for_sending(account=acme, local_backend=True) == sender
    sending_domain_verify(domain=domain, resolve=publishing(domain.active_key()))
    assert sender_for_sending(account=acme).pk == sender.pk


def test_sending_without_any_sender_says_to_add_one(acme, globex, domain):
    with pytest.raises(ValidationError, match="Add a sender"):
        sender_for_sending(account=globex)
    theirs = sender_create(account=acme, domain=domain, local_part="news", actor=SYSTEM)
    with pytest.raises(ValidationError, match="this account"):
        sender_for_sending(account=globex, sender=theirs, local_backend=True)


def test_selectors_give_404_for_another_accounts_objects(domain, acme, globex):
    sender = sender_create(account=acme, domain=domain, local_part="news", actor=SYSTEM)

    assert selectors.sending_domain_get(acme, domain.pk) == domain
    for getter, pk in ((selectors.sending_domain_get, domain.pk), (selectors.sender_get, sender.pk),
                       (selectors.dkim_key_get, domain.active_key().pk)):
        with pytest.raises(Http404):
            getter(globex, pk)
    assert not selectors.sending_domain_list(globex).exists()


def test_the_domain_list_has_a_fixed_number_of_queries(acme, django_assert_num_queries):
    for name in ("a.example", "b.example", "c.example"):
        sending_domain_create(account=acme, domain=name, actor=SYSTEM)

    with django_assert_num_queries(2):
        domains = list(selectors.sending_domain_list(acme))
        assert [len(d.dkim_keys.all()) for d in domains] == [1, 1, 1]
