"""The load benchmark (issue 10, item 4): a bounded locust load test of the event API, the trigger
API, the tracking endpoints and the main pages while a broadcast of `size` recipients is sent,
then the RELIABILITY.md invariant checker on what was sent.

The stack, all on loopback, with the benchmark's DATABASE_URL and REDIS_URL:
- the render benchmark's shop (`size` profiles with an e-mail subscription, the 5.6 KB template,
  DKIM RSA-2048, a sender; bench.render.data.seed), plus an API token (marketer, rate limit
  raised out of the way), a listening trigger mailing (`{"on": "api"}`), a static segment and a
  signed-in session for the shop's owner;
- gunicorn with the Procfile's shape (`cdp.wsgi --preload`, BENCH_LOAD_WEB_WORKERS=3 gthread workers x
  BENCH_LOAD_WEB_THREADS=2 threads, gunicorn's default keep-alive, an access log as the Procfile
  has, to a file: path, status and the worker's time), DEBUG off;
- real Celery workers (bench.dispatch.stack.Workers, solo pool): the dispatch benchmark's count on
  `bulk` at nice 10 (as the Procfile runs them), 2 on `trigger`, 1 on `scenarios`; the beat-less
  tick (mailings_tick, ledger_sweep, dispatch_tick) every second;
- Debian's smtp-sink for every message, with `-D`: it appends each transaction (envelope and
  message) to a file, from which the arrivals (recipient and ledger ref of the Message-ID) are
  read afterwards for the invariant checker. Writing the file costs disk, not much CPU.

The load: the broadcast is launched through the lifecycle services (at full speed, or at
BENCH_LOAD_SPEED_LIMIT messages a minute: the mailing's own speed limit, to keep a small broadcast
sending for the whole window); once its first messages are out, `locust --headless`
(bench/_locustfile.py, in a subprocess: locust monkey-patches the standard library with gevent) runs BENCH_LOAD_USERS (50) users, spawned BENCH_LOAD_SPAWN (10) a
second, for BENCH_LOAD_SECONDS (60), each waiting BENCH_LOAD_WAIT ("0.5,1.5" seconds, uniform)
between requests, in equal parts:
- API users: event batches of 10-100 (POST /api/v1/events/batch) and trigger calls with an
  Idempotency-Key (POST /api/v1/mailings/{id}/trigger), 3 to 1;
- tracking users: open pixels and click redirects with valid tokens of the broadcast's ledger
  rows (history.tracking.open_url / click_url: the project's own link makers), 3 to 2;
- browser users: dashboard, profile list, profile search, segment list, mailing list, the
  broadcast's report and the scenario list, in turn;
- plus one user on /healthz about once a second: the baseline.
Every answer is checked (see the locustfile): an error is any non-2xx/3xx answer, an answer that
does not say what it should, or an exception in a user; the servers' own exceptions (tracebacks
and ERROR lines in the gunicorn and worker logs, the tick's errors) are counted beside them.

Afterwards: the broadcast is waited for (every row terminal), the trigger rows too, the stack
stops, and `tests.faults.stack.check_invariants` runs on the broadcast's run (invariants 1-3 and
the counters; no row may be ambiguous: there were no faults); the trigger run (which stays open,
so the checker's "run finished" does not apply) gets the same checks on its rows. A failed
invariant raises: the benchmark fails loudly.

Result: `project_s` is the p95 of every request but /healthz, `baseline_s` the p95 of /healthz
under the same load, `rate` requests a second (without /healthz). Detail lines: per group and
per page p50/p95/p99 with ok/OVER against the 500 ms target, the worker's own time per group
(gunicorn's access log), errors by endpoint with the first messages, server exceptions, the
load average, and how much of the load window the broadcast covered.
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
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.dispatch import launch_broadcast, worker_count
from bench.dispatch.stack import (
    SMTP_SINK,
    Sink,
    TickLoop,
    Workers,
    cleanup_all,
    mailing_values,
    run_counts,
    wait_done,
)
from bench.harness import Result, detail, percentiles, phase, register

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "bench" / "_locustfile.py"
TARGET_P95_S = 0.5
EMAILS = 2_000  # subscriber addresses the API users name (spread over the database)
TOKENS = 2_000  # ledger rows of the broadcast whose open and click tokens the tracking users use
GROUPS = {"events batch": "api events", "trigger": "api trigger", "open": "tracking", "click": "tracking"}


@dataclass(frozen=True)
class Knobs:
    """The load's shape, from the environment (see the module docstring)."""

    users: int = 50
    spawn: float = 10.0
    seconds: int = 60
    wait: tuple[float, float] = (0.5, 1.5)
    web_workers: int = 3
    web_threads: int = 2
    speed_limit: int | None = None  # the broadcast's messages a minute (None: as fast as the workers go)

    @classmethod
    def from_env(cls) -> Knobs:
        low, _, high = (os.environ.get("BENCH_LOAD_WAIT") or "0.5,1.5").partition(",")
        return cls(users=int(os.environ.get("BENCH_LOAD_USERS") or 50),
                   spawn=float(os.environ.get("BENCH_LOAD_SPAWN") or 10),
                   seconds=int(os.environ.get("BENCH_LOAD_SECONDS") or 60),
                   wait=(float(low), float(high or low)),
                   web_workers=int(os.environ.get("BENCH_LOAD_WEB_WORKERS") or 3),
                   web_threads=int(os.environ.get("BENCH_LOAD_WEB_THREADS") or 2),
                   speed_limit=int(os.environ.get("BENCH_LOAD_SPEED_LIMIT") or 0) or None)


# --- the recording sink ---------------------------------------------------------------------------

_RCPT = re.compile(rb"^X-Rcpt-Args: <([^>]*)>", re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>]+)>", re.MULTILINE | re.IGNORECASE)


class RecordingSink(Sink):
    """smtp-sink that appends every transaction to `dump` (`-D`); `snapshot()` reads the arrivals
    back in the shape the fault suite's checker takes (tests.faults.servers.Arrival: ledger ref,
    recipient; the arrival time is not recorded, so invariant 4's `forbidden` cannot be asked)."""

    def __init__(self, dump: Path) -> None:
        super().__init__()
        self.dump = dump

    def start(self) -> RecordingSink:
        if not Path(SMTP_SINK).exists():
            raise RuntimeError(f"{SMTP_SINK} is missing (apt-get install postfix): the load benchmark reads what it "
                               f"received from its -D dump for the invariant checker")
        # smtp-sink drops to user nobody after binding, writes each transaction to a file of its
        # own next to the dump, then appends it: a directory of its own that nobody may write to.
        self.dump.parent.mkdir(parents=True, exist_ok=True)
        self.dump.parent.chmod(0o1777)
        cmd = [SMTP_SINK, "-u", "nobody", "-D", str(self.dump), f"127.0.0.1:{self.port}", "512"]
        self.kind = "smtp-sink (postfix) with -D"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the SMTP sink did not listen on {self.port}")

    def snapshot(self) -> list[Any]:
        from tests.faults.servers import Arrival

        return parse_dump(self.dump.read_bytes() if self.dump.exists() else b"", Arrival)


def parse_dump(data: bytes, arrival: Any) -> list[Any]:
    """The arrivals in an smtp-sink -D dump: each transaction starts with its X-Rcpt-Args header
    (smtp-sink writes LF line ends), and the first Message-ID after it, within the message's
    header (before the first empty line), is its message's. The ledger ref is the Message-ID's
    local part before its last dot (delivery.mime.make_message_id). Two passes of literal-led
    regexes over the bytes: a 20,000-message dump is ~400 MB."""
    rcpts = [(m.start(), m.group(1)) for m in _RCPT.finditer(data)]
    ids = [(m.start(), m.group(1)) for m in _MESSAGE_ID.finditer(data)]
    out, j = [], 0
    for i, (start, rcpt) in enumerate(rcpts):
        end = rcpts[i + 1][0] if i + 1 < len(rcpts) else len(data)
        blank = data.find(b"\n\n", start, end)
        header_end = min((p for p in (blank, data.find(b"\n\r\n", start, end)) if p >= 0), default=end)
        end = min(end, header_end)
        while j < len(ids) and ids[j][0] < start:
            j += 1
        ref = ""
        if j < len(ids) and ids[j][0] < end:
            local = ids[j][1].decode("ascii", "replace").partition("@")[0]
            head, dot, _ = local.rpartition(".")
            ref = head if dot else ""
        out.append(arrival(ref=ref, rcpt=rcpt.decode("ascii", "replace").lower(), at=0.0, dropped=False))
    return out


# --- the web server -------------------------------------------------------------------------------


@dataclass
class Web:
    """gunicorn serving cdp.wsgi on a free loopback port (the Procfile's worker class and shape)."""

    knobs: Knobs
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Web:
        import http.client

        from bench.dispatch.stack import free_port

        self.port = free_port()
        cmd = [sys.executable, "-m", "gunicorn", "cdp.wsgi", "--bind", f"127.0.0.1:{self.port}",
               "--workers", str(self.knobs.web_workers), "--worker-class", "gthread",
               "--threads", str(self.knobs.web_threads), "--preload", "--timeout", "120", "--log-level", "warning",
               # path, status and the time the worker spent on the request (microseconds): the
               # server's share of what the client measured; the rest is waiting for a thread.
               "--access-logfile", str(self.access_log), "--access-logformat", "%(U)s %(s)s %(D)s"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer /healthz in 60 s:\n{self.tail()}")

    @property
    def access_log(self) -> Path:
        return self.log.with_name("access.log")

    def server_times(self) -> list[str]:
        """Per group, p50/p95 of the time gunicorn's worker spent on each request (from the
        access log) next to the client's: when the server's is small and the client's large,
        requests waited for a worker thread (or the machine's CPU), not for the code."""
        groups: dict[str, list[float]] = defaultdict(list)
        if not self.access_log.exists():
            return []
        for line in self.access_log.read_text(errors="replace").splitlines():
            path, _, rest = line.partition(" ")
            micros = rest.rpartition(" ")[2]
            if not micros.isdigit():
                continue
            groups[path_group(path)].append(int(micros) / 1e6)
        return [f"server {g:<20} n={len(v):>6} p50={percentiles(v)['p50'] * 1000:7.1f}ms "
                f"p95={percentiles(v)['p95'] * 1000:7.1f}ms max={max(v) * 1000:7.1f}ms (time in the worker)"
                for g, v in sorted(groups.items())]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM to gunicorn's process group (graceful), SIGKILL after 20 s: only what this run started."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


# --- what the users need --------------------------------------------------------------------------


@dataclass
class Extras:
    token: str
    trigger: Any
    session_key: str
    segment_id: int
    emails: list[str] = field(default_factory=list)


def seed_extras(seeded: Any) -> Extras:
    """An API token, the listening trigger mailing, a static segment, a session of the owner."""
    from django.conf import settings
    from django.test import Client

    from accounts.access import Actor
    from accounts.models import ApiToken, User
    from accounts.permissions import Role
    from accounts.services import api_token_create
    from bench.render.data import EMAIL
    from mailings.services.lifecycle import mailing_create, mailing_launch
    from profiles.models import Profile
    from segments.services.segments import segment_create

    owner = User.objects.get(email=EMAIL)
    actor = Actor(user=owner)
    token, raw = api_token_create(account=seeded.account, name="Bench load", role=Role.MARKETER, actor=actor)
    ApiToken.objects.filter(pk=token.pk).update(rate_limit_per_minute=100_000_000)  # the limit is not what is measured
    trigger = mailing_launch(mailing=mailing_create(account=seeded.account, actor=actor, values=mailing_values(
        seeded, name="Order confirmation", kind="trigger", transactional=True, schedule={}, trigger={"on": "api"})),
        actor=actor)
    segment = segment_create(database=seeded.database, name="VIP customers", kind="static", actor=actor, compute=False)
    client = Client()
    client.force_login(owner)
    ids = list(Profile.objects.filter(account=seeded.account).order_by("id").values_list("email", flat=True))
    step = max(1, len(ids) // EMAILS)
    return Extras(token=raw, trigger=trigger, session_key=client.cookies[settings.SESSION_COOKIE_NAME].value,
                  segment_id=segment.pk, emails=ids[::step][:EMAILS])


def tracking_paths(seeded: Any, run: Any) -> tuple[list[str], list[str]]:
    """Open and click paths for TOKENS of the run's ledger rows (spread over the run), made with
    history.tracking's own makers: the same tokens the sent messages carry (sent an hour ago, so
    no hit looks like a scanner's instant fetch)."""
    from history.models import Link
    from history.tracking import Claims, click_url, open_url
    from mailings.models import LedgerEntry

    rows = list(LedgerEntry.objects.filter(run_id=run.pk).order_by("id").values_list("id", "profile_id"))
    rows = rows[:: max(1, len(rows) // TOKENS)][:TOKENS]
    links = list(Link.objects.filter(account=seeded.account).values_list("id", flat=True))
    if not rows or not links:
        raise RuntimeError(f"no ledger rows ({len(rows)}) or links ({len(links)}) to make tracking tokens from")
    sent_at = int(time.time()) - 3600
    opens, clicks = [], []
    for i, (ledger_id, profile_id) in enumerate(rows):
        c = Claims(account_id=seeded.account.pk, profile_id=profile_id or 0, ledger_id=ledger_id,
                   mailing_id=run.mailing_id, run_id=run.pk, resource_id=seeded.resource.pk, channel="email",
                   sent_at=sent_at)
        opens.append(urlsplit(open_url(c)).path)
        clicks.append(urlsplit(click_url(c, links[i % len(links)])).path)
    return opens, clicks


def pages(seeded: Any, broadcast: Any) -> dict[str, str]:
    from django.urls import reverse

    db = seeded.database.slug
    return {
        "dashboard": reverse("dashboard"),
        "profiles": reverse("profiles:profile_list", kwargs={"db": db}),
        "profile_search": reverse("profiles:profile_list", kwargs={"db": db}) + "?q=customer12",
        "segments": reverse("segments:list"),
        "mailings": reverse("mailings:list"),
        "mailing_report": reverse("mailings:report", kwargs={"pk": broadcast.pk}),
        "scenarios": reverse("scenarios:list"),
    }


# --- locust ---------------------------------------------------------------------------------------


def run_locust(tmp: Path, port: int, knobs: Knobs, config: dict[str, Any]) -> dict[str, Any]:
    """locust --headless on bench/_locustfile.py; returns its records (see the locustfile)."""
    config_path, out = tmp / "locust-config.json", tmp / "locust-out.json"
    config_path.write_text(json.dumps({**config, "out": str(out), "wait": list(knobs.wait)}))
    log = tmp / "locust.log"
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", f"http://127.0.0.1:{port}",
           "--users", str(knobs.users), "--spawn-rate", str(knobs.spawn), "--run-time", f"{knobs.seconds}s",
           "--stop-timeout", "10", "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    env = {**os.environ, "BENCH_LOAD_CONFIG": str(config_path)}
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=knobs.seconds + 90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise RuntimeError(f"locust did not stop within {knobs.seconds + 90}s:\n{log.read_text()[-3000:]}") from None
    text = log.read_text(errors="replace")
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"locust exited with {proc.returncode}, no records:\n{text[-3000:]}")
    if "CPU usage" in text:  # locust's own warning: the client, not the server, set the pace
        detail("locust: its CPU usage went above 90%: the client may have slowed the load (response times include it)")
    return json.loads(out.read_text())


@dataclass
class Summary:
    project_p95: float
    healthz_p95: float
    rate: float
    errors: int
    lines: list[str]


def path_group(path: str) -> str:
    """The locust group of a request path (for the server's access log)."""
    if path == "/api/v1/events/batch":
        return "api events"
    if path.startswith("/api/v1/mailings/") and path.endswith("/trigger"):
        return "api trigger"
    if path.startswith(("/t/o/", "/t/c/")):
        return "tracking"
    return "healthz" if path == "/healthz" else "pages"


def summarise(data: dict[str, Any]) -> Summary:
    """Per group, per page and overall p50/p95/p99 (ms) with ok/OVER against the 500 ms p95 target,
    requests a second over the test's span, errors by endpoint with their first messages."""
    records = data["records"]
    if not records:
        raise RuntimeError("locust recorded no requests")
    by_name: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    first_errors: dict[str, list[str]] = defaultdict(list)
    for name, _start, ms, error in records:
        by_name[name].append(ms / 1000)
        if error is not None:
            errors[name] += 1
            if len(first_errors[name]) < 3 and error not in first_errors[name]:
                first_errors[name].append(error)
    starts = [r[1] for r in records]
    span = max(max(starts) - min(starts), 1e-9)
    groups: dict[str, list[float]] = defaultdict(list)
    for name, values in by_name.items():
        groups["pages" if name.startswith("page ") else GROUPS.get(name, name)].extend(values)
    overall = [v for name, values in by_name.items() if name != "healthz" for v in values]
    if "healthz" not in by_name or not overall:
        raise RuntimeError(f"too few requests to measure: {dict(Counter(r[0] for r in records))}")

    def line(kind: str, name: str, values: list[float]) -> str:
        p = percentiles(values)
        verdict = "ok" if p["p95"] <= TARGET_P95_S else "OVER"
        return (f"{kind:<5} {name:<20} n={len(values):>6} rate={len(values) / span:7.1f}/s "
                f"p50={p['p50'] * 1000:7.1f}ms p95={p['p95'] * 1000:7.1f}ms p99={p['p99'] * 1000:7.1f}ms "
                f"max={max(values) * 1000:7.1f}ms {verdict}")

    lines = [line("group", g, v) for g, v in sorted(groups.items()) if g != "healthz"]
    lines += [line("page", n.removeprefix("page "), v) for n, v in sorted(by_name.items()) if n.startswith("page ")]
    lines.append(line("base", "healthz", by_name["healthz"]))
    lines.append(line("all", "overall (no healthz)", overall))
    total_errors = sum(errors.values()) + len(data.get("user_errors") or [])
    lines.append(f"errors: {total_errors} of {len(records):,} requests"
                 + (f" by endpoint {dict(errors)}" if errors else "") + f"; target zero: {'ok' if not total_errors else 'FAIL'}")
    for name, messages in first_errors.items():
        lines += [f"  error {name}: {m}" for m in messages]
    lines += [f"  user exception: {e}" for e in (data.get("user_errors") or [])[:5]]
    p95 = percentiles(overall)["p95"]
    return Summary(project_p95=p95, healthz_p95=percentiles(by_name["healthz"])["p95"], rate=len(overall) / span,
                   errors=total_errors, lines=lines)


# --- after the load -------------------------------------------------------------------------------


def wait_rows(mailing_id: int, timeout: float) -> dict[str, int]:
    """Until none of the mailing's ledger rows is queued or sending (bounded); returns the counts."""
    from django.db import connection

    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cur:
            cur.execute("SELECT status, COUNT(*) FROM mailings_ledgerentry WHERE mailing_id = %s GROUP BY status",
                        [mailing_id])
            counts = dict(cur.fetchall())
        if not counts.get("queued") and not counts.get("sending"):
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"trigger rows still open after {timeout:.0f}s: {counts}")
        time.sleep(0.5)


def check_trigger_rows(mailing_id: int, arrivals: list[Any]) -> dict[str, int]:
    """Invariants 1-3 and the counters on a trigger mailing's rows (its run stays open while it
    listens, so check_invariants' "run finished" and "counts add up to the plan" do not apply):
    every row terminal and explained, each sent row accepted exactly once, no skipped or failed
    row at the server, the counters equal to the ledger."""
    from django.db.models import Sum

    from mailings.models import LedgerEntry, MailingStat

    rows = list(LedgerEntry.objects.filter(mailing_id=mailing_id).values("id", "status", "reason"))
    by_status = Counter(r["status"] for r in rows)
    open_rows = [r for r in rows if r["status"] not in LedgerEntry.TERMINAL]
    assert not open_rows, f"trigger invariant 1: {len(open_rows)} rows not terminal: {open_rows[:5]}"
    unexplained = [r for r in rows if r["status"] in ("skipped", "failed", "ambiguous") and not r["reason"]]
    assert not unexplained, f"trigger invariant 1: rows without a reason: {unexplained[:5]}"
    refs = Counter(a.ref for a in arrivals)
    dups = {f"L{r['id']}": refs[f"L{r['id']}"] for r in rows if refs[f"L{r['id']}"] > 1}
    assert not dups, f"trigger invariant 3: duplicates at the SMTP server {dict(list(dups.items())[:10])}"
    missing = [r["id"] for r in rows if r["status"] == "sent" and not refs[f"L{r['id']}"]]
    assert not missing, f"trigger invariant 3: {len(missing)} rows sent but never accepted, e.g. {missing[:5]}"
    stray = [r["id"] for r in rows if r["status"] in ("skipped", "failed") and refs[f"L{r['id']}"]]
    assert not stray, f"trigger invariant 3: skipped/failed rows accepted by the server: {stray[:5]}"
    stats = dict(MailingStat.objects.filter(mailing_id=mailing_id, metric__in=["sent", "failed", "skipped", "ambiguous"])
                 .values("metric").annotate(total=Sum("delta")).values_list("metric", "total"))
    for metric in ("sent", "failed", "skipped", "ambiguous"):
        assert stats.get(metric, 0) == by_status[metric], (
            f"trigger counter {metric}={stats.get(metric, 0)} but the ledger has {by_status[metric]}")
    return dict(by_status)


def check(broadcast_run: Any, trigger_id: int, sink: RecordingSink) -> None:
    """The invariant checker on the broadcast's run and the trigger's rows; raises (loudly) if one fails."""
    from tests.faults.stack import check_invariants

    arrivals = sink.snapshot()
    try:
        counts = check_invariants(broadcast_run, sink, max_ambiguous=0)
        trigger_counts = check_trigger_rows(trigger_id, arrivals)
    except AssertionError as exc:
        detail(f"INVARIANTS FAILED: {exc}")
        raise RuntimeError(f"invariant check failed after the load: {exc}") from exc
    detail(f"invariants: hold (RELIABILITY.md 1-3 and counters; {len(arrivals):,} messages at the sink): "
           f"broadcast {counts}, trigger rows {trigger_counts}")


def overlap(run_id: int, start: float, end: float) -> str:
    """How much of the broadcast was sent while the load ran: the load is meant to meet a sending
    broadcast, and a broadcast that ends early leaves the rest of the window without one."""
    from datetime import UTC, datetime

    from django.db import connection

    lo, hi = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FILTER (WHERE sent_at BETWEEN %s AND %s), COUNT(*), MAX(sent_at) "
                    "FROM mailings_ledgerentry WHERE run_id = %s AND status = 'sent'", [lo, hi, run_id])
        during, total, last = cur.fetchone()
    last_s = (last.timestamp() - start) if last else float("nan")
    window = end - start
    verdict = "the whole window" if last_s >= window else f"only the first {last_s:.0f}s of {window:.0f}s: use a bigger --size"
    return (f"broadcast: {during:,} of {total:,} messages sent during the load window ({during / window:,.0f} msgs/s); "
            f"its last message {last_s:.1f}s after the load started: it ran for {verdict}")


def server_exceptions(logs: list[Path], tick_errors: list[str]) -> list[str]:
    """Exceptions the servers logged while the load ran (an error the client cannot see: a task
    that failed behind a 202), one line each: the last line of every traceback in the logs, and
    the tick's errors. Workers log at WARNING, gunicorn at warning: a traceback is never noise."""
    found: list[str] = []
    for log in logs:
        if not log.exists():
            continue
        lines = log.read_text(errors="replace").splitlines()
        in_tb = False
        for i, line in enumerate(lines):
            if line.startswith("Traceback (most recent call last)"):
                in_tb = True
            elif in_tb and line and not line.startswith((" ", "\t")):
                found.append(f"{log.stem}: {line[:300]}")
                in_tb = False
            elif (("ERROR" in line and ("[ERROR]" in line or "ERROR/" in line or " ERROR " in line))
                  and not (i + 1 < len(lines) and lines[i + 1].startswith("Traceback"))):
                found.append(f"{log.stem}: {line[:300]}")  # an error logged without a traceback
    return found + [f"tick: {e[:300]}" for e in tick_errors]


def delete_session(key: str) -> None:
    from importlib import import_module

    from django.conf import settings

    import_module(settings.SESSION_ENGINE).SessionStore(session_key=key).delete()


# --- the benchmark --------------------------------------------------------------------------------


@register("load", small_size=5_000)
def run(size: int) -> Result:
    """Locust load (event API, trigger API, tracking, pages) while a broadcast of `size` sends; invariants after."""
    from django.conf import settings

    from bench.render.data import seed
    from mailings.models import Run

    knobs = Knobs.from_env()
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    tmp.chmod(0o755)
    with phase("cleanup of earlier runs"):
        cleanup_all()
    with phase("seed"):
        seeded = seed(size)
        extras = seed_extras(seeded)
    detail(f"load: {knobs.users} users (spawn {knobs.spawn:g}/s) for {knobs.seconds}s, think time "
           f"{knobs.wait[0]:g}-{knobs.wait[1]:g}s; gunicorn {knobs.web_workers} gthread workers x {knobs.web_threads} "
           f"threads; workers {worker_count()} bulk (nice 10) + 2 trigger + 1 scenarios; broadcast speed limit "
           f"{knobs.speed_limit or 'none'}/min; loadavg {_loadavg()}")
    sink = RecordingSink(tmp / "smtp" / "dump").start()
    web = Web(knobs, tmp / "gunicorn.log")
    workers = Workers(sink_port=sink.port)
    ticks = None
    data: dict[str, Any] = {}
    try:
        with phase("stack up (gunicorn answering, every worker answering a ping)"):
            web.start()
            for i in range(worker_count()):
                workers.start(f"bulk{i + 1}", "bulk", nice=10)
            for i in range(2):
                workers.start(f"trigger{i + 1}", "trigger")
            workers.start("scenarios1", "scenarios")
            workers.wait_ready()
        ticks = TickLoop(interval=1.0).start()
        with phase("broadcast launched to its first message sent"):
            broadcast = launch_broadcast(seeded, speed_limit=knobs.speed_limit)
            run_ = _first_sent(broadcast.pk)
        opens, clicks = tracking_paths(seeded, run_)
        config = {"token": extras.token, "database": seeded.database.slug, "emails": extras.emails,
                  "trigger_mailing": extras.trigger.pk, "open_paths": opens, "click_paths": clicks,
                  "session_cookie": f"{settings.SESSION_COOKIE_NAME}={extras.session_key}",
                  "pages": pages(seeded, broadcast)}
        load_start = time.time()
        with phase("load"):
            data = run_locust(tmp, web.port, knobs, config)
        load_end = time.time()
        detail(f"broadcast at the end of the load: {run_counts(run_.pk)}; loadavg {_loadavg()}")
        with phase("broadcast drained"):
            broadcast_run = wait_done(broadcast.pk, timeout=max(180.0, size / 50), workers=workers)
        detail(overlap(run_.pk, load_start, load_end))
        with phase("trigger rows drained"):
            wait_rows(extras.trigger.pk, timeout=120)
    except Exception:
        detail(f"gunicorn log tail:\n{web.tail()}\n(logs kept in {tmp})")
        raise
    finally:
        if ticks is not None:
            ticks.stop()
        workers.stop()
        web.stop()
        sink.stop()
    summary = summarise(data)
    for line in summary.lines:
        detail(line)
    for line in web.server_times():
        detail(line)
    exceptions = server_exceptions([web.log, *(w.log for w in workers.workers)], ticks.errors if ticks else [])
    detail(f"server exceptions (gunicorn, workers, tick): {len(exceptions)}; target zero: {'ok' if not exceptions else 'FAIL'}")
    for line in exceptions[:5]:
        detail(f"  {line}")
    errors = summary.errors + len(exceptions)
    detail(f"target: zero errors and p95 <= {TARGET_P95_S * 1000:.0f} ms at {knobs.users} users: "
           f"{'ok' if not errors and summary.project_p95 <= TARGET_P95_S else 'MISSED'}")
    check(Run.objects.get(pk=broadcast_run.pk), extras.trigger.pk, sink)
    workers.cleanup()
    delete_session(extras.session_key)
    with phase("cleanup"):
        cleanup_all()
    if os.environ.get("BENCH_KEEP_LOGS"):
        detail(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return Result(size=size, project_s=summary.project_p95, baseline_s=summary.healthz_p95, rate=summary.rate)


def _first_sent(mailing_id: int, timeout: float = 120.0) -> Any:
    """The broadcast's run once its first row is sent (the load starts while it sends)."""
    from mailings.models import LedgerEntry, Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.filter(mailing_id=mailing_id).order_by("id").first()
        if run is not None and LedgerEntry.objects.filter(run_id=run.pk, status="sent").exists():
            return run
        time.sleep(0.1)
    raise RuntimeError(f"the broadcast sent nothing in {timeout:.0f}s")


def _loadavg() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())
