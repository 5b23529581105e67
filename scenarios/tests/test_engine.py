"""The engine core: entering (re-entry rules, entry-key dedupe, flood containment), advancing a
batch through a chain of steps, idempotency under duplicate delivery (sequential and concurrent),
the step limit, retries with back-off, and a paused scenario holding its participants."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from mailings.models import LedgerEntry
from scenarios.engine import Entry, participations_advance, participations_enter
from scenarios.engine.advance import BACKOFF
from scenarios.models import Participation, PathEntry, Scenario
from scenarios.tests.factories import (
    make_participation,
    make_scenario,
    participations_of,
    path_of,
    stats_of,
    step_of,
)

pytestmark = pytest.mark.django_db

CHAIN_STEPS = [("s1", "entry.api", {}), ("s2", "send", {}),
               ("s3", "wait", {"mode": "duration", "seconds": 0}), ("s4", "exit", {})]
CHAIN_EDGES = [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4")]
LONG_WAIT = [("s1", "entry.api", {}), ("s2", "wait", {"mode": "duration", "seconds": 86400}), ("s3", "exit", {})]
LONG_EDGES = [("s1", "next", "s2"), ("s2", "next", "s3")]


def enter(scenario: Scenario, *pids: int, key: str | None = None, step: str = "s1") -> list[int]:
    return participations_enter(scenario=scenario, entries=[Entry(profile_id=p, step_key=step, source="api", key=key)
                                                            for p in pids])


def test_it_runs_an_entered_profile_through_the_chain_right_after_commit(world, scenario,
                                                                          django_capture_on_commit_callbacks):
    pid = world.profile_ids[0]
    with django_capture_on_commit_callbacks(execute=True):
        ids = participations_enter(scenario=scenario, entries=[
            Entry(profile_id=pid, step_key="s1", source="api:k1", key="api:k1", context={"data": {"coupon": "X1"}})])
    p = Participation.objects.get(pk=ids[0])
    assert (p.state, p.step.key, p.seq, p.exit_reason, p.entry) == ("completed", "s4", 3, "completed", "api:k1")
    assert path_of(p) == [("s1", "next"), ("s2", "next"), ("s3", "next"), ("s4", "")]
    row = LedgerEntry.objects.get(mailing_id=step_of(scenario, "s2").mailing_id)
    assert (row.profile_id, row.trigger_key, row.data) == (pid, f"scn:{p.pk}:1", {"coupon": "X1"})
    assert stats_of(scenario) == {("s1", "entered"): 1, ("s1", "passed"): 1, ("s2", "entered"): 1, ("s2", "passed"): 1,
                                  ("s3", "entered"): 1, ("s3", "passed"): 1, ("s4", "entered"): 1, ("s4", "passed"): 1}
    assert PathEntry.objects.get(participation=p, step_key="s4").left_at is not None


def test_it_enters_nobody_unless_the_scenario_is_active(world, scenario, draft_scenario):
    assert enter(draft_scenario, world.profile_ids[0]) == []
    for state in (Scenario.State.PAUSED, Scenario.State.STOPPED):
        Scenario.objects.filter(pk=scenario.pk).update(state=state)
        assert enter(scenario, world.profile_ids[0]) == []
    assert not Participation.objects.exists()


def test_it_skips_an_entry_at_a_step_that_is_not_an_entry_step(world, scenario):
    assert enter(scenario, world.profile_ids[0], step="s2") == []
    assert enter(scenario, world.profile_ids[0], step="s99") == []
    assert len(enter(scenario, world.profile_ids[0], step="s1")) == 1


def test_it_lets_a_profile_in_only_once_when_reentry_is_never(world, scenario, django_capture_on_commit_callbacks):
    pid = world.profile_ids[0]
    with django_capture_on_commit_callbacks(execute=True):
        assert len(enter(scenario, pid)) == 1
    assert participations_of(scenario)[0].state == "completed"
    assert enter(scenario, pid) == []
    assert len(participations_of(scenario)) == 1


def test_it_lets_a_profile_back_in_after_its_trip_ended_when_reentry_is_after_exit(world,
                                                                                  django_capture_on_commit_callbacks):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES, reentry=Scenario.Reentry.AFTER_EXIT)
    pid = world.profile_ids[0]
    with django_capture_on_commit_callbacks(execute=True):
        first = enter(scenario, pid)
    assert Participation.objects.get(pk=first[0]).state == "waiting"
    assert enter(scenario, pid) == []  # the open trip blocks a second one (the partial unique index)
    Participation.objects.filter(pk=first[0]).update(state="completed", finished_at=timezone.now())
    assert len(enter(scenario, pid)) == 1


def test_it_lets_trips_overlap_when_reentry_is_always_but_bounds_them_by_the_step_limit(world):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES, reentry=Scenario.Reentry.ALWAYS, step_limit=3)
    pid = world.profile_ids[0]
    made = [enter(scenario, pid) for _ in range(5)]
    assert [len(m) for m in made] == [1, 1, 1, 0, 0]
    assert Participation.objects.filter(scenario=scenario, profile_id=pid, exclusive=False).count() == 3


def test_it_enters_a_key_once_and_collapses_a_flood_for_one_profile(world):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES, reentry=Scenario.Reentry.ALWAYS)
    a, b = world.profile_ids[:2]
    assert len(enter(scenario, a, key="event:1")) == 1
    assert enter(scenario, b, key="event:1") == []  # the key was seen: nothing, whoever it names
    flood = [Entry(profile_id=a, step_key="s1", source=f"event:{i}", key=f"event:{i}") for i in range(2, 1002)]
    flood.append(Entry(profile_id=b, step_key="s1", source="event:5000", key="event:5000"))
    made = participations_enter(scenario=scenario, entries=flood)
    assert sorted(Participation.objects.filter(pk__in=made).values_list("profile_id", flat=True)) == sorted([a, b])
    assert stats_of(scenario) == {("s1", "entered"): 3}


def test_it_has_no_second_effect_when_the_same_batch_is_advanced_twice(world, scenario):
    ids = enter(scenario, *world.profile_ids)  # not committed: no kick, the test advances by hand
    assert participations_advance(ids=ids) == 5
    assert participations_advance(ids=ids) == 0
    assert LedgerEntry.objects.filter(mailing_id=step_of(scenario, "s2").mailing_id).count() == 5
    assert PathEntry.objects.filter(participation_id__in=ids).count() == 20
    assert stats_of(scenario)[("s2", "entered")] == 5 and stats_of(scenario)[("s4", "passed")] == 5
    assert set(Participation.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"completed"}


def test_it_moves_only_due_participations_and_leaves_a_wait_where_it_is(world):
    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    ids = enter(scenario, world.profile_ids[0])
    participations_advance(ids=ids)
    p = Participation.objects.get(pk=ids[0])
    assert (p.state, p.step.key, p.seq) == ("waiting", "s2", 1)
    assert p.next_run_at > timezone.now() + timedelta(hours=23)
    assert participations_advance(ids=ids) == 0  # not due: nothing
    assert participations_advance(ids=ids, now=timezone.now() + timedelta(days=1, seconds=1)) == 1
    p.refresh_from_db()
    assert (p.state, p.step.key) == ("completed", "s3")
    assert path_of(p) == [("s1", "next"), ("s2", "next"), ("s3", "")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_it_has_no_second_effect_when_two_workers_advance_the_same_batch_at_once(world):
    scenario = make_scenario(world, steps=CHAIN_STEPS, edges=CHAIN_EDGES)
    # Written directly: entering would kick the engine at once (autocommit, eager Celery).
    ids = [make_participation(scenario, pid).pk for pid in world.profile_ids]
    barrier = threading.Barrier(2)
    done: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            done.append(participations_advance(ids=ids))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sum(done) == 5  # each row taken by one worker (SKIP LOCKED; then no longer due)
    assert LedgerEntry.objects.filter(mailing_id=step_of(scenario, "s2").mailing_id).count() == 5
    assert PathEntry.objects.filter(participation_id__in=ids).count() == 20
    assert stats_of(scenario)[("s2", "entered")] == 5 and stats_of(scenario)[("s4", "passed")] == 5


def test_it_fails_a_trip_that_loops_past_the_step_limit(world):
    scenario = make_scenario(world, step_limit=10, steps=[
        ("s1", "entry.api", {}), ("s2", "wait", {"mode": "duration", "seconds": 0}),
        ("s3", "wait", {"mode": "duration", "seconds": 0})],
        edges=[("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s2")])
    ids = enter(scenario, world.profile_ids[0])
    participations_advance(ids=ids)
    p = Participation.objects.get(pk=ids[0])
    assert (p.state, p.exit_reason, p.moves_today) == ("failed", "step_limit", 10)
    assert "step limit" in p.error
    assert len(path_of(p)) == 11
    assert sum(n for (_, metric), n in stats_of(scenario).items() if metric == "failed") == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_it_retries_a_failing_step_with_back_off_then_fails_the_trip(world):
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    scenario = make_scenario(world, webhooks_private_ok=True, steps=[
        ("s1", "entry.api", {}), ("s2", "webhook", {"url": url, "timeout_seconds": 1, "retries": 5}), ("s3", "exit", {})],
        edges=[("s1", "next", "s2"), ("s2", "next", "s3")])
    ids = enter(scenario, world.profile_ids[0])
    now = timezone.now()
    participations_advance(ids=ids, now=now)
    for attempt, delay in enumerate(BACKOFF, start=1):
        p = Participation.objects.get(pk=ids[0])
        assert (p.state, p.step.key, p.attempts) == ("active", "s2", attempt)
        assert p.next_run_at == now + delay
        assert participations_advance(ids=ids, now=now + delay - timedelta(seconds=1)) == 0  # not yet
        now = now + delay
        participations_advance(ids=ids, now=now)
    p = Participation.objects.get(pk=ids[0])
    assert (p.state, p.exit_reason) == ("failed", "failed")
    assert "6 attempts" in p.error  # the first and its 5 retries
    assert stats_of(scenario)[("s2", "failed")] == 1


def test_it_holds_the_participants_of_a_paused_scenario_where_they_are(world, scenario):
    ids = enter(scenario, *world.profile_ids[:2])
    Scenario.objects.filter(pk=scenario.pk).update(state=Scenario.State.PAUSED)
    Participation.objects.filter(pk__in=ids).update(lease_until=timezone.now() + timedelta(seconds=60))
    assert participations_advance(ids=ids) == 0
    assert set(Participation.objects.filter(pk__in=ids).values_list("step__key", "state", "seq", "lease_until")) == {
        ("s1", "active", 0, None)}
    Scenario.objects.filter(pk=scenario.pk).update(state=Scenario.State.ACTIVE)
    assert participations_advance(ids=ids) == 2
    assert set(Participation.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"completed"}


def test_it_never_enters_a_profile_of_another_database(world, other_world, scenario):
    assert enter(scenario, other_world.profile_ids[0]) == []
    assert not Participation.objects.exists()


def test_it_leaves_alone_a_row_whose_seq_moved_since_it_was_read(world):
    from scenarios.engine.sql import values_update

    scenario = make_scenario(world, steps=LONG_WAIT, edges=LONG_EDGES)
    a, b = (make_participation(scenario, pid) for pid in world.profile_ids[:2])
    Participation.objects.filter(pk=b.pk).update(seq=7)  # somebody else moved b meanwhile
    done = values_update(Participation, [{"id": p.pk, "seq": 0, "state": "failed"} for p in (a, b)],
                         match={"id": "id", "seq": "seq"}, set_={"state": "state"})
    assert done == [a.pk]
    assert dict(Participation.objects.values_list("id", "state")) == {a.pk: "failed", b.pk: "active"}


def test_it_bounds_the_steps_one_call_takes_and_hands_the_rest_on(world, django_capture_on_commit_callbacks):
    from scenarios.engine.advance import MAX_ROUNDS

    scenario = make_scenario(world, step_limit=MAX_ROUNDS + 30, steps=[
        ("s1", "entry.api", {}), ("s2", "wait", {"mode": "duration", "seconds": 0}),
        ("s3", "wait", {"mode": "duration", "seconds": 0})],
        edges=[("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s2")])
    ids = enter(scenario, world.profile_ids[0])
    participations_advance(ids=ids)  # inside the test's transaction: the hand-on waits for a commit
    p = Participation.objects.get(pk=ids[0])
    assert (p.state, p.seq, p.moves_today) == ("active", MAX_ROUNDS, MAX_ROUNDS)
    with django_capture_on_commit_callbacks(execute=True):
        participations_advance(ids=ids)
    p.refresh_from_db()
    assert (p.state, p.exit_reason, p.moves_today) == ("failed", "step_limit", MAX_ROUNDS + 30)


def test_it_advances_a_batch_with_as_many_queries_for_twenty_profiles_as_for_two(world):
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    from mailings.tests.factories import add_subscribers

    more = add_subscribers(world.resource, 18, start=100)
    counts = []
    for n, pids in ((2, world.profile_ids[:2]), (20, world.profile_ids[2:4] + more)):
        scenario = make_scenario(world, steps=CHAIN_STEPS, edges=CHAIN_EDGES, name=f"Batch of {n}")
        ids = enter(scenario, *pids)
        with CaptureQueriesContext(conn) as ctx:
            assert participations_advance(ids=ids) == n
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts
