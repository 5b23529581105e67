"""segment: a saved segment evaluated and its membership stored, at `size` profiles and 10 x `size` events.

Data, set-based (INSERT .. SELECT from generate_series, events in chunks of 1M, like history):
one account ("Bench segment", Europe/Berlin) with the profile database "Shop" of `size` profiles
(e-mail, names, and the typed custom fields city (string, indexed; ten cities, 10% Berlin) and
loyalty_points (integer 0..19,999, indexed), both made with `field_add`), the resource
"Shop news" (e-mail, web push) the mailings went out for, the custom event type cart_abandoned,
and 10 x `size` events over the last 90 days in arrival order, typed like a sending platform
with a shop: message sent 30%, delivered 28%, opened 10%, clicked 3%, bounces, unsubscribes,
page views 15%, app events, orders, forms, cart_abandoned. Message events belong to a daily
mailing (90% e-mail, 10% web push) of "Shop news"; sends reach every profile alike, opens and
clicks come from the 40% of profiles that engage (so ~27% opened an e-mail in the last 30 days
and ~60% opened nothing in 90). No subscriptions: no shape measured here reads them. Then
VACUUM ANALYZE, as autovacuum leaves a production table.

Project path (the core's real code): the segment of BENCHMARKS.md, city = Berlin AND
loyalty_points > 5,000 AND "message.opened on e-mail at least once in the last 30 days", made
with `segment_create` as an updatable segment and recalculated with `segment_recalculate`
(compiled to one query, members inserted, movements and a SegmentRun written, the segment
updated). Each round makes a new segment (`compute=False`: the first calculation it would queue
is what is timed here), so every recalculation fills an empty membership, as the baseline does.
Baseline: hand-written SQL for the same condition, one INSERT .. SELECT .. ON CONFLICT DO NOTHING
into bench_segment_member, made LIKE segments_segmentmember INCLUDING ALL (same columns, primary
key and indexes), emptied between rounds, run with the session settings the core evaluates with
(no JIT, its work_mem). Both get the same instant, so their member sets must be equal (checked).
Rounds alternate project and baseline after an untimed warm-up; the medians count.

Detail lines: a recalculation of the same segment with no change; and the count-only time of
four shapes (the one above; fields only; "did not open in 90 days"; segment-in-segment: in the
updatable segment above AND in a dynamic "Gold" segment, loyalty_points >= 15,000, which the
compiler inlines), each the builder's live count (`segment_count`; target < 1 s) against its
hand-written count(*) SQL, the counts checked. When a ratio is over its target (1.5) by more than
50 ms, or a live count takes over 1 s, or with BENCH_SEGMENT_EXPLAIN=1, the EXPLAIN (ANALYZE, BUFFERS) of the project's
query and of the baseline follow. BENCH_SEGMENT_KEEP=1 (development) keeps the data and reuses it.

Result: project_s = median recalculation, baseline_s = median hand-written INSERT .. SELECT,
rate = profiles evaluated a second. Target: ratio <= 1.5 at 1M profiles and 10M events.
"""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.apps import apps
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from bench.harness import Result, Timer, delete_accounts, detail, phase, register

SLUG = "bench-segment"
EMAIL = "bench-segment-owner@bench.test"
EVENTS_PER_PROFILE = 10
DAYS = 90  # the events span the last 90 days
CHUNK = 1_000_000  # events an INSERT .. SELECT
ROUNDS = 3  # timed rounds of each measurement (after one untimed warm-up); medians count
TARGET = 1.5  # project / baseline
LIVE_BUDGET_S = 1.0  # the builder's live count
# Over the ratio by less than this is the fixed cost of loading the schema, validating and compiling
# (~10 ms), which dominates small runs: no EXPLAIN for that.
EXPLAIN_GAP_S = 0.05
ENGAGED_PER_MILLE = 400  # profiles that open and click
BASELINE_TABLE = "bench_segment_member"
MEMBER_TABLE = "segments_segmentmember"
MAP_TABLE = "bench_segment_map"
EXPLAIN_ALWAYS = os.environ.get("BENCH_SEGMENT_EXPLAIN") == "1"
KEEP = os.environ.get("BENCH_SEGMENT_KEEP") == "1"  # development: keep the data and reuse it at the same size

CITIES = ["Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart", "Leipzig", "Dresden", "Vienna", "Zurich"]
FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Klara", "Leon"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
        "Rossi", "Novak", "Kowalski", "Dubois", "Garcia", "Silva", "Jensen", "Nielsen", "Yilmaz", "Ivanova"]

# (upper bound of h in 0..999, type name): the mix of a sending platform with a shop integration.
MIX = [
    (300, "message.sent"), (580, "message.delivered"), (680, "message.opened"), (710, "message.clicked"),
    (716, "message.soft_bounced"), (720, "message.hard_bounced"), (724, "message.unsubscribed"),
    (725, "message.complained"), (875, "page.viewed"), (900, "app.event"), (918, "order.placed"),
    (933, "order.paid"), (936, "order.cancelled"), (956, "form.submitted"), (1000, "cart_abandoned"),
]
ENGAGING = ("message.opened", "message.clicked")  # only engaged profiles do these

# The segment of BENCHMARKS.md and the count-only shapes, in the core's condition format
# (segments/conditions.py); the segment-in-segment shape is built with the ids (count_shapes).
CITY = {"type": "field", "field": "city", "operator": "eq", "value": "Berlin"}
POINTS = {"type": "field", "field": "loyalty_points", "operator": "gt", "value": 5000}
OPENED_30 = {"type": "event", "event": "message.opened", "count": {"op": "at_least", "n": 1},
             "window": {"last_days": 30}, "where": {"channel": "email"}}
NOT_OPENED_90 = {"type": "event", "event": "message.opened", "count": {"op": "not_exists"}, "window": {"last_days": 90}}
GOLD = {"type": "field", "field": "loyalty_points", "operator": "gte", "value": 15000}


def _group(*items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "group", "op": "and", "negate": False, "items": list(items)}


MAIN_TREE = _group(CITY, POINTS, OPENED_30)

# Hand-written SQL. %(db)s the database, %(opened)s the type id, %(since30)s/%(since90)s the window starts.
PROFILES = "FROM profiles_profile p WHERE p.database_id = %(db)s"
SQL_CITY = "p.data -> 'city' = '\"Berlin\"'::jsonb"
SQL_POINTS = "p.data -> 'loyalty_points' > '5000'::jsonb"
SQL_GOLD = "p.data -> 'loyalty_points' >= '15000'::jsonb"
SQL_OPENED_30 = ("EXISTS (SELECT 1 FROM history_event e WHERE e.profile_id = p.id AND e.type_id = %(opened)s "
                 "AND e.occurred_at >= %(since30)s AND e.channel = 'email')")
SQL_NOT_OPENED_90 = ("NOT EXISTS (SELECT 1 FROM history_event e WHERE e.profile_id = p.id AND e.type_id = %(opened)s "
                     "AND e.occurred_at >= %(since90)s)")
SQL_IN_MAIN = f"EXISTS (SELECT 1 FROM {MEMBER_TABLE} m WHERE m.segment_id = %(main)s AND m.profile_id = p.id)"
MAIN_WHERE = f"{PROFILES} AND {SQL_CITY} AND {SQL_POINTS} AND {SQL_OPENED_30}"


@dataclass
class Shape:
    """A count-only shape: its tree for `segment_count` and its hand-written count SQL."""

    name: str
    tree: dict[str, Any]
    sql: str
    project: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    reported_ms: list[float] = field(default_factory=list)  # segment_count's own elapsed_ms
    count: int = 0
    expected: list[int] = field(default_factory=list)  # the SQL's count just before and just after the live count


@dataclass
class Seeded:
    account_id: int
    database_id: int
    owner_id: int
    opened_type: int
    counts: dict[str, int]


# --- the core ----------------------------------------------------------------------------------


def core() -> Any | None:
    """segments.services when the core is installed and has what this benchmark calls, else None."""
    if not apps.is_installed("segments"):
        return None
    try:
        from segments import services
    except ImportError:
        return None
    needed = ("segment_create", "segment_recalculate", "segment_count")
    return services if all(hasattr(services, n) for n in needed) else None


def _has_table(name: str) -> bool:
    return name in connection.introspection.table_names()


# --- data --------------------------------------------------------------------------------------


def cleanup() -> None:
    """Delete everything a run made (see harness.delete_accounts: the segments first), and the
    baseline's tables."""
    from accounts.models import Account, User

    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
        cur.execute(f"DROP TABLE IF EXISTS {MAP_TABLE}")
    delete_accounts(list(Account.objects.filter(slug=SLUG)), before=delete_segments, vacuum=[MEMBER_TABLE])
    User.objects.filter(email=EMAIL).delete()


def delete_segments(account_ids: list[int]) -> None:
    """The accounts' segments, members, runs and movements, one statement a table."""
    tables = set(connection.introspection.table_names())
    if "segments_segment" not in tables:
        return
    segs = "SELECT id FROM segments_segment WHERE account_id = ANY(%s)"
    with connection.cursor() as cur:
        if "segments_segmentmovement" in tables:
            cur.execute(f"DELETE FROM segments_segmentmovement WHERE run_id IN "
                        f"(SELECT id FROM segments_segmentrun WHERE segment_id IN ({segs}))", [account_ids])
        if MEMBER_TABLE in tables:
            cur.execute(f"DELETE FROM {MEMBER_TABLE} WHERE segment_id IN ({segs})", [account_ids])
        cur.execute(f"DELETE FROM segments_segmentrun WHERE segment_id IN ({segs})", [account_ids])
        cur.execute("DELETE FROM segments_segment WHERE account_id = ANY(%s)", [account_ids])


def kept(size: int) -> Seeded | None:
    """With BENCH_SEGMENT_KEEP=1: the data an earlier run kept at this size (its segments deleted), or None."""
    from accounts.models import Account, User
    from history.catalogue import type_id
    from profiles.models import Profile, ProfileDatabase

    account = Account.objects.filter(slug=SLUG).first()
    database = ProfileDatabase.objects.filter(account=account, slug="shop").first() if account else None
    owner = User.objects.filter(email=EMAIL).first()
    if not (account and database and owner) or Profile.objects.filter(database=database).count() != size:
        return None
    opened = type_id("message.opened")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), count(*) FILTER (WHERE type_id = %s) FROM history_event WHERE account_id = %s",
                    [opened, account.pk])
        events, opened_n = cur.fetchone()
    if events != size * EVENTS_PER_PROFILE:
        return None
    with transaction.atomic():
        delete_segments([account.pk])
    detail("reusing the data of an earlier run (BENCH_SEGMENT_KEEP=1)")
    return Seeded(account.pk, database.pk, owner.pk, opened, {"profiles": size, "events": events, "opened": opened_n})


def _array(values: list[str]) -> str:
    return "ARRAY[" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _profiles(account_id: int, database_id: int, n: int) -> int:
    """n profiles in one INSERT .. SELECT (city and points spread by multiplicative hashes of g) and
    the map the events join; returns how many profiles engage."""
    with connection.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO profiles_profile (account_id, database_id, email, phone, first_name, last_name, birthday,
                gender, timezone, data, created_at, updated_at)
            SELECT %(account)s, %(db)s, 'customer' || g || '@example.com', NULL,
                   ({_array(FIRST)})[1 + (g * 7) %% {len(FIRST)}], ({_array(LAST)})[1 + (g * 13) %% {len(LAST)}],
                   NULL, '', '',
                   jsonb_build_object('city', ({_array(CITIES)})[1 + (g * 31) %% {len(CITIES)}],
                                      'loyalty_points', (g * 7919) %% 20000),
                   now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval
            FROM generate_series(1::bigint, %(n)s::bigint) AS g
            """,
            {"account": account_id, "db": database_id, "n": n},
        )
        # Profile number -> id, which the event generator joins (no assumption that ids are consecutive):
        # kind 0 numbers every profile (g - 1), kind 1 the engaged ones, picked by a hash of g.
        cur.execute(f"DROP TABLE IF EXISTS {MAP_TABLE}")
        cur.execute(
            f"CREATE TEMP TABLE {MAP_TABLE} AS "
            "WITH p AS (SELECT id, split_part(substr(email, 9), '@', 1)::bigint AS g FROM profiles_profile "
            "           WHERE database_id = %s) "
            "SELECT 0 AS kind, g - 1 AS idx, id FROM p UNION ALL "
            "SELECT 1, row_number() OVER (ORDER BY g) - 1, id FROM p "
            f"WHERE ((g * 2654435761) %% 4294967296) %% 1000 < {ENGAGED_PER_MILLE}",
            [database_id],
        )
        cur.execute(f"ALTER TABLE {MAP_TABLE} ADD PRIMARY KEY (kind, idx)")
        cur.execute(f"ANALYZE {MAP_TABLE}")
        cur.execute(f"SELECT count(*) FROM {MAP_TABLE} WHERE kind = 1")
        return cur.fetchone()[0]


def _type_case(type_ids: dict[str, int]) -> str:
    whens = " ".join(f"WHEN h < {bound} THEN {type_ids[name]}" for bound, name in MIX[:-1])
    return f"CASE {whens} ELSE {type_ids[MIX[-1][1]]} END"


def _events_sql(t: dict[str, int]) -> str:
    """One chunk [lo, hi] of the event stream (g = 1..total, in time order); %(...)s are the layout's numbers."""
    message = f"t IN ({', '.join(str(t[n]) for _, n in MIX if n.startswith('message.'))})"
    engaging = f"t IN ({', '.join(str(t[n]) for n in ENGAGING)})"
    return f"""
    INSERT INTO history_event (account_id, database_id, profile_id, type_id, occurred_at, received_at, channel,
        resource_id, mailing_id, run_id, ledger_id, link_id, properties, source, idempotency_key, machine, untyped)
    SELECT %(account)s, %(db)s, m.id, t, ts, ts + ((g %% 7) || ' seconds')::interval,
        CASE WHEN {message} THEN (CASE WHEN g %% 10 = 3 THEN 'webpush' ELSE 'email' END)
             WHEN t = {t['page.viewed']} THEN 'web' WHEN t = {t['app.event']} THEN 'app' ELSE '' END,
        CASE WHEN {message} THEN %(resource)s END,
        CASE WHEN {message} THEN 1 + (g * {DAYS}) / %(total)s + CASE WHEN g %% 10 = 3 THEN 1000 ELSE 0 END END,
        NULL,
        CASE WHEN {message} THEN g END,
        NULL,
        CASE
          WHEN t = {t['message.sent']} THEN jsonb_build_object('template', 'daily-' || ((g * {DAYS}) / %(total)s),
               'subject', 'Daily picks #' || ((g * {DAYS}) / %(total)s) || ': new arrivals for spring')
          WHEN t = {t['message.clicked']} THEN jsonb_build_object('url', 'https://shop.example.com/p/sku-' || (g %% 5000)
               || '?utm_source=newsletter&utm_campaign=daily-' || ((g * {DAYS}) / %(total)s))
          WHEN t = {t['message.soft_bounced']} THEN jsonb_build_object('reason', '452 4.2.2 mailbox full', 'code', '452')
          WHEN t = {t['message.hard_bounced']} THEN jsonb_build_object('reason', '550 5.1.1 user unknown', 'code', '550')
          WHEN t = {t['page.viewed']} THEN jsonb_build_object('url', 'https://shop.example.com/p/sku-' || (g %% 5000),
               'title', 'Product ' || (g %% 5000) || ' | Northwind shop', 'referrer', 'https://www.google.com/')
          WHEN t = {t['app.event']} THEN jsonb_build_object('name', 'screen_view', 'screen', 'product/' || (g %% 5000))
          WHEN t = {t['order.placed']} THEN jsonb_build_object('order_id', 'o-' || g, 'total', ((g %% 20000) / 100.0)::text,
               'currency', 'EUR', 'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || lpad((g %% 5000)::text, 5, '0'),
               'qty', 1 + g %% 3)))
          WHEN t = {t['order.paid']} THEN jsonb_build_object('order_id', 'o-' || (g - 1000), 'total', ((g %% 20000) / 100.0)::text)
          WHEN t = {t['order.cancelled']} THEN jsonb_build_object('order_id', 'o-' || (g - 5000), 'reason', 'customer request')
          WHEN t = {t['form.submitted']} THEN jsonb_build_object('form', 'newsletter-footer', 'url', 'https://shop.example.com/')
          WHEN t = {t['cart_abandoned']} THEN jsonb_build_object('sku', 'SKU-' || lpad((g %% 5000)::text, 5, '0'),
               'price', ((g %% 20000) / 100.0)::text, 'cart_id', 'c-' || (g / 7), 'quantity', 1 + g %% 4)
          ELSE '{{}}'::jsonb END,
        CASE WHEN {message} THEN 'mailing' ELSE 'api' END,
        CASE WHEN {message} THEN NULL ELSE md5(g::text) END,
        {engaging} AND g %% 10 = 0, false
    FROM (
      SELECT g, t, CASE WHEN {engaging} THEN 1 ELSE 0 END AS kind,
        (g * 48271) %% CASE WHEN {engaging} THEN %(engaged)s ELSE %(n)s END AS idx,
        %(start)s::timestamptz + (g::float8 / %(total)s * {DAYS} * 86400) * interval '1 second'
          + ((g * 7919) %% 600 - 300) * interval '1 second' AS ts
      FROM (SELECT g, {_type_case(t)} AS t
            FROM (SELECT g, ((g * 2654435761) %% 4294967296) %% 1000 AS h
                  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g) s) s2
    ) e JOIN {MAP_TABLE} m ON m.kind = e.kind AND m.idx = e.idx
    ORDER BY g"""


def seed(size: int) -> Seeded:
    from accounts.access import Actor
    from accounts.models import User
    from accounts.services import account_create
    from history.catalogue import SYSTEM_TYPES
    from history.services import eventtype_create
    from profiles.services import database_create, field_add
    from resources.services import resource_create

    owner = User.objects.create_user(email=EMAIL, password=None, full_name="Bench Owner")
    system = Actor.system()
    account = account_create(name="Bench segment", slug=SLUG, owner=owner, actor=system, timezone_name="Europe/Berlin")
    db = database_create(account=account, name="Shop", slug="shop", actor=system)
    field_add(database=db, name="city", label="City", type="string", indexed=True, actor=system)
    field_add(database=db, name="loyalty_points", label="Loyalty points", type="integer", indexed=True, actor=system)
    news = resource_create(account=account, database=db, actor=system,
                           values={"name": "Shop news", "slug": "shop-news", "channels": ["email", "webpush"]})
    types = {st.name: st.id for st in SYSTEM_TYPES}
    types["cart_abandoned"] = eventtype_create(
        account=account, name="cart_abandoned", label="Cart abandoned", actor=system,
        properties=[{"name": "sku", "type": "string", "required": True}, {"name": "price", "type": "decimal"}]).pk
    with phase(f"seed {size:,} profiles"):
        engaged = _profiles(account.pk, db.pk, size)
    total = size * EVENTS_PER_PROFILE
    end = datetime.now(UTC) - timedelta(minutes=10)
    params: dict[str, Any] = {
        "account": account.pk, "db": db.pk, "resource": news.pk, "n": size, "total": total,
        "engaged": engaged, "start": end - timedelta(days=DAYS),
    }
    sql = _events_sql(types)
    with phase(f"seed {total:,} events (INSERT .. SELECT, {CHUNK:,} a statement)"):
        for lo in range(1, total + 1, CHUNK):
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute("SET LOCAL work_mem = '256MB'")  # the join to the profile map and the sort by g
                cur.execute(sql, {**params, "lo": lo, "hi": min(total, lo + CHUNK - 1)})
    with phase("VACUUM ANALYZE"), connection.cursor() as cur:
        cur.execute(f"DROP TABLE {MAP_TABLE}")
        cur.execute("VACUUM ANALYZE history_event")
        cur.execute("VACUUM ANALYZE profiles_profile")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), count(*) FILTER (WHERE type_id = %s) FROM history_event WHERE account_id = %s",
                    [types["message.opened"], account.pk])
        events, opened = cur.fetchone()
    counts = {"profiles": size, "engaged": engaged, "events": events, "opened": opened}
    return Seeded(account.pk, db.pk, owner.pk, types["message.opened"], counts)


# --- measuring ---------------------------------------------------------------------------------


def _params(seeded: Seeded, *, now: datetime | None = None, **more: Any) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    return {"db": seeded.database_id, "opened": seeded.opened_type, "since30": now - timedelta(days=30),
            "since90": now - timedelta(days=90), **more}


def _scalar(sql: str, params: Any = None) -> Any:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def make_baseline_table() -> None:
    """A table shaped like the membership table: LIKE segments_segmentmember INCLUDING ALL (columns,
    primary key, indexes) when the core's migration is there, else the same shape by hand."""
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
        if _has_table(MEMBER_TABLE):
            cur.execute(f"CREATE TABLE {BASELINE_TABLE} (LIKE {MEMBER_TABLE} INCLUDING ALL)")
        else:
            cur.execute(f"CREATE TABLE {BASELINE_TABLE} (segment_id bigint NOT NULL, profile_id bigint NOT NULL, "
                        "added_at timestamptz NOT NULL, PRIMARY KEY (segment_id, profile_id))")
            cur.execute(f"CREATE INDEX {BASELINE_TABLE}_profile_idx ON {BASELINE_TABLE} (profile_id)")


BASELINE_INSERT = (f"INSERT INTO {BASELINE_TABLE} (segment_id, profile_id, added_at) "
                   f"SELECT %(segment)s, p.id, now() {MAIN_WHERE} ON CONFLICT DO NOTHING")


def tuned(cur: Any) -> None:
    """The session settings the core evaluates segments with (segments.services.segments.
    evaluation_settings: no JIT, more work_mem), so the baseline's SQL runs as well tuned."""
    try:
        from segments.services.segments import WORK_MEM
    except ImportError:
        WORK_MEM = "64MB"
    cur.execute("SET LOCAL jit = off")
    cur.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")


def baseline_store(seeded: Seeded, segment_id: int, now: datetime) -> tuple[float, int]:
    """The hand-written INSERT .. SELECT into the emptied baseline table; (seconds, rows)."""
    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {BASELINE_TABLE}")
    params = _params(seeded, segment=segment_id, now=now)
    with Timer() as t, transaction.atomic(), connection.cursor() as cur:
        tuned(cur)
        cur.execute(BASELINE_INSERT, params)
        rows = cur.rowcount
    return t.seconds, rows


def _explain(label: str, sql: str, params: Any = None) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) as detail lines; a write is rolled back."""
    detail(f"explain {label}: {sql if params is None else connection.ops.compose_sql(sql, params)}")
    with transaction.atomic(), connection.cursor() as cur:
        sid = transaction.savepoint()
        tuned(cur)
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        for (line,) in cur.fetchall():
            detail(f"  | {line}")
        transaction.savepoint_rollback(sid)


READS_DATA = re.compile(r"\b(history_event|profiles_profile)\b")


def _heavy_queries(call: Callable[[], Any]) -> list[str]:
    """The statements `call` runs that read profiles or events (the compiled query), as sent."""
    with CaptureQueriesContext(connection) as queries:
        call()
    return [q["sql"] for q in queries.captured_queries if READS_DATA.search(q["sql"])]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_s(values: list[float]) -> str:
    return f"{median(values) * 1000:.1f}ms" if values else "-"


def count_shapes(main_id: int, gold_id: int) -> list[Shape]:
    """The count-only shapes: the stored segment's own tree and three more."""
    in_main = {"type": "segment", "segment": main_id, "negate": False}
    in_gold = {"type": "segment", "segment": gold_id, "negate": False}
    return [
        Shape("main", MAIN_TREE, f"SELECT count(*) {MAIN_WHERE}"),
        Shape("fields_only", _group(CITY, POINTS), f"SELECT count(*) {PROFILES} AND {SQL_CITY} AND {SQL_POINTS}"),
        Shape("not_opened_90d", _group(NOT_OPENED_90), f"SELECT count(*) {PROFILES} AND {SQL_NOT_OPENED_90}"),
        Shape("segment_in_segment", _group(in_main, in_gold),
              f"SELECT count(*) {PROFILES} AND {SQL_IN_MAIN} AND {SQL_GOLD}"),
    ]


def _count_sql(sql: str, params: dict[str, Any]) -> int:
    with transaction.atomic(), connection.cursor() as cur:
        tuned(cur)
        cur.execute(sql, params)
        return cur.fetchone()[0]


def measure_counts(shapes: list[Shape], seeded: Seeded, main_id: int, services: Any, database: Any) -> None:
    """An untimed round that checks each live count against its SQL, then ROUNDS timed rounds of
    both. The live count picks its own `now` (to the second), so the check brackets it: the SQL's
    count for an instant just before the call and for one just after (a time window only drops
    events as time goes on, so the count moves one way), and the live count must lie between."""
    for shape in shapes:
        before = _params(seeded, main=main_id, now=datetime.now(UTC) - timedelta(seconds=1))
        shape.count, _ = services.segment_count(database=database, conditions=shape.tree)
        after = _params(seeded, main=main_id, now=datetime.now(UTC) + timedelta(seconds=1))
        shape.expected = sorted((_count_sql(shape.sql, before), _count_sql(shape.sql, after)))
    for _ in range(ROUNDS):
        for shape in shapes:
            params = _params(seeded, main=main_id)
            with Timer() as t:
                _count_sql(shape.sql, params)
            shape.baseline.append(t.seconds)
            with Timer() as t:
                _, elapsed_ms = services.segment_count(database=database, conditions=shape.tree)
            shape.project.append(t.seconds)
            shape.reported_ms.append(float(elapsed_ms))


# --- the benchmark -----------------------------------------------------------------------------


@register("segment", small_size=10_000)
def run(size: int) -> Result:
    """The BENCHMARKS.md segment (2 fields + opened an e-mail in 30 days) recalculated and stored, 10 events a profile, vs hand-written SQL."""
    seeded = kept(size) if KEEP else None
    if seeded is None:
        with phase("cleanup leftovers"):
            cleanup()
    try:
        seeded = seeded or seed(size)
        detail("data " + " ".join(f"{k}={v:,}" for k, v in seeded.counts.items()))
        return measure(size, seeded)
    finally:
        if KEEP:
            detail("BENCH_SEGMENT_KEEP=1: the data is kept for the next run at this size")
            with connection.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
        else:
            with phase("cleanup"):
                cleanup()


def measure(size: int, seeded: Seeded) -> Result:
    from accounts.access import Actor
    from accounts.models import User
    from profiles.models import ProfileDatabase
    from segments.models import Segment

    services = core()
    if services is None:
        raise RuntimeError("the segments core is missing: segments must be installed, and segments.services must have "
                           "segment_create, segment_recalculate and segment_count")
    database = ProfileDatabase.objects.get(pk=seeded.database_id)
    actor = Actor(user=User.objects.get(pk=seeded.owner_id))
    make_baseline_table()

    # The stored segment: a new updatable segment's first recalculation against the baseline's
    # INSERT .. SELECT into an empty table, alternating.
    project: list[float] = []
    baseline: list[float] = []
    with phase(f"recalculate x {ROUNDS + 1} and the baseline x {ROUNDS + 1} (first of each untimed)"):
        for rnd in range(ROUNDS + 1):
            segment = new_segment(services, database, actor, f"Active Berlin openers {rnd + 1}", MAIN_TREE, kind="updatable")
            now = datetime.now(UTC).replace(microsecond=0)  # one instant for both, so their members must be equal
            with Timer() as t:
                first = recalculate(services, segment, "create", now=now)
            seconds, rows = baseline_store(seeded, segment.pk, now)
            if rnd:
                project.append(t.seconds)
                baseline.append(seconds)
    segment = Segment.objects.get(pk=segment.pk)
    check_members(segment, rows)
    detail(f"baseline: {rows:,} members inserted in {fmt_s(baseline)} (median of {ROUNDS}: "
           f"{', '.join(f'{x * 1000:.0f}' for x in baseline)} ms)")
    detail(f"project: {segment.size:,} members in {fmt_s(project)} (median of {ROUNDS}: "
           f"{', '.join(f'{x * 1000:.0f}' for x in project)} ms); run entered={first.entered:,} left={first.left:,} "
           f"duration_ms={first.duration_ms} state={segment.state}")

    # Steady state: the same segment again, nobody enters or leaves.
    again: list[float] = []
    for _ in range(ROUNDS):
        with Timer() as t:
            run = recalculate(services, segment)
        again.append(t.seconds)
    detail(f"project: the same segment recalculated with no change in {fmt_s(again)} (median of {ROUNDS}); "
           f"run size={run.size:,} entered={run.entered:,} left={run.left:,}")

    ratio = median(project) / median(baseline)
    if (ratio > TARGET and median(project) - median(baseline) > EXPLAIN_GAP_S) or EXPLAIN_ALWAYS:
        detail(f"recalculation ratio {ratio:.2f} (target <= {TARGET}): EXPLAIN of the project's statement and the baseline's")
        for n, sql in enumerate(_heavy_queries(lambda: recalculate(services, segment)), 1):
            _explain(f"project recalculate #{n}", sql)
        _explain("baseline insert", BASELINE_INSERT, _params(seeded, segment=segment.pk))

    # Count-only shapes: the builder's live count against its hand-written SQL.
    gold = new_segment(services, database, actor, "Gold", _group(GOLD), kind="dynamic")
    shapes = count_shapes(segment.pk, gold.pk)
    with phase(f"count {len(shapes)} shapes x {ROUNDS + 1}, live count and SQL (first untimed)"):
        measure_counts(shapes, seeded, segment.pk, services, database)
    for shape in shapes:
        lo, hi = shape.expected
        if not lo <= shape.count <= hi:
            raise RuntimeError(f"count {shape.name}: segment_count says {shape.count:,}, the SQL {lo:,}..{hi:,}")
        r = median(shape.project) / median(shape.baseline)
        live = "ok" if median(shape.project) < LIVE_BUDGET_S else "OVER"
        detail(f"count {shape.name:<19} project={fmt_s(shape.project)} (query {median(shape.reported_ms):.0f}ms) "
               f"baseline={fmt_s(shape.baseline)} ratio={r:.2f} count={shape.count:,} live {live} (< {LIVE_BUDGET_S:.0f} s)")
    for shape in shapes:
        r = median(shape.project) / median(shape.baseline)
        slower = r > TARGET and median(shape.project) - median(shape.baseline) > EXPLAIN_GAP_S
        if slower or median(shape.project) >= LIVE_BUDGET_S or EXPLAIN_ALWAYS:
            for n, sql in enumerate(_heavy_queries(lambda s=shape: services.segment_count(database=database, conditions=s.tree)), 1):
                _explain(f"project count {shape.name} #{n}", sql)
            _explain(f"baseline count {shape.name}", shape.sql, _params(seeded, main=segment.pk))

    return Result(size=size, project_s=median(project), baseline_s=median(baseline), rate=size / median(project))


def check_members(segment: Any, rows: int) -> None:
    """The segment's stored members are exactly the baseline's."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM ((SELECT profile_id FROM {MEMBER_TABLE} WHERE segment_id = %(s)s EXCEPT "
                    f"SELECT profile_id FROM {BASELINE_TABLE}) UNION ALL (SELECT profile_id FROM {BASELINE_TABLE} EXCEPT "
                    f"SELECT profile_id FROM {MEMBER_TABLE} WHERE segment_id = %(s)s)) d", {"s": segment.pk})
        differ = cur.fetchone()[0]
        cur.execute(f"SELECT count(*) FROM {MEMBER_TABLE} WHERE segment_id = %s", [segment.pk])
        stored = cur.fetchone()[0]
    if differ or stored != rows or segment.size != rows:
        raise RuntimeError(f"the segment has {stored:,} members (size {segment.size}), the baseline {rows:,}; "
                           f"{differ:,} profiles differ")


def new_segment(services: Any, database: Any, actor: Any, name: str, tree: dict[str, Any], *, kind: str) -> Any:
    """A segment through the core's service, without the first calculation it would queue (the
    benchmark runs that itself, in this process, timed)."""
    schedule = {"every_hours": 24} if kind == "updatable" else None
    return services.segment_create(database=database, name=name, kind=kind, actor=actor, conditions=tree,
                                   schedule=schedule, compute=False)


def recalculate(services: Any, segment: Any, trigger: str = "manual", now: datetime | None = None) -> Any:
    """What the recalculation task runs: evaluate, store the membership, write the run (`now`, the
    instant its windows end, is the task's own clock unless given)."""
    return services.segment_recalculate(segment=segment, trigger=trigger, now=now)
