"""import: a CSV file of `size` profiles through the project's import pipeline.

Data: a deterministic CSV (seeded) in a temp dir with email, first_name, last_name, phone (valid
German mobile numbers in E.164), city (custom string), loyalty_points (integer), vip (boolean)
and signup (datetime), for a new database made with `database_create` / `field_add`.

Project path: `profiles.importing.sniff` + `import_file`, what the import task runs (streamed
read, per-cell conversion with the field types, COPY into a staging table, dedupe, one join for
changes, one INSERT .. SELECT), into the real profiles table.
Baseline, same run, same file: psycopg COPY of the raw CSV into a staging table of text columns,
then one INSERT .. SELECT .. ON CONFLICT DO UPDATE into a table made LIKE profiles_profile
INCLUDING ALL (same columns and indexes, no foreign keys), casting the custom columns into jsonb.

Also printed: the phases of the project path, a re-run of the same file (must be all unchanged),
and the peak RSS of the process (memory must not grow with the file).

Subscribing on import (issue 4): after the re-run the profiles are deleted and VACUUMed away, so
both imports meet the same table, and the same file goes into a second new database with
`Options.extra["subscribe"]` (resource "Shop news" of that database, e-mail, subscribed): the
import hook creates a subscription and its consent-ledger row per profile in the import's
transaction. A detail line gives both times and their ratio; the budget is <= 1.30 at the target size, 1M rows (smaller runs say "informative").
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

from django.db import connection, transaction

from accounts.access import Actor
from accounts.models import Account
from bench.harness import FIRST_NAMES, LAST_NAMES, Result, detail, make_rng, peak_rss_mb, phase, register

SLUG = "bench-import"
BASELINE_TABLE = "bench_import_profile"
BASELINE_STAGING = "bench_import_staging"
CITIES = ("Berlin", "Paris", "Madrid", "Rome", "Lisbon", "Vienna", "Prague", "Warsaw", "Oslo", "Dublin", "Zürich", "Kraków")
HEADER = ["email", "first_name", "last_name", "phone", "city", "loyalty_points", "vip", "signup"]
SUBSCRIBE_BUDGET = 1.30  # import with subscribe / import without, at most
SUBSCRIBE_BUDGET_SIZE = 1_000_000


def _write_csv(path: Path, size: int) -> None:
    """Streamed to disk, so the generator holds one row at a time."""
    rng = make_rng("import", size)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(size):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            w.writerow([
                f"{first.lower()}.{last.lower().replace('ü', 'ue')}.{i}@example.com",
                first,
                last,
                f"+49151{i:08d}",
                rng.choice(CITIES),
                rng.randint(0, 50_000),
                "true" if rng.random() < 0.1 else "false",
                f"20{rng.randint(10, 24):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
            ])


TABLES = ("resources_consentrecord", "resources_subscription", "profiles_profilechange", "profiles_profile")


def _delete_profiles(account: Account | None) -> None:
    """Set-based (a cascade through the ORM would load a million profiles), then VACUUM ANALYZE: the
    deleted rows of an earlier import (or benchmark) must not slow the next one down (autovacuum may lag)."""
    with connection.cursor() as cur:
        if account is not None:
            # Fresh statistics first, or the delete's foreign-key checks (`id = $1` on profiles) may
            # be planned on profile_db_id_idx, a full index scan per deleted row.
            cur.execute("ANALYZE profiles_profile")
            for table in TABLES:
                cur.execute(f"DELETE FROM {table} WHERE account_id = %s", [account.pk])
        for table in TABLES:
            cur.execute(f"VACUUM ANALYZE {table}")


def _cleanup() -> None:
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}, {BASELINE_STAGING}")
    for account in Account.objects.filter(slug=SLUG):
        _delete_profiles(account)
        account.delete()
    _delete_profiles(None)


def _database(account: Account, name: str):  # type: ignore[no-untyped-def]
    """A new profile database with the CSV's custom fields, made as the UI makes it."""
    from profiles.services import database_create, field_add

    actor = Actor.system()
    database = database_create(account=account, name=name, actor=actor)
    field_add(database=database, name="city", label="City", type="string", actor=actor)
    field_add(database=database, name="loyalty_points", label="Loyalty points", type="integer", actor=actor)
    field_add(database=database, name="vip", label="VIP", type="boolean", actor=actor)
    field_add(database=database, name="signup", label="Signed up", type="datetime", actor=actor)
    return database


def _project(path: Path, database, extra: dict | None = None) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    from profiles.importing import Options, auto_mapping, import_file, sniff, writable_fields

    with Path(os.devnull).open("w") as report, path.open("rb") as fh:
        start = time.perf_counter()
        info = sniff(fh, size=path.stat().st_size)
        mapping = auto_mapping(info.headers, writable_fields(database))
        assert len(mapping) == len(HEADER), f"auto-mapping missed columns: {mapping}"
        result = import_file(database=database, file=fh, info=info, options=Options(mapping, "email", extra=extra or {}), report=report,
                             source="import:bench")
        return time.perf_counter() - start, result


def _baseline(path: Path, account_id: int, database_id: int) -> float:
    raw = connection.connection
    with connection.cursor() as cur:
        cur.execute(f"CREATE TABLE {BASELINE_TABLE} (LIKE profiles_profile INCLUDING ALL)")
        cur.execute(f"CREATE TEMP TABLE {BASELINE_STAGING} ({', '.join(f'{c} text' for c in HEADER)})")
    start = time.perf_counter()
    with transaction.atomic():
        with raw.cursor() as cur, cur.copy(f"COPY {BASELINE_STAGING} FROM STDIN (FORMAT csv, HEADER true)") as copy, path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
        with connection.cursor() as cur:
            cur.execute(
                f"INSERT INTO {BASELINE_TABLE} (account_id, database_id, email, phone, first_name, last_name, gender, timezone, data, "
                f"created_at, updated_at) SELECT %s, %s, lower(email), phone, first_name, last_name, '', '', jsonb_build_object('city', city, "
                f"'loyalty_points', loyalty_points::bigint, 'vip', vip::boolean, 'signup', signup), now(), now() "
                f"FROM {BASELINE_STAGING} "
                f"ON CONFLICT (database_id, email) WHERE email IS NOT NULL DO UPDATE SET phone = EXCLUDED.phone, "
                f"first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, data = {BASELINE_TABLE}.data || EXCLUDED.data, "
                f"updated_at = now() WHERE ({BASELINE_TABLE}.phone, {BASELINE_TABLE}.first_name, {BASELINE_TABLE}.last_name, "
                f"{BASELINE_TABLE}.data) IS DISTINCT FROM (EXCLUDED.phone, EXCLUDED.first_name, EXCLUDED.last_name, "
                f"{BASELINE_TABLE}.data || EXCLUDED.data)",
                [account_id, database_id],
            )
            inserted = cur.rowcount
    seconds = time.perf_counter() - start
    detail(f"baseline: {inserted:,} rows in {seconds:.2f}s")
    return seconds


@register("import", small_size=20_000)
def bench_import(size: int) -> Result:
    """A CSV of N profiles through the import pipeline vs COPY + INSERT .. ON CONFLICT."""
    _cleanup()
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        path = tmp / "profiles.csv"
        with phase("generate csv"):
            _write_csv(path, size)
        detail(f"file {path.stat().st_size / 1024**2:,.1f} MB, rss before import {peak_rss_mb():.0f} MB")
        account = Account.objects.create(name="Bench import", slug=SLUG)
        database = _database(account, "Bench customers")

        baseline_s = _baseline(path, account.pk, database.pk)
        project_s, result = _project(path, database)
        phases = " ".join(f"{k}={v:.2f}s" for k, v in result.phases.items())  # type: ignore[attr-defined]
        detail(f"project: {result.line()} rows={result.rows:,} in {project_s:.2f}s ({phases})")  # type: ignore[attr-defined]
        detail(f"rss after import {peak_rss_mb():.0f} MB")
        assert result.created == size and result.failed == 0, result  # type: ignore[attr-defined]
        rerun_s, again = _project(path, database)
        phases = " ".join(f"{k}={v:.2f}s" for k, v in again.phases.items())  # type: ignore[attr-defined]
        detail(f"re-run of the same file: {again.line()} in {rerun_s:.2f}s ({phases})")  # type: ignore[attr-defined]
        assert again.updated == 0 and again.unchanged == size, again  # type: ignore[attr-defined]
        _subscribe(path, account, size, project_s)
        return Result(size=size, project_s=project_s, baseline_s=baseline_s, rate=size / project_s)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _cleanup()


def _subscribe(path: Path, account: Account, size: int, without_s: float) -> None:
    """The same file into a new database with subscribe on: time, counts and the ratio to `without_s`."""
    from resources.services import resource_create

    with phase("delete the imported profiles (same starting table for the subscribe run)"):
        _delete_profiles(account)
    database = _database(account, "Bench subscribers")
    resource = resource_create(account=account, database=database, actor=Actor.system(),
                               values={"name": "Shop news", "channels": ["email", "sms"]})
    extra = {"subscribe": {"resource": resource.pk, "channel": "email", "status": "subscribed"}}
    with_s, result = _project(path, database, extra)
    phases = " ".join(f"{k}={v:.2f}s" for k, v in result.phases.items())  # type: ignore[attr-defined]
    counts = result.extra["subscribe"]  # type: ignore[attr-defined]
    detail(f"project with subscribe: {result.line()} in {with_s:.2f}s ({phases})")  # type: ignore[attr-defined]
    detail("subscribe counts: " + " ".join(f"{k}={v}" for k, v in counts.items() if k not in ("resource", "channel")))
    assert result.created == size and counts["created"] == size, (result, counts)  # type: ignore[attr-defined]
    ratio = with_s / without_s
    # The budget is the figure for the target size; on a small file the fixed costs (temp
    # tables, ANALYZE, the counters) weigh more, so a small run only informs.
    verdict = ("ok" if ratio <= SUBSCRIBE_BUDGET else "OVER") if size >= SUBSCRIBE_BUDGET_SIZE else "informative"
    detail(f"subscribe on import: without_s={without_s:.3f} with_s={with_s:.3f} ratio={ratio:.3f} "
           f"{verdict} (budget <= {SUBSCRIBE_BUDGET:.2f} at {SUBSCRIBE_BUDGET_SIZE:,} rows)")
