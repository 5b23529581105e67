"""Property-based tests: on small generated databases (profiles with a value of every field type,
subscriptions, events, stored members), the compiled query selects exactly the profiles the plain
Python evaluation of the same conditions selects, for random condition trees, at instants chosen
to put timezones on different dates. Runs on the suite's database (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from history.models import Event
from profiles.models import Profile
from resources.models import Subscription
from segments.compiler import profiles_matching
from segments.conditions import OPERATORS, Catalog, clean_conditions
from segments.evaluate import EvalContext, MemoryFacts, members, moment
from segments.models import SegmentMember
from segments.services import segment_create
from segments.tests.conftest import SYSTEM, group

BERLIN = ZoneInfo("Europe/Berlin")
# Instants where the world's timezones disagree about the date, a DST change, a leap day.
NOWS = [
    datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
    datetime(2026, 11, 28, 23, 30, 15, tzinfo=UTC),
    datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
    datetime(2028, 2, 28, 12, 0, tzinfo=UTC),
    datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC),
]
TEXTS = ["Berlin", "berlin", "Hamburg", "Ber", "a_b", "x%y", "ab", "B"]
NEEDLES = ["Berlin", "ber", "B", "%", "_", "a_b", "x%", "ham", "zz"]
INTS = [-5, 0, 1, 300, 5000, 7000]
DECIMALS = [0, 1.5, 2.5, -0.25, 7]
ZONES = ["", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Tokyo", "Europe/Berlin", "America/New_York"]
OPENED, CLICKED = 5, 6
# More for a hunt: SEGMENTS_PROPERTY_EXAMPLES=5000 pytest segments/tests/test_properties.py
EXAMPLES = int(os.environ.get("SEGMENTS_PROPERTY_EXAMPLES", "150"))


class World:
    def __init__(self, shop, news, cart) -> None:
        self.db, self.news, self.cart = shop, news, cart
        self.static = segment_create(database=shop, name="Static", kind="static", actor=SYSTEM, compute=False)
        self.dynamic = segment_create(database=shop, name="Dynamic", kind="dynamic", actor=SYSTEM, compute=False,
                                      conditions=group({"type": "field", "field": "city", "operator": "contains", "value": "b"},
                                                       {"type": "field", "field": "points", "operator": "gte", "value": 1},
                                                       op="or"))
        self.catalog = Catalog.load(shop)
        # Strategies built once per instant and reused by every example (not rebuilt mid-generation).
        self.strategies = {
            now: (st.lists(profile_rows(now), min_size=2, max_size=8), trees(self, now),
                  st.builds(lambda node, neg: group(node, negate=neg), leaves(self, now), st.booleans()))
            for now in map(moment, NOWS)
        }


@pytest.fixture
def world(shop, news, cart) -> World:
    return World(shop, news, cart)


# --- values ------------------------------------------------------------------------------------------


def dates_near(now: datetime) -> list[str]:
    today = now.astimezone(BERLIN).date()
    days = [0, 1, -1, 2, -2, 3, 7, -7, 30, -30, 400, -400]
    out = [(today + timedelta(days=d)).isoformat() for d in days]
    return [*out, "2000-02-29", "1990-12-31", "1985-01-01", (today - timedelta(days=365 * 30)).isoformat()]


def birthdays_near(now: datetime) -> list[str]:
    out = []
    for d in (-1, 0, 1, 2, 3, 8, 200):
        day = now.date() + timedelta(days=d)
        try:
            out.append(day.replace(year=1990).isoformat())
        except ValueError:  # 29 February
            out.append("1992-02-29")
    return [*out, "2000-02-29", "1990-12-31", "1991-01-01", "1980-03-01"]


def instants_near(now: datetime) -> list[str]:
    deltas = [timedelta(0), timedelta(hours=1), -timedelta(hours=1), timedelta(days=1), -timedelta(days=1),
              -timedelta(days=2, seconds=1), -timedelta(days=30), timedelta(days=30)]
    return [(now + d).strftime("%Y-%m-%dT%H:%M:%SZ") for d in deltas]


def custom_domains(now: datetime) -> dict[str, list[Any]]:
    """The values each custom field takes in generated profiles."""
    return {
        "city": TEXTS,
        "bio": TEXTS,
        "points": INTS,
        "score": DECIMALS,
        "vip": [True, False],
        "signup": dates_near(now),
        "last_seen": instants_near(now),
        "work_email": ["a@example.com", "b@test.org", "ab@example.com"],
        "plan": ["free", "pro", "team"],
        "tags": [["a"], ["b"], ["a", "b"], ["c", "a"]],
        "extra": [{"k": 1}, [1, 2], "x"],
    }


FIRST_NAMES = ["", "Anna", "ben", "AN"]
EMAIL_DOMAINS = [None, "example.com", "test.org"]
GENDERS = ["", "female", "male"]
CREATED_AGO = [timedelta(0), timedelta(hours=5), timedelta(days=3), timedelta(days=40)]
SUB_CHANNELS = ["email", "sms"]
SUB_STATUSES = ["subscribed", "unsubscribed", "unconfirmed", "bounced"]
OPTED_OUT = [[], ["deals"], ["tips"], ["deals", "tips"]]
EVENT_TYPES = [OPENED, CLICKED, "cart"]
DAYS_AGO = [-0.01, 0.4, 1, 2.99, 3.01, 29.99, 30.01, 45, 400]
MAILINGS = [None, 1, 2]
EVENT_CHANNELS = ["", "email"]
LINKS = [None, 3]
PROPERTIES = {"sku": ["A", "B", "ab"], "price": [1, 9.5, 20], "size": ["S", "M"], "template_id": [4, 5]}


@st.composite
def profile_rows(draw, now: datetime) -> dict[str, Any]:
    domains = custom_domains(now)
    data = {name: draw(st.sampled_from(values)) for name, values in domains.items() if draw(st.booleans())}
    return {
        "data": data,
        "first_name": draw(st.sampled_from(FIRST_NAMES)),
        "email_domain": draw(st.sampled_from(EMAIL_DOMAINS)),
        "birthday": draw(st.sampled_from([None, *birthdays_near(now)])),
        "gender": draw(st.sampled_from(GENDERS)),
        "timezone": draw(st.sampled_from(ZONES)),
        "created_ago": draw(st.sampled_from(CREATED_AGO)),
        "subscriptions": draw(st.lists(st.tuples(
            st.sampled_from(SUB_CHANNELS), st.sampled_from(SUB_STATUSES), st.sampled_from(OPTED_OUT),
        ), max_size=2)),
        "events": draw(st.lists(st.tuples(
            st.sampled_from(EVENT_TYPES), st.sampled_from(DAYS_AGO), st.sampled_from(MAILINGS),
            st.sampled_from(EVENT_CHANNELS), st.sampled_from(LINKS),
            st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in PROPERTIES.items()}),
            st.booleans(),
        ), max_size=4)),
        "member": draw(st.booleans()),
    }


def random_rows(rng: Any, now: datetime, n: int) -> list[dict[str, Any]]:
    """`n` profiles like `profile_rows`, from a seeded random.Random (for the exhaustive checks)."""
    domains = custom_domains(now)
    rows = []
    for _ in range(n):
        rows.append({
            "data": {name: rng.choice(values) for name, values in domains.items() if rng.random() < 0.7},
            "first_name": rng.choice(FIRST_NAMES), "email_domain": rng.choice(EMAIL_DOMAINS),
            "birthday": rng.choice([None, *birthdays_near(now)]), "gender": rng.choice(GENDERS),
            "timezone": rng.choice(ZONES), "created_ago": rng.choice(CREATED_AGO),
            "subscriptions": [(rng.choice(SUB_CHANNELS), rng.choice(SUB_STATUSES), rng.choice(OPTED_OUT))
                              for _ in range(rng.randint(0, 2))],
            "events": [(rng.choice(EVENT_TYPES), rng.choice(DAYS_AGO), rng.choice(MAILINGS), rng.choice(EVENT_CHANNELS),
                        rng.choice(LINKS), {k: rng.choice(v) for k, v in PROPERTIES.items() if rng.random() < 0.6},
                        rng.random() < 0.2)
                       for _ in range(rng.randint(0, 6))],
            "member": rng.random() < 0.5,
        })
    return rows


# --- trees -------------------------------------------------------------------------------------------


def field_nodes(world: World, now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    types = {f.name: f.type for f in world.catalog.fields.values()}
    names = [n for n in types if n not in ("phone", "updated_at", "mobile")]
    domain: dict[str, list[Any]] = {
        "string": TEXTS, "text": TEXTS, "integer": [*INTS, 2, 6000], "decimal": [*DECIMALS, 2, 3.25],
        "date": dates_near(now), "datetime": instants_near(now), "enum": ["free", "pro", "team"],
        "email": ["a@example.com", "p1@example.com", "p2@test.org"], "boolean": [True, False],
    }

    @st.composite
    def node(draw) -> dict[str, Any]:
        name = draw(st.sampled_from(names))
        type_ = types[name]
        if name == "gender":
            values: list[Any] = ["female", "male", "other"]
        elif name == "first_name":
            values = ["Anna", "ben", "AN"]
        else:
            values = domain.get(type_, ["x"])
        op = draw(st.sampled_from(OPERATORS[type_]))
        out: dict[str, Any] = {"type": "field", "field": name, "operator": op}
        if op in ("empty", "set"):
            return out
        if op in ("contains", "not_contains", "starts_with"):
            out["value"] = draw(st.sampled_from(NEEDLES if type_ != "email" else ["@", "example", "p1", "A@"]))
        elif op in ("in", "not_in"):
            out["value"] = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
        elif op in ("in_last_days", "in_next_days"):
            out["value"] = draw(st.sampled_from([0, 1, 2, 7, 30, 400]))
        elif op == "anniversary_in_days":
            out["value"] = draw(st.sampled_from([0, 1, 2, 3, 7, 100, 364, 365]))
        elif op == "list_contains":
            out["value"] = draw(st.sampled_from(["a", "b", "z"]))
        elif op == "between":
            a, b = draw(st.sampled_from(values)), draw(st.sampled_from(values))
            out["value"], out["value2"] = sorted([a, b])
        else:
            out["value"] = draw(st.sampled_from(values))
        return out

    return node()


def event_nodes(world: World, now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    today = now.astimezone(BERLIN).date()
    windows = st.sampled_from([
        None, {"last_days": 1}, {"last_days": 3}, {"last_days": 30}, {"since": (today - timedelta(days=3)).isoformat()},
        {"from": (today - timedelta(days=30)).isoformat(), "to": (today - timedelta(days=1)).isoformat()},
        {"from": today.isoformat(), "to": today.isoformat()},
    ])
    counts = st.sampled_from([{"op": "exists"}, {"op": "not_exists"}, {"op": "at_least", "n": 2},
                              {"op": "at_most", "n": 1}, {"op": "at_most", "n": 0}, {"op": "at_least", "n": 1}])
    prop_filters = st.lists(st.sampled_from([
        {"name": "sku", "operator": "eq", "value": "A"}, {"name": "sku", "operator": "ne", "value": "A"},
        {"name": "sku", "operator": "contains", "value": "a"}, {"name": "price", "operator": "gt", "value": 5},
        {"name": "price", "operator": "empty"}, {"name": "size", "operator": "in", "value": ["M", "L"]},
        {"name": "size", "operator": "not_in", "value": ["M"]},
    ]), max_size=2)

    @st.composite
    def node(draw) -> dict[str, Any]:
        kind = draw(st.sampled_from(["message.opened", "message.clicked", "cart_abandoned"]))
        where: dict[str, Any] = {}
        if draw(st.booleans()):
            where["mailing_id"] = draw(st.sampled_from([1, 2]))
        if draw(st.integers(0, 4)) == 0:
            where["channel"] = "email"
        if draw(st.integers(0, 4)) == 0:
            where["link_id"] = 3
        if draw(st.integers(0, 5)) == 0:
            where["template_id"] = 4
        if kind == "cart_abandoned":
            props = draw(prop_filters)
            if props:
                where["properties"] = props
        return {"type": "event", "event": kind, "count": draw(counts), "window": draw(windows), "where": where}

    return node()


def leaves(world: World, now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        field_nodes(world, now), field_nodes(world, now), event_nodes(world, now),
        st.builds(lambda ch, cat, sts, neg: {"type": "subscription", "resource": world.news.pk, "channel": ch,
                                              "statuses": sts, "category": cat, "negate": neg},
                  st.sampled_from(["email", "sms"]), st.sampled_from([None, "deals"]),
                  st.lists(st.sampled_from(["subscribed", "unsubscribed", "bounced"]), min_size=1, max_size=2, unique=True),
                  st.booleans()),
        st.builds(lambda s, neg: {"type": "segment", "segment": s, "negate": neg},
                  st.sampled_from([world.static.pk, world.dynamic.pk]), st.booleans()),
        st.builds(lambda p, salt: {"type": "sample", "percent": p, "salt": salt},
                  st.sampled_from([0, 10, 50, 90, 100]), st.sampled_from(["s1", "s2"])),
    )


def make_group(items: list[dict[str, Any]], op: str, negate: bool) -> dict[str, Any]:
    return {"type": "group", "op": op, "negate": negate, "items": items}


def trees(world: World, now: datetime) -> st.SearchStrategy[dict[str, Any]]:
    leaf = leaves(world, now)
    def groups_of(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.builds(make_group, st.lists(children, min_size=1, max_size=3), st.sampled_from(["and", "or"]), st.booleans())

    nested = st.recursive(leaf, groups_of, max_leaves=6)
    return st.builds(make_group,
                     st.lists(st.one_of(leaf, nested), min_size=1, max_size=3), st.sampled_from(["and", "or"]), st.booleans())


# --- the database of one example ----------------------------------------------------------------------


def store(world: World, rows: list[dict[str, Any]], now: datetime) -> None:
    db = world.db
    profiles = []
    for i, row in enumerate(rows):
        domain = row["email_domain"]
        profiles.append(Profile(
            account_id=db.account_id, database=db, email=f"p{i}@{domain}" if domain else None,
            first_name=row["first_name"], birthday=date.fromisoformat(row["birthday"]) if row["birthday"] else None,
            gender=row["gender"], timezone=row["timezone"], data=row["data"],
            created_at=now - row["created_ago"], updated_at=now,
        ))
    Profile.objects.bulk_create(profiles)
    subs, events, members_ = [], [], []
    for i, (p, row) in enumerate(zip(profiles, rows, strict=True)):
        for j, (channel, status, opted) in enumerate(row["subscriptions"]):
            subs.append(Subscription(account_id=db.account_id, resource=world.news, profile=p, channel=channel,
                                     address=f"{channel}-{i}-{j}", status=status, opted_out=opted))
        for type_, days_ago, mailing, channel, link, props, untyped in row["events"]:
            events.append(Event(
                account_id=db.account_id, database_id=db.pk, profile_id=p.pk,
                type_id=world.cart.pk if type_ == "cart" else type_, occurred_at=now - timedelta(days=days_ago),
                mailing_id=mailing, channel=channel, link_id=link, properties=props, untyped=untyped,
            ))
        if row["member"]:
            members_.append(SegmentMember(segment=world.static, profile=p))
    Subscription.objects.bulk_create(subs)
    Event.objects.bulk_create(events)
    SegmentMember.objects.bulk_create(members_)


def facts(world: World) -> MemoryFacts:
    return MemoryFacts(
        subscription_rows=list(Subscription.objects.filter(resource=world.news).values(
            "resource_id", "profile_id", "channel", "status", "opted_out")),
        event_rows=list(Event.objects.filter(database_id=world.db.pk).values()),
        members=set(SegmentMember.objects.filter(segment=world.static).values_list("segment_id", "profile_id")),
    )


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])
@given(data=st.data())
def test_the_compiled_query_selects_what_python_evaluation_selects(world, data):
    now = moment(data.draw(st.sampled_from(NOWS), label="now"))
    profiles_strategy, tree_strategy, _ = world.strategies[now]
    rows = data.draw(profiles_strategy, label="profiles")
    tree = data.draw(tree_strategy, label="tree")
    check(world, rows, tree, now)


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                        HealthCheck.too_slow])
@given(data=st.data())
def test_each_condition_alone_selects_what_python_evaluation_selects(world, data):
    now = moment(data.draw(st.sampled_from(NOWS), label="now"))
    profiles_strategy, _, single_strategy = world.strategies[now]
    rows = data.draw(profiles_strategy, label="profiles")
    tree = data.draw(single_strategy, label="condition")
    check(world, rows, tree, now)


def check(world: World, rows: list[dict[str, Any]], tree: dict[str, Any], now: datetime) -> None:
    with transaction.atomic():
        store(world, rows, now)
        clean = clean_conditions(tree, world.catalog)
        got = set(profiles_matching(clean, world.catalog, now=now).values_list("id", flat=True))
        expected = members(clean, Profile.objects.filter(database=world.db), facts(world), EvalContext(world.catalog, now))
        everyone = len(rows)
        transaction.set_rollback(True)
    event("selects none" if not got else "selects all" if len(got) == everyone else "selects some")
    assert got == expected


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cleaning_is_idempotent(world, data):
    now = moment(data.draw(st.sampled_from(NOWS)))
    clean = clean_conditions(data.draw(world.strategies[now][1]), world.catalog)
    assert clean_conditions(clean, world.catalog, fill_salts=False) == clean


def test_local_midnight_is_where_windows_turn():
    # A guard for the property test's own assumptions: Berlin's day starts at 23:00 UTC in winter.
    assert datetime.combine(date(2026, 11, 29), time.min, tzinfo=BERLIN).astimezone(UTC).hour == 23
