"""Scenario engine under a fault: kill -9 the worker consuming the `scenarios` queue in the middle
of 2,000 participations (entry -> send -> wait 0 -> condition -> send -> exit), start a new one.

The test process plays the beat (`engine_tick`); one worker consumes `scenarios` (the engine's
batches) and is killed; another consumes trigger/bulk/default (the sends' deliveries to the fault
SMTP server) and is left alone. The killed worker's batch holds a hand-out lease (60 s in
production): when nothing has moved for a few seconds the tick is asked as if the lease had
passed (what waiting it out would do), like the mailings drain in tests/faults/stack.py.

After the system drained:
- every participation is completed, at the exit step;
- each send step's trigger mailing has exactly one ledger row per participation (unique trigger
  keys `scn:<participation>:<seq>`), each sent, none twice at the SMTP server;
- each participation has one path row per step, in order (no step recorded twice).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

SIZE = 2_000
STEPS = [("s1", "entry.api", {}), ("s2", "send", {}), ("s3", "wait", {"mode": "duration", "seconds": 0}),
         ("s4", "condition", {"test": "segments", "conditions": {"type": "group", "op": "and", "items": [
             {"type": "field", "field": "first_name", "operator": "eq", "value": "P7"}]}}),
         ("s5", "send", {}), ("s6", "exit", {})]
EDGES = [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4"), ("s4", "yes", "s5"), ("s4", "no", "s5"),
         ("s5", "next", "s6")]
PATH = ["s1", "s2", "s3", "s4", "s5", "s6"]


def _enter(scenario: Any, profile_ids: list[int]) -> None:
    """The participations at the entry step, due now, written set-based the way
    scenarios.tests.factories.make_participation writes one (and its path row): the API entry
    would hand them to the `trigger` queue's worker, and the fault is the `scenarios` one."""
    from scenarios.models import Participation, PathEntry, Step

    version = scenario.live_version
    step = Step.objects.get(version=version, key="s1")
    now = timezone.now()
    rows = Participation.objects.bulk_create([
        Participation(account_id=scenario.account_id, scenario=scenario, version=version, profile_id=pid, step=step,
                      state=Participation.State.ACTIVE, next_run_at=now, entered_at=now, updated_at=now)
        for pid in profile_ids], batch_size=1000)
    PathEntry.objects.bulk_create([
        PathEntry(participation=p, version_number=version.number, step_key="s1", seq=0, entered_at=now) for p in rows],
        batch_size=1000)


def _progress(scenario: Any) -> tuple[int, int]:
    """(participations that moved at least once, participations completed)."""
    from scenarios.models import Participation

    qs = Participation.objects.filter(scenario=scenario)
    return qs.filter(seq__gt=0).count(), qs.filter(state=Participation.State.COMPLETED).count()


def _drive(scenario: Any, *, until: Any, timeout: float, stall: float = 3.0) -> int:
    """Tick (the beat) until `until()` is true, bounded; when nothing moved for `stall` seconds the
    tick hands out as if the hand-out lease had passed. Returns how many such fast-forwards."""
    from scenarios.engine import engine_tick
    from scenarios.engine.tick import HANDOUT_LEASE

    deadline = time.monotonic() + timeout
    last, changed, forwards = None, time.monotonic(), 0
    while time.monotonic() < deadline:
        if until():
            return forwards
        now = None
        signature = _progress(scenario)
        if signature != last:
            last, changed = signature, time.monotonic()
        elif time.monotonic() - changed > stall:
            now = timezone.now() + HANDOUT_LEASE + timedelta(seconds=1)
            forwards += 1
            changed = time.monotonic()
        engine_tick(now=now)
        time.sleep(0.2)
    raise AssertionError(f"the scenario did not drain in {timeout}s: (moved, completed) = {_progress(scenario)}")


@pytest.mark.timeout(900)  # its own waits (workers' start, 90 + 150 + 90 s drives) bound it, not pytest's 300 s
def test_it_completes_every_participation_once_when_the_scenarios_worker_is_killed_mid_run(stack, acme, alice):
    from mailings.models import LedgerEntry, Run
    from scenarios.models import Participation, PathEntry, Step
    from scenarios.tests.factories import make_scenario, make_scenario_world
    from tests.faults.stack import drain

    world = make_scenario_world(acme, user=alice, n=SIZE, sms=False, channels=("email",))
    scenario = make_scenario(world, steps=STEPS, edges=EDGES, name="Welcome journey")
    mailing_ids = list(Step.objects.filter(version=scenario.live_version, kind="send").order_by("key")
                       .values_list("mailing_id", flat=True))
    assert len(mailing_ids) == 2 and all(mailing_ids)

    stack.start_worker("sender", queues=("trigger", "bulk", "default"))
    victim = stack.start_worker("engine1", queues=("scenarios",))
    _enter(scenario, world.profile_ids)
    # The batches go out (4 of 500); the kill lands while the worker is inside its second one:
    # it logged the task received, not yet succeeded (-P solo, prefetch 1: received = running).
    task = "scenarios.tasks.participations_advance_task"

    def in_second_batch() -> bool:
        log = victim.log_text().splitlines()
        received = sum(1 for line in log if task in line and " received" in line)
        succeeded = sum(1 for line in log if task in line and "succeeded" in line)
        assert succeeded < SIZE // 500, "the worker finished every batch before the kill: nothing was tested"
        return succeeded >= 1 and received > succeeded

    _drive(scenario, until=in_second_batch, timeout=90, stall=90)
    victim.kill()
    moved, completed = _progress(scenario)
    assert completed < SIZE, "every participation completed before the kill: nothing was tested"

    stack.start_worker("engine2", queues=("scenarios",))
    forwards = _drive(scenario, until=lambda: _progress(scenario)[1] == SIZE, timeout=150)
    print(f"scenario fault: killed after {moved} moved / {completed} completed; {forwards} lease fast-forwards")
    # The killed batch's participations waited out their hand-out lease (the broker did not give
    # its task back): without the fast-forward they would have waited a minute.
    assert forwards >= 1 or not stack.redis_url, forwards

    # Every participation completed, at the exit.
    states = Counter(Participation.objects.filter(scenario=scenario).values_list("state", "step__key", "exit_reason"))
    assert states == {("completed", "s6", "completed"): SIZE}, states
    # One path row per step, in order, for each participation.
    paths: dict[int, list[tuple[int, str]]] = {}
    for pid, seq, key in PathEntry.objects.filter(participation__scenario=scenario).values_list(
            "participation_id", "seq", "step_key"):
        paths.setdefault(pid, []).append((seq, key))
    wrong = {pid: sorted(p) for pid, p in paths.items() if [k for _, k in sorted(p)] != PATH}
    assert len(paths) == SIZE and not wrong, f"{len(wrong)} paths differ, e.g. {list(wrong.items())[:3]}"

    # One ledger row per participation and send step (unique trigger keys), each delivered once.
    for mailing_id in mailing_ids:
        for run in Run.objects.filter(mailing_id=mailing_id):
            drain(run, timeout=90, finished=False, progress=lambda: len(stack.smtp.arrivals))
        rows = list(LedgerEntry.objects.filter(mailing_id=mailing_id).values("id", "profile_id", "trigger_key",
                                                                             "status", "reason"))
        keys = Counter(r["trigger_key"] for r in rows)
        assert len(rows) == SIZE and len(keys) == SIZE and len({r["profile_id"] for r in rows}) == SIZE, (
            f"mailing {mailing_id}: {len(rows)} rows, {len(keys)} keys, twice: {[k for k, n in keys.items() if n > 1][:5]}")
        statuses = Counter((r["status"], r["reason"]) for r in rows)
        assert statuses == {("sent", ""): SIZE}, statuses
        arrived = stack.smtp.count_by_ref()
        twice = [r["id"] for r in rows if arrived[f"L{r['id']}"] > 1]
        missing = [r["id"] for r in rows if arrived[f"L{r['id']}"] == 0]
        assert not twice and not missing, f"mailing {mailing_id}: twice {twice[:5]}, never arrived {missing[:5]}"
