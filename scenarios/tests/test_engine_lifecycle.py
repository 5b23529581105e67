"""The engine around the steps: event waits released by events (and only the right ones), goal
and stop exits, moving participations to a new version with a step mapping, the tick handing due
participations out once, the erasure and merge handlers, the counters and housekeeping."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from accounts.access import Actor
from history.models import Event
from history.services import EventIn, TypeBook, events_ingest, eventtype_create
from profiles.models import Profile
from scenarios.engine import (
    Entry,
    engine_tick,
    participations_advance,
    participations_enter,
    participations_erase,
    participations_exit,
    participations_merge,
    participations_move,
    waits_release,
)
from scenarios.engine.housekeeping import versions_retire
from scenarios.engine.stats import stats_compact, step_counts
from scenarios.engine.tick import due_claim
from scenarios.models import Participation, Scenario, ScenarioVersion, StepStat
from scenarios.tests.factories import add_version, make_participation, make_scenario, path_of, stats_of

pytestmark = pytest.mark.django_db

WAIT_EVENT = [("s1", "entry.api", {}),
              ("s2", "wait_event", {"type": "order_placed", "filters": [{"property": "total", "op": "gte", "value": 50}],
                                    "timeout_seconds": 7 * 86400}),
              ("s3", "exit", {}, "Bought"), ("s4", "exit", {}, "Gave up")]
WAIT_EDGES = [("s1", "next", "s2"), ("s2", "event", "s3"), ("s2", "timeout", "s4")]
LONG_WAIT = [("s1", "entry.api", {}), ("s2", "wait", {"mode": "duration", "seconds": 86400}), ("s3", "exit", {})]
LONG_EDGES = [("s1", "next", "s2"), ("s2", "next", "s3")]


def enter(scenario: Scenario, *pids: int) -> list[int]:
    return participations_enter(scenario=scenario, entries=[Entry(profile_id=p, step_key="s1", source="api")
                                                            for p in pids])


def waiting(scenario: Scenario, *pids: int) -> list[int]:
    ids = enter(scenario, *pids)
    participations_advance(ids=ids)
    assert set(Participation.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"waiting"}
    return ids


def orders(world, *items: tuple[int, dict]) -> tuple[list[Event], dict[int, str]]:
    """Store order_placed events through the real ingest; returns them and {type id: name}."""
    if not world.account.event_types.filter(name="order_placed").exists():
        eventtype_create(account=world.account, name="order_placed", label="Order placed", actor=Actor.system(),
                         properties=[{"name": "total", "type": "decimal"}])
    results = events_ingest(account=world.account, source="test", book=TypeBook.load(world.account),
                            events=[EventIn("order_placed", pid, None, props) for pid, props in items])
    assert all(r.status == "stored" for r in results), [r.as_dict() for r in results]
    events = list(Event.objects.filter(id__in=[r.id for r in results]).order_by("id"))
    return events, {e.type_id: "order_placed" for e in events}


def test_it_releases_an_event_wait_by_a_matching_event_and_takes_the_event_exit(world):
    scenario = make_scenario(world, steps=WAIT_EVENT, edges=WAIT_EDGES)
    a, b = world.profile_ids[:2]
    ids = waiting(scenario, a, b)
    small, names = orders(world, (a, {"total": 20}))
    assert waits_release(events=small, names=names) == 0  # the filter says total >= 50
    events, names = orders(world, (a, {"total": 80}))
    assert waits_release(events=events, names=names) == 1
    assert waits_release(events=events, names=names) == 0  # released once
    participations_advance(ids=ids)
    pa, pb = Participation.objects.filter(pk__in=ids).order_by("profile_id")
    assert (pa.state, pa.step.key) == ("completed", "s3")
    assert pa.context["event"]["id"] == events[0].pk
    assert path_of(pa) == [("s1", "next"), ("s2", "event"), ("s3", "")]
    assert (pb.state, pb.step.key) == ("waiting", "s2")  # b bought nothing: still waiting


def test_it_takes_the_timeout_exit_when_no_event_comes(world):
    scenario = make_scenario(world, steps=WAIT_EVENT, edges=WAIT_EDGES)
    ids = waiting(scenario, world.profile_ids[0])
    participations_advance(ids=ids, now=timezone.now() + timedelta(days=7, seconds=1))
    p = Participation.objects.get(pk=ids[0])
    assert (p.state, p.step.key) == ("completed", "s4")
    assert path_of(p)[1] == ("s2", "timeout")


def test_it_never_releases_a_wait_by_another_accounts_event(world, other_world):
    scenario = make_scenario(world, steps=WAIT_EVENT, edges=WAIT_EDGES)
    pid = world.profile_ids[0]
    ids = waiting(scenario, pid)
    theirs, _ = orders(other_world, (other_world.profile_ids[0], {"total": 99}))
    forged = Event(pk=theirs[0].pk, account_id=other_world.account.pk, profile_id=pid, type_id=theirs[0].type_id,
                   occurred_at=timezone.now(), properties={"total": 99})  # the same profile id, another account
    assert waits_release(events=[forged], names={theirs[0].type_id: "order_placed"}) == 0
    assert Participation.objects.get(pk=ids[0]).wait.get("released") is None


def test_it_takes_a_profile_out_wherever_it_is_when_it_reaches_the_goal(world):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES, goal={"type": "order_placed"})
    a, b = world.profile_ids[:2]
    ids = waiting(scenario, a, b)
    assert participations_exit(scenario_id=scenario.pk, profile_ids=[a], reason="goal") == 1
    assert participations_exit(scenario_id=scenario.pk, profile_ids=[a], reason="goal") == 0
    pa = Participation.objects.get(scenario=scenario, profile_id=a)
    assert (pa.state, pa.exit_reason, pa.next_run_at) == ("exited", "goal", None)
    assert path_of(pa) == [("s1", "next"), ("s2", "")]
    assert stats_of(scenario)[("s2", "exited")] == 1
    # The batch advanced later moves only the one still inside.
    assert participations_advance(ids=ids, now=timezone.now() + timedelta(days=2)) == 1
    assert Participation.objects.get(pk=pa.pk).state == "exited"


def test_it_takes_everyone_out_when_the_scenario_stops(world):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    waiting(scenario, *world.profile_ids)
    assert participations_exit(scenario_id=scenario.pk, profile_ids=None, reason="stopped") == 5
    assert set(Participation.objects.filter(scenario=scenario).values_list("state", "exit_reason")) == {
        ("exited", "stopped")}
    with pytest.raises(ValueError, match="needs a scenario"):
        participations_exit(scenario_id=None, profile_ids=None, reason="stopped")


def test_it_moves_mapped_participations_to_the_new_version_and_leaves_the_others(world):
    scenario = make_scenario(world, steps=[("s1", "entry.api", {}), ("s2", "wait", {"mode": "duration", "seconds": 86400}),
                                           ("s3", "wait", {"mode": "duration", "seconds": 86400}), ("s4", "exit", {})],
                             edges=[("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4")])
    v1 = scenario.live_version
    a, b = world.profile_ids[:2]
    at_s2 = make_participation(scenario, a, step_key="s2", state="waiting",
                               next_run_at=timezone.now() + timedelta(days=1))
    at_s3 = make_participation(scenario, b, step_key="s3", state="waiting",
                               next_run_at=timezone.now() + timedelta(days=1))
    v2 = add_version(world, scenario, steps=[("s1", "entry.api", {}), ("s5", "wait", {"mode": "duration", "seconds": 0}),
                                             ("s4", "exit", {})],
                     edges=[("s1", "next", "s5"), ("s5", "next", "s4")])
    assert participations_move(scenario=scenario, to_version=v2, mapping={"s2": "s5", "s9": "s1"}) == 1
    at_s2.refresh_from_db()
    at_s3.refresh_from_db()
    assert (at_s2.version_id, at_s2.step.key, at_s2.state, at_s2.seq) == (v2.pk, "s5", "active", 1)
    assert (at_s3.version_id, at_s3.step.key, at_s3.state) == (v1.pk, "s3", "waiting")
    participations_advance(ids=[at_s2.pk])
    at_s2.refresh_from_db()
    assert (at_s2.state, at_s2.step.key) == ("completed", "s4")
    assert path_of(at_s2) == [("s2", ""), ("s5", "next"), ("s4", "")]
    assert stats_of(scenario)[("s2", "exited")] == 1 and stats_of(scenario)[("s5", "entered")] == 1


def test_it_hands_due_participations_out_once_and_holds_a_paused_scenarios(world, django_capture_on_commit_callbacks):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    paused = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES, name="Paused", state=Scenario.State.PAUSED)
    ours = [make_participation(scenario, pid).pk for pid in world.profile_ids[:3]]
    held = make_participation(paused, world.profile_ids[0]).pk
    later = make_participation(scenario, world.profile_ids[3], next_run_at=timezone.now() + timedelta(hours=1)).pk
    now = timezone.now()
    assert due_claim(now=now) == ours
    assert due_claim(now=now) == []  # leased: a second tick hands nothing out again
    assert due_claim(now=now + timedelta(seconds=61)) == ours  # the lease expired: the task was lost
    with django_capture_on_commit_callbacks(execute=True):
        assert engine_tick(now=now + timedelta(seconds=122)) == 3
    assert set(Participation.objects.filter(pk__in=ours).values_list("state", "step__key")) == {("waiting", "s2")}
    assert Participation.objects.get(pk=held).step.key == "s1"
    assert Participation.objects.get(pk=later).step.key == "s1"


def test_it_exits_and_blanks_an_erased_profiles_trips(world):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    pid = world.profile_ids[0]
    participations_enter(scenario=scenario, entries=[Entry(profile_id=pid, step_key="s1", source="api",
                                                           context={"data": {"email": "p0@example.com"}})])
    participations_erase(Profile.objects.get(pk=pid))
    p = Participation.objects.get(scenario=scenario, profile_id=pid)
    assert (p.state, p.exit_reason, p.context) == ("exited", "erased", {})


def test_it_takes_a_profile_out_when_the_profiles_service_erases_it(world):
    from profiles.services import profile_erase

    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    pid = world.profile_ids[1]
    p = make_participation(scenario, pid, context={"data": {"name": "Ann"}})
    profile_erase(profile=Profile.objects.get(pk=pid), actor=Actor.system())
    p.refresh_from_db()
    assert (p.state, p.exit_reason, p.context) == ("exited", "erased", {})


def test_it_gives_the_merged_profile_the_sources_trips_once_per_scenario(world):
    one = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES, name="One")
    two = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES, name="Two")
    target, source = world.profile_ids[:2]
    make_participation(one, target)
    clash = make_participation(one, source)
    moved = make_participation(two, source)
    participations_merge(Profile.objects.get(pk=target), Profile.objects.get(pk=source))
    clash.refresh_from_db()
    moved.refresh_from_db()
    assert (clash.state, clash.exit_reason, clash.profile_id) == ("exited", "merged", target)
    assert (moved.state, moved.profile_id) == ("active", target)


def test_it_counts_per_step_and_compacts_the_deltas_without_changing_the_sums(world):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    for pid in world.profile_ids:
        waiting(scenario, pid)
    counts = step_counts(scenario)
    assert counts["s1"] == {"now": 0, "entered": 5, "passed": 5, "exited": 0, "failed": 0}
    assert counts["s2"] == {"now": 5, "entered": 5, "passed": 0, "exited": 0, "failed": 0}
    assert StepStat.objects.filter(scenario_id=scenario.pk).count() >= 10
    stats_compact(min_rows=2)
    assert StepStat.objects.filter(scenario_id=scenario.pk).count() == 3
    assert step_counts(scenario) == counts


def test_it_retires_a_published_version_once_nobody_is_on_it(world):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    v1 = scenario.live_version
    p = make_participation(scenario, world.profile_ids[0], step_key="s2", state="waiting")
    add_version(world, scenario, steps=LONG_WAIT, edges=LONG_EDGES)
    assert versions_retire() == 0  # somebody is still on v1
    Participation.objects.filter(pk=p.pk).update(state="completed")
    assert versions_retire() == 1
    assert ScenarioVersion.objects.get(pk=v1.pk).state == "retired"
    assert scenario.live_version.state == "published"


def test_it_runs_the_beat_tasks_on_the_scenarios_queue(world, django_capture_on_commit_callbacks):
    from cdp.celery import app
    from scenarios.tasks import housekeeping_task, participations_advance_task, scenarios_tick_task

    for task in (housekeeping_task, participations_advance_task, scenarios_tick_task):
        assert app.amqp.router.route({}, task.name)["queue"].name == "scenarios"
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    p = make_participation(scenario, world.profile_ids[0])
    with django_capture_on_commit_callbacks(execute=True):
        scenarios_tick_task.delay()
    assert Participation.objects.get(pk=p.pk).state == "waiting"
    housekeeping_task.delay()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent claims need PostgreSQL")
def test_it_hands_each_due_participation_to_one_of_two_ticks_running_at_once(world):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    ids = [make_participation(scenario, pid).pk for pid in world.profile_ids]
    now = timezone.now()
    barrier = threading.Barrier(2)
    got: list[list[int]] = []

    def tick() -> None:
        try:
            barrier.wait(timeout=10)
            got.append(due_claim(now=now, limit=3))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(got) == 2
    assert not set(got[0]) & set(got[1])
    assert set(got[0]) | set(got[1]) <= set(ids) and len(got[0]) + len(got[1]) >= 3
