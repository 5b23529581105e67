"""The read side: a profile's timeline and the account's explorer (ordering, keyset cursors,
filters, windows, isolation) and the resolution of a page's display data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone as tz

from history import selectors
from history.catalogue import type_id
from history.models import Event
from history.selectors import (
    CursorError,
    PropertyQuery,
    SearchError,
    describe,
    event_types,
    explorer,
    id_cursor,
    time_cursor,
    timeline,
)
from history.services import EventIn, events_ingest
from history.tests.conftest import SYSTEM
from history.tracking import links_ensure
from resources.services import resource_create

pytestmark = pytest.mark.django_db

def ingest(account, profile, type_="page.viewed", when=None, props=None, **kw):
    [r] = events_ingest(account=account, events=[EventIn(type_, profile.pk, when, props, **kw)])
    assert r.status == "stored", r.error
    return r.id


def bulk(profile, n, *, type_id_=12, start=None, step=timedelta(seconds=1), same_every=1, received=None, props=None):
    """n events of `profile`, the i-th at start + (i // same_every) * step (so same_every > 1 makes ties)."""
    start = start or tz.now() - timedelta(days=10)
    rows = [
        Event(account_id=profile.account_id, database_id=profile.database_id, profile_id=profile.pk, type_id=type_id_,
              occurred_at=start + (i // same_every) * step, received_at=received or tz.now(),
              properties=props if props is not None else {"n": i})
        for i in range(n)
    ]
    return Event.objects.bulk_create(rows, batch_size=500)


def walk(fetch, limit):
    """Every page of a keyset list: the events in the order met, and the number of pages."""
    seen, cursor, pages = [], None, 0
    while True:
        page = fetch(cursor=cursor, limit=limit)
        pages += 1
        seen.extend(page.events)
        if page.next_cursor is None:
            return seen, pages
        assert page.events, "a page with a cursor after it has rows"
        cursor = page.next_cursor
        assert pages < 10_000


# --- timeline ------------------------------------------------------------------------------------


def test_timeline_is_newest_first_by_occurred_at_then_id(acme, anna, ben):
    now = tz.now()
    old = ingest(acme, anna, when=now - timedelta(days=3))
    newest = ingest(acme, anna, when=now - timedelta(minutes=1))
    middle = ingest(acme, anna, when=now - timedelta(hours=5))  # stored last, occurred in between
    ingest(acme, ben, when=now)
    page = timeline(anna)
    assert [e.pk for e in page.events] == [newest, middle, old]
    assert page.next_cursor is None


def test_keyset_continues_across_equal_timestamps(acme, anna):
    at = tz.now() - timedelta(hours=1)
    ids = [ingest(acme, anna, when=at) for _ in range(7)]
    seen, pages = walk(lambda **kw: timeline(anna, **kw), 3)
    assert [e.pk for e in seen] == sorted(ids, reverse=True)
    assert pages == 3


def test_a_profile_with_3000_events_pages_to_the_end_without_duplicates_or_gaps(acme, anna, ben):
    made = bulk(anna, 3000, same_every=7)  # runs of 7 events at the same instant, across page edges
    bulk(ben, 50)
    expected = sorted(made, key=lambda e: (e.occurred_at, e.pk), reverse=True)
    for limit in (50, 200):
        seen, pages = walk(lambda **kw: timeline(anna, **kw), limit)
        assert [e.pk for e in seen] == [e.pk for e in expected]
        assert pages == 3000 // limit


def test_timeline_filters_by_type(acme, anna, cart_abandoned):
    now = tz.now()
    viewed = ingest(acme, anna, "page.viewed", now - timedelta(minutes=3))
    cart = ingest(acme, anna, "cart_abandoned", now - timedelta(minutes=2), {"sku": "A-1"})
    order = ingest(acme, anna, "order.placed", now - timedelta(minutes=1), {"order_id": "O-1"})
    assert [e.pk for e in timeline(anna, types=[cart_abandoned.pk]).events] == [cart]
    assert [e.pk for e in timeline(anna, types=[cart_abandoned.pk, type_id("page.viewed")]).events] == [cart, viewed]
    assert [e.pk for e in timeline(anna, types=[type_id("order.placed"), type_id("page.viewed"),
                                               cart_abandoned.pk]).events] == [order, cart, viewed]
    assert timeline(anna, types=[]).events == []


def test_several_types_page_through_equal_timestamps(acme, anna):
    start = tz.now() - timedelta(days=1)
    a = bulk(anna, 120, type_id_=type_id("page.viewed"), start=start, same_every=5)
    b = bulk(anna, 80, type_id_=type_id("form.submitted"), start=start, same_every=4)
    bulk(anna, 60, type_id_=type_id("app.event"), start=start)
    expected = sorted(a + b, key=lambda e: (e.occurred_at, e.pk), reverse=True)
    seen, _ = walk(lambda **kw: timeline(anna, types=[type_id("page.viewed"), type_id("form.submitted")], **kw), 30)
    assert [e.pk for e in seen] == [e.pk for e in expected]


def test_timeline_filters_by_date(acme, anna):
    day = datetime(2026, 3, 10, tzinfo=UTC)
    before = ingest(acme, anna, when=day - timedelta(seconds=1))
    first = ingest(acme, anna, when=day)
    last = ingest(acme, anna, when=day + timedelta(hours=23, minutes=59))
    after = ingest(acme, anna, when=day + timedelta(days=1))
    page = timeline(anna, since=day, until=day + timedelta(days=1))
    assert [e.pk for e in page.events] == [last, first]
    assert [e.pk for e in timeline(anna, since=day).events] == [after, last, first]
    assert [e.pk for e in timeline(anna, until=day).events] == [before]


def test_timeline_never_shows_another_profiles_or_accounts_events(acme, globex, anna, gina):
    ingest(globex, gina)
    mine = ingest(acme, anna)
    assert [e.pk for e in timeline(anna).events] == [mine]
    # A profile object claiming another account (never happens through the views) sees nothing.
    gina.account_id = acme.pk
    assert timeline(gina).events == []


def test_cursors_are_checked(acme, anna):
    ingest(acme, anna)
    for bad in ("", "nonsense", "dA", id_cursor(5), "!!!!", time_cursor(tz.now(), 1) + "x"):
        if bad:
            with pytest.raises(CursorError):
                timeline(anna, cursor=bad)
    with pytest.raises(CursorError):
        explorer(anna.account, cursor=time_cursor(tz.now(), 1))


def test_the_timeline_walks_the_profile_index_on_postgresql(acme, anna, cart_abandoned):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL plans")
    bulk(anna, 400, same_every=3)
    with connection.cursor() as cur:
        cur.execute("ANALYZE history_event")
    qs = Event.objects.filter(account_id=acme.pk, profile_id=anna.pk).order_by("-occurred_at", "-id")[:51]
    plan = qs.explain()
    assert "event_profile_time_idx" in plan and "Sort" not in plan.replace("Incremental Sort", "")


# --- the explorer --------------------------------------------------------------------------------


def test_explorer_is_newest_first_by_id_across_databases(acme, anna, ben, globex, gina):
    from profiles.services import database_create, profile_create

    other_db = database_create(account=acme, name="App users", actor=SYSTEM)
    carl = profile_create(database=other_db, values={"email": "carl@app.example.com"}, actor=SYSTEM)
    a = ingest(acme, anna, when=tz.now() - timedelta(days=2))
    g = ingest(globex, gina)
    b = ingest(acme, ben, when=tz.now() - timedelta(days=9))
    c = ingest(acme, carl)
    page = explorer(acme)
    assert [e.pk for e in page.events] == [c, b, a]
    assert g not in [e.pk for e in page.events]
    assert [e.pk for e in explorer(acme, database=other_db).events] == [c]
    assert [e.pk for e in explorer(acme, database=anna.database).events] == [b, a]
    assert [e.pk for e in explorer(acme, profile_id=ben.pk).events] == [b]
    assert explorer(acme, profile_id=gina.pk).events == []


def test_explorer_pages_by_id_and_filters_types(acme, anna, ben, cart_abandoned):
    made = bulk(anna, 130, type_id_=type_id("page.viewed")) + bulk(ben, 70, type_id_=cart_abandoned.pk)
    made += bulk(anna, 40, type_id_=type_id("order.paid"))
    seen, pages = walk(lambda **kw: explorer(acme, **kw), 50)
    assert [e.pk for e in seen] == sorted((e.pk for e in made), reverse=True)
    assert pages == 5
    wanted = {type_id("page.viewed"), cart_abandoned.pk}
    seen, _ = walk(lambda **kw: explorer(acme, types=wanted, **kw), 40)
    assert [e.pk for e in seen] == sorted((e.pk for e in made if e.type_id in wanted), reverse=True)
    seen, _ = walk(lambda **kw: explorer(acme, types=[cart_abandoned.pk], **kw), 40)
    assert len(seen) == 70 and {e.profile_id for e in seen} == {ben.pk}


def test_property_search_matches_text_values_and_keys(acme, anna, cart_abandoned):
    a1 = ingest(acme, anna, "cart_abandoned", None, {"sku": "A-1", "price": "19.90"})
    ingest(acme, anna, "cart_abandoned", None, {"sku": "B-2", "price": 5})
    nested = ingest(acme, anna, "page.viewed", None, {"url": "/x", "cart": {"sku": "A-1"}})
    flagged = ingest(acme, anna, "app.event", None, {"name": "open", "first": True})
    assert [e.pk for e in explorer(acme, prop="sku=A-1").events] == [a1]
    assert [e.pk for e in explorer(acme, prop="sku = 'A-1'").events] == [a1]
    assert [e.pk for e in explorer(acme, prop="price=19.9").events] == [a1]  # stored as a number by the schema
    assert [e.pk for e in explorer(acme, prop="cart.sku=A-1").events] == [nested]
    assert [e.pk for e in explorer(acme, prop="cart").events] == [nested]
    assert [e.pk for e in explorer(acme, prop="first").events] == [flagged]
    if connection.vendor == "postgresql":
        assert [e.pk for e in explorer(acme, prop="first=true").events] == [flagged]
    assert explorer(acme, prop="sku=a-1").events == []


@pytest.mark.parametrize("text", ["", "=x", "a b=c", "k" * 65 + "=1", "a..b=1", "x=" + "v" * 201])
def test_malformed_property_searches_are_refused(text):
    with pytest.raises(SearchError):
        PropertyQuery.parse(text)


def test_property_search_is_held_to_a_window_and_says_so(acme, anna):
    now = tz.now()
    # In order of arrival, as ids are handed out.
    ancient = bulk(anna, 2, received=now - timedelta(days=20), props={"sku": "A-1"})
    older = bulk(anna, 2, received=now - timedelta(days=3), props={"sku": "A-1"})
    recent = bulk(anna, 2, received=now - timedelta(hours=2), props={"sku": "A-1"})
    other = bulk(anna, 2, received=now - timedelta(hours=1), props={"sku": "B-2"})
    page = explorer(acme, prop="sku=A-1", now=now)
    assert {e.pk for e in page.events} == {e.pk for e in recent}  # the last 24 hours
    assert page.notes and "24 hours" in page.notes[0]
    page = explorer(acme, prop="sku=A-1", since=now - timedelta(days=30), now=now)
    assert {e.pk for e in page.events} == {e.pk for e in recent + older}
    assert "7 days" in page.notes[0]
    page = explorer(acme, prop="sku=A-1", since=now - timedelta(days=5), now=now)
    assert {e.pk for e in page.events} == {e.pk for e in recent + older} and not page.notes
    assert {e.pk for e in explorer(acme).events} == {e.pk for e in recent + older + ancient + other}


def test_the_window_is_on_received_at_and_bounds_ids(acme, anna):
    now = tz.now()
    for days in (40, 20, 10, 5, 2, 1):
        bulk(anna, 3, received=now - timedelta(days=days, minutes=30))
    fresh = bulk(anna, 3, received=now)
    page = explorer(acme, since=now - timedelta(hours=1))
    assert {e.pk for e in page.events} == {e.pk for e in fresh}
    assert len(explorer(acme, since=now - timedelta(days=7)).events) == 12
    assert len(explorer(acme, since=now - timedelta(days=30), until=now - timedelta(days=3)).events) == 9
    first = Event.objects.filter(received_at__gte=now - timedelta(days=7)).order_by("id").first()
    assert selectors._first_id_received(now - timedelta(days=7)) == first.pk
    assert selectors._first_id_received(now + timedelta(days=1)) == Event.objects.order_by("-id").first().pk + 1


def test_live_view_reads_only_newer_events(acme, anna, ben):
    first = ingest(acme, anna)
    newer = [ingest(acme, ben) for _ in range(3)]
    page = explorer(acme, after=first)
    assert [e.pk for e in page.events] == newer[::-1] and not page.more and page.next_cursor is None
    page = explorer(acme, after=first, limit=2)
    assert [e.pk for e in page.events] == newer[:0:-1] and page.more
    assert explorer(acme, after=newer[-1]).events == []
    assert [e.pk for e in explorer(acme, after=first, profile_id=anna.pk).events] == []


def test_a_search_that_takes_too_long_is_stopped_and_said(acme, anna, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")
    ingest(acme, anna, props={"sku": "A-1"})
    with connection.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        before = cur.fetchone()[0]
    real = selectors._newest

    def slow(*args, **kwargs):
        with connection.cursor() as cur:
            cur.execute("SELECT pg_sleep(0.5)")
        return real(*args, **kwargs)

    monkeypatch.setattr(selectors, "SEARCH_TIMEOUT_MS", 50)
    monkeypatch.setattr(selectors, "_newest", slow)
    page = explorer(acme, prop="sku=A-1")
    assert page.timed_out and page.events == [] and "too long" in page.notes[-1]
    monkeypatch.setattr(selectors, "_newest", real)
    assert explorer(acme, prop="sku=A-1").events  # the connection is usable, the transaction intact
    with connection.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] == before  # the timeout did not outlive the search
    assert not explorer(acme).timed_out


# --- display data --------------------------------------------------------------------------------


def test_describe_resolves_a_page_in_one_query_per_kind(acme, anna, ben, cart_abandoned, django_assert_num_queries):
    resource = resource_create(account=acme, database=anna.database, values={"name": "Shop news"}, actor=SYSTEM)
    links = links_ensure(account_id=acme.pk, urls=["https://shop.example.com/a", "https://shop.example.com/b"])
    for i in range(30):
        ingest(acme, anna if i % 2 else ben, "message.clicked" if i % 3 else "cart_abandoned",
               None, {"sku": f"S-{i}"}, resource_id=resource.pk, link_id=list(links.values())[i % 2], channel="email",
               mailing_id=12, machine=i == 4)
    types = event_types(acme)
    events = explorer(acme).events
    with django_assert_num_queries(3):  # links, resources, profiles
        items = describe(acme, events, types, with_profiles=True)
    clicked = next(i for i in items if i.event.type_id == type_id("message.clicked"))
    assert clicked.type.label == "Link clicked" and clicked.type.icon == "cursor" and clicked.type.system
    assert clicked.link_url in links and clicked.resource == (resource.slug, "Shop news")
    assert clicked.channel == ("E-mail", "envelope")
    cart = next(i for i in items if i.event.type_id == cart_abandoned.pk)
    assert cart.type.label == "Cart abandoned" and cart.type.group == "custom" and not cart.type.system
    assert {i.profile_label for i in items} == {"Anna", "Ben"}
    with django_assert_num_queries(0):
        assert describe(acme, [], types) == []


def test_type_catalogue_groups_system_types_then_the_accounts_own(acme, globex, cart_abandoned):
    from history.services import eventtype_create

    eventtype_create(account=globex, name="secret_type", label="Secret", actor=SYSTEM)
    types = event_types(acme)
    labels = [label for label, _ in types.groups()]
    assert labels[0] == "Messages" and labels[-1] == "Custom"
    assert [t.name for t in dict(types.groups())["Custom"]] == ["cart_abandoned"]
    assert "secret_type" not in types.by_name
    assert types.ids(["cart_abandoned", "page.viewed", "secret_type"]) == sorted([cart_abandoned.pk, type_id("page.viewed")])


def test_compact_properties_and_pretty_json(acme, anna):
    ingest(acme, anna, props={f"k{i}": "v" * (i * 30) for i in range(8)} | {"machine_reason": "HEAD request"})
    [item] = describe(acme, explorer(acme).events, event_types(acme))
    assert len(item.compact) == 6 and item.hidden_count == 3
    assert all(len(v) <= selectors.COMPACT_VALUE_CHARS for _, v in item.compact) and item.compact[5][1].endswith("…")
    assert '"k1": "' in item.pretty and item.pretty.count("\n") >= 9
    assert item.machine_reason == "HEAD request"
