"""The scenario benchmark: `size` profiles through entry -> send -> wait 0 -> condition -> send, run
by real Celery workers, against the dispatch path's per-message time for the same number of
messages (issue 9: ratio <= 1.5), with the event-to-step latency of a second scenario fed a
stream of events meanwhile (p95 <= 1 s).

Set-up (bench.dispatch.stack): the render benchmark's shop (`size` profiles with an e-mail
subscription, the 5.6 KB marketing template, shop.example with its RSA-2048 DKIM key, a sender;
the custom fields city and loyalty_points 0-19,999), Debian's smtp-sink, and worker processes
(solo pool) in the Procfile's shape (`split_workers`): for the baseline BENCH_SCENARIO_WORKERS
(default: one per core and one more, as the dispatch benchmark) on `bulk` at nice 10; for the
scenario the same bulk processes, BENCH_SCENARIO_ENGINE_WORKERS (1) on `scenarios` (the engine)
and BENCH_SCENARIO_TRIGGER_WORKERS (2) on `trigger` (the history drain, event-driven entries and
advances, single sends). A send step's crowd of rows goes to bulk. The mailings tick
(mailings_tick, ledger_sweep, dispatch_tick) runs every second in a thread, and a second thread
enqueues `scenarios_tick_task` every 2 s, as beat does.

Baseline: a broadcast of the same template to the same `size` subscribers, launched with
`mailing_launch` and timed to its last ledger row (the dispatch benchmark's path). Its seconds a
message times the messages the scenario sends is `baseline_s`: what sending those messages costs
on this machine through the dispatch path.

Project: the scenario "Welcome" built with the authoring services (scenario_create, step_add,
transition_set): s1 entry.segment (a dynamic segment of every profile, members_at_start) -> s2
send -> s3 wait 0 s -> s4 condition (loyalty_points >= 10,000, about half) -> yes: s5 send,
no: s6 exit; s5 -> s6. `scenario_activate` publishes it (the send steps' trigger mailings) and
queues the members' entry (a task on the scenarios queue: one INSERT per chunk); the engine's advance tasks on the scenarios queue move
them, the send steps add ledger rows through `fires_insert`, the bulk queue sends them (a crowd of rows; a few go to trigger). The
clock runs from the activation until every participation is closed and every ledger row of the
two send steps is terminal; every participation must be completed and every row sent.

Latency: a second scenario "Orders" (s1 entry.event order.placed -> s2 exit) is active
meanwhile; BENCH_SCENARIO_EVENT_RATE (20) events a second are stored with the ingest service
(`events_ingest`, one event a call, each for another profile) for BENCH_SCENARIO_EVENT_SECONDS
(30) or until the big scenario is done. Latency = the participation's `finished_at` (it reached
s2, its first step after the entry) - the moment before the ingest call; a stages line splits it
at the participation's `entered_at` (ingest, history drain, entry handler) and the rest (the
advance task).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.db import connection

from bench.dispatch import launch_broadcast, worker_count
from bench.dispatch.stack import Sink, TickLoop, Workers, cleanup_all, phase_lines, run_counts, wait_done
from bench.harness import Result, Timer, detail, format_ms, percentiles, phase, register

GOLD = 10_000  # loyalty_points >= GOLD takes the condition's "yes" branch (about half the profiles)
TERMINAL = ("sent", "failed", "skipped", "ambiguous")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def split_workers() -> tuple[int, int, int]:
    """(scenarios, trigger, bulk) worker processes for the scenario run, the Procfile's shape:
    BENCH_SCENARIO_ENGINE_WORKERS (1) on `scenarios` (the engine), BENCH_SCENARIO_TRIGGER_WORKERS (2)
    on `trigger` (the history drain, event-driven entries and advances, single sends: two, as the
    Procfile has, because a drain may hold one for seconds while events keep coming) and
    BENCH_SCENARIO_WORKERS (default: the dispatch benchmark's count, one per core and one more) on
    `bulk` at nice 10 (a send step's crowd of rows), as the Procfile runs it. The baseline's
    broadcast gets the same bulk processes; the engine and trigger processes are what the
    scenario needs on top of a broadcast's."""
    bulk = max(1, _env_int("BENCH_SCENARIO_WORKERS", worker_count()))
    engine = max(1, _env_int("BENCH_SCENARIO_ENGINE_WORKERS", 1))
    trigger = max(1, _env_int("BENCH_SCENARIO_TRIGGER_WORKERS", 2))
    return engine, trigger, bulk


# --- building the scenarios ---------------------------------------------------------------------------


@dataclass
class Built:
    scenario: Any
    send_keys: tuple[str, ...]


def _group(*items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "group", "op": "and", "negate": False, "items": list(items)}


def build_welcome(seeded: Any, actor: Any) -> Built:
    """The big scenario through the authoring services (what the editor and the API call)."""
    from scenarios.services import scenario_create, step_add, transition_set
    from segments.services import segment_create

    everyone = segment_create(database=seeded.database, name="Everyone", kind="dynamic", actor=actor, compute=False,
                              conditions=_group({"type": "field", "field": "loyalty_points", "operator": "gte", "value": 0}))
    scenario = scenario_create(account=seeded.account, database=seeded.database, name="Welcome", actor=actor)
    version = scenario.versions.get()
    send = {"channel": "email", "resource_id": seeded.resource.pk, "template_id": seeded.version.template_id,
            "sender_id": seeded.sender.pk, "provider_id": None, "transactional": False, "track_opens": True,
            "track_clicks": True}
    s1 = step_add(version=version, kind="entry.segment", config={"segment_id": everyone.pk, "members_at_start": True},
                  title="Everyone", actor=actor)
    s2 = step_add(version=version, kind="send", config=send, title="Welcome", actor=actor)
    s3 = step_add(version=version, kind="wait", config={"mode": "duration", "seconds": 0}, title="Wait 0", actor=actor)
    s4 = step_add(version=version, kind="condition", title="Gold?", actor=actor, config={
        "test": "segments",
        "conditions": _group({"type": "field", "field": "loyalty_points", "operator": "gte", "value": GOLD})})
    s5 = step_add(version=version, kind="send", config=send, title="Top picks", actor=actor)
    s6 = step_add(version=version, kind="exit", config={}, title="Done", actor=actor)
    for source, exit_, target in ((s1, "next", s2), (s2, "next", s3), (s3, "next", s4), (s4, "yes", s5),
                                  (s4, "no", s6), (s5, "next", s6)):
        transition_set(source=source, exit=exit_, target=target, actor=actor)
    return Built(scenario=scenario, send_keys=(s2.key, s5.key))


def build_orders(seeded: Any, actor: Any) -> Any:
    """The latency scenario: an order.placed event enters, the next step ends the trip."""
    from scenarios.services import scenario_activate, scenario_create, step_add, transition_set

    scenario = scenario_create(account=seeded.account, database=seeded.database, name="Orders", actor=actor,
                               reentry="always")
    version = scenario.versions.get()
    s1 = step_add(version=version, kind="entry.event", config={"type": "order.placed", "filters": []}, actor=actor)
    s2 = step_add(version=version, kind="exit", config={}, title="Thanks", actor=actor)
    transition_set(source=s1, exit="next", target=s2, actor=actor)
    return scenario_activate(scenario=scenario, actor=actor)


# --- the beat, without beat --------------------------------------------------------------------------


class EngineBeat:
    """Enqueues `scenarios_tick_task` every `interval` seconds (beat's schedule) until stopped."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-scenarios-beat", daemon=True)
        self.errors: list[str] = []

    def _loop(self) -> None:
        from scenarios.tasks import scenarios_tick_task

        try:
            while not self._stop.wait(self.interval):
                try:
                    scenarios_tick_task.apply_async()
                except Exception as exc:  # reported at the end
                    self.errors.append(repr(exc))
        finally:
            connection.close()

    def start(self) -> EngineBeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


# --- measuring -----------------------------------------------------------------------------------------


def _one(sql: str, params: list[Any]) -> Any:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def trip_counts(scenario_id: int) -> dict[str, int]:
    from django.db.models import Count

    from scenarios.models import Participation

    return dict(Participation.objects.filter(scenario_id=scenario_id).values_list("state").annotate(n=Count("id"))
                .order_by())


def ledger_counts(mailing_ids: list[int]) -> dict[str, int]:
    from django.db.models import Count

    from mailings.models import LedgerEntry

    return dict(LedgerEntry.objects.filter(mailing_id__in=mailing_ids).values_list("status").annotate(n=Count("id"))
                .order_by())


def send_mailings(scenario: Any) -> list[int]:
    from scenarios.models import Step

    return list(Step.objects.filter(version_id=scenario.live_version_id, kind="send", mailing__isnull=False)
                .values_list("mailing_id", flat=True))


@dataclass
class Watch:
    """When the big scenario's milestones were first seen (seconds from the activation)."""

    entered: float | None = None
    engine_done: float | None = None
    sends_done: float | None = None


def _still_open(scenario_id: int) -> bool:
    """Whether a participation of the scenario is active or waiting (an index-only probe)."""
    from scenarios.models import Participation

    return Participation.objects.filter(scenario_id=scenario_id, state__in=("active", "waiting")).exists()


def _entered(scenario_id: int) -> int:
    from scenarios.models import Participation

    return Participation.objects.filter(scenario_id=scenario_id).count()


def _unsent(mailing_ids: list[int]) -> bool:
    """Whether a ledger row of the mailings is queued or sending: per run and status, probes of the
    ledger's (run, status, id) index and its partial index of queued rows."""
    from mailings.models import LedgerEntry, Run

    runs = list(Run.objects.filter(mailing_id__in=mailing_ids).values_list("id", flat=True))
    return any(LedgerEntry.objects.filter(run_id=run_id, status=status).exists()
               for run_id in runs for status in ("queued", "sending"))


def wait_scenario(scenario: Any, *, size: int, messages: int, start: float, timeout: float, workers: Workers,
                  watch: Watch) -> None:
    """Poll until every one of `size` participations is closed and the `messages` ledger rows of
    its send steps are all terminal (bounded); raises RuntimeError with the counts.

    Polled every 0.5 s with index probes (is any trip open, is any row queued or sending), the
    entries counted once a second until all are in, and the full counts only for the progress line
    and the final check: the benchmark's own queries come out of the CPU it measures (GROUP BY
    counts of the trips and the ledger five times a second took PostgreSQL ~0.13 s of CPU a second
    at 10,000 profiles; at 100,000 the polls were the most frequent query in pg_stat_activity).
    The dispatch benchmark polls its run's one row the same way."""
    mailing_ids = send_mailings(scenario)
    shown = counted = time.monotonic()
    while time.monotonic() - start < timeout:
        now = time.monotonic() - start
        if watch.entered is None and time.monotonic() - counted >= 1.0:
            counted = time.monotonic()
            if _entered(scenario.pk) >= size:
                watch.entered = now
        if watch.entered is not None and watch.engine_done is None and not _still_open(scenario.pk):
            watch.engine_done = now
        if watch.engine_done is not None and not _unsent(mailing_ids):
            ledger = ledger_counts(mailing_ids)
            if sum(ledger.values()) >= messages and not any(ledger.get(s) for s in ("queued", "sending")):
                watch.sends_done = now
                return
        workers.sample()
        if time.monotonic() - shown > 10:
            detail(f"progress: trips {trip_counts(scenario.pk)}; ledger {ledger_counts(mailing_ids)}")
            shown = time.monotonic()
        time.sleep(0.5)
    raise RuntimeError(f"the scenario did not finish in {timeout:.0f}s: trips {trip_counts(scenario.pk)}; "
                       f"ledger {ledger_counts(mailing_ids)}")


def fire_events(seeded: Any, targets: list[int], *, rate: float, seconds: float, until: Any) -> dict[int, float]:
    """Store one order.placed event at a time, `rate` a second, for at most `seconds` or until
    `until()` (checked after the first five seconds); {profile id: time.time() before the call}."""
    from history.services.ingest import EventIn, events_ingest

    fired: dict[int, float] = {}
    start = time.monotonic()
    stamp = time.strftime("%Y%m%d%H%M%S")
    try:
        for i, profile_id in enumerate(targets):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if time.monotonic() - start > seconds or (i >= rate * 5 and until()):
                break
            fired[profile_id] = time.time()
            results = events_ingest(account=seeded.account, source="api", events=[EventIn(
                type="order.placed", profile_id=profile_id, key=f"bench-scn-{stamp}-{i}",
                properties={"order_id": f"S{stamp}-{i}", "total": "42.00", "currency": "EUR"})])
            if results[0].status != "stored":
                raise RuntimeError(f"event {i} not stored: {results[0]}")
    finally:
        connection.close()  # this runs in a thread: its connection goes with it
    return fired


def latencies(scenario_id: int, fired: dict[int, float]) -> tuple[list[float], list[float], list[float]]:
    """(event -> first step after the entry, event -> entered, entered -> that step) in seconds."""
    total, to_enter, to_step = [], [], []
    with connection.cursor() as cur:
        cur.execute("SELECT profile_id, entered_at, finished_at FROM scenarios_participation "
                    "WHERE scenario_id = %s AND finished_at IS NOT NULL", [scenario_id])
        for profile_id, entered, finished in cur.fetchall():
            t = fired.get(profile_id)
            if t is None:
                continue
            total.append(finished.timestamp() - t)
            to_enter.append(entered.timestamp() - t)
            to_step.append((finished - entered).total_seconds())
    return total, to_enter, to_step


# --- cleanup ---------------------------------------------------------------------------------------------


def cleanup_scenarios() -> None:
    """What an earlier run's scenarios left (set-based: a million path rows must not go through the
    ORM's cascade), before the dispatch stack's cleanup deletes the mailings and the account
    (steps PROTECT their mailings, scenarios their database). Portable SQL (the test runs it on
    SQLite too)."""
    from bench.render.data import SLUG

    mine = "SELECT id FROM accounts_account WHERE slug = %s"
    with connection.cursor() as cur:
        cur.execute("DELETE FROM scenarios_pathentry WHERE participation_id IN (SELECT id FROM scenarios_participation "
                    f"WHERE account_id IN ({mine}))", [SLUG])
        for table in ("scenarios_participation", "scenarios_stepstat"):
            cur.execute(f"DELETE FROM {table} WHERE account_id IN ({mine})", [SLUG])
        cur.execute(f"UPDATE scenarios_scenario SET live_version_id = NULL WHERE account_id IN ({mine})", [SLUG])
        for table in ("scenarios_transition", "scenarios_step", "scenarios_scenarioversion", "scenarios_scenario"):
            cur.execute(f"DELETE FROM {table} WHERE account_id IN ({mine})", [SLUG])


def cleanup() -> None:
    cleanup_scenarios()
    cleanup_all()


# --- the run ------------------------------------------------------------------------------------------------


def baseline(seeded: Any, size: int, workers: Workers) -> float:
    """The broadcast of the same template to the same subscribers through the same workers: its
    seconds a message."""
    with Timer() as t:
        mailing = launch_broadcast(seeded)
        run_ = wait_done(mailing.pk, timeout=max(120.0, size / 50), workers=workers)
    counts = run_counts(run_.pk)
    if counts.get("sent", 0) != size:
        raise RuntimeError(f"baseline: {counts.get('sent', 0):,} of {size:,} sent: {counts}")
    detail(f"baseline: broadcast of {size:,} in {t.seconds:.2f}s = {size / t.seconds:,.0f} msgs/s "
           f"({t.seconds / size * 1e3:.3f} ms a message) with {len(workers.workers)} workers; ledger {counts}")
    for line in phase_lines(workers.batches(), size):
        detail(f"baseline {line}")
    return t.seconds / size


@register("scenario", small_size=2_000)
def run(size: int) -> Result:
    """Scenario entry -> send -> wait 0 -> condition -> send for `size` profiles (vs. the dispatch per-message time)."""
    from accounts.access import Actor
    from bench.render.data import seed
    from profiles.models import Profile
    from scenarios.services import scenario_activate

    rate = float(os.environ.get("BENCH_SCENARIO_EVENT_RATE") or 20)
    seconds = float(os.environ.get("BENCH_SCENARIO_EVENT_SECONDS") or 30)
    actor = Actor.system()
    with phase("cleanup of earlier runs"):
        cleanup()
    with phase("seed"):
        seeded = seed(size)
    gold = _one("SELECT COUNT(*) FROM profiles_profile WHERE database_id = %s AND (data->>'loyalty_points')::int >= %s",
                [seeded.database.pk, GOLD])[0]
    messages = size + gold
    sink = Sink().start()
    detail(f"sink: {sink.kind} on 127.0.0.1:{sink.port}")
    bulk = Workers(sink_port=sink.port)
    workers = Workers(sink_port=sink.port)
    ticks = beat = None
    watch = Watch()
    fired: dict[int, float] = {}
    n_scenarios, n_trigger, n_bulk = split_workers()
    detail(f"workers (solo pool each): baseline {n_bulk} on bulk (nice 10); scenario {n_scenarios} on scenarios + "
           f"{n_trigger} on trigger + {n_bulk} on bulk (nice 10)")
    try:
        for i in range(n_bulk):
            bulk.start(f"bulk{i + 1}", "bulk", nice=10)
        bulk.wait_ready()
        ticks = TickLoop(interval=1.0).start()
        per_message = baseline(seeded, size, bulk)
        bulk.stop()
        bulk.cleanup()
        for i in range(n_scenarios):
            workers.start(f"scenarios{i + 1}", "scenarios")
        for i in range(n_trigger):
            # Single event-driven sends, urgent advances and the history drain.
            workers.start(f"trigger{i + 1}", "trigger")
        for i in range(n_bulk):
            # The send steps' crowds of rows (a batch of trips).
            workers.start(f"bulk{i + 1}", "bulk", nice=10)
        workers.wait_ready()
        with phase("build (authoring services)"):
            built = build_welcome(seeded, actor)
            orders = build_orders(seeded, actor)
        beat = EngineBeat().start()
        targets = list(Profile.objects.filter(account=seeded.account).order_by("-id")
                       .values_list("id", flat=True)[:int(rate * seconds) + 1])
        events: dict[str, Any] = {}

        def stream() -> None:
            events["fired"] = fire_events(seeded, targets, rate=rate, seconds=seconds,
                                          until=lambda: watch.sends_done is not None)

        start = time.monotonic()
        with Timer() as activation:
            scenario = scenario_activate(scenario=built.scenario, actor=actor)
        streamer = threading.Thread(target=stream, name="bench-events", daemon=True)
        streamer.start()
        wait_scenario(scenario, size=size, messages=messages, start=start, timeout=max(180.0, size / 25),
                      workers=workers, watch=watch)
        project_s = time.monotonic() - start
        streamer.join(timeout=seconds + 30)
        fired = events.get("fired", {})
        settle = time.monotonic() + 30
        while time.monotonic() < settle and len(latencies(orders.pk, fired)[0]) < len(fired):
            time.sleep(0.1)
    finally:
        for loop in (beat, ticks):
            if loop is not None:
                loop.stop()
        bulk.stop()
        workers.stop()
        sink.stop()

    trips = trip_counts(scenario.pk)
    ledger = ledger_counts(send_mailings(scenario))
    steps = _one("SELECT COALESCE(SUM(seq), 0) FROM scenarios_participation WHERE scenario_id = %s", [scenario.pk])[0]
    detail(f"project: {size:,} profiles, {steps:,} steps and {messages:,} messages ({gold:,} took the second send) in "
           f"{project_s:.2f}s = {steps / project_s:,.0f} steps/s, {messages / project_s:,.0f} msgs/s; trips {trips}; "
           f"ledger {ledger}")
    detail(f"phases from the activation: activate (the request: publish, state; the members enter in a task) "
           f"{activation.seconds:.2f}s; all {size:,} entered "
           f"{watch.entered or float('nan'):.2f}s; every trip closed {watch.engine_done or float('nan'):.2f}s; "
           f"every message terminal {watch.sends_done or float('nan'):.2f}s")
    if beat is not None and beat.errors:
        detail(f"beat errors: {len(beat.errors)} (first: {beat.errors[0]})")
    if ticks is not None and ticks.errors:
        detail(f"tick errors: {len(ticks.errors)} (first: {ticks.errors[0]})")
    total, to_enter, to_step = latencies(orders.pk, fired)
    missing = len(fired) - len(total)
    if total:
        stats = percentiles(total)
        detail(f"events: {len(fired)} order.placed stored while the scenario ran; stages p50/p95 (ms): "
               f"to_entered={percentiles(to_enter)['p50'] * 1e3:.0f}/{percentiles(to_enter)['p95'] * 1e3:.0f} "
               f"to_step={percentiles(to_step)['p50'] * 1e3:.0f}/{percentiles(to_step)['p95'] * 1e3:.0f}")
        detail(f"event-to-step latency {format_ms(stats)} max={max(total) * 1e3:.1f}ms; target p95 <= 1 s: "
               f"{'ok' if stats['p95'] <= 1.0 else 'OVER'}" + (f"; MISSING {missing}" if missing else ""))
    else:
        detail(f"events: {len(fired)} stored, none reached the step after the entry (MISSING {missing})")
    for line in phase_lines(workers.batches(), messages):
        detail(f"project {line}")
    detail("worker peak RSS (VmHWM): " + " ".join(f"{w.name}={w.peak_rss_kb / 1024:.0f}MB" for w in workers.workers))
    baseline_s = per_message * messages
    ratio = project_s / baseline_s
    detail(f"baseline for {messages:,} messages: {baseline_s:.2f}s; ratio {ratio:.2f} "
           f"{'ok' if ratio <= 1.5 else 'OVER'} (<= 1.5); the CPU is shared with whatever else runs on this machine")
    problems = []
    if trips.get("completed", 0) != size:
        problems.append(f"{trips.get('completed', 0):,} of {size:,} trips completed: {trips}")
    if ledger.get("sent", 0) != messages:
        problems.append(f"{ledger.get('sent', 0):,} of {messages:,} messages sent: {ledger}")
    if missing:
        problems.append(f"{missing} of {len(fired)} event trips never reached their step")
    workers.cleanup()
    with phase("cleanup"):
        cleanup()
    if problems:
        raise RuntimeError("; ".join(problems))
    return Result(size=size, project_s=project_s, baseline_s=baseline_s, rate=steps / project_s)
