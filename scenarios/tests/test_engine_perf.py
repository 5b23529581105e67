"""The engine's queues and hand-outs: event-driven advances (event and API entries, released
waits) run from the real-time `trigger` queue, bulk work (activation, polled entries, the tick)
from `scenarios`; an activation lets its members in from a task after commit, chunk by chunk;
what was kicked carries the tick's hand-out lease so the tick does not hand it out twice; the
set-based write counts a step once per trip whatever the batch size. Runs on SQLite and
PostgreSQL (Celery eager: the tasks run where they are published, and say which they were)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery.signals import task_prerun
from django.utils import timezone

from accounts.access import Actor
from cdp.celery import app as celery_app
from history.models import Event
from history.services import EventIn, TypeBook, events_ingest, eventtype_create
from scenarios import entries
from scenarios.engine import Entry, participations_advance, participations_enter, waits_release
from scenarios.engine.tick import due_claim
from scenarios.entries import entries_at_activation, entries_at_activation_start, entries_poll, scenario_enter
from scenarios.models import Participation, Scenario
from scenarios.services import scenario_activate, scenario_create, step_add, transition_set
from scenarios.tests.factories import make_scenario, participations_of, path_of, stats_of
from segments.models import SegmentMember
from segments.services import segment_create

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system()
HOUR = {"mode": "duration", "seconds": 3600}
ADVANCE = "scenarios.tasks.participations_advance_task"
URGENT = "scenarios.tasks.participations_advance_trigger_task"


@pytest.fixture
def ran() -> Iterator[list[str]]:
    """The names of the scenarios' Celery tasks run (eagerly) during the test, in order."""
    names: list[str] = []

    def record(sender=None, **_kw) -> None:
        if sender.name.startswith("scenarios."):  # not the history drain's or the mailings' own
            names.append(sender.name)

    task_prerun.connect(record, weak=False)
    yield names
    task_prerun.disconnect(record)


def queue_of(name: str) -> str:
    return celery_app.amqp.router.route({}, name, args=(), kwargs={})["queue"].name


def holding(world, entry: tuple) -> Scenario:
    """entry -> wait an hour -> exit."""
    return make_scenario(world, steps=[entry, ("s2", "wait", HOUR), ("s3", "exit", {})],
                         edges=[("s1", "next", "s2"), ("s2", "next", "s3")])


def test_it_routes_event_driven_advances_to_the_trigger_queue_and_the_rest_to_scenarios():
    assert queue_of(URGENT) == "trigger"
    assert queue_of(ADVANCE) == "scenarios"
    for name in ("scenarios_tick_task", "entries_at_activation_task", "housekeeping_task"):
        assert queue_of(f"scenarios.tasks.{name}") == "scenarios"


def test_it_advances_an_api_entry_from_the_trigger_queue(world, ran, django_capture_on_commit_callbacks):
    scenario = holding(world, ("s1", "entry.api", {}))
    with django_capture_on_commit_callbacks(execute=True):
        trip_id = scenario_enter(scenario=scenario, key="email", value="person1@example.com", actor=SYSTEM)
    assert ran == [URGENT]
    trip = Participation.objects.get(pk=trip_id)
    assert (trip.state, trip.step.key, trip.lease_until) == ("waiting", "s2", None)


def test_it_advances_event_entries_and_released_waits_from_the_trigger_queue(world, ran,
                                                                             django_capture_on_commit_callbacks):
    eventtype_create(account=world.account, name="order_placed", label="Order placed", actor=SYSTEM,
                     properties=[{"name": "total", "type": "decimal"}])
    entering = holding(world, ("s1", "entry.event", {"type": "order_placed", "filters": []}))
    waiting = make_scenario(world, name="Waits", steps=[
        ("s1", "entry.api", {}), ("s2", "wait_event", {"type": "order_placed", "filters": [], "timeout_seconds": 86400}),
        ("s3", "exit", {})], edges=[("s1", "next", "s2"), ("s2", "event", "s3")])
    pid = world.profile_ids[0]
    waiter = participations_enter(scenario=waiting, entries=[Entry(profile_id=pid, step_key="s1", source="api")])
    participations_advance(ids=waiter)
    assert Participation.objects.get(pk=waiter[0]).state == "waiting"
    ran.clear()
    with django_capture_on_commit_callbacks(execute=True):
        results = events_ingest(account=world.account, source="test", book=TypeBook.load(world.account),
                                events=[EventIn("order_placed", pid, None, {"total": "12.00"})])
    assert results[0].status == "stored"
    from scenarios.handlers import on_events

    with django_capture_on_commit_callbacks(execute=True):
        on_events(list(Event.objects.filter(pk=results[0].id)))
    assert ran and set(ran) == {URGENT}  # the entry's first step and the released wait, never the bulk queue
    assert [(p.state, p.step.key) for p in participations_of(entering)] == [("waiting", "s2")]
    assert Participation.objects.get(pk=waiter[0]).state == "completed"
    assert waits_release(events=list(Event.objects.filter(pk=results[0].id)), names={}) == 0


def test_it_keeps_polled_entries_on_the_scenarios_queue(world, ran, django_capture_on_commit_callbacks):
    from profiles.services import profile_create

    scenario = holding(world, ("s1", "entry.database", {}))
    entries_at_activation(scenario=scenario)  # starts the watermark
    profile_create(database=world.database, values={"email": "late@example.com"}, actor=SYSTEM)
    ran.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert entries_poll() == 1
    assert ran == [ADVANCE]
    assert [p.step.key for p in participations_of(scenario)] == ["s2"]


def test_it_leases_what_it_kicks_so_the_tick_does_not_hand_it_out_again(world):
    scenario = holding(world, ("s1", "entry.api", {}))
    ids = participations_enter(scenario=scenario, entries=[Entry(profile_id=p, step_key="s1", source="api")
                                                           for p in world.profile_ids[:3]])
    now = timezone.now()
    assert len(ids) == 3
    assert due_claim(now=now) == []  # their task is on its way
    assert due_claim(now=now + timedelta(seconds=61)) == sorted(ids)  # ... and was lost: the tick takes over
    participations_advance(ids=ids, now=now + timedelta(seconds=62))
    assert set(Participation.objects.filter(pk__in=ids).values_list("state", "lease_until")) == {("waiting", None)}


def _vip_scenario(world, members: list[int]) -> Scenario:
    vip = segment_create(database=world.database, name="VIP", kind="static", actor=SYSTEM, compute=False)
    SegmentMember.objects.bulk_create([SegmentMember(segment_id=vip.pk, profile_id=p) for p in members])
    scenario = scenario_create(account=world.account, database=world.database, name="VIP", actor=SYSTEM)
    version = scenario.versions.get()
    s1 = step_add(version=version, kind="entry.segment", config={"segment_id": vip.pk, "members_at_start": True})
    s2 = step_add(version=version, kind="wait", config=HOUR)
    s3 = step_add(version=version, kind="exit")
    transition_set(source=s1, exit="next", target=s2)
    transition_set(source=s2, exit="next", target=s3)
    return scenario


def test_it_lets_members_in_after_the_activation_commits_in_chunked_tasks(world, ran, monkeypatch,
                                                                         django_capture_on_commit_callbacks):
    scenario = _vip_scenario(world, world.profile_ids)
    monkeypatch.setattr(entries, "CHUNK", 2)
    with django_capture_on_commit_callbacks(execute=False) as pending:
        scenario_activate(scenario=scenario, actor=SYSTEM)
        assert Scenario.objects.get(pk=scenario.pk).state == "active"
        assert participations_of(scenario) == []  # nobody entered inside the request
    for callback in pending:
        with django_capture_on_commit_callbacks(execute=True):
            callback()
    chunks = [n for n in ran if n == "scenarios.tasks.entries_at_activation_task"]
    assert len(chunks) == 3  # 5 members, 2 a chunk
    assert URGENT not in ran and ran.count(ADVANCE) == 3
    trips = participations_of(scenario)
    assert sorted(p.profile_id for p in trips) == sorted(world.profile_ids)
    assert {(p.state, p.step.key) for p in trips} == {("waiting", "s2")}
    assert stats_of(scenario)[("s1", "entered")] == 5


def test_it_lets_nobody_in_from_an_activation_task_once_the_scenario_is_paused(world,
                                                                             django_capture_on_commit_callbacks):
    from scenarios.services import scenario_pause

    scenario = _vip_scenario(world, world.profile_ids[:2])
    with django_capture_on_commit_callbacks(execute=False) as pending:
        scenario_activate(scenario=scenario, actor=SYSTEM)
    scenario_pause(scenario=scenario, actor=SYSTEM)
    for callback in pending:
        callback()
    assert participations_of(scenario) == []
    assert entries_at_activation_start(scenario=scenario) == 1  # the check and queueing still work


def test_it_writes_a_whole_batch_once_with_its_path_and_counters(world):
    scenario = make_scenario(world, steps=[("s1", "entry.api", {}), ("s2", "wait", {"mode": "duration", "seconds": 0}),
                                           ("s3", "condition", {"test": "segments", "conditions": {
                                               "type": "group", "op": "and", "negate": False, "items": []}}),
                                           ("s4", "wait", HOUR), ("s5", "exit", {})],
                             edges=[("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "yes", "s4"),
                                    ("s3", "no", "s4"), ("s4", "next", "s5")])
    ids = participations_enter(scenario=scenario, entries=[Entry(profile_id=p, step_key="s1", source="api")
                                                           for p in world.profile_ids])
    assert participations_advance(ids=ids) == 5
    assert participations_advance(ids=ids) == 0  # not due any more: nothing twice
    trips = participations_of(scenario)
    assert {(p.state, p.step.key, p.seq) for p in trips} == {("waiting", "s4", 3)}
    assert {tuple(path_of(p)) for p in trips} == {(("s1", "next"), ("s2", "next"), ("s3", "yes"), ("s4", ""))}
    counts = stats_of(scenario)
    assert [counts[(k, "entered")] for k in ("s1", "s2", "s3", "s4")] == [5, 5, 5, 5]
    assert [counts[(k, "passed")] for k in ("s1", "s2", "s3")] == [5, 5, 5] and ("s4", "passed") not in counts


def _graph_reads(queries) -> list[str]:
    return [q["sql"] for q in queries if 'FROM "scenarios_step"' in q["sql"] or 'FROM "scenarios_transition"' in q["sql"]]


def test_a_published_graph_is_read_once_per_process_a_draft_every_time(world):
    """One-trip advances (an event's entry, a released wait) read no graph once its version was
    read: a published version is frozen. The cache is keyed by version and publication time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from scenarios.engine.advance import _GRAPHS

    scenario = holding(world, ("s1", "entry.api", {}))
    first, second = (participations_enter(scenario=scenario, entries=[Entry(profile_id=p, step_key="s1", source="api")])
                     for p in world.profile_ids[:2])
    _GRAPHS.clear()
    with CaptureQueriesContext(connection) as cold:
        participations_advance(ids=first)
    with CaptureQueriesContext(connection) as warm:
        participations_advance(ids=second)
    assert len(_graph_reads(cold)) == 2 and _graph_reads(warm) == []
    assert [p.state for p in participations_of(scenario)] == ["waiting", "waiting"]
    # The same version published again (a new publication time) is read again.
    scenario.live_version.__class__.objects.filter(pk=scenario.live_version_id).update(
        published_at=timezone.now() + timedelta(seconds=1))
    third = participations_enter(scenario=scenario, entries=[Entry(profile_id=world.profile_ids[2], step_key="s1",
                                                                   source="api")])
    with CaptureQueriesContext(connection) as again:
        participations_advance(ids=third)
    assert len(_graph_reads(again)) == 2
