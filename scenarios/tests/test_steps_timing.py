"""Wait steps: durations, instants, profile date fields, local times of day across DST, and
waits for an event with a timeout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Account
from history.models import Event, EventType
from mailings.tests.factories import SYSTEM
from profiles.models import Profile
from profiles.services import field_add
from scenarios.engine.steps.timing import next_local_time
from scenarios.tests.test_steps_support import enter, item_of, one_step, run

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- wait: duration and instant ------------------------------------------------------------------


def test_it_waits_a_duration_from_when_the_trip_came_to_the_step(world):
    scenario = one_step(world, "wait", {"mode": "duration", "seconds": 3600})
    [p] = enter(scenario, world.profile_ids[:1])
    [o] = run(scenario, [p], now=T0 + timedelta(minutes=10), step_entered_at=T0)
    assert o.exit is None and o.wait_until == T0 + timedelta(hours=1)
    assert o.wait == {"mode": "duration", "until": (T0 + timedelta(hours=1)).isoformat()}
    [o] = run(scenario, [p], now=T0 + timedelta(hours=1), step_entered_at=T0)
    assert o.exit == "next" and o.wait_until is None


def test_it_goes_on_at_once_after_a_zero_wait(world):
    scenario = one_step(world, "wait", {"mode": "duration", "seconds": 0})
    outcomes = run(scenario, enter(scenario, world.profile_ids[:3]))
    assert [o.exit for o in outcomes] == ["next"] * 3


def test_it_waits_until_an_instant(world):
    scenario = one_step(world, "wait", {"mode": "until", "at": "2026-03-05T08:00:00+01:00"})
    [p] = enter(scenario, world.profile_ids[:1])
    [o] = run(scenario, [p], now=T0)
    assert o.wait_until == at("2026-03-05T07:00:00Z")
    [o] = run(scenario, [p], now=at("2026-03-05T07:00:00Z"))
    assert o.exit == "next"


def test_it_fails_an_unreadable_instant(world):
    scenario = one_step(world, "wait", {"mode": "until", "at": "next tuesday"})
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert "not an ISO date and time" in o.fail


# --- wait: a profile's date field --------------------------------------------------------------------


def test_it_waits_until_a_date_field_in_the_profiles_timezone_with_an_offset(world):
    scenario = one_step(world, "wait", {"mode": "field", "field": "birthday", "offset_seconds": -86400})
    pid = world.profile_ids[0]
    Profile.objects.filter(pk=pid).update(birthday="2026-06-01", timezone="Europe/Berlin")
    [o] = run(scenario, enter(scenario, [pid]), now=T0)
    # Midnight of 1 June in Berlin (22:00 UTC the day before), one day earlier.
    assert o.wait_until == at("2026-05-30T22:00:00Z")


def test_it_waits_until_a_datetime_field(world):
    field_add(database=world.database, name="trial_ends", label="Trial ends", type="datetime", actor=SYSTEM)
    scenario = one_step(world, "wait", {"mode": "field", "field": "trial_ends", "offset_seconds": 3600})
    pid = world.profile_ids[0]
    Profile.objects.filter(pk=pid).update(data={"trial_ends": "2026-04-01T10:00:00Z"})
    [o] = run(scenario, enter(scenario, [pid]), now=T0)
    assert o.wait_until == at("2026-04-01T11:00:00Z")


def test_it_goes_on_at_once_for_a_profile_without_the_value(world):
    scenario = one_step(world, "wait", {"mode": "field", "field": "birthday", "offset_seconds": 0})
    with_value, without = world.profile_ids[:2]
    Profile.objects.filter(pk=with_value).update(birthday="2026-12-24")
    outcomes = run(scenario, enter(scenario, [with_value, without]), now=T0)
    assert outcomes[0].wait_until is not None and outcomes[0].exit is None
    assert (outcomes[1].exit, outcomes[1].outcome) == ("next", "no birthday: not waiting")


def test_it_fails_a_field_that_is_not_a_date(world):
    scenario = one_step(world, "wait", {"mode": "field", "field": "first_name"})
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert "not a date or date-and-time field" in o.fail


# --- wait: a local time of day -------------------------------------------------------------------------


def test_it_waits_for_the_next_local_time_in_the_profiles_timezone(world):
    scenario = one_step(world, "wait", {"mode": "time_of_day", "time": "09:00", "weekdays": []})
    pid = world.profile_ids[0]
    Profile.objects.filter(pk=pid).update(timezone="Europe/Berlin")
    [p] = enter(scenario, [pid])
    # 10:00 UTC is 11:00 in Berlin (CET): 09:00 is tomorrow's, 08:00 UTC.
    [o] = run(scenario, [p], now=T0 + timedelta(hours=1), step_entered_at=T0 + timedelta(hours=1))
    assert o.wait_until == at("2026-03-03T08:00:00Z")


def test_it_uses_the_accounts_timezone_when_the_profile_has_none(world):
    Account.objects.filter(pk=world.account.pk).update(timezone="America/New_York")
    scenario = one_step(world, "wait", {"mode": "time_of_day", "time": "09:00", "weekdays": []})
    [p] = enter(scenario, world.profile_ids[:1])
    [o] = run(scenario, [p], now=T0, step_entered_at=T0)  # 04:00 in New York (EST)
    assert o.wait_until == at("2026-03-02T14:00:00Z")


def test_it_waits_for_an_allowed_weekday(world):
    Account.objects.filter(pk=world.account.pk).update(timezone="UTC")
    scenario = one_step(world, "wait", {"mode": "time_of_day", "time": "08:00", "weekdays": [4]})  # Friday
    [p] = enter(scenario, world.profile_ids[:1])
    [o] = run(scenario, [p], now=T0, step_entered_at=T0)
    assert o.wait_until == at("2026-03-06T08:00:00Z")


def test_it_keeps_the_local_time_across_the_spring_forward_change(world):
    scenario = one_step(world, "wait", {"mode": "time_of_day", "time": "09:00", "weekdays": []})
    pid = world.profile_ids[0]
    Profile.objects.filter(pk=pid).update(timezone="Europe/Berlin")
    [p] = enter(scenario, [pid])
    arrived = at("2026-03-28T12:00:00Z")  # Saturday, CET; Sunday is CEST
    with time_machine.travel(arrived, tick=False):
        [o] = run(scenario, [p], now=timezone.now(), step_entered_at=arrived)
    assert o.wait_until == at("2026-03-29T07:00:00Z")  # 09:00 CEST
    with time_machine.travel(o.wait_until - timedelta(seconds=1), tick=False):
        [early] = run(scenario, [p], now=timezone.now(), step_entered_at=arrived)
    with time_machine.travel(o.wait_until, tick=False):
        [due] = run(scenario, [p], now=timezone.now(), step_entered_at=arrived)
    assert early.exit is None and early.wait_until == o.wait_until
    assert due.exit == "next"


def test_it_takes_a_skipped_local_time_as_the_change_itself():
    berlin = __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    # 02:30 does not exist on 29 March 2026 in Berlin: the clocks jump from 02:00 to 03:00 CEST.
    moment = next_local_time(at("2026-03-28T12:00:00Z"), datetime.strptime("02:30", "%H:%M").time(), berlin, set())
    assert moment == at("2026-03-29T01:00:00Z")


def test_it_takes_a_repeated_local_time_once_at_its_first_occurrence(world):
    scenario = one_step(world, "wait", {"mode": "time_of_day", "time": "02:30", "weekdays": []})
    pid = world.profile_ids[0]
    Profile.objects.filter(pk=pid).update(timezone="Europe/Berlin")
    [p] = enter(scenario, [pid])
    arrived = at("2026-10-24T12:00:00Z")  # 02:30 happens twice on 25 October (CEST, then CET)
    [o] = run(scenario, [p], now=arrived, step_entered_at=arrived)
    assert o.wait_until == at("2026-10-25T00:30:00Z")
    # Woken at the second 02:30 (01:30 UTC) it does not wait for another day: it goes on.
    [again] = run(scenario, [p], now=at("2026-10-25T01:30:00Z"), step_entered_at=arrived)
    assert again.exit == "next"


# --- wait_event --------------------------------------------------------------------------------------------


def _event(world, profile_id, when, properties=None, type_name="order.placed"):
    type_ = EventType.objects.visible_to(world.account).get(name=type_name)
    return Event.objects.create(account=world.account, database=world.database, profile_id=profile_id, type=type_,
                                occurred_at=when, properties=properties or {})


@pytest.fixture
def waiting_scenario(world):
    return one_step(world, "wait_event",
                    {"type": "order.placed", "filters": [{"property": "total", "op": "gte", "value": 50}],
                     "timeout_seconds": 7 * 86400},
                    exits=("event", "timeout"))


def test_it_starts_waiting_for_the_event_until_the_timeout(world, waiting_scenario):
    [p] = enter(waiting_scenario, world.profile_ids[:1])
    [o] = run(waiting_scenario, [p], now=T0, step_entered_at=T0)
    assert o.exit is None and o.waiting_for == "order.placed"
    assert o.wait_until == T0 + timedelta(days=7)
    assert o.wait == {"type": "order.placed", "filters": [{"property": "total", "op": "gte", "value": 50}],
                      "since": T0.isoformat(), "until": (T0 + timedelta(days=7)).isoformat()}


def test_it_leaves_by_event_once_released_with_the_events_properties(world, waiting_scenario):
    [p] = enter(waiting_scenario, world.profile_ids[:1])
    ev = _event(world, p.profile_id, T0 + timedelta(days=1), {"total": 80, "order": "A-1"})
    item = item_of(p, step_entered_at=T0)
    item.wait = {"type": "order.placed", "since": T0.isoformat(), "until": (T0 + timedelta(days=7)).isoformat(),
                 "released": {"event_id": ev.pk, "type": "order.placed", "at": ev.occurred_at.isoformat()}}
    [o] = run(waiting_scenario, [item], now=T0 + timedelta(days=1))
    assert o.exit == "event"
    assert o.context == {"event": {"id": ev.pk, "type": "order.placed", "at": ev.occurred_at.isoformat(),
                                   "properties": {"total": 80, "order": "A-1"}}}


def test_it_leaves_by_timeout_when_no_event_came(world, waiting_scenario):
    [p] = enter(waiting_scenario, world.profile_ids[:1])
    [first] = run(waiting_scenario, [p], now=T0, step_entered_at=T0)
    item = item_of(p, step_entered_at=T0)
    item.wait = first.wait
    [early] = run(waiting_scenario, [item], now=T0 + timedelta(days=3))
    [late] = run(waiting_scenario, [item], now=T0 + timedelta(days=7))
    assert early.exit is None and early.wait_until == T0 + timedelta(days=7) and early.wait == first.wait
    assert late.exit == "timeout"


def test_it_takes_an_event_that_came_before_the_wait_began(world, waiting_scenario):
    a, b, c = world.profile_ids[:3]
    parts = enter(waiting_scenario, [a, b, c])
    _event(world, a, T0 + timedelta(seconds=1), {"total": 99})  # after arrival, before the handler ran
    _event(world, b, T0 - timedelta(hours=1), {"total": 99})  # before the trip came to the step
    _event(world, c, T0 + timedelta(seconds=1), {"total": 10})  # does not pass the filters
    outcomes = run(waiting_scenario, parts, now=T0 + timedelta(seconds=2), step_entered_at=T0)
    assert [o.exit for o in outcomes] == ["event", None, None]
    assert outcomes[0].context["event"]["properties"] == {"total": 99}


def test_it_finds_an_event_the_release_missed_before_timing_out(world, waiting_scenario):
    missed, late = world.profile_ids[:2]
    parts = enter(waiting_scenario, [missed, late])
    firsts = run(waiting_scenario, parts, now=T0, step_entered_at=T0)
    # Stored while the trip was not yet WAITING (nobody could release it) / after the timeout.
    ev = _event(world, missed, T0 + timedelta(seconds=1), {"total": 60})
    _event(world, late, T0 + timedelta(days=8), {"total": 60})
    items = []
    for p, first in zip(parts, firsts, strict=True):
        item = item_of(p, step_entered_at=T0)
        item.wait = first.wait
        items.append(item)
    outcomes = run(waiting_scenario, items, now=T0 + timedelta(days=9))
    assert [o.exit for o in outcomes] == ["event", "timeout"]
    assert outcomes[0].context["event"]["id"] == ev.pk
