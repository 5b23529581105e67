"""history: server time of the profile timeline and the event explorer over `size` events.

Data, set-based (INSERT .. SELECT from generate_series, in chunks of 1M rows, like
profile_pages): two accounts, "Bench history" (90% of the events; databases "shop" with 72% of
the profiles and "app-users" with 18%) and "Bench history B" (10%; one database); size/10
profiles (at least 1,000). Events over the last 365 days in arrival order (ids follow
received_at, a few seconds after occurred_at), typed like a sending platform: message sent 30%,
delivered 28%, opened 10%, clicked 3%, bounces, unsubscribes, page views 15%, app events, orders,
forms, and each account's own cart_abandoned (4.4%, with sku and price) made through
`eventtype_create`. Message events carry a mailing id and a channel, API events an idempotency
key; properties are 50-250 bytes of JSON. Every hundredth event belongs to one profile of "shop",
so it has size/100 events (100,000 at the 10M target). Then VACUUM ANALYZE, as autovacuum leaves
a production table.

Pages (django.test.Client in this process, signed in as the owner, as bench.pages does;
htmx requests carry HX-Request like the browser's):
- card_events: the profile card's Events tab (first page) of the big profile;
- card_events_typical: the same tab of 20 ordinary profiles in turn (~10 events each);
- timeline_next: the tab's next rows by cursor (infinite scroll, htmx);
- timeline_deep: the next rows from half-way down (the 50,000th event at the target);
- timeline_type / timeline_types: the tab filtered by one type / by three (htmx result block);
- timeline_range: the tab filtered by a week, five months ago;
- explorer: /history/ (first page); explorer_next: its page 2 by cursor; explorer_type (cart_abandoned);
  explorer_db (the database "app-users"); explorer_prop: a property search sku=... in its default
  window (24 hours); explorer_prop_7d: the same over 7 days (the longest window it allows).
Until a route exists, the selector behind it is timed in its place ("selector").

Baseline: for each page, the very SQL statements it ran (captured once, session and
permission lookups included) replayed through a separate psycopg connection, interleaved with
the pages: what the page costs the database. Result: project_s = total server time of the
measured requests, baseline_s = total time of their SQL alone, so the ratio is the
Django/template overhead; rate = requests a second. Target: p95 <= 300 ms on every page with a
100k-event profile and 10M events.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse

from bench.harness import (
    Result,
    _pg_connect_kwargs,
    delete_accounts,
    detail,
    format_ms,
    percentiles,
    phase,
    register,
)
from bench.pages import Page, get_ok, measure, signed_in

PREFIX = "bench-history"
EMAIL = "bench-history-owner@bench.test"
BUDGET_MS = 300
CHUNK = 1_000_000  # events an INSERT .. SELECT
TYPICAL = 20  # ordinary profiles whose Events tab is requested in turn
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "events-results"}

# (upper bound of h in 0..999, type name): the mix of a sending platform with a shop integration.
MIX = [
    (300, "message.sent"), (580, "message.delivered"), (680, "message.opened"), (710, "message.clicked"),
    (716, "message.soft_bounced"), (720, "message.hard_bounced"), (724, "message.unsubscribed"),
    (725, "message.complained"), (875, "page.viewed"), (900, "app.event"), (918, "order.placed"),
    (933, "order.paid"), (936, "order.cancelled"), (956, "form.submitted"), (1000, "cart_abandoned"),
]


@dataclass
class Seeded:
    account_id: int
    owner_id: int
    shop: str  # database slugs of the big account
    app: str
    heavy_id: int  # the profile with size/100 events
    heavy_events: int
    typical_ids: list[int]
    sku: str  # a cart_abandoned sku of the last 24 hours
    sku_week: str  # one of the last 7 days
    counts: dict[str, int]


# --- data --------------------------------------------------------------------------------------


def cleanup() -> None:
    """Delete everything a run made (see harness.delete_accounts)."""
    from accounts.models import Account, User

    delete_accounts(list(Account.objects.filter(slug__startswith=PREFIX)))
    User.objects.filter(email=EMAIL).delete()


def _profiles(account_id: int, database_id: int, n: int, tag: str) -> None:
    """n profiles in one INSERT .. SELECT."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO profiles_profile (account_id, database_id, email, phone, first_name, last_name, birthday, "
            "gender, timezone, data, created_at, updated_at) "
            "SELECT %s, %s, %s || g || '@example.com', NULL, "
            "(ARRAY['Anna','Ben','Clara','David','Elena','Felix','Greta','Hugo'])[1 + g %% 8], "
            "(ARRAY['Müller','Schmidt','Rossi','Novak','Dubois','Garcia','Jensen','Kim'])[1 + (g * 7) %% 8], "
            "NULL, '', '', '{}'::jsonb, now() - (g || ' seconds')::interval, now() "
            "FROM generate_series(1, %s) AS g",
            [account_id, database_id, tag, n],
        )


def _profile_map(shop: int, app: int, b_db: int) -> None:
    """A temporary table numbering each database's profiles 0..n-1 (dbk 0 = shop, 1 = app-users,
    2 = the other account's), which the event generator joins: no assumption that ids are consecutive."""
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_history_map")
        cur.execute(
            "CREATE TEMP TABLE bench_history_map AS SELECT CASE database_id WHEN %s THEN 0 WHEN %s THEN 1 ELSE 2 END AS dbk, "
            "(row_number() OVER (PARTITION BY database_id ORDER BY id) - 1)::bigint AS idx, id, database_id "
            "FROM profiles_profile WHERE database_id IN (%s, %s, %s)",
            [shop, app, shop, app, b_db],
        )
        cur.execute("ALTER TABLE bench_history_map ADD PRIMARY KEY (dbk, idx)")
        cur.execute("ANALYZE bench_history_map")


def _mapped(dbk: int, idx: int) -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT id FROM bench_history_map WHERE dbk = %s AND idx = %s", [dbk, idx])
        return cur.fetchone()[0]


def _type_case(type_ids: dict[str, int]) -> str:
    whens = " ".join(f"WHEN h < {bound} THEN {type_ids[name]}" for bound, name in MIX[:-1])
    return f"CASE {whens} ELSE {type_ids[MIX[-1][1]]} END"


def _events_sql(type_ids_a: dict[str, int], type_ids_b: dict[str, int]) -> str:
    """One chunk [lo, hi] of the event stream; %(...)s are the layout's numbers."""
    sys_ids = {name: type_ids_a[name] for _, name in MIX if name != "cart_abandoned"}
    cart_a, cart_b = type_ids_a["cart_abandoned"], type_ids_b["cart_abandoned"]
    message = f"t IN ({', '.join(str(sys_ids[n]) for n in sys_ids if n.startswith('message.'))})"
    t = {name: sys_ids.get(name) for name in sys_ids}
    cart = f"t IN ({cart_a}, {cart_b})"
    return f"""
    INSERT INTO history_event (account_id, database_id, profile_id, type_id, occurred_at, received_at, channel,
        resource_id, mailing_id, run_id, ledger_id, link_id, properties, source, idempotency_key, machine, untyped)
    SELECT acct, m.database_id, m.id, CASE WHEN t = {cart_a} AND acct <> %(a)s THEN {cart_b} ELSE t END, ts,
        ts + ((g %% 7) || ' seconds')::interval,
        CASE WHEN {message} THEN 'email' WHEN t = {t['page.viewed']} THEN 'web' WHEN t = {t['app.event']} THEN 'app' ELSE '' END,
        NULL,
        CASE WHEN {message} THEN 1 + g / 25000 END,
        NULL,
        CASE WHEN {message} THEN g END,
        NULL,
        CASE
          WHEN t = {t['message.sent']} THEN jsonb_build_object('template', 'weekly-' || (g / 25000), 'subject', 'Weekly news #' || (g / 25000) || ': new arrivals for spring')
          WHEN t = {t['message.clicked']} THEN jsonb_build_object('url', 'https://shop.example.com/p/sku-' || (g %% 5000) || '?utm_source=newsletter&utm_campaign=weekly-' || (g / 25000))
          WHEN t = {t['message.soft_bounced']} THEN jsonb_build_object('reason', '452 4.2.2 mailbox full', 'code', '452')
          WHEN t = {t['message.hard_bounced']} THEN jsonb_build_object('reason', '550 5.1.1 user unknown', 'code', '550')
          WHEN t = {t['page.viewed']} THEN jsonb_build_object('url', 'https://shop.example.com/p/sku-' || (g %% 5000), 'title', 'Product ' || (g %% 5000) || ' | Northwind shop', 'referrer', 'https://www.google.com/')
          WHEN t = {t['app.event']} THEN jsonb_build_object('name', 'screen_view', 'screen', 'product/' || (g %% 5000))
          WHEN t = {t['order.placed']} THEN jsonb_build_object('order_id', 'o-' || g, 'total', ((g %% 20000) / 100.0)::text, 'currency', 'EUR', 'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || lpad((g %% 5000)::text, 5, '0'), 'qty', 1 + g %% 3)))
          WHEN t = {t['order.paid']} THEN jsonb_build_object('order_id', 'o-' || (g - 1000), 'total', ((g %% 20000) / 100.0)::text, 'currency', 'EUR')
          WHEN t = {t['order.cancelled']} THEN jsonb_build_object('order_id', 'o-' || (g - 5000), 'reason', 'customer request')
          WHEN t = {t['form.submitted']} THEN jsonb_build_object('form', 'newsletter-footer', 'url', 'https://shop.example.com/')
          WHEN {cart} THEN jsonb_build_object('sku', 'SKU-' || lpad((g %% 5000)::text, 5, '0'), 'price', ((g %% 20000) / 100.0)::text, 'cart_id', 'c-' || (g / 7), 'quantity', 1 + g %% 4)
          ELSE '{{}}'::jsonb END,
        CASE WHEN {message} THEN 'mailing' ELSE 'api' END,
        CASE WHEN t = {t['message.delivered']} THEN NULL ELSE md5(g::text) END,
        t IN ({t['message.opened']}, {t['message.clicked']}) AND g %% 10 = 0, false
    FROM (
      SELECT g, h, {_type_case(type_ids_a)} AS t,
        CASE WHEN g %% 10 = 0 THEN %(b)s ELSE %(a)s END AS acct,
        CASE WHEN g %% 10 = 0 THEN 2 WHEN g %% 100 = 1 OR (g * 48271) %% %(a_n)s < %(shop_n)s THEN 0 ELSE 1 END AS dbk,
        CASE WHEN g %% 10 = 0 THEN (g * 48271) %% %(b_n)s
             WHEN g %% 100 = 1 THEN 0
             WHEN (g * 48271) %% %(a_n)s < %(shop_n)s THEN (g * 48271) %% %(a_n)s
             ELSE (g * 48271) %% %(a_n)s - %(shop_n)s END AS idx,
        %(start)s::timestamptz + (g::float8 / %(size)s * 365 * 86400) * interval '1 second'
          + ((g * 7919) %% 600 - 300) * interval '1 second' AS ts
      FROM (SELECT g, ((g * 2654435761) %% 4294967296) %% 1000 AS h
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g) s
    ) e JOIN bench_history_map m ON m.dbk = e.dbk AND m.idx = e.idx
    ORDER BY g"""


def seed(size: int) -> Seeded:
    from accounts.access import Actor
    from accounts.models import User
    from accounts.services import account_create
    from history.catalogue import SYSTEM_TYPES
    from history.services import eventtype_create
    from profiles.services import database_create

    owner = User.objects.create_user(email=EMAIL, password=None, full_name="Bench Owner")
    system = Actor.system()
    a = account_create(name="Bench history", slug=f"{PREFIX}-a", owner=owner, actor=system, timezone_name="Europe/Berlin")
    b = account_create(name="Bench history B", slug=f"{PREFIX}-b", owner=owner, actor=system, timezone_name="UTC")
    shop = database_create(account=a, name="Shop", slug="shop", actor=system)
    app = database_create(account=a, name="App users", slug="app-users", actor=system)
    b_db = database_create(account=b, name="Customers", slug="customers", actor=system)
    schema = [{"name": "sku", "type": "string", "required": True}, {"name": "price", "type": "decimal"}]
    types_a = {t.name: t.id for t in SYSTEM_TYPES}
    types_b = dict(types_a)
    types_a["cart_abandoned"] = eventtype_create(account=a, name="cart_abandoned", label="Cart abandoned",
                                                 properties=schema, actor=system).pk
    types_b["cart_abandoned"] = eventtype_create(account=b, name="cart_abandoned", label="Cart abandoned",
                                                 properties=schema, actor=system).pk

    profiles = max(1000, size // 10)
    shop_n, app_n = int(profiles * 0.72), int(profiles * 0.18)
    b_n = profiles - shop_n - app_n
    with phase(f"seed {profiles:,} profiles"):
        _profiles(a.pk, shop.pk, shop_n, "shop")
        _profiles(a.pk, app.pk, app_n, "app")
        _profiles(b.pk, b_db.pk, b_n, "b")
        _profile_map(shop.pk, app.pk, b_db.pk)
    heavy = _mapped(0, 0)  # every hundredth event; ordinary events reach it only when (g * 48271) % a_n == 0
    end = datetime.now(UTC) - timedelta(minutes=10)
    params: dict[str, Any] = {
        "a": a.pk, "b": b.pk, "a_n": shop_n + app_n, "shop_n": shop_n, "b_n": b_n,
        "start": end - timedelta(days=365), "size": size,
    }
    sql = _events_sql(types_a, types_b)
    with phase(f"seed {size:,} events (INSERT .. SELECT, {CHUNK:,} a statement)"):
        for lo in range(1, size + 1, CHUNK):
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute("SET LOCAL work_mem = '256MB'")  # the join to the profile map and the sort by g
                cur.execute(sql, {**params, "lo": lo, "hi": min(size, lo + CHUNK - 1)})
    with phase("VACUUM ANALYZE"), connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE history_event")
        cur.execute("VACUUM ANALYZE profiles_profile")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM history_event WHERE account_id = %s AND profile_id = %s", [a.pk, heavy])
        heavy_events = cur.fetchone()[0]
        cur.execute("SELECT account_id, count(*) FROM history_event WHERE account_id IN (%s, %s) GROUP BY 1", [a.pk, b.pk])
        per_account = dict(cur.fetchall())
        cur.execute("SELECT properties->>'sku' FROM history_event WHERE account_id = %s AND type_id = %s "
                    "ORDER BY id DESC LIMIT 1", [a.pk, types_a["cart_abandoned"]])
        sku = cur.fetchone()[0]
        cur.execute("SELECT properties->>'sku' FROM history_event WHERE account_id = %s AND type_id = %s AND "
                    "received_at < now() - interval '5 days' ORDER BY id DESC LIMIT 1", [a.pk, types_a["cart_abandoned"]])
        sku_week = cur.fetchone()[0]
        step = max(1, shop_n // (TYPICAL + 1))
        typical = [_mapped(0, step * (i + 1)) for i in range(TYPICAL)]
        cur.execute("DROP TABLE bench_history_map")
    counts = {"events": size, "account_a": per_account.get(a.pk, 0), "account_b": per_account.get(b.pk, 0),
              "profiles": profiles, "heavy_profile_events": heavy_events}
    return Seeded(a.pk, owner.pk, shop.slug, app.slug, heavy, heavy_events, typical, sku, sku_week, counts)


# --- pages -------------------------------------------------------------------------------------


def _route(name: str, args: list[Any] | None = None) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def _rows(response: Any) -> list[str]:
    return re.findall(r'data-event="(\d+)"', response.content.decode())


def _next(response: Any) -> str | None:
    m = re.search(r'hx-get="([^"]*cursor=[^"]+)"', response.content.decode())
    return html.unescape(m.group(1)) if m else None


@dataclass
class HtmxPage(Page):
    """A Page whose requests carry htmx's headers."""

    def request(self, i: int) -> float:
        url = self.url_for(i)
        client = self.clients[i % len(self.clients)]
        start = time.perf_counter()
        response = client.get(url, **HTMX)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} (htmx) answered {response.status_code}, expected 200")
        return elapsed


def _check(client: Client, url: str, *, htmx: bool = False, least: int = 1, name: str) -> Any:
    response = client.get(url, **HTMX) if htmx else get_ok(client, url)
    if response.status_code != 200:
        raise RuntimeError(f"{name}: GET {url} answered {response.status_code}")
    rows = _rows(response)
    if len(rows) < least:
        raise RuntimeError(f"{name}: {url} shows {len(rows)} events, expected at least {least}")
    return response


def build_pages(seeded: Seeded, clients: list[Client]) -> list[Page]:
    from accounts.models import Account, User
    from history import selectors
    from profiles.models import Profile

    account = Account.objects.get(pk=seeded.account_id)
    c = [signed_in(User.objects.get(pk=seeded.owner_id), account, clients)]
    heavy = Profile.objects.get(pk=seeded.heavy_id)
    pages: list[Page] = []
    card = _route("profiles:profile_detail", [seeded.shop, seeded.heavy_id])
    rows = _route("history:timeline", [seeded.shop, seeded.heavy_id])
    with connection.cursor() as cur:
        cur.execute("SELECT occurred_at, id FROM history_event WHERE account_id = %s AND profile_id = %s "
                    "ORDER BY occurred_at DESC, id DESC OFFSET %s LIMIT 1",
                    [seeded.account_id, seeded.heavy_id, seeded.heavy_events // 2])
        deep_at, deep_id = cur.fetchone()
    deep_cursor = selectors.time_cursor(deep_at, deep_id)
    week_from = (datetime.now(UTC) - timedelta(days=157)).date()
    week = [("from", week_from.isoformat()), ("to", (week_from + timedelta(days=6)).isoformat())]
    one_type, three_types = [("type", "order.placed")], [("type", n) for n in ("order.placed", "cart_abandoned", "message.clicked")]

    if card and rows:
        first = _check(c[0], f"{card}?tab=events", least=50, name="card_events")
        pages.append(Page("card_events", f"{card}?tab=events", c))
        typical = [f"{_route('profiles:profile_detail', [seeded.shop, pk])}?tab=events" for pk in seeded.typical_ids]
        _check(c[0], typical[0], name="card_events_typical")
        pages.append(Page("card_events_typical", typical[0], c, urls=typical))
        next_url = _next(first)
        if not next_url:
            raise RuntimeError("the Events tab of the big profile has no next-page link")
        second = _check(c[0], next_url, htmx=True, least=50, name="timeline_next")
        if set(_rows(second)) & set(_rows(first)):
            raise RuntimeError("the timeline's next page repeats the first")
        pages.append(HtmxPage("timeline_next", next_url, c))
        deep = f"{rows}?{urlencode([('cursor', deep_cursor)])}"
        _check(c[0], deep, htmx=True, least=50, name="timeline_deep")
        pages.append(HtmxPage("timeline_deep", deep, c))
        for name, params, least in (("timeline_type", one_type, 1), ("timeline_types", three_types, 1),
                                    ("timeline_range", week, 1)):
            url = f"{rows}?{urlencode(params)}"
            _check(c[0], url, htmx=True, least=least, name=name)
            pages.append(HtmxPage(name, url, c))
    else:
        detail("history:timeline does not exist yet: timing history.selectors.timeline in its place")
        catalogue = selectors.event_types(account)
        since = datetime.combine(week_from, datetime.min.time(), account.tzinfo)
        pages += [
            Page("timeline", "(selector)", c, call=lambda: selectors.timeline(heavy)),
            Page("timeline_deep", "(selector)", c, call=lambda: selectors.timeline(heavy, cursor=deep_cursor)),
            Page("timeline_type", "(selector)", c,
                 call=lambda: selectors.timeline(heavy, types=catalogue.ids(["order.placed"]))),
            Page("timeline_types", "(selector)", c,
                 call=lambda: selectors.timeline(heavy, types=catalogue.ids([v for _, v in three_types]))),
            Page("timeline_range", "(selector)", c,
                 call=lambda: selectors.timeline(heavy, since=since, until=since + timedelta(days=7))),
        ]

    events = _route("history:events")
    explorer_pages = [
        ("explorer", [], 50), ("explorer_type", [("type", "cart_abandoned")], 50), ("explorer_db", [("db", seeded.app)], 50),
        ("explorer_prop", [("prop", f"sku={seeded.sku}")], 1),
        ("explorer_prop_7d", [("prop", f"sku={seeded.sku_week}"), ("window", "7d")], 1),
    ]
    if events:
        for name, params, least in explorer_pages:
            url = f"{events}?{urlencode(params)}" if params else events
            response = _check(c[0], url, least=least, name=name)
            pages.append(Page(name, url, c))
            if name == "explorer":
                next_url = _next(response)
                if not next_url:
                    raise RuntimeError("the explorer has no next-page link")
                _check(c[0], next_url, htmx=True, least=50, name="explorer_next")
                pages.append(HtmxPage("explorer_next", next_url, c))
    else:
        detail("history:events does not exist yet: timing history.selectors.explorer in its place")
        catalogue = selectors.event_types(account)
        from profiles.models import ProfileDatabase

        app_db = ProfileDatabase.objects.get(account=account, slug=seeded.app)
        pages += [
            Page("explorer", "(selector)", c, call=lambda: selectors.explorer(account)),
            Page("explorer_type", "(selector)", c,
                 call=lambda: selectors.explorer(account, types=catalogue.ids(["cart_abandoned"]))),
            Page("explorer_db", "(selector)", c, call=lambda: selectors.explorer(account, database=app_db)),
            Page("explorer_prop", "(selector)", c, call=lambda: selectors.explorer(account, prop=f"sku={seeded.sku}")),
        ]
    return pages


# --- the baseline: the same SQL, replayed --------------------------------------------------------

_SKIP = re.compile(r"^\s*(SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\b", re.I)


def capture(page: Page) -> list[str]:
    """The SQL one request (or call) of the page runs, as sent (client-side binding: literal values)."""
    client = page.clients[0]
    with CaptureQueriesContext(connection) as queries:
        if page.call is not None:
            page.call()
        elif isinstance(page, HtmxPage):
            client.get(page.url_for(0), **HTMX)
        else:
            client.get(page.url_for(0))
    return [q["sql"] for q in queries.captured_queries if not _SKIP.match(q["sql"])]


def replay_page(page: Page, conn: Any) -> Page:
    """A Page (a call) that runs the page's captured SQL on `conn`; a page that rotates over URLs
    gets each URL's own SQL in the same rotation."""
    scripts = [capture(_one(page, url)) for url in page.urls] if page.urls else [capture(page)]
    turn = iter(range(1 << 62))

    def call() -> None:
        for sql in scripts[next(turn) % len(scripts)]:
            cur = conn.execute(sql)  # no parameters: sent exactly as Django sent it
            if cur.description is not None:
                cur.fetchall()

    replay = Page(f"sql:{page.name}", "(sql)", page.clients, call=call)
    replay.sql_count = len(scripts[0])  # type: ignore[attr-defined]
    return replay


def _one(page: Page, url: str) -> Page:
    return HtmxPage(page.name, url, page.clients) if isinstance(page, HtmxPage) else Page(page.name, url, page.clients)


def replay_connection() -> Any:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    conn = psycopg.connect(**_pg_connect_kwargs(db, db["NAME"]), autocommit=True)
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


# --- the benchmark -----------------------------------------------------------------------------


@register("history", small_size=100_000)
def run(size: int) -> Result:
    """Profile timeline (100k-event profile) and event explorer at N events: p95 per page vs the same SQL replayed."""
    with phase("cleanup leftovers"):
        cleanup()
    clients: list[Client] = []
    conn = None
    try:
        seeded = seed(size)
        detail("data " + " ".join(f"{k}={v:,}" for k, v in seeded.counts.items()))
        pages = build_pages(seeded, clients)
        conn = replay_connection()
        replays = [replay_page(p, conn) for p in pages]
        for page, replay in zip(pages, replays, strict=True):
            detail(f"queries {page.name}={replay.sql_count} {page.url}")  # type: ignore[attr-defined]
        with phase(f"measure {len(pages)} pages and their SQL x 200"):
            measure([x for pair in zip(pages, replays, strict=True) for x in pair])
    finally:
        if conn is not None:
            conn.close()
        with phase("cleanup"):
            for client in clients:
                client.logout()
            cleanup()
    return summarise(size, pages, replays)


def summarise(size: int, pages: list[Page], replays: list[Page]) -> Result:
    for page, replay in zip(pages, replays, strict=True):
        kind = "selector" if page.call else "page"
        stats, sql = percentiles(page.times), percentiles(replay.times)
        verdict = "ok" if stats["p95"] * 1000 <= BUDGET_MS else "OVER"
        detail(f"{kind:<8} {page.name:<20} {format_ms(stats)} {verdict} (p95 budget {BUDGET_MS}ms) | "
               f"sql p50={sql['p50'] * 1000:.1f}ms p95={sql['p95'] * 1000:.1f}ms")
    worst = max(pages, key=lambda p: percentiles(p.times)["p95"])
    detail(f"slowest page by p95: {worst.name} {percentiles(worst.times)['p95'] * 1000:.1f}ms "
           f"(target <= {BUDGET_MS} ms with a 100k-event profile and 10M events)")
    project = sum(sum(p.times) for p in pages)
    baseline = sum(sum(r.times) for r in replays)
    n = sum(len(p.times) for p in pages)
    return Result(size=size, project_s=project, baseline_s=baseline, rate=n / project)
