"""The step handlers inside the real engine: a small welcome journey entered, advanced, released
by an event and timed out, and the same batch advanced twice without a second effect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from history.models import Event, EventType
from mailings.models import LedgerEntry
from profiles.models import Profile
from profiles.services import field_add
from scenarios.engine import Entry, participations_advance, participations_enter, waits_release
from scenarios.models import Participation
from scenarios.tests.factories import SYSTEM, make_scenario, path_of

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)

STEPS = [
    ("s1", "entry.api", {}),
    ("s2", "send", {}),
    ("s3", "wait_event", {"type": "order.placed", "filters": [], "timeout_seconds": 7 * 86400}),
    ("s4", "update", {"values": {"customer_stage": "buyer"}}),
    ("s5", "exit", {}),
    ("s6", "split", {"branches": [{"exit": "a", "label": "A", "weight": 50}, {"exit": "b", "label": "B", "weight": 50}]}),
    ("s7", "condition", {"test": "message", "step": "s2", "what": "sent"}),
    ("s8", "exit", {}),
]
EDGES = [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "event", "s4"), ("s4", "next", "s5"),
         ("s3", "timeout", "s6"), ("s6", "a", "s7"), ("s6", "b", "s7"), ("s7", "yes", "s8"), ("s7", "no", "s8")]


@pytest.fixture
def journey(world):
    field_add(database=world.database, name="customer_stage", label="Customer stage", type="string", actor=SYSTEM)
    return make_scenario(world, steps=STEPS, edges=EDGES)


def test_it_runs_a_welcome_journey_through_the_engine(world, journey):
    buyer, idle = world.profile_ids[:2]
    ids = participations_enter(scenario=journey, entries=[Entry(buyer, "s1", "api", key="a"),
                                                          Entry(idle, "s1", "api", key="b")], now=T0)
    participations_advance(ids=ids, now=T0)
    parts = {p.profile_id: p for p in Participation.objects.filter(pk__in=ids)}
    assert {p.state for p in parts.values()} == {"waiting"}
    assert {p.waiting_for for p in parts.values()} == {"order.placed"}
    rows = LedgerEntry.objects.filter(trigger_key__startswith="scn:")
    assert rows.count() == 2
    assert parts[buyer].context["messages"]["s2"] in set(rows.values_list("id", flat=True))

    type_ = EventType.objects.visible_to(world.account).get(name="order.placed")
    ev = Event.objects.create(account=world.account, database=world.database, profile_id=buyer, type=type_,
                              occurred_at=T0 + timedelta(days=1), properties={"total": 42})
    assert waits_release(events=[ev], names={type_.pk: "order.placed"}, now=T0 + timedelta(days=1)) == 1
    participations_advance(ids=ids, now=T0 + timedelta(days=1))
    done = Participation.objects.get(pk=parts[buyer].pk)
    assert done.state == "completed"
    assert done.context["event"]["properties"] == {"total": 42}
    assert Profile.objects.get(pk=buyer).data["customer_stage"] == "buyer"
    assert path_of(done) == [("s1", "next"), ("s2", "next"), ("s3", "event"), ("s4", "next"), ("s5", "")]

    participations_advance(ids=ids, now=T0 + timedelta(days=7))
    timed_out = Participation.objects.get(pk=parts[idle].pk)
    assert timed_out.state == "completed"
    keys = [k for k, _ in path_of(timed_out)]
    assert keys == ["s1", "s2", "s3", "s6", "s7", "s8"]
    assert path_of(timed_out)[2] == ("s3", "timeout")
    assert "customer_stage" not in Profile.objects.get(pk=idle).data


def test_it_has_no_second_effect_when_a_batch_is_advanced_twice(world, journey):
    ids = participations_enter(scenario=journey, entries=[Entry(pid, "s1", "api") for pid in world.profile_ids],
                               now=T0)
    participations_advance(ids=ids, now=T0)
    participations_advance(ids=ids, now=T0)
    assert LedgerEntry.objects.filter(trigger_key__startswith="scn:").count() == len(world.profile_ids)
    for pid in ids:
        assert [k for k, _ in path_of(pid)] == ["s1", "s2", "s3"]


def test_it_fails_the_trips_on_a_step_of_an_unknown_kind(world, journey):
    from scenarios.models import Step

    Step.objects.filter(version=journey.live_version, key="s2").update(kind="teleport")
    [pid] = participations_enter(scenario=journey, entries=[Entry(world.profile_ids[0], "s1", "api")], now=T0)
    participations_advance(ids=[pid], now=T0)
    p = Participation.objects.get(pk=pid)
    assert p.state == "failed" and "unknown step kind “teleport”" in p.error
    assert LedgerEntry.objects.count() == 0
