"""Trigger mailings: events, API fires and double opt-in add ledger rows once, with filters, delays
and the skips decided at insert."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.access import Actor
from history.models import Event
from history.services import EventIn, TypeBook, events_ingest, eventtype_create
from mailings.models import LedgerEntry, Mailing, MailingStat, Run
from mailings.services import triggers
from mailings.services.errors import MailingError
from mailings.services.triggers import firing
from mailings.tests.factories import make_mailing
from profiles.models import Profile
from resources.models import Subscription

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sent_now(monkeypatch) -> list[tuple[int, list[int]]]:
    """What was handed to the trigger queue after commit: (run id, ledger ids)."""
    calls: list[tuple[int, list[int]]] = []
    monkeypatch.setattr(firing, "_send_now", lambda due: calls.extend((r, list(ids)) for r, ids in due.items()))
    return calls


@pytest.fixture
def cart_type(world):
    return eventtype_create(account=world.account, name="cart_abandoned", label="Cart abandoned", actor=Actor.system(),
                            properties=[{"name": "sku", "type": "string", "required": True},
                                        {"name": "price", "type": "decimal"}])


def trigger_mailing(world, trigger: dict, **values) -> Mailing:
    return make_mailing(world, name=values.pop("name", "Abandoned cart"), kind=Mailing.Kind.TRIGGER, schedule={},
                        trigger=trigger, state=Mailing.State.SENDING, launched_at=timezone.now(), **values)


def ingest(world, *events: EventIn) -> list[Event]:
    results = events_ingest(account=world.account, events=list(events), source="test", book=TypeBook.load(world.account))
    assert all(r.status == "stored" for r in results), [r.as_dict() for r in results]
    return list(Event.objects.filter(id__in=[r.id for r in results]).order_by("id"))


def cart(world, profile_id: int, key: str, **props) -> EventIn:
    return EventIn("cart_abandoned", profile_id, None, {"sku": "SH-100", "price": "89.90", **props}, key=key)


def stat(mailing: Mailing, metric: str) -> int:
    return sum(MailingStat.objects.filter(mailing_id=mailing.pk, metric=metric).values_list("delta", flat=True))


def test_it_adds_one_row_per_event_and_nothing_when_redelivered(world, cart_type, sent_now, django_capture_on_commit_callbacks):
    mailing = trigger_mailing(world, {"on": "event", "event": "cart_abandoned"})
    pid = world.profile_ids[0]
    events = ingest(world, cart(world, pid, "c1"))
    with django_capture_on_commit_callbacks(execute=True):
        triggers.on_events(events)
    row = LedgerEntry.objects.get(mailing_id=mailing.pk)
    assert (row.status, row.profile_id, row.trigger_key) == ("queued", pid, f"ev:{events[0].pk}")
    assert row.data == {"event": events[0].properties} and row.data["event"]["sku"] == "SH-100"
    assert row.not_before is None
    run = Run.objects.get(mailing=mailing)
    assert run.slot == "day:" + timezone.now().date().isoformat() and run.state == "sending" and run.planned == 1
    assert run.version_id == world.version.pk
    assert sent_now == [(run.pk, [row.pk])]
    # The drain delivers the same events again: nothing new, nothing counted twice.
    with django_capture_on_commit_callbacks(execute=True):
        triggers.on_events(events)
    assert LedgerEntry.objects.filter(mailing_id=mailing.pk).count() == 1
    assert Run.objects.get(pk=run.pk).planned == 1
    assert stat(mailing, "planned") == 1
    assert len(sent_now) == 1


def test_it_goes_through_the_event_outbox(world, cart_type, sent_now, django_capture_on_commit_callbacks):
    """The real path: ingest -> the outbox -> the drain (eager) -> the registered handler."""
    from cdp import confcache

    mailing = trigger_mailing(world, {"on": "event", "event": "cart_abandoned"})
    confcache.changed()  # what launching a trigger mailing does
    assert "cart_abandoned" in triggers.interesting_types()
    with django_capture_on_commit_callbacks(execute=True):
        ingest(world, cart(world, world.profile_ids[1], "c-outbox"))
    assert list(LedgerEntry.objects.filter(mailing_id=mailing.pk).values_list("profile_id", flat=True)) == [world.profile_ids[1]]


def test_it_knows_which_types_live_trigger_mailings_listen_to(world):
    from cdp import confcache

    assert triggers.interesting_types() == frozenset()
    trigger_mailing(world, {"on": "event", "event": "order.placed"})
    paused = trigger_mailing(world, {"on": "event", "event": "order.paid"}, name="Paused")
    Mailing.objects.filter(pk=paused.pk).update(state=Mailing.State.PAUSED)
    trigger_mailing(world, {"on": "subscription"}, name="Welcome")
    assert triggers.interesting_types() == frozenset()  # cached until the configuration changes
    confcache.changed()
    assert triggers.interesting_types() == {"order.placed", "subscription.subscribed", "subscription.changed"}


def test_it_applies_property_filters(world, cart_type):
    mailing = trigger_mailing(world, {"on": "event", "event": "cart_abandoned", "filters": [
        {"property": "price", "op": "gte", "value": 50}, {"property": "sku", "op": "contains", "value": "sh-"},
    ]})
    a, b, c = world.profile_ids[:3]
    events = ingest(world, cart(world, a, "f1", price="89.90"), cart(world, b, "f2", price="9.90"),
                    cart(world, c, "f3", sku="BG-020", price="120"))
    triggers.on_events(events)
    assert list(LedgerEntry.objects.filter(mailing_id=mailing.pk).values_list("profile_id", flat=True)) == [a]


@pytest.mark.parametrize(("props", "flt", "expected"), [
    ({"total": "59.90"}, {"property": "total", "op": "gt", "value": 50}, True),
    ({"total": 9}, {"property": "total", "op": "gt", "value": 50}, False),
    ({"total": "abc"}, {"property": "total", "op": "gt", "value": 50}, False),
    ({"total": 50}, {"property": "total", "op": "lte", "value": "50"}, True),
    ({"vip": "true"}, {"property": "vip", "op": "eq", "value": True}, True),
    ({"vip": False}, {"property": "vip", "op": "ne", "value": True}, True),
    ({"at": "2026-03-01T10:00:00Z"}, {"property": "at", "op": "lt", "value": "2026-03-02"}, True),
    ({"at": "2026-03-03"}, {"property": "at", "op": "lt", "value": "2026-03-02"}, False),
    ({"items": [{"sku": "A"}, {"sku": "B"}]}, {"property": "items.1.sku", "op": "eq", "value": "B"}, True),
    ({"tags": ["red", "blue"]}, {"property": "tags", "op": "contains", "value": "blue"}, True),
    ({"tags": ["red"]}, {"property": "tags", "op": "contains", "value": "blue"}, False),
    ({"coupon": "X"}, {"property": "coupon", "op": "exists"}, True),
    ({"coupon": None}, {"property": "coupon", "op": "exists"}, False),
    ({}, {"property": "coupon", "op": "exists", "value": False}, True),
    ({}, {"property": "currency", "op": "ne", "value": "EUR"}, True),
    ({"currency": "EUR"}, {"property": "currency", "op": "eq", "value": "EUR"}, True),
    ({"currency": "USD"}, {"property": "currency", "op": "eq", "value": "EUR"}, False),
    ({"currency": "USD"}, {"property": "currency", "op": "in", "value": ["EUR", "USD"]}, True),
    ({"qty": "3"}, {"property": "qty", "op": "in", "value": [1, 2]}, False),
])
def test_it_compares_properties_by_type(props, flt, expected):
    assert triggers.filter_matches(props, flt) is expected


def test_it_delays_rows_by_the_trigger_delay(world, cart_type, sent_now, django_capture_on_commit_callbacks):
    mailing = trigger_mailing(world, {"on": "event", "event": "cart_abandoned", "delay_seconds": 3600})
    occurred = timezone.now() - timedelta(minutes=5)
    events = ingest(world, EventIn("cart_abandoned", world.profile_ids[0], occurred, {"sku": "SH-100"}, key="d1"))
    with django_capture_on_commit_callbacks(execute=True):
        triggers.on_events(events)
    row = LedgerEntry.objects.get(mailing_id=mailing.pk)
    assert row.status == "queued"
    assert abs(row.not_before - (events[0].occurred_at + timedelta(hours=1))) < timedelta(seconds=1)
    assert sent_now == []  # not due: the tick hands it out in 55 minutes


def test_it_skips_at_insert_whom_it_may_not_send_to(world, cart_type, sent_now, django_capture_on_commit_callbacks):
    from resources.services import suppression_add

    mailing = trigger_mailing(world, {"on": "event", "event": "cart_abandoned"}, categories=["offers"])
    a, b, c, d = world.profile_ids[:4]
    Subscription.objects.filter(profile_id=a, channel="email").update(status="unsubscribed")
    address = Subscription.objects.get(profile_id=b, channel="email").address
    suppression_add(account=world.account, kind="email", value=address, reason="manual", actor=Actor.system(), source="test")
    Subscription.objects.filter(profile_id=c, channel="email").update(opted_out=["offers"])
    events = ingest(world, *(cart(world, p, f"s{p}") for p in (a, b, c, d)))
    with django_capture_on_commit_callbacks(execute=True):
        triggers.on_events(events)
    rows = dict(LedgerEntry.objects.filter(mailing_id=mailing.pk).values_list("profile_id", "reason"))
    assert rows == {a: "unsubscribed", b: "suppressed", c: "opted_out", d: ""}
    assert stat(mailing, "planned") == 4 and stat(mailing, "skipped") == 3 and stat(mailing, "skipped:suppressed") == 1
    assert [len(ids) for _, ids in sent_now] == [1]


def test_it_skips_capped_recipients(world, cart_type):
    from mailings.models import FrequencyCap
    from mailings.services.policies import cap_text

    cap = FrequencyCap.objects.create(account=world.account, max_messages=1, days=7)
    mailing = trigger_mailing(world, {"on": "event", "event": "cart_abandoned"})
    pid = world.profile_ids[0]
    triggers.on_events(ingest(world, cart(world, pid, "cap1"), cart(world, pid, "cap2")))
    rows = list(LedgerEntry.objects.filter(mailing_id=mailing.pk).order_by("id").values_list("status", "reason", "detail"))
    # Both events in one batch: the cap counts rows already in the ledger, so the first passes...
    assert rows[0] == ("queued", "", "")
    triggers.on_events(ingest(world, cart(world, pid, "cap3")))
    last = LedgerEntry.objects.filter(mailing_id=mailing.pk).order_by("-id").first()
    # ...and a later event finds the profile at its cap.
    assert (last.status, last.reason, last.detail) == ("skipped", "capped", cap_text(cap))


def test_it_ignores_other_accounts_and_paused_mailings(world, other_world, cart_type):
    mailing = trigger_mailing(world, {"on": "event", "event": "cart_abandoned"})
    eventtype_create(account=other_world.account, name="cart_abandoned", actor=Actor.system(),
                     properties=[{"name": "sku", "type": "string"}])
    results = events_ingest(account=other_world.account, events=[cart(other_world, other_world.profile_ids[0], "o1")],
                            source="test", book=TypeBook.load(other_world.account))
    triggers.on_events(list(Event.objects.filter(id=results[0].id)))
    assert not LedgerEntry.objects.exists()
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.PAUSED)
    triggers.on_events(ingest(world, cart(world, world.profile_ids[0], "p1")))
    assert not LedgerEntry.objects.exists()


def test_it_welcomes_new_and_confirmed_subscribers(world, sent_now, django_capture_on_commit_callbacks):
    """Through the real path: consent records -> history events -> the outbox drain -> the handler."""
    from cdp import confcache
    from resources.services import Via, subscription_confirm, subscription_subscribe

    welcome = trigger_mailing(world, {"on": "subscription"}, name="Welcome")
    confcache.changed()
    world.resource.double_opt_in = ["email"]
    world.resource.save(update_fields=["double_opt_in"])
    profile = Profile.objects.create(account=world.account, database=world.database, email="new@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        sub, _ = subscription_subscribe(profile=profile, resource=world.resource, channel="email",
                                        address="new@example.com", actor=Actor.system(), via=Via("form"))
    assert sub.status == "unconfirmed"
    # "subscribed" while unconfirmed does not welcome...
    assert not LedgerEntry.objects.filter(mailing_id=welcome.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        subscription_confirm(subscription=sub, actor=Actor(subscriber=True), via=Via("confirmation"))  # the link's click
    # ...the confirmation does, once, to that subscription.
    rows = list(LedgerEntry.objects.filter(mailing_id=welcome.pk).values_list("subscription_id", "status"))
    assert rows == [(sub.pk, "queued")]
    assert len(sent_now) == 1


def test_it_fires_by_api_once_per_key(world, sent_now, django_capture_on_commit_callbacks):
    mailing = trigger_mailing(world, {"on": "api"}, name="Order confirmation", transactional=True)
    profile = Profile.objects.get(pk=world.profile_ids[0])
    with django_capture_on_commit_callbacks(execute=True):
        first = triggers.trigger_fire(mailing=mailing, profile=profile, data={"order": {"id": "1001", "total": "59.90"}},
                                      key="order-1001")
    again = triggers.trigger_fire(mailing=mailing, profile=profile, data={"order": {"id": "other"}}, key="order-1001")
    assert first.pk == again.pk and first.trigger_key == "api:order-1001"
    assert first.data == {"order": {"id": "1001", "total": "59.90"}}
    assert Run.objects.get(mailing=mailing).planned == 1
    assert sent_now == [(first.run_id, [first.pk])]
    # Without a key every call is a new message.
    third = triggers.trigger_fire(mailing=mailing, profile=profile)
    assert third.pk != first.pk and third.trigger_key.startswith("api:auto:")


def test_it_refuses_what_cannot_be_fired(world):
    profile = Profile.objects.get(pk=world.profile_ids[0])
    broadcast = make_mailing(world)
    with pytest.raises(MailingError, match="not a trigger mailing"):
        triggers.trigger_fire(mailing=broadcast, profile=profile)
    draft = trigger_mailing(world, {"on": "api"}, name="Draft")
    Mailing.objects.filter(pk=draft.pk).update(state=Mailing.State.DRAFT)
    draft.refresh_from_db()
    with pytest.raises(MailingError, match="launch"):
        triggers.trigger_fire(mailing=draft, profile=profile)
    mailing = trigger_mailing(world, {"on": "api"}, name="Receipt")
    with pytest.raises(MailingError, match="data"):
        triggers.trigger_fire(mailing=mailing, profile=profile, data=["not", "an", "object"])
    bare = Profile.objects.create(account=world.account, database=world.database, email="bare@example.com")
    with pytest.raises(MailingError, match="no E-mail subscription"):
        triggers.trigger_fire(mailing=mailing, profile=bare)


def test_it_fires_in_bulk_keeping_the_valid_items(world):
    mailing = trigger_mailing(world, {"on": "api"}, name="Receipt")
    profiles = list(Profile.objects.filter(pk__in=world.profile_ids[:2]).order_by("id"))
    bare = Profile.objects.create(account=world.account, database=world.database, email="bare@example.com")
    results = triggers.triggers_fire_bulk(mailing=mailing, items=[
        triggers.BulkItem(profiles[0], {"n": 1}, "k1"),
        triggers.BulkItem(None, None, "k2"),
        triggers.BulkItem(bare, None, "k3"),
        triggers.BulkItem(profiles[1], "text", "k4"),
        triggers.BulkItem(profiles[1], None, "k1"),
    ])
    assert results[0].entry is not None and results[0].entry.data == {"n": 1}
    assert [bool(r.errors) for r in results] == [False, True, True, True, True]
    assert set(results[3].errors) == {"data"} and set(results[4].errors) == {"key"}
    assert LedgerEntry.objects.filter(mailing_id=mailing.pk).count() == 1


def test_it_sends_the_confirmation_of_a_double_opt_in(world, sent_now, django_capture_on_commit_callbacks):
    from resources.services import Via, subscription_subscribe

    confirm = trigger_mailing(world, {"on": "confirmation"}, name="Please confirm", transactional=True)
    world.resource.double_opt_in = ["email"]
    world.resource.save(update_fields=["double_opt_in"])
    profile = Profile.objects.create(account=world.account, database=world.database, email="optin@example.com")
    with django_capture_on_commit_callbacks(execute=True):  # resources calls the handler after commit
        sub, _ = subscription_subscribe(profile=profile, resource=world.resource, channel="email",
                                        address="optin@example.com", actor=Actor.system(), via=Via("form"))
    row = LedgerEntry.objects.get(mailing_id=confirm.pk)
    assert (row.subscription_id, row.status, row.trigger_key) == (sub.pk, "queued", f"confirm:{sub.pk}:1")
    assert triggers.is_confirmation_row(row.trigger_key)
    # The form posted twice: one message.
    assert triggers.on_confirmation(sub).pk == row.pk
    assert LedgerEntry.objects.filter(mailing_id=confirm.pk).count() == 1


def test_it_reopens_the_day_run_the_tick_finished(world, cart_type):
    mailing = trigger_mailing(world, {"on": "event", "event": "cart_abandoned"})
    triggers.on_events(ingest(world, cart(world, world.profile_ids[0], "r1")))
    run = Run.objects.get(mailing=mailing)
    Run.objects.filter(pk=run.pk).update(state=Run.State.DONE, finished_at=timezone.now())
    triggers.on_events(ingest(world, cart(world, world.profile_ids[1], "r2")))
    run.refresh_from_db()
    assert (run.state, run.finished_at, run.planned) == ("sending", None, 2)


def test_it_keeps_decimal_data_as_text():
    assert firing.to_json({"total": Decimal("59.90")}) == '{"total":"59.90"}'
