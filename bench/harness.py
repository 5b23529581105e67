"""What every benchmark shares: the registry, Django and database setup, seeded data,
timing, percentiles, memory and the one result line.

A benchmark is a module in `bench/` with one function decorated with `@register(...)`. It
gets the size, makes its own data, runs the project path and its baseline on that data,
cleans up, and returns a `Result`; the runner prints the result line last.
"""

from __future__ import annotations

import importlib
import math
import os
import pkgutil
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SEED = 20240601
EXAMPLE_ENV = "DATABASE_URL=postgres://postgres@127.0.0.1:5432/cdp_bench REDIS_URL=redis://127.0.0.1:6379/15"

# --- registry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What a benchmark measured. `rate` is items per second of the project path."""

    size: int
    project_s: float
    baseline_s: float | None  # None for benchmarks that have no baseline (latency only)
    rate: float


BenchFunc = Callable[[int], Result]


@dataclass(frozen=True)
class Benchmark:
    name: str
    func: BenchFunc
    small_size: int  # the default size, and what `python -m bench all` (make bench) uses
    help: str


BENCHMARKS: dict[str, Benchmark] = {}


def register(name: str, *, small_size: int) -> Callable[[BenchFunc], BenchFunc]:
    """Register `func(size) -> Result` as benchmark `name`; its docstring's first line is the help."""

    def decorator(func: BenchFunc) -> BenchFunc:
        if name in BENCHMARKS:
            raise RuntimeError(f"benchmark {name!r} is registered twice")
        doc = (func.__doc__ or "").strip().splitlines()
        BENCHMARKS[name] = Benchmark(name=name, func=func, small_size=small_size, help=doc[0] if doc else "")
        return func

    return decorator


def discover() -> dict[str, Benchmark]:
    """Import every benchmark module of the package (all but this one and private ones)."""
    import bench

    for info in pkgutil.iter_modules(bench.__path__):
        if info.name != "harness" and not info.name.startswith("_"):
            importlib.import_module(f"bench.{info.name}")
    return dict(sorted(BENCHMARKS.items()))


# --- environment, Django, database -------------------------------------------------------------


def setup_django() -> None:
    """Load the project's settings in production mode (DEBUG off, as users would run it: no
    query logging, no template debugging, manifest static files) unless DEBUG is set, and let
    the test Client's host through over plain HTTP."""
    import secrets

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    if "*" not in settings.ALLOWED_HOSTS and "testserver" not in settings.ALLOWED_HOSTS:
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    if not settings.DEBUG:
        call_command("collectstatic", interactive=False, verbosity=0)  # the manifest pages need


def _fail(problems: Sequence[str]) -> None:
    lines = ["bench: cannot run.", *(f"  - {p}" for p in problems)]
    lines += [
        "Benchmarks need PostgreSQL and Redis. Set both, for example:",
        f"  {EXAMPLE_ENV} python -m bench pages",
        "Use a database of its own: it is created if missing, and benchmarks delete only the data they made.",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
    sys.exit(2)


def require_services() -> None:
    """Exit with status 2 and say what to set unless DATABASE_URL is PostgreSQL and REDIS_URL
    is set; both must answer."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    problems = []
    if "postgresql" not in db["ENGINE"]:
        got = "not set" if not os.environ.get("DATABASE_URL") else f"not PostgreSQL (engine {db['ENGINE']})"
        problems.append(f"DATABASE_URL is {got}.")
    if not settings.REDIS_URL:
        problems.append("REDIS_URL is not set.")
    if problems:
        _fail(problems)

    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        _fail([f"Redis at REDIS_URL does not answer: {exc}"])


def _pg_connect_kwargs(db: dict[str, Any], dbname: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dbname": dbname, "connect_timeout": 5}
    for key, name in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host"), ("PORT", "port")):
        if db.get(key):
            kwargs[name] = db[key]
    return kwargs


def prepare_database() -> None:
    """Create the database named in DATABASE_URL if it is missing, then migrate quietly."""
    import psycopg
    from django.conf import settings
    from django.core.management import call_command
    from psycopg import sql

    db = settings.DATABASES["default"]
    try:
        with psycopg.connect(**_pg_connect_kwargs(db, "postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
                detail(f"created database {db['NAME']}")
    except psycopg.OperationalError as exc:
        _fail([f"PostgreSQL at DATABASE_URL does not answer: {str(exc).strip()}"])
    call_command("migrate", verbosity=0, interactive=False)


def describe_environment() -> None:
    import platform

    import django
    from django.conf import settings

    db = settings.DATABASES["default"]
    detail(
        f"env python={platform.python_version()} django={django.get_version()} debug={settings.DEBUG} "
        f"cpus={os.cpu_count()} db={db['NAME']}@{db.get('HOST') or 'local'}"
    )


# --- seeded data -------------------------------------------------------------------------------

# fmt: off
FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sofia", "Lucas", "Mia", "Elias", "Amelia", "Hugo",
    "Chloe", "Leon", "Ines", "Arjun", "Yuki", "Fatima", "Ivan", "Zoe", "Omar", "Lena", "Diego", "Hana",
)
LAST_NAMES = (
    "Smith", "Garcia", "Müller", "Rossi", "Dubois", "Kowalski", "Nguyen", "Silva", "Tanaka", "Ivanova",
    "Johnson", "Martin", "Schmidt", "Lopez", "Novak", "Jensen", "Okafor", "Kim", "Patel", "Brown",
)
# fmt: on


def make_rng(*parts: object) -> random.Random:
    """A generator seeded from SEED and `parts` (say the benchmark name and size): same data every run."""
    return random.Random(":".join(str(p) for p in (SEED, *parts)))


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


# --- timing, percentiles, memory, output -------------------------------------------------------


class Timer:
    """`with Timer() as t: ...` then `t.seconds` (perf_counter)."""

    seconds: float = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


@contextmanager
def phase(name: str) -> Iterator[Timer]:
    """Time a phase and print it as a detail line."""
    with Timer() as timer:
        yield timer
    detail(f"phase {name}: {timer.seconds:.2f}s")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), interpolated between the closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    return {name: percentile(values, p) for name, p in (("p50", 50), ("p95", 95), ("p99", 99))}


def format_ms(stats: dict[str, float]) -> str:
    return " ".join(f"{name}={seconds * 1000:.1f}ms" for name, seconds in stats.items())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def delete_accounts(accounts: Sequence[Any], *, before: Callable[[list[int]], None] | None = None,
                    vacuum: Sequence[str] = ()) -> None:
    """Delete benchmark accounts with their events and profiles set-based (the ORM's cascade would
    collect millions of rows), then VACUUM ANALYZE the big tables (and `vacuum`, those that exist)
    so the next run meets clean ones. `before(ids)` deletes what a benchmark added on top, in the
    same transaction."""
    from django.db import connection, transaction

    if not accounts:
        return
    ids = [a.pk for a in accounts]
    with Timer() as t, transaction.atomic(), connection.cursor() as cur:
        cur.execute("ANALYZE profiles_profile")  # fresh statistics: the deletes use the account indexes
        if before is not None:
            before(ids)
        cur.execute("DELETE FROM history_event WHERE account_id = ANY(%s)", [ids])
        deleted = cur.rowcount
        cur.execute("DELETE FROM profiles_profile WHERE account_id = ANY(%s)", [ids])
        for account in accounts:
            account.delete()
    detail(f"cleanup: {deleted:,} events deleted in {t.seconds:.1f}s")
    tables = set(connection.introspection.table_names())
    with Timer() as t, connection.cursor() as cur:
        for table in ("history_event", "profiles_profile", *vacuum):
            if table in tables:
                cur.execute(f"VACUUM ANALYZE {table}")
    detail(f"cleanup: VACUUM ANALYZE {t.seconds:.1f}s")


def detail(line: str) -> None:
    print(f"  {line}", flush=True)


def result_line(name: str, result: Result) -> str:
    if result.baseline_s is None:
        baseline, ratio = "none", "none"
    else:
        baseline = f"{result.baseline_s:.6f}"
        ratio = f"{result.project_s / result.baseline_s:.3f}" if result.baseline_s > 0 else "inf"
    return (
        f"BENCH {name} size={result.size} project_s={result.project_s:.6f} baseline_s={baseline} "
        f"ratio={ratio} rate={result.rate:.1f}"
    )


def run(benchmark: Benchmark, size: int) -> Result:
    """Run one benchmark and print its detail lines, then the result line, last."""
    print(f"bench {benchmark.name} size={size}: {benchmark.help}", flush=True)
    describe_environment()
    result = benchmark.func(size)
    detail(f"peak_rss_mb={peak_rss_mb():.0f}")
    print(result_line(benchmark.name, result), flush=True)
    return result
