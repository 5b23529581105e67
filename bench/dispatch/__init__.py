"""The dispatch benchmark: a broadcast to `size` subscribers from launch to the last ledger row,
through the real path (mailings.services.lifecycle.mailing_launch -> the planner's one INSERT ..
SELECT -> batches of ledger ids on the bulk queue -> real Celery workers: claim, load, render,
MIME + DKIM (RSA-2048), SMTP to Debian's smtp-sink on one open connection per worker -> ledger,
history events and counters in bulk) against its baseline: the same kind of messages, pre-built
and signed, sent over one smtplib connection to the same sink.

Workers: BENCH_DISPATCH_WORKERS (default: one per core and one more) processes, solo pool,
concurrency 1, on the bulk queue: a worker waits on SMTP and PostgreSQL for part of each batch, and
the extra process keeps both cores busy meanwhile (measured at 20,000: 2 processes 879 msgs/s, 3
1,156, 4 1,112; production runs the bulk worker with concurrency 4); the tick (mailings_tick, ledger_sweep, dispatch_tick) runs in a thread of this process at beat's
interval (5 s), as beat would. The baseline pre-builds min(size, 2,000) messages with the
render benchmark's project path (the same template, context, links, MIME and signature) and
sends `size` of them, cycling: holding 100k signed messages (~1.5 GB) in memory would measure
the memory, not SMTP.

Detail lines: planning (launch to planned), the workers' phase seconds summed over every batch
(load, render, compose = MIME + DKIM, smtp, ledger, throttle) and per message, the workers' peak
RSS (VmHWM), messages a second, and the ledger's final counts.
"""

from __future__ import annotations

import os
import smtplib
import time
from typing import Any

from bench.dispatch.stack import (
    Sink,
    TickLoop,
    Workers,
    cleanup_all,
    mailing_values,
    phase_lines,
    run_counts,
    wait_done,
)
from bench.harness import Result, Timer, detail, phase, register

BASELINE_SAMPLE = 2_000


def worker_count() -> int:
    return int(os.environ.get("BENCH_DISPATCH_WORKERS") or (os.cpu_count() or 2) + 1)


def launch_broadcast(seeded: Any, **extra: Any) -> Any:
    """Create and launch the broadcast through the lifecycle services (what the UI and API call)."""
    from accounts.access import Actor
    from mailings.services.lifecycle import mailing_create, mailing_launch

    actor = Actor.system()
    mailing = mailing_create(account=seeded.account, actor=actor, values=mailing_values(seeded, **extra))
    return mailing_launch(mailing=mailing, actor=actor)


def baseline(seeded: Any, size: int, port: int) -> float:
    """Pre-built signed messages (the project's own builder, outside the clock) sent `size` times
    over one smtplib connection to the sink: the time SMTP alone takes."""
    from bench.render.paths import ProjectPath, load_rows, subscription_ids

    path = ProjectPath(seeded)
    path.sent_at = int(time.time())
    messages: list[tuple[str, bytes]] = []
    for rows in load_rows(seeded, subscription_ids(seeded, min(size, BASELINE_SAMPLE))):
        messages += [(row[1], path.message(row)) for row in rows]
    envelope_from = f"bounce@{seeded.sender.domain.bounce_domain}"
    with Timer() as t:
        conn = smtplib.SMTP("127.0.0.1", port, timeout=30)
        try:
            n = len(messages)
            for i in range(size):
                to, raw = messages[i % n]
                conn.sendmail(envelope_from, [to], raw)
        finally:
            conn.quit()
    avg = sum(len(m) for _, m in messages) / max(len(messages), 1)
    detail(f"baseline: {size:,} pre-built messages ({len(messages):,} distinct, {avg / 1024:.1f} KB each) over one "
           f"smtplib connection in {t.seconds:.2f}s = {size / t.seconds:,.0f} msgs/s")
    return t.seconds


def project(seeded: Any, size: int, sink: Sink, *, timeout: float) -> tuple[float, Any, Workers]:
    """Launch and wait for the last row; returns (seconds, run, workers)."""
    workers = Workers(sink_port=sink.port)
    for i in range(worker_count()):
        workers.start(f"bulk{i + 1}", "bulk")
    ticks = None
    try:
        workers.wait_ready()
        ticks = TickLoop().start()
        with Timer() as t:
            mailing = launch_broadcast(seeded)
            run = wait_done(mailing.pk, timeout=timeout, workers=workers)
    finally:
        if ticks is not None:
            ticks.stop()
        workers.stop()
    if ticks is not None and ticks.errors:
        detail(f"tick errors: {len(ticks.errors)} (first: {ticks.errors[0]})")
    return t.seconds, run, workers


def report(run: Any, seconds: float, workers: Workers, size: int) -> None:
    counts = run_counts(run.pk)
    planning = getattr(run, "planned_after", None) or float("nan")
    detail(f"project: {counts.get('sent', 0):,} sent in {seconds:.2f}s = {counts.get('sent', 0) / seconds:,.0f} msgs/s "
           f"with {len(workers.workers)} worker processes; ledger {counts}")
    detail(f"phase planning: {planning:.2f}s (launch to {run.planned:,} ledger rows committed, as seen from here)")
    for line in phase_lines(workers.batches(run.pk), size):
        detail(line)
    peaks = [w.peak_rss_kb / 1024 for w in workers.workers]
    detail("worker peak RSS (VmHWM): " + " ".join(f"{w.name}={p:.0f}MB" for w, p in zip(workers.workers, peaks, strict=True))
           + f"; target <= 150 MB: {'ok' if peaks and max(peaks) <= 150 else 'OVER'}")


@register("dispatch", small_size=2_000)
def run(size: int) -> Result:
    """Broadcast -> ledger -> Celery batches -> render, DKIM, SMTP to smtp-sink (vs. smtplib of pre-built messages)."""
    from bench.render.data import seed

    with phase("cleanup of earlier runs"):
        cleanup_all()
    with phase("seed"):
        seeded = seed(size)
    sink = Sink().start()
    detail(f"sink: {sink.kind} on 127.0.0.1:{sink.port}")
    try:
        base_s = baseline(seeded, size, sink.port)
        seconds, run_, workers = project(seeded, size, sink, timeout=max(120.0, size / 100))
        report(run_, seconds, workers, size)
        sent = run_counts(run_.pk).get("sent", 0)
        if sent != size:
            raise RuntimeError(f"{sent:,} of {size:,} messages sent: {run_counts(run_.pk)}")
        workers.cleanup()
    finally:
        sink.stop()
        with phase("cleanup"):
            cleanup_all()
    ratio = seconds / base_s
    detail(f"targets: ratio {ratio:.2f} {'ok' if ratio <= 2.5 else 'OVER'} (<= 2.5); rate {size / seconds:,.0f} "
           f"{'ok' if size / seconds >= 1500 else 'UNDER'} (>= 1,500 msgs/s)")
    return Result(size=size, project_s=seconds, baseline_s=base_s, rate=size / seconds)
