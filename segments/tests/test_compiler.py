"""The compiler, example by example: each condition type and operator, on the database the suite
runs on, checked against the Python evaluator as well as against the expected profiles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from history.models import Event
from profiles.models import Profile
from resources.models import Subscription
from resources.services import Via, subscription_create
from segments.compiler import profiles_matching
from segments.conditions import Catalog, SegmentBroken, clean_conditions
from segments.evaluate import EvalContext, MemoryFacts, members, sample_bucket
from segments.models import Segment, SegmentMember
from segments.services import segment_create
from segments.tests.conftest import NOW, SYSTEM, event, field, group

OPENED, CLICKED = 5, 6


def facts_of(db) -> MemoryFacts:
    subs = list(Subscription.objects.filter(resource__database=db).values("resource_id", "profile_id", "channel", "status", "opted_out"))
    events = list(Event.objects.filter(database_id=db.pk).values())
    stored = set(SegmentMember.objects.filter(segment__database=db).values_list("segment_id", "profile_id"))
    return MemoryFacts(subscription_rows=subs, event_rows=events, members=stored)


def run(db, tree, now=NOW) -> set[int]:
    """The ids the compiled query selects, after checking the Python evaluator agrees."""
    catalog = Catalog.load(db)
    clean = clean_conditions(tree, catalog)
    got = set(profiles_matching(clean, catalog, now=now).values_list("id", flat=True))
    expected = members(clean, Profile.objects.filter(database=db), facts_of(db), EvalContext(catalog, now.replace(microsecond=0)))
    assert got == expected, (got, expected)
    return got


@pytest.fixture
def people(make_profile):
    """anna: Berlin, 7000 points, vip; ben: Hamburg, 300; cleo: no city, no points; dan: berlin (lowercase)."""
    return {
        "anna": make_profile(email="anna@example.com", first_name="Anna", city="Berlin", points=7000, score="2.5",
                             vip=True, signup="2026-11-20", tags=["a", "b"], plan="pro", birthday="1990-11-30",
                             last_seen="2026-11-27T10:00:00Z", gender="female"),
        "ben": make_profile(email="ben@example.com", first_name="Ben", city="Hamburg", points=300, score=7,
                            vip=False, signup="2025-01-01", tags=["b"], plan="free", birthday="1985-06-01"),
        "cleo": make_profile(email="cleo@sample.org", first_name="Cleo"),
        "dan": make_profile(phone="+4915112345678", first_name="", city="berlin", points=5000, plan="team",
                            last_seen="2026-10-01T00:00:00Z", timezone="Pacific/Kiritimati"),
    }


def ids(people, *names) -> set[int]:
    return {people[n].pk for n in names}


@pytest.mark.parametrize(("node", "expected"), [
    (field("city", "eq", "Berlin"), {"anna"}),
    (field("city", "ne", "Berlin"), {"ben", "cleo", "dan"}),
    (field("city", "contains", "ERL"), {"anna", "dan"}),
    (field("city", "not_contains", "erl"), {"ben", "cleo"}),
    (field("city", "starts_with", "ham"), {"ben"}),
    (field("city", "in", ["Hamburg", "berlin"]), {"ben", "dan"}),
    (field("city", "not_in", ["Hamburg", "berlin"]), {"anna", "cleo"}),
    (field("city", "empty"), {"cleo"}),
    (field("city", "set"), {"anna", "ben", "dan"}),
    (field("points", "gt", 5000), {"anna"}),
    (field("points", "gte", 5000), {"anna", "dan"}),
    (field("points", "lt", 5000), {"ben"}),
    (field("points", "between", 300, 5000), {"ben", "dan"}),
    (field("points", "ne", 300), {"anna", "cleo", "dan"}),
    (field("score", "gte", 2.5), {"anna", "ben"}),
    (field("score", "lt", 3), {"anna"}),
    (field("vip", "eq", True), {"anna"}),
    (field("vip", "ne", True), {"ben", "cleo", "dan"}),
    (field("signup", "after", "2026-01-01"), {"anna"}),
    (field("signup", "in_last_days", 10), {"anna"}),
    (field("signup", "in_last_days", 7), set()),
    (field("signup", "in_next_days", 5), set()),
    (field("last_seen", "in_last_days", 1), {"anna"}),
    (field("last_seen", "before", "2026-11-01"), {"dan"}),
    (field("tags", "list_contains", "b"), {"anna", "ben"}),
    (field("tags", "list_contains", "a"), {"anna"}),
    (field("tags", "empty"), {"cleo", "dan"}),
    (field("plan", "in", ["pro", "team"]), {"anna", "dan"}),
    (field("email", "contains", "@example."), {"anna", "ben"}),
    (field("email", "starts_with", "ANNA@"), {"anna"}),
    (field("email", "empty"), {"dan"}),
    (field("phone", "eq", "0151 12345678"), {"dan"}),
    (field("first_name", "empty"), {"dan"}),
    (field("gender", "eq", "female"), {"anna"}),
    (field("gender", "ne", "female"), {"ben", "cleo", "dan"}),
    (field("birthday", "anniversary_in_days", 3), {"anna"}),
    (field("birthday", "anniversary_in_days", 1), set()),
    (field("birthday", "lt", "1989-01-01"), {"ben"}),
    (field("created_at", "in_last_days", 1), set()),
    (field("created_at", "empty"), set()),
])
def test_field_operators(shop, people, node, expected):
    assert run(shop, group(node), now=NOW) == ids(people, *expected)


def test_groups_negate_and_push_not_down_to_empty_values(shop, people):
    # NOT (city = Berlin AND points > 1000): everyone but anna, including cleo who has neither.
    assert run(shop, group(group(field("city", "eq", "Berlin"), field("points", "gt", 1000), negate=True))) == \
        ids(people, "ben", "cleo", "dan")
    # NOT (city empty OR points < 1000)
    assert run(shop, group(group(field("city", "empty"), field("points", "lt", 1000), op="or", negate=True))) == \
        ids(people, "anna", "dan")
    assert run(shop, group()) == ids(people, "anna", "ben", "cleo", "dan")
    assert run(shop, group(op="or")) == set()
    assert run(shop, group(group(op="or"), op="or", negate=True)) == ids(people, "anna", "ben", "cleo", "dan")


def test_anniversary_counts_in_the_profiles_own_timezone(shop, make_profile):
    # 2026-11-28 10:00 UTC: already 2026-11-29 00:00 on Kiritimati (UTC+14), still the 28th in Berlin.
    kiri = make_profile(first_name="K", birthday="2000-11-29", timezone="Pacific/Kiritimati")
    berl = make_profile(first_name="B", birthday="2000-11-29", timezone="")
    leap = make_profile(first_name="L", birthday="2000-02-29")
    assert run(shop, group(field("birthday", "anniversary_in_days", 0))) == {kiri.pk}
    assert run(shop, group(field("birthday", "anniversary_in_days", 1))) == {kiri.pk, berl.pk}
    # The year wraps: from 28 November, 100 days reach early March; 29 February only in leap years.
    assert leap.pk not in run(shop, group(field("birthday", "anniversary_in_days", 92)))
    assert leap.pk in run(shop, group(field("birthday", "anniversary_in_days", 93)))
    assert run(shop, group(field("birthday", "anniversary_in_days", 366))) == {kiri.pk, berl.pk, leap.pk}


def test_event_counts_windows_and_filters(shop, people, add_event, cart):
    anna, ben, cleo = people["anna"], people["ben"], people["cleo"]
    add_event(anna, OPENED, NOW - timedelta(days=2), channel="email", mailing_id=7)
    add_event(anna, OPENED, NOW - timedelta(days=40), channel="email", mailing_id=8)
    add_event(ben, OPENED, NOW - timedelta(days=29, hours=23), channel="email", mailing_id=7)
    add_event(ben, CLICKED, NOW - timedelta(days=1), mailing_id=7, link_id=3)
    add_event(cleo, cart.pk, NOW - timedelta(hours=1), properties={"sku": "X-1", "price": 19.5, "size": "M"})
    add_event(cleo, cart.pk, NOW - timedelta(hours=2), properties={"sku": "Y-2", "price": 5})
    add_event(anna, cart.pk, NOW - timedelta(hours=3), properties={"sku": "X-1", "price": 50}, untyped=True)

    assert run(shop, group(event("message.opened"))) == ids(people, "anna", "ben")
    assert run(shop, group(event("message.opened", window={"last_days": 30}))) == ids(people, "anna", "ben")
    assert run(shop, group(event("message.opened", window={"last_days": 3}))) == ids(people, "anna")
    assert run(shop, group(event("message.opened", "not_exists", window={"last_days": 30}))) == ids(people, "cleo", "dan")
    assert run(shop, group(event("message.opened", "at_least", 2))) == ids(people, "anna")
    assert run(shop, group(event("message.opened", "at_most", 1))) == ids(people, "ben", "cleo", "dan")
    assert run(shop, group(event("message.opened", "at_most", 0))) == ids(people, "cleo", "dan")
    assert run(shop, group(event("message.opened", window={"from": "2026-10-19", "to": "2026-10-19"}))) == ids(people, "anna")
    assert run(shop, group(event("message.opened", window={"since": "2026-11-26"}))) == ids(people, "anna")
    assert run(shop, group(event("message.opened", where={"mailing_id": 7}))) == ids(people, "anna", "ben")
    assert run(shop, group(event("message.clicked", where={"mailing_id": 7, "link_id": 3}))) == ids(people, "ben")
    assert run(shop, group(event("message.clicked", where={"link_id": 4}))) == set()
    assert run(shop, group(event("cart_abandoned", where={"properties": [{"name": "sku", "operator": "eq", "value": "X-1"}]}))) \
        == ids(people, "cleo")  # anna's event is untyped: its properties do not count
    assert run(shop, group(event("cart_abandoned", "at_least", 2,
                                 where={"properties": [{"name": "price", "operator": "lt", "value": 20}]}))) == ids(people, "cleo")
    assert run(shop, group(event("cart_abandoned", where={"properties": [{"name": "size", "operator": "ne", "value": "M"}]}))) \
        == ids(people, "cleo")
    assert run(shop, group(event("cart_abandoned", where={"properties": [{"name": "size", "operator": "empty"}]}))) \
        == ids(people, "cleo")
    # OR of event sets (one UNION), and one negated inside an OR.
    assert run(shop, group(event("message.opened", window={"last_days": 3}), event("message.clicked"), op="or")) == \
        ids(people, "anna", "ben")
    assert run(shop, group(field("city", "eq", "Hamburg"), event("message.opened", "not_exists"), op="or")) == \
        ids(people, "ben", "cleo", "dan")
    # NOT (opened OR clicked): one anti-join over the union.
    assert run(shop, group(group(event("message.opened"), event("message.clicked"), op="or", negate=True))) == \
        ids(people, "cleo", "dan")


def test_subscriptions_with_statuses_and_categories(shop, people, news):
    via = Via(source="test")
    subscription_create(profile=people["anna"], resource=news, channel="email", address="anna@example.com", actor=SYSTEM,
                        via=via, opted_out=["deals"])
    subscription_create(profile=people["ben"], resource=news, channel="email", address="ben@example.com", actor=SYSTEM, via=via)
    subscription_create(profile=people["cleo"], resource=news, channel="email", address="cleo@sample.org", actor=SYSTEM,
                        via=via, status="unsubscribed")
    subscription_create(profile=people["dan"], resource=news, channel="sms", address="+4915112345678", actor=SYSTEM, via=via)
    sub = {"type": "subscription", "resource": news.pk, "channel": "email"}
    assert run(shop, group(sub)) == ids(people, "anna", "ben")
    assert run(shop, group({**sub, "category": "deals"})) == ids(people, "ben")
    assert run(shop, group({**sub, "category": "tips"})) == ids(people, "anna", "ben")
    assert run(shop, group({**sub, "statuses": ["unsubscribed", "bounced"]})) == ids(people, "cleo")
    assert run(shop, group({**sub, "negate": True})) == ids(people, "cleo", "dan")
    assert run(shop, group({**sub, "channel": "sms"})) == ids(people, "dan")


def test_segments_in_segments_stored_and_dynamic(shop, people):
    berlin = segment_create(database=shop, name="Berliners", kind="dynamic", actor=SYSTEM, compute=False,
                            conditions=group(field("city", "contains", "berlin")))
    vips = segment_create(database=shop, name="VIPs", kind="static", actor=SYSTEM, compute=False)
    SegmentMember.objects.create(segment=vips, profile=people["dan"])
    SegmentMember.objects.create(segment=vips, profile=people["ben"])
    both = segment_create(database=shop, name="Both", kind="dynamic", actor=SYSTEM, compute=False,
                          conditions=group({"type": "segment", "segment": berlin.pk}, {"type": "segment", "segment": vips.pk}))
    assert run(shop, group({"type": "segment", "segment": berlin.pk})) == ids(people, "anna", "dan")
    assert run(shop, group({"type": "segment", "segment": vips.pk, "negate": True})) == ids(people, "anna", "cleo")
    assert run(shop, group({"type": "segment", "segment": both.pk})) == ids(people, "dan")
    assert run(shop, group({"type": "segment", "segment": both.pk, "negate": True})) == ids(people, "anna", "ben", "cleo")
    # A referenced segment that is broken breaks the one that uses it: never silently empty.
    Segment.objects.filter(pk=berlin.pk).update(state=Segment.State.BROKEN, problem="items[0].field: gone")
    catalog = Catalog.load(shop)
    with pytest.raises(SegmentBroken) as exc:
        profiles_matching(clean_conditions(group({"type": "segment", "segment": both.pk}), catalog), catalog)
    assert exc.value.path == "items[0].segment"
    assert "“Both” is broken" in exc.value.message and "“Berliners” is broken" in exc.value.message


def test_the_sample_is_stable_and_the_same_in_sql_and_python(shop, make_profile):
    for i in range(60):
        make_profile(first_name=f"P{i}")
    tree = group({"type": "sample", "percent": 30, "salt": "control-1"})
    picked = run(shop, tree)
    assert picked == {p.pk for p in Profile.objects.filter(database=shop) if sample_bucket(p.pk, "control-1") < 30}
    assert 5 < len(picked) < 35
    rest = run(shop, group(group({"type": "sample", "percent": 30, "salt": "control-1"}, negate=True)))
    assert picked.isdisjoint(rest) and len(picked | rest) == 60
    assert run(shop, tree) == picked
    assert run(shop, group({"type": "sample", "percent": 30, "salt": "control-2"})) != picked
    # At the boundary: a profile whose bucket equals the percent is out, and in the complement.
    edge = Profile.objects.filter(database=shop).order_by("pk").first()
    percent = max(1, sample_bucket(edge.pk, "control-1"))
    at_edge = {"type": "sample", "percent": percent, "salt": "control-1"}
    assert (edge.pk in run(shop, group(at_edge))) == (sample_bucket(edge.pk, "control-1") < percent)
    assert (edge.pk in run(shop, group(group(at_edge, negate=True)))) == (sample_bucket(edge.pk, "control-1") >= percent)


def test_the_compiled_query_nests_inside_other_queries(shop, people, add_event):
    """A segment's queryset used as a subquery (as the mailings will) keeps its own aliases."""
    add_event(people["anna"], OPENED, NOW - timedelta(days=1))
    catalog = Catalog.load(shop)
    tree = clean_conditions(group(event("message.opened", window={"last_days": 30}), field("tags", "list_contains", "a"),
                                  group(event("message.opened", "not_exists"), field("city", "set"), op="or")), catalog)
    inner = profiles_matching(tree, catalog, now=NOW)
    outer = Event.objects.filter(profile_id__in=inner.values("id"))
    assert list(outer.values_list("profile_id", flat=True)) == [people["anna"].pk]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="plan shapes are PostgreSQL's")
def test_event_sets_are_semi_joins_at_the_top_and_anti_joins_when_negated(shop, people):
    catalog = Catalog.load(shop)
    tree = clean_conditions(group(field("city", "eq", "Berlin"), event("message.opened", window={"last_days": 30}),
                                  event("message.clicked", "not_exists")), catalog)
    sql, _ = profiles_matching(tree, catalog, now=NOW).query.sql_with_params()
    assert '"profiles_profile"."id" IN (SELECT U0."profile_id"' in sql
    assert "NOT (EXISTS (SELECT 1 FROM (SELECT" in sql and "NOT IN" not in sql
