"""What the dispatch and trigger benchmarks share: the seeded shop (the render benchmark's data:
profiles, e-mail subscriptions, the 5.6 KB marketing template, shop.example with its RSA-2048
DKIM key and a sender), Debian's smtp-sink, real Celery worker processes, the beat-less tick loop,
the broadcast launched through `mailings.services.lifecycle`, the workers' per-batch phase
timings, their peak memory, and the cleanup.

Workers: `celery -A cdp worker -P solo -c 1 -Q <queues>` subprocesses with the benchmark's
DATABASE_URL and REDIS_URL, DELIVERY_BACKEND=smtp to the sink, and `-I bench.dispatch.worker`,
which writes the dispatch's per-batch result (counts and phase seconds) to a file the benchmark
reads at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connection

from bench.harness import detail

ROOT = Path(__file__).resolve().parents[2]
SMTP_SINK = "/usr/sbin/smtp-sink"
_BATCH_LINE = re.compile(r"batch of run (\d+): (\{.*\})\s*$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the SMTP sink ------------------------------------------------------------------------------


class Sink:
    """Debian's smtp-sink (postfix package, C) on a loopback port: accepts everything, keeps
    nothing. Falls back to an aiosmtpd sink in a separate process when smtp-sink is missing (said
    in a detail line: it is slower, and the ratio then flatters the project less)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.kind = ""

    def start(self) -> Sink:
        if Path(SMTP_SINK).exists():
            cmd = [SMTP_SINK, "-u", "nobody", f"127.0.0.1:{self.port}", "512"]
            self.kind = "smtp-sink (postfix)"
        else:
            code = ("import asyncio,sys\nfrom aiosmtpd.controller import Controller\n"
                    "class H:\n async def handle_DATA(self, s, se, e): return '250 OK'\n"
                    f"c=Controller(H(), hostname='127.0.0.1', port={self.port}); c.start()\n"
                    "import time\nwhile True: time.sleep(3600)\n")
            cmd = [sys.executable, "-c", code]
            self.kind = "aiosmtpd in a separate process (smtp-sink not installed: apt-get install postfix)"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the SMTP sink did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None


# --- workers ------------------------------------------------------------------------------------


def autogroup_nice(pid: int, nice: int) -> None:
    """Make `nice` count against the other processes of the benchmark. Each worker is started in
    its own session (start_new_session: it is stopped with killpg), and with the kernel's
    autogroup scheduling (sched_autogroup_enabled=1, Debian's default) a session is its own
    scheduling group: CPU is shared between the groups first, and a process's nice value only
    weighs inside its group. A niced bulk worker alone in its session would get as much CPU as
    gunicorn's whole group. Setting the group's nice (/proc/PID/autogroup) restores what the
    Procfile's `nice -n 10` means. Without autogroup (or without the file) nothing is needed."""
    flag = Path("/proc/sys/kernel/sched_autogroup_enabled")
    try:
        if flag.read_text().strip() != "1":
            return
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        pass


@dataclass
class Worker:
    name: str
    queues: str
    log: Path
    timings: Path
    proc: subprocess.Popen | None = None
    peak_rss_kb: int = 0

    def sample_rss(self) -> None:
        """Keep the highest VmHWM (the kernel's peak resident set) seen of the worker process."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))


@dataclass
class Workers:
    """N worker processes (solo pool, one task at a time each: one per core is the shape)."""

    sink_port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-dispatch-")))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DELIVERY_BACKEND": "smtp",
            "EMAIL_URL": f"smtp://127.0.0.1:{self.sink_port}",
            "DELIVERY_ALLOW_PRIVATE_HOSTS": "1",
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        })
        return env

    def start(self, name: str, queues: str, *, nice: int = 0) -> Worker:
        worker = Worker(name=name, queues=queues, log=self.tmp / f"{name}.log", timings=self.tmp / f"{name}.batches")
        env = {**self.env(), "BENCH_DISPATCH_TIMINGS": str(worker.timings)}
        prefix = ["nice", "-n", str(nice)] if nice else []
        cmd = [*prefix, sys.executable, "-m", "celery", "-A", "cdp", "worker", "-P", "solo", "-c", "1", "-Q", queues,
               "-n", f"bench-{name}@%h", "-l", os.environ.get("BENCH_WORKER_LOGLEVEL") or "WARNING", "-I", "bench.dispatch.worker",
               "--without-gossip", "--without-mingle", "--without-heartbeat", "--prefetch-multiplier", "1"]
        with open(worker.log, "ab") as log:
            worker.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        if nice:
            autogroup_nice(worker.proc.pid, nice)
        self.workers.append(worker)
        return worker

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every worker answers a ping (bounded)."""
        from cdp.celery import app

        names = {f"bench-{w.name}@{socket.gethostname()}" for w in self.workers}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    raise RuntimeError(f"worker {w.name} exited:\n{w.log.read_text(errors='replace')[-3000:]}")
            replies = app.control.ping(timeout=1.0) or []
            if names <= {name for r in replies for name in r}:
                return
        raise RuntimeError(f"workers not ready after {timeout}s")

    def sample(self) -> None:
        for w in self.workers:
            w.sample_rss()

    def stop(self) -> None:
        for w in self.workers:
            w.sample_rss()
            if w.proc is not None and w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.proc.pid, signal.SIGTERM)
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.proc.pid, signal.SIGKILL)
                w.proc.wait(timeout=10)

    def batches(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Every batch result the workers logged (of `run_id` if given)."""
        out: list[dict[str, Any]] = []
        for w in self.workers:
            if not w.timings.exists():
                continue
            for line in w.timings.read_text(errors="replace").splitlines():
                found = _BATCH_LINE.search(line)
                if found and (run_id is None or int(found.group(1)) == run_id):
                    with contextlib.suppress(ValueError):
                        out.append(json.loads(found.group(2)))
        return out

    def cleanup(self) -> None:
        """Remove the logs and timings (BENCH_KEEP_LOGS=1 keeps them and says where)."""
        if os.environ.get("BENCH_KEEP_LOGS"):
            detail(f"worker logs kept in {self.tmp}")
            return
        shutil.rmtree(self.tmp, ignore_errors=True)


def phase_lines(batches: list[dict[str, Any]], messages: int) -> list[str]:
    """Per-phase seconds summed over the batches (worker time, all workers together) and per message."""
    total: Counter[str] = Counter()
    for b in batches:
        total.update(b.get("timings") or {})
    if not total:
        return ["phases: the workers recorded no batch timings (bench.dispatch.worker)"]
    n = max(messages, 1)
    parts = " ".join(f"{k}={v:.2f}s ({v / n * 1e6:.0f}us/msg)" for k, v in sorted(total.items()))
    return [f"phases (worker seconds over {len(batches)} batches): {parts}"]


# --- the tick -----------------------------------------------------------------------------------


class TickLoop:
    """The beat, without beat: mailings_tick + ledger_sweep + dispatch_tick every `interval` seconds
    (default: beat's own "mailings-tick" interval, cdp/celery.py) in a thread of this process (its
    own database connection), until stopped."""

    def __init__(self, interval: float | None = None) -> None:
        if interval is None:
            from cdp.celery import app

            interval = app.conf.beat_schedule["mailings-tick"]["schedule"].total_seconds()
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-tick", daemon=True)
        self.errors: list[str] = []

    def _loop(self) -> None:
        from django.db import connection as conn

        from mailings.services.dispatch import dispatch_tick, ledger_sweep
        from mailings.services.lifecycle import mailings_tick

        try:
            while not self._stop.wait(self.interval):
                try:
                    mailings_tick()
                    ledger_sweep()
                    dispatch_tick()
                except Exception as exc:  # reported at the end; the next tick tries again
                    self.errors.append(repr(exc))
        finally:
            conn.close()

    def start(self) -> TickLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


# --- the mailing --------------------------------------------------------------------------------


def mailing_values(seeded: Any, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "Spring picks", "kind": "broadcast", "transactional": False, "channel": "email",
        "resource": seeded.resource.pk, "sender": seeded.sender.pk, "provider": None, "template": seeded.version.template_id,
        "audience": "database", "include_segments": [], "exclude_segments": [], "categories": [],
        "schedule": {"mode": "now"}, "trigger": {}, "speed_limit": None, "send_window": None,
        "track_opens": True, "track_clicks": True, "cap": None,
    }
    values.update(extra)
    return values


def run_counts(run_id: int) -> dict[str, int]:
    with connection.cursor() as cur:
        cur.execute("SELECT status, COUNT(*) FROM mailings_ledgerentry WHERE run_id = %s GROUP BY status", [run_id])
        return dict(cur.fetchall())


def wait_done(mailing_id: int, *, timeout: float, workers: Workers, progress_every: float = 10.0) -> Any:
    """The mailing's run once it is finished and none of its rows is queued or sending (bounded);
    samples the workers' memory meanwhile; `run.planned_after` is the seconds from the call until
    the run was seen planned (its ledger rows committed; polled every 20 ms until then). Raises
    RuntimeError with the ledger's counts."""
    from mailings.models import Run

    start = time.monotonic()
    deadline = start + timeout
    shown = time.monotonic()
    run = None
    planned_after = None
    while time.monotonic() < deadline:
        run = Run.objects.filter(mailing_id=mailing_id).order_by("id").first()
        if planned_after is None:
            if run is None or run.state == Run.State.PLANNING:
                time.sleep(0.02)
                continue
            planned_after = time.monotonic() - start
        workers.sample()
        run.planned_after = planned_after
        if run is not None:
            # The run's state is one row; the ledger's counts are a scan of the run's rows (at
            # 100k, tens of ms of PostgreSQL's CPU each): counted when the run says it finished
            # and for the progress line, not ten times a second beside the workers it measures.
            finished = run.state in Run.FINISHED_STATES
            if finished or time.monotonic() - shown > progress_every:
                counts = run_counts(run.pk)
                if finished and not counts.get("queued") and not counts.get("sending"):
                    return run
                if not finished:
                    detail(f"progress: {counts}")
                    shown = time.monotonic()
        time.sleep(0.1)
    counts = run_counts(run.pk) if run is not None else {}
    raise RuntimeError(f"mailing {mailing_id} did not finish in {timeout:.0f}s: run {run and run.state} {counts}")


# --- cleanup ------------------------------------------------------------------------------------


def delete_mailings(account_ids: list[int]) -> None:
    """Everything mailings made for these accounts, set-based, before the account goes (mailings
    PROTECT their resource, template and sender)."""
    if not account_ids:
        return
    with connection.cursor() as cur:
        for table in ("mailings_ledgerentry", "mailings_mailingstat"):
            cur.execute(f"DELETE FROM {table} WHERE account_id = ANY(%s)", [account_ids])
        cur.execute("DELETE FROM mailings_run WHERE account_id = ANY(%s)", [account_ids])
        cur.execute("DELETE FROM mailings_frequencycap WHERE account_id = ANY(%s)", [account_ids])
        cur.execute("SELECT id FROM mailings_mailing WHERE account_id = ANY(%s)", [account_ids])
        ids = [r[0] for r in cur.fetchall()]
    if ids:
        from mailings.models import Mailing

        Mailing.objects.filter(id__in=ids).delete()  # a handful: the m2m rows go with them
    with connection.cursor() as cur:
        cur.execute("DELETE FROM delivery_provideraccount WHERE account_id = ANY(%s)", [account_ids])


def cleanup_all() -> None:
    """What an earlier dispatch or trigger run left: its mailings, then the render benchmark's
    seeded account (bench.render.data.cleanup), then the broker's leftovers."""
    from accounts.models import Account
    from bench.render.data import SLUG, cleanup

    delete_mailings(list(Account.objects.filter(slug=SLUG).values_list("id", flat=True)))
    cleanup()
    flush_broker()


def flush_broker() -> None:
    """Empty the benchmark's Redis db (its queues, throttle buckets and cache): a run starts clean."""
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5).flushdb()
