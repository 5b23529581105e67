"""Every condition, one at a time, against the Python evaluator on one seeded database: each field
with each of its operators and each value of its domain (and the same negated), each event
count x window x filter, each subscription and segment form, each sample. Where the property
tests compose conditions at random, this covers the single conditions completely, at three
instants (timezones on different dates, a DST change, a leap year)."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction

from profiles.models import Profile
from segments.compiler import profiles_matching
from segments.conditions import OPERATORS, clean_conditions
from segments.evaluate import EvalContext, members, moment
from segments.tests.conftest import group
from segments.tests.test_properties import (
    BERLIN,
    DECIMALS,
    INTS,
    NEEDLES,
    NOWS,
    TEXTS,
    World,
    birthdays_near,
    dates_near,
    facts,
    instants_near,
    random_rows,
    store,
)

PROFILES = 40


@pytest.fixture
def seeded(shop, news, cart) -> World:
    return World(shop, news, cart)


def field_conditions(world: World, now: datetime) -> list[dict[str, Any]]:
    types = {f.name: f.type for f in world.catalog.fields.values()}
    domain: dict[str, list[Any]] = {
        "string": TEXTS, "text": TEXTS, "integer": [*INTS, 2, 6000], "decimal": [*DECIMALS, 2, 3.25],
        "date": dates_near(now), "datetime": instants_near(now), "enum": ["free", "pro", "team"],
        "email": ["a@example.com", "p1@example.com", "p2@test.org"], "boolean": [True, False],
    }
    out = []
    for name, type_ in types.items():
        if name in ("phone", "mobile"):
            continue
        values = {"gender": ["female", "male", "other"], "first_name": ["Anna", "ben", "AN"],
                  "birthday": birthdays_near(now)}.get(name) or domain.get(type_, [])
        for op in OPERATORS[type_]:
            base = {"type": "field", "field": name, "operator": op}
            if op in ("empty", "set"):
                variants: list[dict[str, Any]] = [{}]
            elif op in ("contains", "not_contains", "starts_with"):
                variants = [{"value": v} for v in (NEEDLES if type_ != "email" else ["@", "example", "p1", "A@"])]
            elif op in ("in", "not_in"):
                variants = [{"value": values[:2]}, {"value": values[-1:]}]
            elif op in ("in_last_days", "in_next_days"):
                variants = [{"value": n} for n in (0, 1, 2, 7, 30, 400)]
            elif op == "anniversary_in_days":
                variants = [{"value": n} for n in (0, 1, 2, 3, 7, 100, 364, 365)]
            elif op == "list_contains":
                variants = [{"value": v} for v in ("a", "b", "z")]
            elif op == "between":
                ordered = sorted(values)
                variants = [{"value": a, "value2": b} for a, b in itertools.combinations(ordered[::2], 2)][:6]
            else:
                variants = [{"value": v} for v in values]
            out += [{**base, **v} for v in variants]
    return out


def event_conditions(now: datetime) -> list[dict[str, Any]]:
    today = now.astimezone(BERLIN).date()
    windows = [None, {"last_days": 1}, {"last_days": 3}, {"last_days": 30}, {"since": (today - timedelta(days=3)).isoformat()},
               {"from": (today - timedelta(days=30)).isoformat(), "to": (today - timedelta(days=1)).isoformat()},
               {"from": today.isoformat(), "to": today.isoformat()}]
    counts = [{"op": "exists"}, {"op": "not_exists"}, {"op": "at_least", "n": 2}, {"op": "at_most", "n": 1},
              {"op": "at_most", "n": 0}, {"op": "at_least", "n": 3}]
    wheres: list[dict[str, Any]] = [{}, {"mailing_id": 1}, {"channel": "email"}, {"link_id": 3}, {"template_id": 4},
                                    {"mailing_id": 2, "channel": "email"}]
    props = [[{"name": "sku", "operator": "eq", "value": "A"}], [{"name": "sku", "operator": "ne", "value": "A"}],
             [{"name": "sku", "operator": "contains", "value": "a"}], [{"name": "price", "operator": "gt", "value": 5}],
             [{"name": "price", "operator": "empty"}], [{"name": "size", "operator": "in", "value": ["M", "L"]}],
             [{"name": "size", "operator": "not_in", "value": ["M"]}],
             [{"name": "price", "operator": "between", "value": 1, "value2": 9.5}, {"name": "sku", "operator": "set"}]]
    out = []
    for kind, window, count in itertools.product(["message.opened", "message.clicked", "cart_abandoned"], windows, counts):
        for where in wheres:
            out.append({"type": "event", "event": kind, "count": count, "window": window, "where": where})
        if kind == "cart_abandoned":
            out += [{"type": "event", "event": kind, "count": count, "window": window, "where": {"properties": p}}
                    for p in props]
    return out


def other_conditions(world: World) -> list[dict[str, Any]]:
    subs = [{"type": "subscription", "resource": world.news.pk, "channel": ch, "statuses": sts, "category": cat}
            for ch, sts, cat in itertools.product(["email", "sms"], [["subscribed"], ["unsubscribed", "bounced"]],
                                                  [None, "deals", "tips"])]
    segs = [{"type": "segment", "segment": s} for s in (world.static.pk, world.dynamic.pk)]
    samples = [{"type": "sample", "percent": p, "salt": s} for p, s in itertools.product([0, 1, 10, 50, 99, 100], ["s1", "s2"])]
    return subs + segs + samples


def test_every_single_condition_selects_what_python_evaluation_selects(seeded):
    world = seeded
    rng = random.Random(20261128)
    mismatches = []
    checked = 0
    for now in map(moment, (NOWS[1], NOWS[2], NOWS[3])):
        rows = random_rows(rng, now, PROFILES)
        with transaction.atomic():
            store(world, rows, now)
            ctx = EvalContext(world.catalog, now)
            profiles = list(Profile.objects.filter(database=world.db))
            known = facts(world)
            nodes = field_conditions(world, now) + event_conditions(now) + other_conditions(world)
            for node in nodes:
                # Fields and samples negated as well: NOT pushed down must keep empty values.
                forms = [group(node), group(node, negate=True)] if node["type"] in ("field", "sample") else [group(node)]
                for tree in forms:
                    clean = clean_conditions(tree, world.catalog, fill_salts=False)
                    got = set(profiles_matching(clean, world.catalog, now=now).values_list("id", flat=True))
                    expected = members(clean, profiles, known, ctx)
                    checked += 1
                    if got != expected:
                        mismatches.append((now.isoformat(), tree, sorted(got ^ expected)))
            transaction.set_rollback(True)
    assert checked > 3000
    assert mismatches == [], mismatches[:5]
