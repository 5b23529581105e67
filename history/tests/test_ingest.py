"""The ingestion service: validation with per-item errors, deduplication, set-based writes,
handler dispatch after commit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone as tz

from history.catalogue import type_id
from history.handlers import EVENT_HANDLERS, EventHandler, register_handler, unregister_handler
from history.models import Event, EventDispatch
from history.services import EventIn, events_drain, events_ingest, ingest_payloads

pytestmark = pytest.mark.django_db(transaction=False)


def test_stores_events_with_their_references(acme, anna, cart_abandoned):
    when = tz.now() - timedelta(hours=2)
    [r] = events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, when, {"sku": "A-1", "price": "19.90"},
                                                      key="e-1", channel="web", mailing_id=7)])
    assert r.status == "stored" and r.id
    e = Event.objects.get(pk=r.id)
    assert (e.account_id, e.database_id, e.profile_id, e.type_id) == (acme.pk, anna.database_id, anna.pk, cart_abandoned.pk)
    assert e.occurred_at == when and e.channel == "web" and e.mailing_id == 7 and e.idempotency_key == "e-1"
    assert e.properties == {"sku": "A-1", "price": 19.9}  # typed by the schema
    assert not e.untyped and e.received_at >= when


def test_same_id_is_stored_once_and_answered_as_duplicate(acme, anna, cart_abandoned):
    ev = EventIn("cart_abandoned", anna.pk, None, {"sku": "A-1"}, key="e-1")
    [first] = events_ingest(account=acme, events=[ev])
    [again, in_batch_1, in_batch_2] = events_ingest(account=acme, events=[ev, EventIn("cart_abandoned", anna.pk, None, {"sku": "B"}, key="e-2"),
                                                                      EventIn("cart_abandoned", anna.pk, None, {"sku": "B"}, key="e-2")])
    assert again.status == "duplicate" and again.id == first.id
    assert in_batch_1.status == "stored" and in_batch_2.status == "duplicate" and in_batch_2.id == in_batch_1.id
    assert Event.objects.filter(account_id=acme.pk).count() == 2


def test_text_of_any_kind_round_trips_and_nul_is_refused_per_item(acme, anna):
    # The batch reaches PostgreSQL as JSON written by hand: quotes, backslashes, control characters
    # and any script must come back unchanged; a NUL (which PostgreSQL's text cannot hold) is an
    # error on its own item, never a failed batch.
    key = 'ключ "quoted" \\ back\tslash \u2028 🎉'
    props = {"title": 'Grüße "x" \\ \n 日本', "emoji": "🎉"}
    results = events_ingest(account=acme, events=[
        EventIn("page.viewed", anna.pk, None, props, key=key, source='src "q"'),
        EventIn("page.viewed", anna.pk, None, None, key="bad\x00key"),
        EventIn("page.viewed", anna.pk, None, {"x": "nul\x00inside"}),
    ])
    assert [r.status for r in results] == ["stored", "error", "error"]
    assert (results[1].field, results[2].field) == ("id", "properties") and "NUL" in results[1].error
    e = Event.objects.get(pk=results[0].id)
    assert (e.idempotency_key, e.properties, e.source) == (key, props, 'src "q"')


def test_keys_are_per_account(acme, globex, anna, gina, cart_abandoned):
    [a] = events_ingest(account=acme, events=[EventIn("page.viewed", anna.pk, key="same")])
    [g] = events_ingest(account=globex, events=[EventIn("page.viewed", gina.pk, key="same")])
    assert a.status == g.status == "stored" and a.id != g.id


def test_each_bad_item_gets_its_reason_and_the_rest_is_stored(acme, anna, gina, cart_abandoned):
    now = tz.now()
    events = [
        EventIn("cart_abandoned", anna.pk, None, {"sku": "ok"}),                      # 0 stored
        EventIn("no_such_type", anna.pk),                                            # 1
        EventIn("cart_abandoned", anna.pk, None, {"price": "cheap", "sku": "x"}),     # 2 wrong type
        EventIn("cart_abandoned", anna.pk, None, {"price": 3}),                      # 3 required missing
        EventIn("page.viewed", anna.pk, now + timedelta(days=2)),                    # 4 future
        EventIn("page.viewed", anna.pk, datetime(1999, 1, 1, tzinfo=UTC)),           # 5 far past
        EventIn("page.viewed", anna.pk, "yesterday"),                               # 6 unparsable
        EventIn("page.viewed", anna.pk, None, {"blob": "x" * 20000}),                # 7 oversize
        EventIn("page.viewed", anna.pk, None, ["not", "an", "object"]),              # 8
        EventIn("page.viewed", gina.pk),                                             # 9 another account's profile
        EventIn("page.viewed", anna.pk, None, None, key="k" * 200),                  # 10 key too long
        EventIn("page.viewed", anna.pk, None, None, channel="pigeon"),               # 11
        EventIn("page.viewed", anna.pk, now - timedelta(days=1)),                    # 12 stored
    ]
    results = events_ingest(account=acme, events=events)
    by = {r.index: r for r in results}
    assert [r.status for r in results].count("stored") == 2 and by[0].status == by[12].status == "stored"
    assert by[1].field == "event" and "unknown event type 'no_such_type'" in by[1].error
    assert by[2].field == "properties.price" and "not a number" in by[2].error
    assert by[3].field == "properties.sku" and by[3].error == "is required"
    assert by[4].field == "time" and "future" in by[4].error
    assert (by[5].field == "time" and "past" in by[5].error) or "years ago" in by[5].error
    assert by[6].field == "time" and "ISO 8601" in by[6].error
    assert by[7].field == "properties" and "16 KB" in by[7].error
    assert by[8].field == "properties" and "object" in by[8].error
    assert by[9].field == "profile" and by[9].status == "error"
    assert by[10].field == "id"
    assert by[11].field == "channel"
    assert Event.objects.filter(account_id=acme.pk).count() == 2


def test_loose_type_stores_mismatches_untyped(acme, anna, cart_abandoned):
    cart_abandoned.strict = False
    cart_abandoned.save()
    [r] = events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"price": "cheap"})])
    assert r.status == "stored" and r.untyped
    e = Event.objects.get(pk=r.id)
    assert e.untyped and e.properties == {"price": "cheap"}


def test_platform_types_are_refused_from_integrations(acme, anna):
    [r] = events_ingest(account=acme, events=[EventIn("message.opened", anna.pk)], public_only=True)
    assert r.status == "error" and "recorded by the platform" in r.error
    [ok] = events_ingest(account=acme, events=[EventIn("message.opened", anna.pk)], public_only=False)
    assert ok.status == "stored" and Event.objects.get(pk=ok.id).type_id == type_id("message.opened")


def test_disabled_type_is_refused(acme, anna, cart_abandoned):
    cart_abandoned.enabled = False
    cart_abandoned.save()
    [r] = events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "x"})])
    assert r.status == "error" and "disabled" in r.error


def test_retention_bounds_the_past(acme, anna):
    from accounts.access import Actor
    from history.services import retention_set

    retention_set(account=acme, days=30, actor=Actor.system())
    [r] = events_ingest(account=acme, events=[EventIn("page.viewed", anna.pk, tz.now() - timedelta(days=40))])
    assert r.status == "error" and "retention period (30 days)" in r.error


def test_many_events_in_one_call(acme, anna, ben):
    events = [EventIn("page.viewed", (anna.pk, ben.pk)[i % 2], tz.now() - timedelta(seconds=i), {"url": f"/p/{i}"},
                      key=f"k{i}") for i in range(1000)]
    results = events_ingest(account=acme, events=events)
    assert all(r.status == "stored" for r in results)
    assert len({r.id for r in results}) == 1000
    assert Event.objects.filter(profile_id=anna.pk).count() == 500
    # ids map back to the right items
    e = Event.objects.get(pk=results[123].id)
    assert e.properties == {"url": "/p/123"} and e.idempotency_key == "k123"


# --- handlers -------------------------------------------------------------------------------------


@pytest.fixture
def received():
    got: list[list[tuple[int, int]]] = []
    register_handler(EventHandler("test.carts", lambda evs: got.append([(e.id, e.type_id) for e in evs]),
                                  types={"cart_abandoned"}))
    yield got
    unregister_handler("test.carts")
    assert "test.carts" not in EVENT_HANDLERS


def test_handlers_get_their_types_in_one_call_after_commit(acme, anna, cart_abandoned, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        results = events_ingest(account=acme, events=[
            EventIn("cart_abandoned", anna.pk, None, {"sku": "a"}),
            EventIn("page.viewed", anna.pk),
            EventIn("cart_abandoned", anna.pk, None, {"sku": "b"}),
        ])
        assert received == []  # nothing before commit
    assert len(callbacks) == 1
    assert received == [[(results[0].id, cart_abandoned.pk), (results[2].id, cart_abandoned.pk)]]


def test_no_task_when_nobody_listens(acme, anna, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        events_ingest(account=acme, events=[EventIn("page.viewed", anna.pk)])
    assert callbacks == [] and received == []


def test_a_handler_with_an_interest_gets_the_types_it_wants_now(acme, anna, cart_abandoned, django_capture_on_commit_callbacks):
    wanted: set[str] = set()
    got: list[int] = []
    register_handler(EventHandler("test.interest", lambda evs: got.extend(e.type_id for e in evs),
                                  interest=lambda: frozenset(wanted)))
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a"})])
        assert callbacks == [] and got == []  # not wanted yet: no outbox row, no task
        wanted.add("cart_abandoned")
        with django_capture_on_commit_callbacks(execute=True):
            events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "b"}),
                                                EventIn("page.viewed", anna.pk)])
        assert got == [cart_abandoned.pk]
    finally:
        unregister_handler("test.interest")


def test_rolled_back_events_reach_no_handler(acme, anna, cart_abandoned, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):  # noqa: SIM117
        with transaction.atomic():
            events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a"})])
            raise RuntimeError("the caller's transaction fails")
    assert received == [] and not Event.objects.filter(account_id=acme.pk).exists()


def test_duplicates_do_not_dispatch_again(acme, anna, cart_abandoned, received, django_capture_on_commit_callbacks):
    ev = EventIn("cart_abandoned", anna.pk, None, {"sku": "a"}, key="once")
    with django_capture_on_commit_callbacks(execute=True):
        events_ingest(account=acme, events=[ev])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        events_ingest(account=acme, events=[ev])
    assert callbacks == [] and len(received) == 1


# --- payloads (what the API and the collector send) --------------------------------------------------


def test_payloads_resolve_profiles_by_match_key(acme, shop, anna, cart_abandoned):
    out = ingest_payloads(account=acme, database=shop, items=[
        {"id": "1", "event": "cart_abandoned", "profile": {"email": "ANNA@shop.example.com"}, "properties": {"sku": "x"}},
        {"id": "2", "event": "page.viewed", "profile": {"customer_id": "C-1"}},
        {"id": "3", "event": "page.viewed", "profile": {"id": anna.pk}},
        {"id": "4", "event": "page.viewed", "profile": {"email": "nobody@example.com"}},
        {"id": "5", "event": "page.viewed", "profile": {"city": "Berlin"}},
        {"id": "6", "event": "page.viewed", "profile": {"email": "not-an-email"}},
        {"id": "7", "event": "page.viewed", "profile": {"email": "anna@shop.example.com"}, "colour": "red"},
        "not an object",
    ])
    st = [r.status for r in out.results]
    assert st == ["stored", "stored", "stored", "error", "error", "error", "error", "error"]
    assert "may not create" in out.results[3].error and out.results[3].field == "profile.email"
    assert "not a match key" in out.results[4].error
    assert out.results[5].field == "profile.email"
    assert out.results[6].field == "colour"
    assert set(Event.objects.filter(account_id=acme.pk).values_list("profile_id", flat=True)) == {anna.pk}


def test_payloads_create_unknown_profiles_when_allowed(acme, shop):
    from profiles.models import Profile

    items = [{"event": "page.viewed", "profile": {"email": f"new{i}@example.com"}} for i in range(3)]
    items.append({"event": "page.viewed", "profile": {"email": "new0@example.com"}})
    out = ingest_payloads(account=acme, database=shop, items=items, create_profiles=True)
    assert [r.status for r in out.results] == ["stored"] * 4 and out.profiles_created == 3
    assert Profile.objects.filter(database=shop).count() == 3


def test_payloads_never_recreate_an_erased_person(acme, shop, anna):
    from accounts.access import Actor
    from profiles.services import profile_erase

    profile_erase(profile=anna, actor=Actor.system())
    out = ingest_payloads(account=acme, database=shop, items=[{"event": "page.viewed", "profile": {"email": "anna@shop.example.com"}}],
                          create_profiles=True)
    assert out.results[0].status == "error" and "erased" in out.results[0].error


def test_resource_by_slug(acme, shop, anna):
    from accounts.access import Actor
    from resources.services import resource_create

    site = resource_create(account=acme, database=shop, actor=Actor.system(), values={"name": "Web shop", "channels": ["email"]})
    out = ingest_payloads(account=acme, database=shop, items=[
        {"event": "page.viewed", "profile": {"id": anna.pk}, "resource": site.slug},
        {"event": "page.viewed", "profile": {"id": anna.pk}, "resource": "nope"},
    ])
    assert out.results[0].status == "stored" and Event.objects.get(pk=out.results[0].id).resource_id == site.pk
    assert out.results[1].field == "resource"


# --- concurrency (PostgreSQL: real transactions in threads) -----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_batches_store_each_event_once(acme, anna, cart_abandoned):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite has one writer)")
    events = [EventIn("cart_abandoned", anna.pk, None, {"sku": str(i)}, key=f"c{i}") for i in range(200)]
    barrier = threading.Barrier(4)
    outcomes: list[list[str]] = []
    errors: list[BaseException] = []

    def deliver(order: list[EventIn]) -> None:
        from django.db import connections

        try:
            barrier.wait(timeout=10)
            outcomes.append([r.status for r in events_ingest(account=acme, events=order)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(events if n % 2 else list(reversed(events)),)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sum(s.count("stored") for s in outcomes) == 200
    assert sum(s.count("duplicate") for s in outcomes) == 600
    assert Event.objects.filter(account_id=acme.pk).count() == 200


# --- the per-process type book -------------------------------------------------------------------


def test_a_new_type_is_accepted_at_once_though_the_book_is_cached(acme, anna):
    from accounts.access import Actor
    from history.services import TypeBook, eventtype_create

    assert "wishlist_added" not in TypeBook.for_account(acme).by_name  # cached from here on
    eventtype_create(account=acme, name="wishlist_added", actor=Actor.system())
    [r] = events_ingest(account=acme, events=[EventIn("wishlist_added", anna.pk)])
    assert r.status == "stored"


def test_another_process_changing_the_rules_is_seen_through_the_generation(acme, anna):
    from cdp import confcache
    from history.models import EventType
    from history.services import TypeBook

    assert confcache.check()
    first = TypeBook.for_account(acme)
    assert TypeBook.for_account(acme) is first  # same generation: the process keeps it
    # Another process creates a type (no signal here) and bumps the shared generation.
    EventType.objects.bulk_create([EventType(account=acme, name="made_elsewhere")])
    assert "made_elsewhere" not in TypeBook.for_account(acme).by_name
    client = confcache.raw_client()
    if client is not None:
        client.set(cache.make_and_validate_key(confcache.KEY), "another generation")
    else:
        cache.set(confcache.KEY, "another generation", timeout=None)
    assert confcache.check()  # what the next API request's round trip does
    assert "made_elsewhere" in TypeBook.for_account(acme).by_name


def test_retention_change_applies_to_the_next_batch(acme, anna):
    from accounts.access import Actor
    from history.services import retention_set

    old = tz.now() - timedelta(days=40)
    [ok] = events_ingest(account=acme, events=[EventIn("page.viewed", anna.pk, old)])
    retention_set(account=acme, days=30, actor=Actor.system())
    [refused] = events_ingest(account=acme, events=[EventIn("page.viewed", anna.pk, old)])
    assert ok.status == "stored" and refused.status == "error" and "retention" in refused.error


def test_profile_ids_of_another_account_are_refused_on_the_joined_path(acme, globex, anna, gina):
    # Callers that pass profile ids they did not look up (tracking tokens, ledger rows) go through
    # the join: another account's profile gets no event, whatever the planner's statistics say.
    results = events_ingest(account=acme, events=[EventIn("page.viewed", gina.pk), EventIn("page.viewed", anna.pk)])
    assert [r.status for r in results] == ["error", "stored"]
    assert not Event.objects.filter(profile_id=gina.pk).exists()


def test_only_the_wanted_events_go_to_the_outbox_in_the_storing_transaction(acme, anna, cart_abandoned, received,
                                                                           django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        results = events_ingest(account=acme, events=[EventIn("page.viewed", anna.pk)] * 3 + [
            EventIn("cart_abandoned", anna.pk, None, {"sku": "a"}), EventIn("cart_abandoned", anna.pk, None, {"sku": "b"})])
        # Written by the storing statement itself: stored and owed to the handlers, or neither.
        assert list(EventDispatch.objects.values_list("event_ids", "handlers")) == [([results[3].id, results[4].id], None)]
    assert len(callbacks) == 1 and received == []
    callbacks[0]()  # the poke: a drain task (eager here) hands them over and empties the outbox
    assert received == [[(results[3].id, cart_abandoned.pk), (results[4].id, cart_abandoned.pk)]]
    assert not EventDispatch.objects.exists()


def test_one_drain_serves_the_batches_committed_meanwhile(acme, anna, cart_abandoned, received, monkeypatch,
                                                         django_capture_on_commit_callbacks):
    from history import tasks

    queued: list[int] = []
    monkeypatch.setattr(tasks.events_drain_trigger_task, "delay", lambda: queued.append(1))
    ids = []
    for sku in ("a", "b", "c"):
        with django_capture_on_commit_callbacks(execute=True):
            [r] = events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": sku})])
            ids.append(r.id)
    assert queued == [1]  # the first batch queued the drain; the others found it on its way
    assert events_drain() == 3
    assert received == [[(i, cart_abandoned.pk) for i in ids]]  # one call for the three batches
    # The drain cleared the flag once it found the outbox empty: the next batch queues a drain again.
    with django_capture_on_commit_callbacks(execute=True):
        events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "d"})])
    assert queued == [1, 1]


def test_redis_down_at_commit_loses_no_trigger(acme, anna, cart_abandoned, received, monkeypatch,
                                               django_capture_on_commit_callbacks, caplog):
    from history import tasks

    def broker_down() -> None:
        raise ConnectionError("Error 111 connecting to redis")

    monkeypatch.setattr(tasks.events_drain_trigger_task, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):  # the caller's request still succeeds
        [r] = events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "a"})])
    assert r.status == "stored" and received == []
    assert "sweep will drain" in caplog.text
    assert EventDispatch.objects.count() == 1
    events_drain()  # what beat runs every 10 s once Redis is back
    assert received == [[(r.id, cart_abandoned.pk)]] and not EventDispatch.objects.exists()


def test_the_batch_answer_written_by_hand_is_the_same_json_as_the_results():
    import json

    from history.services import BatchOutcome, ItemResult

    outcome = BatchOutcome([
        ItemResult(0, "stored", 11), ItemResult(1, "stored", 12, untyped=True), ItemResult(2, "duplicate", 11),
        ItemResult(3, "error", None, 'unknown event type "x\\y"', "event"), ItemResult(4, "error", None, "é", "properties.a"),
    ], profiles_created=2)
    assert json.loads(outcome.as_json()) == outcome.as_dict()
    assert outcome.as_dict()["results"][3]["error"] == {"field": "event", "message": 'unknown event type "x\\y"'}
