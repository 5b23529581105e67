"""Around the events: merge, erasure, consent changes recorded as events, the system catalogue,
custom types and their schemas, the trigger task, and the demo data."""

from __future__ import annotations

import pytest
from django.utils import timezone as tz

from accounts.access import Actor
from history.catalogue import BY_ID, SYSTEM_TYPES, type_id
from history.handlers import EventHandler, register_handler, unregister_handler
from history.models import Event, EventDispatch, EventType
from history.schema import SchemaError, clean_schema
from history.services import (
    EventIn,
    EventTypeError,
    dispatch_backlog,
    events_drain,
    events_ingest,
    eventtype_create,
    eventtype_delete,
    eventtype_update,
)
from history.services.dispatch import MAX_ATTEMPTS
from profiles.services import profile_erase, profile_merge

SYSTEM = Actor.system()
pytestmark = pytest.mark.django_db


def _events(profile):
    return list(Event.objects.filter(profile_id=profile.pk).order_by("id").values_list("type_id", flat=True))


def test_merge_moves_events_to_the_survivor(acme, anna, ben):
    events_ingest(account=acme, events=[EventIn("page.viewed", anna.pk), EventIn("page.viewed", ben.pk),
                                        EventIn("order.placed", ben.pk, None, {"order_id": "1"})])
    profile_merge(target=anna, source=ben, actor=SYSTEM)
    assert len(_events(anna)) == 3 and _events(ben) == []


def test_erasure_removes_the_profiles_events_only(acme, anna, ben, gina, globex):
    events_ingest(account=acme, events=[EventIn("page.viewed", anna.pk), EventIn("page.viewed", ben.pk)])
    events_ingest(account=globex, events=[EventIn("page.viewed", gina.pk)])
    profile_erase(profile=anna, actor=SYSTEM)
    assert _events(anna) == [] and len(_events(ben)) == 1 and len(_events(gina)) == 1


def test_subscription_changes_become_events_once(acme, shop, anna, django_capture_on_commit_callbacks):
    from resources.services import Via, resource_create, subscription_create, subscription_set_status

    news = resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "News", "channels": ["email", "sms"]})
    via = Via("ui")
    with django_capture_on_commit_callbacks(execute=True):
        sub = subscription_create(profile=anna, resource=news, channel="email", address=anna.email, actor=SYSTEM, via=via)
    with django_capture_on_commit_callbacks(execute=True):
        subscription_set_status(subscription=sub, status="unsubscribed", actor=SYSTEM, via=via, reason="too many")
    rows = list(Event.objects.filter(profile_id=anna.pk).order_by("id").values_list("type_id", "resource_id", "channel",
                                                                                   "properties", "idempotency_key"))
    assert [r[0] for r in rows] == [type_id("subscription.subscribed"), type_id("message.unsubscribed")]
    assert rows[0][1] == news.pk and rows[0][2] == "email" and rows[0][3]["address"] == anna.email
    assert rows[1][3]["old_status"] == "subscribed" and rows[1][3]["reason"] == "too many"
    # Recording the same ledger rows again stores nothing new.
    from history.services import consent_events
    from resources.models import ConsentRecord

    consent_events(list(ConsentRecord.objects.filter(profile_id=anna.pk)))
    assert Event.objects.filter(profile_id=anna.pk).count() == 2


def test_system_catalogue_is_in_the_table_with_fixed_ids(db):
    rows = dict(EventType.objects.filter(account__isnull=True).values_list("id", "name"))
    assert rows == {t.id: t.name for t in SYSTEM_TYPES}
    assert set(BY_ID) == set(rows)


def test_custom_types_get_ids_above_the_system_range(acme):
    et = eventtype_create(account=acme, name="wishlist_added", actor=SYSTEM)
    assert et.pk >= 1000


def test_custom_type_names_and_schemas_are_validated(acme, cart_abandoned):
    with pytest.raises(EventTypeError) as e:
        eventtype_create(account=acme, name="order.placed", actor=SYSTEM)
    assert "system catalogue" in e.value.errors["name"]
    with pytest.raises(EventTypeError) as e:
        eventtype_create(account=acme, name="Bad Name", actor=SYSTEM)
    assert "lowercase" in e.value.errors["name"]
    with pytest.raises(EventTypeError) as e:
        eventtype_create(account=acme, name="cart_abandoned", actor=SYSTEM)
    assert "already" in e.value.errors["name"]
    with pytest.raises(EventTypeError) as e:
        eventtype_create(account=acme, name="thing", actor=SYSTEM, properties=[
            {"name": "ok", "type": "string"}, {"name": "9bad", "type": "string"}, {"name": "x", "type": "money"},
            {"name": "ok", "type": "integer"}, {"name": "size", "type": "enum"}])
    assert set(e.value.errors) == {"properties[1].name", "properties[2].type", "properties[3].name", "properties[4].choices"}


def test_schema_cleaning_keeps_enum_choices():
    assert clean_schema([{"name": "size", "type": "enum", "choices": "S, M, L, M"}]) == [
        {"name": "size", "type": "enum", "required": False, "choices": ["S", "M", "L"]}]
    with pytest.raises(SchemaError):
        clean_schema({"name": "x"})


def test_update_applies_to_new_events_only(acme, anna, cart_abandoned):
    [old] = events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a", "price": "1.5"})])
    eventtype_update(event_type=cart_abandoned, actor=SYSTEM, properties=[{"name": "sku", "type": "integer", "required": True}])
    [bad] = events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a"})])
    assert bad.status == "error" and bad.field == "properties.sku"
    assert Event.objects.get(pk=old.id).properties == {"sku": "a", "price": 1.5}


def test_system_types_cannot_change_and_used_types_cannot_go(acme, anna, cart_abandoned):
    with pytest.raises(EventTypeError):
        eventtype_update(event_type=EventType.objects.get(pk=type_id("page.viewed")), actor=SYSTEM, label="x")
    events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a"})])
    with pytest.raises(EventTypeError) as e:
        eventtype_delete(event_type=cart_abandoned, actor=SYSTEM)
    assert "disable" in str(e.value)
    unused = eventtype_create(account=acme, name="unused", actor=SYSTEM)
    eventtype_delete(event_type=unused, actor=SYSTEM)
    assert not EventType.objects.filter(pk=unused.pk).exists()


def test_a_failing_handler_is_retried_alone_from_the_outbox_with_backoff(acme, anna, cart_abandoned):
    calls: list[str] = []

    def flaky(events):
        calls.append("flaky")
        if calls.count("flaky") == 1:
            raise RuntimeError("downstream hiccup")

    register_handler(EventHandler("test.flaky", flaky, types={"cart_abandoned"}))
    register_handler(EventHandler("test.steady", lambda evs: calls.append("steady"), types={"cart_abandoned"}))
    try:
        [r] = events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a"})])
        assert events_drain() == 1
        assert calls == ["flaky", "steady"]
        # The batch is kept, owed to the handler that failed only, due after a backoff.
        [row] = EventDispatch.objects.all()
        assert (row.event_ids, row.handlers, row.attempts) == ([r.id], ["test.flaky"], 1)
        assert row.due_at > tz.now() and "downstream hiccup" in row.last_error
        assert events_drain() == 0 and calls == ["flaky", "steady"]  # not due yet
        EventDispatch.objects.update(due_at=tz.now())
        assert events_drain() == 1
        assert calls == ["flaky", "steady", "flaky"] and not EventDispatch.objects.exists()
    finally:
        unregister_handler("test.flaky")
        unregister_handler("test.steady")


def test_a_handler_that_keeps_failing_is_given_up_on_and_the_batch_kept(acme, anna, cart_abandoned, caplog):
    def broken(events):
        raise RuntimeError("always")

    register_handler(EventHandler("test.broken", broken, types={"cart_abandoned"}))
    try:
        events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a"})])
        events_drain()
        for _ in range(MAX_ATTEMPTS):
            EventDispatch.objects.update(due_at=tz.now())
            events_drain()
        [row] = EventDispatch.objects.all()
        assert row.attempts == MAX_ATTEMPTS and "gave up on handlers test.broken" in caplog.text
        assert dispatch_backlog() == {"waiting": 0, "retrying": 0, "given_up": 1, "overdue": 0}
        EventDispatch.objects.update(due_at=tz.now())
        assert events_drain() == 0  # given up: not tried again
    finally:
        unregister_handler("test.broken")


def test_demo_history_is_idempotent(acme, olivia):
    from history.demo import demo_history
    from profiles.demo import demo_profiles
    from resources.demo import demo_resources

    demo_profiles(acme, olivia)
    demo_resources(acme, olivia)
    first = demo_history(acme, olivia)
    count = Event.objects.filter(account_id=acme.pk).count()
    assert count > 1000 and "demo events" in first
    assert demo_history(acme, olivia) == "history: already there"
    assert Event.objects.filter(account_id=acme.pk).count() == count
    assert Event.objects.filter(account_id=acme.pk, occurred_at__gt=tz.now()).count() == 0
