"""ingest: `size` events through the HTTP batch API, 100 a request, against COPY of the same events.

Data (not timed): an account with a profile database of size/10 profiles (at least 1,000;
INSERT .. SELECT), the custom event type cart_abandoned (sku: string, required; price: decimal;
strict) made through `eventtype_create`, and a marketer API token (DATA_EDIT) whose
rate_limit_per_minute is raised out of the way. The events are seeded: 50% page.viewed, 30%
cart_abandoned, 20% order.placed, each with a UUID id, a time in the last 30 days, the profile
named by e-mail and realistic properties (150-300 bytes of JSON), 100 to a request body.

Project path: gunicorn serving the project's WSGI application (`cdp.wsgi.application`, loaded
through `wsgi_application()` below so the bench's handler is registered) on a free loopback
port, with DEBUG off and the bench's DATABASE_URL/REDIS_URL, and a real Celery worker on the
`trigger` queue. A few client threads POST the bodies to /api/v1/events/batch over keep-alive
connections (http.client) and check every answer: 200 and every item stored. "Triggers
evaluated": both processes register a handler for cart_abandoned (the CDP_BENCH_INGEST_HANDLER
environment variable names the account and a Redis key); the storing statement adds an outbox
row per batch and the request pokes the drain task after commit; the worker drains the outbox,
loads the events and calls the handler, which INCRBYs the key. The clock stops when the last
answer is in AND the counter equals the number of cart_abandoned events sent (bounded wait), so
project_s includes the trigger lag.

Baseline, same run, same events: psycopg COPY of the events (profile ids resolved beforehand,
the rows prepared in memory beforehand) into bench_event_copy, made LIKE history_event
INCLUDING ALL (same columns and indexes), in one transaction.

Server shape: the production one (Procfile, Dockerfile): 3 gunicorn gthread workers of 2
threads (keep-alive), and 4 client threads. BENCH_INGEST_WORKERS, BENCH_INGEST_WORKER_CLASS
(sync|gthread), BENCH_INGEST_THREADS and BENCH_INGEST_CLIENTS override it for experiments.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    Result,
    Timer,
    delete_accounts,
    detail,
    format_ms,
    make_rng,
    percentiles,
    phase,
    register,
)

SLUG = "bench-ingest"
EMAIL = "bench-ingest-owner@bench.test"
DB_SLUG = "shop"
BASELINE_TABLE = "bench_event_copy"
PER_REQUEST = 100
CUSTOM_TYPE = "cart_abandoned"
MIX = (("page.viewed", 50), ("cart_abandoned", 30), ("order.placed", 20))  # percent
HANDLER_ENV = "CDP_BENCH_INGEST_HANDLER"  # "<account id>:<redis key>" in the server and worker processes
HANDLER_NAME = "bench.ingest.count"
APP_NAME = "bench_ingest"  # the servers' PostgreSQL application_name: their backends' CPU is counted
RATE_LIMIT = 100_000_000  # requests a minute: the token's limit must not be what is measured
TRIGGER_WAIT = 120.0  # seconds after the last answer, at most, for the counter to catch up
BASE_DIR = Path(__file__).resolve().parent.parent

WORKERS = int(os.environ.get("BENCH_INGEST_WORKERS", "3"))
WORKER_CLASS = os.environ.get("BENCH_INGEST_WORKER_CLASS", "gthread")
THREADS = int(os.environ.get("BENCH_INGEST_THREADS", "2"))
CLIENTS = int(os.environ.get("BENCH_INGEST_CLIENTS", "4"))


# --- the handler the server and the worker register ----------------------------------------------


def install_handler() -> None:
    """Register the counting handler when CDP_BENCH_INGEST_HANDLER is set (in the gunicorn workers
    and the Celery worker this benchmark starts; nowhere else). The Celery worker imports this
    module with `-I bench.ingest`, so the registration happens on import there; it also marks the
    worker ready in Redis once it consumes."""
    spec = os.environ.get(HANDLER_ENV)
    if not spec:
        return
    account_id, key = int(spec.split(":", 1)[0]), spec.split(":", 1)[1]
    from history.handlers import EventHandler, register_handler

    clients: dict[int, Any] = {}

    def redis_client() -> Any:  # one per process: a forked child must not share its parent's socket
        import redis

        pid = os.getpid()
        if pid not in clients:
            clients[pid] = redis.Redis.from_url(os.environ["REDIS_URL"])
        return clients[pid]

    def count(events: list[Any]) -> None:
        n = sum(1 for e in events if e.account_id == account_id)
        if n:
            redis_client().incrby(key, n)

    register_handler(EventHandler(HANDLER_NAME, count, types={CUSTOM_TYPE}))

    from celery.signals import worker_ready

    @worker_ready.connect(weak=False)
    def ready(**_: Any) -> None:
        redis_client().set(f"{key}:worker-ready", 1, ex=3600)


def wsgi_application() -> Any:
    """gunicorn "bench.ingest:wsgi_application()": the project's WSGI application, with the bench's
    handler registered in the worker."""
    from cdp.wsgi import application

    install_handler()
    return application


install_handler()


# --- data --------------------------------------------------------------------------------------


@dataclass
class Seeded:
    account_id: int
    database_id: int
    token: str
    profile_ids: list[int]  # by the number g in customer<g>@example.com (index 0 unused)
    type_ids: dict[str, int]


@dataclass
class Batches:
    bodies: list[bytes] = field(default_factory=list)
    copy_rows: bytes = b""
    counts: dict[str, int] = field(default_factory=dict)
    properties_bytes: int = 0


def cleanup() -> None:
    """Delete what a run made (see harness.delete_accounts), and the baseline's table."""
    from django.db import connection

    from accounts.models import Account, User

    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
    delete_accounts(list(Account.objects.filter(slug=SLUG)))
    User.objects.filter(email=EMAIL).delete()


def seed(size: int) -> Seeded:
    from django.db import connection

    from accounts.access import Actor
    from accounts.models import ApiToken, User
    from accounts.permissions import Role
    from accounts.services import account_create, api_token_create
    from history.catalogue import type_id
    from history.services import eventtype_create
    from profiles.services import database_create

    owner = User.objects.create_user(email=EMAIL, password=None, full_name="Bench Owner")
    account = account_create(name="Bench ingest", slug=SLUG, owner=owner, actor=Actor.system(), timezone_name="Europe/Berlin")
    actor = Actor(user=owner)
    db = database_create(account=account, name="Shop", slug=DB_SLUG, actor=actor)
    custom = eventtype_create(account=account, name=CUSTOM_TYPE, label="Cart abandoned", actor=actor, strict=True,
                              properties=[{"name": "sku", "type": "string", "required": True},
                                          {"name": "price", "type": "decimal"}])
    token, raw = api_token_create(account=account, name="Bench ingest", role=Role.MARKETER, actor=actor)
    ApiToken.objects.filter(pk=token.pk).update(rate_limit_per_minute=RATE_LIMIT)
    profiles = max(1000, size // 10)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO profiles_profile (account_id, database_id, email, phone, first_name, last_name, birthday, gender, "
            "timezone, data, created_at, updated_at) "
            "SELECT %s, %s, 'customer' || g || '@example.com', NULL, '', '', NULL, '', '', '{}'::jsonb, now(), now() "
            "FROM generate_series(1, %s) AS g",
            [account.pk, db.pk, profiles],
        )
        cur.execute("ANALYZE profiles_profile")
        cur.execute("SELECT id, email FROM profiles_profile WHERE database_id = %s", [db.pk])
        ids = [0] * (profiles + 1)
        for id_, email in cur.fetchall():
            ids[int(email.removeprefix("customer").partition("@")[0])] = id_
    types = {"page.viewed": type_id("page.viewed"), "order.placed": type_id("order.placed"), CUSTOM_TYPE: custom.pk}
    return Seeded(account.pk, db.pk, raw, ids, types)


PAGES = ("shoes", "jackets", "bags", "sale", "new-in", "accessories", "kids", "outdoor")
WORDS = ("Trail", "Urban", "Classic", "Alpine", "Coastal", "Studio", "Summit", "Harbour", "Linen", "Merino")


def _properties(rng: Any, kind: str, i: int) -> dict[str, Any]:
    sku = f"SKU-{rng.randrange(20000):05d}"
    price = f"{rng.randrange(500, 30000) / 100:.2f}"
    if kind == "page.viewed":
        section = rng.choice(PAGES)
        name = f"{rng.choice(WORDS)} {rng.choice(WORDS).lower()} {section.replace('-', ' ')}"
        return {
            "url": f"https://shop.example.com/{section}/{name.lower().replace(' ', '-')}-{sku.lower()}"
                   f"?utm_source=newsletter&utm_medium=email&utm_campaign=week-{rng.randrange(1, 53)}",
            "title": f"{name} | Northwind Shop",
            "referrer": rng.choice(("https://www.google.com/", "https://mail.example.net/", "",
                                    "https://shop.example.com/")),
        }
    if kind == CUSTOM_TYPE:
        cart = f"c-{rng.getrandbits(40):010x}"
        return {"sku": sku, "price": price, "currency": "EUR", "quantity": rng.randrange(1, 4), "cart_id": cart,
                "cart_url": f"https://shop.example.com/cart/{cart}?recover=1"}
    items = [{"sku": f"SKU-{rng.randrange(20000):05d}", "qty": rng.randrange(1, 3), "price": f"{rng.randrange(500, 9000) / 100:.2f}"}
             for _ in range(rng.randrange(1, 4))]
    total = sum(float(it["price"]) * it["qty"] for it in items)
    return {"order_id": f"o-{i:09d}", "total": f"{total:.2f}", "currency": "EUR", "items": items,
            "payment": rng.choice(("card", "paypal", "invoice"))}


def make_batches(size: int, seeded: Seeded, *, salt: str = "", per_request: int = PER_REQUEST) -> Batches:
    """The request bodies and, for the baseline, the same events as CSV rows for COPY."""
    rng = make_rng("ingest", size, salt)
    now = datetime.now(UTC)
    span = timedelta(days=30).total_seconds()
    kinds = [name for name, pct in MIX for _ in range(pct)]
    out = Batches(counts={name: 0 for name, _ in MIX})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    received = now.isoformat()
    batch: list[dict[str, Any]] = []
    for i in range(size):
        kind = rng.choice(kinds)
        profile = rng.randrange(1, len(seeded.profile_ids))
        when = (now - timedelta(seconds=rng.random() * span)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        props = _properties(rng, kind, i)
        encoded = json.dumps(props, ensure_ascii=False, separators=(",", ":"))
        out.properties_bytes += len(encoded.encode())
        out.counts[kind] += 1
        batch.append({"id": key, "event": kind, "time": when, "profile": {"email": f"customer{profile}@example.com"},
                      "properties": props, "channel": "web"})
        writer.writerow([seeded.account_id, seeded.database_id, seeded.profile_ids[profile],
                         seeded.type_ids[kind], when, received, "web", encoded, "api", key, "f", "f"])
        if len(batch) == per_request or i == size - 1:
            out.bodies.append(json.dumps({"database": DB_SLUG, "events": batch}, ensure_ascii=False).encode())
            batch = []
    out.copy_rows = buf.getvalue().encode()
    return out


# --- baseline ----------------------------------------------------------------------------------

COPY_COLUMNS = ("account_id, database_id, profile_id, type_id, occurred_at, received_at, channel, properties, source, "
                "idempotency_key, machine, untyped")


def baseline(batches: Batches) -> float:
    """COPY of the prepared rows into a table shaped and indexed like history_event."""
    from django.db import connection, transaction

    with connection.cursor() as cur:
        cur.execute(f"CREATE TABLE {BASELINE_TABLE} (LIKE history_event INCLUDING ALL)")
    data = memoryview(batches.copy_rows)
    raw = connection.connection
    with Timer() as t, transaction.atomic(), raw.cursor() as cur, cur.copy(
        f"COPY {BASELINE_TABLE} ({COPY_COLUMNS}) FROM STDIN (FORMAT csv)"
    ) as copy:
        for start in range(0, len(data), 1 << 20):
            copy.write(data[start:start + (1 << 20)])
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {BASELINE_TABLE}")
        copied = cur.fetchone()[0]
        cur.execute(f"DROP TABLE {BASELINE_TABLE}")
    if copied != sum(batches.counts.values()):
        raise RuntimeError(f"baseline COPY stored {copied} rows, expected {sum(batches.counts.values())}")
    detail(f"baseline: COPY {copied:,} events in {t.seconds:.2f}s ({copied / t.seconds:,.0f} events/s)")
    return t.seconds


# --- the servers -------------------------------------------------------------------------------


@dataclass
class Servers:
    port: int
    tmp: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def stop(self) -> None:
        """SIGTERM (gunicorn and Celery shut down gracefully), then SIGKILL after 20 s. Only the
        processes this run started, by their ids."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(tmp: Path, handler_spec: str, ready_key: str) -> Servers:
    """gunicorn (the project's WSGI app) and a Celery worker on the trigger queue, both with the
    bench's handler; returns once /healthz answers and the worker consumes."""
    import redis
    from django.conf import settings

    url = os.environ["DATABASE_URL"]
    env = {**os.environ, HANDLER_ENV: handler_spec, "PYTHONPATH": str(BASE_DIR),
           "DATABASE_URL": f"{url}{'&' if '?' in url else '?'}application_name={APP_NAME}"}
    servers = Servers(port=_free_port(), tmp=tmp)
    gunicorn = [
        sys.executable, "-m", "gunicorn", "bench.ingest:wsgi_application()", "--bind", f"127.0.0.1:{servers.port}",
        "--workers", str(WORKERS), "--worker-class", WORKER_CLASS, "--threads", str(THREADS), "--keep-alive", "75",
        "--timeout", "120", "--log-level", "warning", "--chdir", str(BASE_DIR),
    ]
    celery = [
        sys.executable, "-m", "celery", "-A", "cdp", "worker", "-Q", "trigger", "--concurrency", "2", "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-I", "bench.ingest",
        "-n", f"bench-ingest-{os.getpid()}@%h",
    ]
    for name, cmd in (("gunicorn", gunicorn), ("celery", celery)):
        log = (tmp / f"{name}.log").open("wb")
        servers.procs[name] = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    r = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + 60
    up, ready = False, False
    while time.monotonic() < deadline and not (up and ready):
        for name, proc in servers.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{servers.log_tail(name)}")
        if not up:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", servers.port, timeout=5)
                conn.request("GET", "/healthz")
                up = conn.getresponse().status == 200
                conn.close()
            except OSError:
                pass
        ready = ready or bool(r.get(ready_key))
        time.sleep(0.2)
    if not (up and ready):
        servers.stop()
        raise RuntimeError(f"servers not ready after 60 s (gunicorn up={up}, celery ready={ready}):\n"
                           f"{servers.log_tail('gunicorn')}\n{servers.log_tail('celery')}")
    # Every worker answers once before the clock starts (Django loaded, URL conf imported, DB connected).
    for _ in range(WORKERS * THREADS * 3):
        conn = http.client.HTTPConnection("127.0.0.1", servers.port, timeout=5)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        conn.close()
    return servers


# --- where the CPU goes ------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


class CpuMeter:
    """CPU seconds used between start() and stop() by: the gunicorn master and workers, the Celery
    worker and its pool, the PostgreSQL backends of both (found by application_name, sampled every
    half second because Django reconnects after CONN_MAX_AGE), and this process (the client)."""

    def __init__(self, servers: Servers) -> None:
        import psycopg
        from django.conf import settings

        from bench.harness import _pg_connect_kwargs

        self.servers = servers
        db = settings.DATABASES["default"]
        self.conn = psycopg.connect(**_pg_connect_kwargs(db, db["NAME"]), autocommit=True)
        self.first: dict[int, float] = {}  # backend pid -> CPU when first seen (0 if it started later)
        self.last: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, name="bench-ingest-cpu", daemon=True)

    def _procs(self) -> dict[str, float]:
        out = {name: sum(_proc_cpu(p) for p in [proc.pid, *_children(proc.pid)]) for name, proc in self.servers.procs.items()}
        usage = os.times()
        out["client"] = usage.user + usage.system
        return out

    def _backends(self, *, initial: bool = False) -> None:
        pids = [pid for (pid,) in self.conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                                    [APP_NAME]).fetchall()]
        for pid in pids:
            cpu = _proc_cpu(pid)
            self.first.setdefault(pid, cpu if initial else 0.0)
            self.last[pid] = max(cpu, self.last.get(pid, 0.0))

    def _sample(self) -> None:
        while not self.done.wait(0.5):
            self._backends()

    def start(self) -> None:
        self._backends(initial=True)
        self.before = self._procs()
        self.thread.start()

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.thread.join()
        self._backends()
        after = self._procs()
        self.conn.close()
        used = {k: after[k] - self.before[k] for k in self.servers.procs}
        used["postgres"] = sum(self.last[pid] - self.first[pid] for pid in self.last)
        used["client"] = after["client"] - self.before["client"]
        return used


# --- the client --------------------------------------------------------------------------------


@dataclass
class Sent:
    latencies: list[float] = field(default_factory=list)
    stored: int = 0
    problems: list[str] = field(default_factory=list)


def send_all(port: int, token: str, bodies: list[bytes]) -> Sent:
    """POST every body from CLIENTS threads, each on its own keep-alive connection (reopened when a
    sync worker closes it); every answer must be 200 with every item stored."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))
    sent = Sent()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        stored = 0
        while True:
            with lock:
                i = next(next_index, None)
            if i is None or len(sent.problems) > 5:
                break
            start = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/events/batch", body=bodies[i], headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                with lock:
                    sent.problems.append(f"request {i}: {exc!r}")
                continue
            mine.append(time.perf_counter() - start)
            expected = bodies[i].count(b'"event":')
            if response.status != 200:
                with lock:
                    sent.problems.append(f"request {i}: HTTP {response.status}: {payload[:300]!r}")
                continue
            answer = json.loads(payload)
            if answer.get("stored") != expected:
                bad = [r for r in answer.get("results", []) if r.get("status") != "stored"][:2]
                with lock:
                    sent.problems.append(f"request {i}: stored {answer.get('stored')} of {expected}: {bad}")
                continue
            stored += expected
        conn.close()
        with lock:
            sent.latencies.extend(mine)
            sent.stored += stored

    threads = [threading.Thread(target=worker, name=f"bench-ingest-client-{n}") for n in range(CLIENTS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sent


def wait_for_triggers(key: str, expected: int, timeout: float) -> int:
    import redis
    from django.conf import settings

    r = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + timeout
    while True:
        got = int(r.get(key) or 0)
        if got >= expected or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def warm_up(servers: Servers, seeded: Seeded, key: str) -> int:
    """A few small batches before the clock starts, so the measured run meets loaded workers (URL
    conf, API router, first queries) and a worker that has run the dispatch task; their trigger
    count is waited for and then reset. Returns how many events they stored."""
    n = WORKERS * THREADS * 3
    warm = make_batches(n * 20, seeded, salt="warm-up", per_request=20)
    sent = send_all(servers.port, seeded.token, warm.bodies)
    if sent.problems:
        raise RuntimeError("warm-up refused:\n  " + "\n  ".join(sent.problems[:5]) + f"\n{servers.log_tail('gunicorn')}")
    got = wait_for_triggers(key, warm.counts[CUSTOM_TYPE], TRIGGER_WAIT)
    if got != warm.counts[CUSTOM_TYPE]:
        raise RuntimeError(f"warm-up: the handler saw {got} of {warm.counts[CUSTOM_TYPE]} events\n{servers.log_tail('celery')}")
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).delete(key)
    return sent.stored


# --- the benchmark -----------------------------------------------------------------------------


@register("ingest", small_size=20_000)
def run(size: int) -> Result:
    """Events through POST /api/v1/events/batch (gunicorn, 100 a request; triggers on a Celery worker) vs COPY."""
    import redis
    from django.conf import settings
    from django.db import connection

    with phase("cleanup leftovers"):
        cleanup()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    key = f"bench:ingest:{uuid.uuid4().hex}"
    r = redis.Redis.from_url(settings.REDIS_URL)
    servers: Servers | None = None
    meter: CpuMeter | None = None
    try:
        with phase("seed account, profiles, event type, token"):
            seeded = seed(size)
        with phase(f"generate {size:,} events"):
            batches = make_batches(size, seeded)
        kib = sum(len(b) for b in batches.bodies) / len(batches.bodies) / 1024
        detail(f"data events={size:,} profiles={len(seeded.profile_ids) - 1:,} requests={len(batches.bodies):,} "
               + " ".join(f"{k}={v:,}" for k, v in batches.counts.items())
               + f" properties_avg={batches.properties_bytes / size:.0f}B body_avg={kib:.1f}KiB")

        baseline_s = baseline(batches)

        with phase("start gunicorn and the Celery worker"):
            servers = start_servers(tmp, f"{seeded.account_id}:{key}", f"{key}:worker-ready")
        with phase("warm up (every worker serves the endpoint and runs the handler once)"):
            warm = warm_up(servers, seeded, key)
        detail(f"server gunicorn workers={WORKERS} class={WORKER_CLASS} threads={THREADS}, clients={CLIENTS} "
               f"(keep-alive), celery trigger worker concurrency=2")
        expected_triggers = batches.counts[CUSTOM_TYPE]
        meter = CpuMeter(servers)
        meter.start()
        with Timer() as total:
            with Timer() as requests_t:
                sent = send_all(servers.port, seeded.token, batches.bodies)
            if sent.problems:
                raise RuntimeError("the API refused events:\n  " + "\n  ".join(sent.problems[:5])
                                   + f"\n{servers.log_tail('gunicorn')}")
            with Timer() as lag:
                triggered = wait_for_triggers(key, expected_triggers, TRIGGER_WAIT)
        if triggered != expected_triggers:
            raise RuntimeError(f"the trigger handler saw {triggered:,} cart_abandoned events of {expected_triggers:,} "
                               f"after {TRIGGER_WAIT:.0f} s\n{servers.log_tail('celery')}")
        project_s = total.seconds
        cpu = meter.stop()
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM history_event WHERE account_id = %s", [seeded.account_id])
            in_db = cur.fetchone()[0]
        if in_db != size + warm or sent.stored != size:
            raise RuntimeError(f"{in_db - warm:,} events in the table and {sent.stored:,} answered stored, expected {size:,}")
        n_req = len(sent.latencies)
        detail(f"project: {size:,} events in {project_s:.2f}s = {size / project_s:,.0f} events/s; "
               f"{n_req:,} requests in {requests_t.seconds:.2f}s = {n_req / requests_t.seconds:,.1f} requests/s")
        detail(f"request latency {format_ms(percentiles(sent.latencies))}")
        detail(f"triggers: {triggered:,} cart_abandoned events handled on the worker; last one {lag.seconds * 1000:.0f}ms "
               f"after the last answer")
        busy = sum(cpu.values())
        detail("cpu seconds: " + " ".join(f"{k}={v:.1f}" for k, v in cpu.items())
               + f" (of {os.cpu_count() * project_s:.0f} core-seconds); per request: "
               + " ".join(f"{k}={v / n_req * 1000:.1f}ms" for k, v in cpu.items()) + f" total={busy / n_req * 1000:.1f}ms")
        return Result(size=size, project_s=project_s, baseline_s=baseline_s, rate=size / project_s)
    finally:
        if meter is not None and not meter.done.is_set():
            meter.stop()
        if servers is not None:
            servers.stop()
        r.delete(key, f"{key}:worker-ready")
        shutil.rmtree(tmp, ignore_errors=True)
        with phase("cleanup"):
            cleanup()
