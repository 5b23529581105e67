"""Set-based handlers: a group costs the same number of queries whatever its size, and the send
step run from two workers at once for the same trips makes one ledger row each (PostgreSQL)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from mailings.models import LedgerEntry
from mailings.tests.factories import add_subscribers
from profiles.services import field_add
from scenarios.tests.factories import SYSTEM
from scenarios.tests.test_steps_support import enter, one_step, run
from segments.models import Segment
from segments.services.segments import segment_create

pytestmark = pytest.mark.django_db


def queries_for(world: Any, kind: str, config: dict[str, Any], profile_ids: list[int], name: str,
                exits: tuple[str, ...] = ("next",)) -> int:
    scenario = one_step(world, kind, config, exits=exits, name=name)
    parts = enter(scenario, profile_ids)
    with CaptureQueriesContext(connection) as ctx:
        outcomes = run(scenario, parts)
    assert all(not o.fail and not o.retry for o in outcomes), outcomes
    return len(ctx.captured_queries)


@pytest.mark.parametrize("kind", ["send", "update", "subscription", "segment", "condition", "wait_field"])
def test_it_costs_the_same_queries_for_one_profile_as_for_forty(world, kind):
    many = add_subscribers(world.resource, 40, start=100)
    field_add(database=world.database, name="stage", label="Stage", type="string", actor=SYSTEM)
    static = segment_create(database=world.database, name="VIP", kind=Segment.Kind.STATIC, actor=SYSTEM)
    configs: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
        "send": ("send", {}, ("next",)),
        "update": ("update", {"values": {"stage": "buyer"}}, ("next",)),
        "subscription": ("subscription", {"resource_id": world.resource.pk, "channel": "email",
                                          "status": "unsubscribed"}, ("next",)),
        "segment": ("segment", {"segment_id": static.pk, "action": "add"}, ("next",)),
        "condition": ("condition", {"test": "segments", "conditions": {"type": "group", "op": "and", "items": [
            {"type": "field", "field": "stage", "operator": "eq", "value": "buyer"}]}}, ("yes", "no")),
        "wait_field": ("wait", {"mode": "field", "field": "birthday", "offset_seconds": 0}, ("next",)),
    }
    step_kind, config, exits = configs[kind]
    one = queries_for(world, step_kind, config, world.profile_ids[:1], "One", exits)
    forty = queries_for(world, step_kind, config, many, "Forty", exits)
    assert forty == one


@pytest.mark.django_db(transaction=True)
def test_it_makes_one_ledger_row_when_two_workers_send_for_the_same_trips(world):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers: PostgreSQL")
    scenario = one_step(world, "send", {})
    parts = enter(scenario, world.profile_ids)
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[n] = run(scenario, parts)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert LedgerEntry.objects.count() == len(parts)
    assert [o.context for o in results[0]] == [o.context for o in results[1]]
    assert all(o.exit == "next" and "ledger #" in o.outcome for o in results[0] + results[1])
