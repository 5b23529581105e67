"""The trigger benchmark: how long an event takes to become a personalised e-mail at the receiving
server while a big broadcast is being sent (BENCHMARKS.md: p95 <= 1 s; no baseline).

Set-up (bench.dispatch.stack): the render benchmark's shop with `size` subscribers, Debian's
smtp-sink for the broadcast, real Celery workers (one per core on the bulk queue, one on the
trigger queue), the beat-less tick. A trigger mailing listens for `order.placed` (the system
type) and sends the same template through a provider account of its own: SMTP to an aiosmtpd
server in a thread of this process, which stamps every arrival (the latency's end).

Then the broadcast is launched, and once its first messages are out, events are stored through
the ingest service (`history.services.ingest.events_ingest`, what the HTTP batch API calls; one
event a call, as a shop's webhook would) at BENCH_TRIGGER_RATE a second (default 20) for up to
BENCH_TRIGGER_SECONDS (default 30) or until the broadcast ends, each for a different profile.
BENCH_TRIGGER_WORKERS (default 2: the Procfile's trigger worker runs 4 processes, and one is held
by the history drain for up to its 10 s budget while events keep coming) trigger-queue workers;
BENCH_TRIGGER_BULK_NICE (default 10, as the Procfile and docker-compose.yml run them) is the bulk
workers' nice level: broadcasts yield the CPU to triggers.
Latency = arrival at the server - the moment before the ingest call. `project_s` is the p95
latency, `rate` the triggered messages a second received in the window.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.dispatch import launch_broadcast, worker_count
from bench.dispatch.stack import Sink, TickLoop, Workers, cleanup_all, free_port, mailing_values, run_counts
from bench.harness import Result, detail, format_ms, percentiles, phase, register


@dataclass
class StampingSink:
    """aiosmtpd on loopback that records when each recipient's message arrived."""

    port: int = field(default_factory=free_port)
    arrivals: dict[str, float] = field(default_factory=dict)
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.time()
        with self.lock:
            self.count += 1
            for rcpt in envelope.rcpt_tos:
                self.arrivals.setdefault(rcpt.lower(), now)
        return "250 2.0.0 Ok: queued"

    def start(self) -> StampingSink:
        import logging

        from aiosmtpd.controller import Controller

        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def trigger_mailing(seeded: Any, sink_port: int) -> Any:
    """The listening trigger mailing, sending through its own SMTP provider account."""
    from accounts.access import Actor
    from delivery.services.providers import provider_account_create
    from mailings.services.lifecycle import mailing_create, mailing_launch

    actor = Actor.system()
    provider = provider_account_create(
        account=seeded.account, channel="email", kind="smtp", name="Trigger relay", actor=actor,
        data={"host": "127.0.0.1", "port": sink_port, "tls": "none", "pool_size": 2, "timeout": 10})
    mailing = mailing_create(account=seeded.account, actor=actor, values=mailing_values(
        seeded, name="Order confirmation", kind="trigger", provider=provider.pk, schedule={},
        trigger={"on": "event", "event": "order.placed", "filters": [], "delay_seconds": 0}))
    return mailing_launch(mailing=mailing, actor=actor)


def fire(seeded: Any, targets: list[tuple[int, str]], *, rate: float, seconds: float, until: Any) -> dict[str, float]:
    """Store one order.placed event at a time, `rate` a second, for at most `seconds` or until
    `until()` says stop; returns {address: time.time() before the call}."""
    from history.services.ingest import EventIn, events_ingest

    fired: dict[str, float] = {}
    start = time.monotonic()
    stamp = time.strftime("%Y%m%d%H%M%S")
    for i, (profile_id, address) in enumerate(targets):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() - start > seconds or (i >= rate * 5 and until()):
            break
        fired[address.lower()] = time.time()
        results = events_ingest(account=seeded.account, source="api", events=[EventIn(
            type="order.placed", profile_id=profile_id, key=f"bench-{stamp}-{i}",
            properties={"order_id": f"B{stamp}-{i}", "total": "42.00", "currency": "EUR"})])
        if results[0].status != "stored":
            raise RuntimeError(f"event {i} not stored: {results[0]}")
    return fired


def breakdown(mailing_id: int, fired: dict[str, float]) -> str:
    """Where the latency goes, from the trigger rows: fired -> row created (ingest, history drain,
    trigger handler) -> on the wire (hand-out, queue, claim, render) -> sent (SMTP, ledger write)."""
    from mailings.models import LedgerEntry

    parts: dict[str, list[float]] = {"to_row": [], "to_wire": [], "to_sent": []}
    for address, created, wire, sent in LedgerEntry.objects.filter(mailing_id=mailing_id).values_list(
            "address", "created_at", "wire_at", "sent_at"):
        start = fired.get(address.lower())
        if start is None or created is None:
            continue
        parts["to_row"].append(created.timestamp() - start)
        if wire is not None:
            parts["to_wire"].append((wire - created).total_seconds())
            if sent is not None:
                parts["to_sent"].append((sent - wire).total_seconds())
    out = []
    for name, values in parts.items():
        if values:
            p = percentiles(values)
            out.append(f"{name}={p['p50'] * 1000:.0f}/{p['p95'] * 1000:.0f}")
    return " ".join(out) or "no trigger rows"


@register("trigger", small_size=10_000)
def run(size: int) -> Result:
    """Event -> trigger e-mail at an SMTP server while a broadcast of `size` runs: p50/p95 latency."""
    from bench.render.data import seed
    from profiles.models import Profile

    rate = float(os.environ.get("BENCH_TRIGGER_RATE") or 20)
    seconds = float(os.environ.get("BENCH_TRIGGER_SECONDS") or 30)
    with phase("cleanup of earlier runs"):
        cleanup_all()
    with phase("seed"):
        seeded = seed(size)
    sink = Sink().start()
    stamping = StampingSink().start()
    detail(f"sinks: broadcast -> {sink.kind}; triggers -> aiosmtpd in this process")
    workers = Workers(sink_port=sink.port)
    ticks = None
    try:
        trig = trigger_mailing(seeded, stamping.port)
        n = int(rate * seconds) + 1
        targets = list(Profile.objects.filter(account=seeded.account).order_by("-id").values_list("id", "email")[:n])
        bulk_nice = int(os.environ.get("BENCH_TRIGGER_BULK_NICE") or 10)
        for i in range(worker_count()):
            workers.start(f"bulk{i + 1}", "bulk", nice=bulk_nice)
        for i in range(int(os.environ.get("BENCH_TRIGGER_WORKERS") or 2)):
            workers.start(f"trigger{i + 1}", "trigger")
        workers.wait_ready()
        ticks = TickLoop(interval=1.0).start()
        broadcast = launch_broadcast(seeded)

        def broadcast_over() -> bool:
            from mailings.models import Run

            run_ = Run.objects.filter(mailing_id=broadcast.pk).first()
            return run_ is not None and run_.state in Run.FINISHED_STATES

        deadline = time.monotonic() + 60  # the broadcast's first messages are out (its rows start leaving the queue)
        while time.monotonic() < deadline:
            from mailings.models import LedgerEntry

            if LedgerEntry.objects.filter(mailing_id=broadcast.pk, status="sent").exists():
                break
            time.sleep(0.1)
        t0 = time.monotonic()
        fired = fire(seeded, targets, rate=rate, seconds=seconds, until=broadcast_over)
        window = time.monotonic() - t0
        during = not broadcast_over()
        wait_until = time.monotonic() + 30
        while time.monotonic() < wait_until and len(set(fired) & set(stamping.arrivals)) < len(fired):
            workers.sample()
            time.sleep(0.05)
        from mailings.models import Run

        run_ = Run.objects.filter(mailing_id=broadcast.pk).first()
        bcounts = run_counts(run_.pk) if run_ else {}
        stages = breakdown(trig.pk, fired)
    finally:
        if ticks is not None:
            ticks.stop()
        workers.stop()
        stamping.stop()
        sink.stop()
    latencies = [stamping.arrivals[a] - t for a, t in fired.items() if a in stamping.arrivals]
    missing = len(fired) - len(latencies)
    detail(f"events: {len(fired)} fired in {window:.1f}s ({len(fired) / window:.1f}/s); broadcast of {size:,} still "
           f"sending when the last was fired: {'yes' if during else 'NO (it finished first)'}; its ledger {bcounts}")
    detail(f"stages p50/p95 (ms): {stages}")
    if missing:
        detail(f"MISSING: {missing} trigger messages did not arrive within 30 s of the last event")
    if not latencies:
        raise RuntimeError("no trigger message arrived")
    stats = percentiles(latencies)
    detail(f"event-to-sink latency {format_ms(stats)} max={max(latencies) * 1000:.1f}ms; target p95 <= 1 s: "
           f"{'ok' if stats['p95'] <= 1.0 else 'OVER'}")
    peaks = " ".join(f"{w.name}={w.peak_rss_kb / 1024:.0f}MB" for w in workers.workers)
    detail(f"worker peak RSS (VmHWM): {peaks}")
    workers.cleanup()
    with phase("cleanup"):
        cleanup_all()
    if missing:
        raise RuntimeError(f"{missing} of {len(fired)} trigger messages never arrived")
    return Result(size=size, project_s=stats["p95"], baseline_s=None, rate=len(latencies) / window)
