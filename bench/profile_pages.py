"""profile_pages: server time of the profile and resource pages on a big database.

Data: one account with a profile database of `size` profiles (default small size 100,000;
the issue's target is 1,000,000) with the custom fields city (indexed), loyalty_points
(indexed), vip and tier, inserted set-based with generate_series; 90% have a phone. Two
resources: "Shop news" (e-mail, SMS, web push; three categories) where every profile has an
e-mail subscription, every profile with a phone an SMS one and every tenth a web-push one
(2 x `size` subscriptions), and "Store events" (e-mail, on every twentieth profile). Statuses
are a realistic mix (~80% subscribed, 8% unsubscribed, 5% unconfirmed, 3% paused with a resume
date, 2% bounced, 1% complained, 1% blocked), some opted out of a category, and every
subscription has its consent-ledger rows (a "created" row, and a "status" row when it moved
on). All INSERT .. SELECT, then the counters' recount (a bulk load writes no counter deltas) and
VACUUM ANALYZE, as autovacuum leaves a production table.

Pages (django.test.Client in this process, signed in as the owner): the profile list (first
page), its page 6 by keyset cursor, a search by e-mail, a search by last name, a filter on
the indexed field city, a filter on loyalty_points > N, a profile card, the card's
subscriptions tab (rotating over a sample of profiles), the resource list and the resource
page of "Shop news" (its counters). Until a resource page's route exists, the selector behind
it (`resource_counts`, `resources_subscribed_counts`) is timed in its place and marked
"selector". Baseline: /healthz through the same middleware.
Target: p95 <= 300 ms on every page at 1M profiles with 2M subscriptions.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse

from accounts.access import Actor
from accounts.models import Account, User
from accounts.services import account_create
from bench.harness import Result, Timer, detail, phase, register
from bench.pages import Page, get_ok, measure, probe, signed_in, summarise
from profiles.models import Profile, ProfileDatabase
from profiles.services import database_create, field_add
from resources.models import ConsentRecord, Resource, Subscription
from resources.selectors import resource_counts, resources_subscribed_counts
from resources.services import resource_create, subscription_counts_rebuild

SLUG = "bench-profile-pages"
EMAIL = "bench-profile-pages-owner@bench.test"
CITIES = ["Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart", "Leipzig", "Dresden", "Vienna", "Zurich"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
        "Rossi", "Novak", "Kowalski", "Dubois", "Garcia", "Silva", "Jensen", "Nielsen", "Yilmaz", "Ivanova"]
FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Klara", "Leon"]
BUDGET_MS = 300
CARD_SAMPLE = 20  # profiles whose subscriptions tab is requested in turn
# Subscription status by a hash of the profile id into 0..99: (upper bound, status).
STATUS_MIX = [(80, "subscribed"), (88, "unsubscribed"), (93, "unconfirmed"), (96, "suspended"), (98, "bounced"),
              (99, "complained"), (100, "blocked")]
REASONS = {"unsubscribed": "unsubscribe link", "suspended": "taking a break", "bounced": "550 5.1.1 mailbox unavailable",
           "complained": "feedback loop", "blocked": "blocked by an admin"}


@register("profile_pages", small_size=100_000)
def run(size: int) -> Result:
    """Profile list, search, filters, card, subscriptions tab and resource pages at `size` profiles (2x subscriptions): p95 vs /healthz."""
    with phase("cleanup leftovers"):
        cleanup()
    clients: list[Client] = []
    try:
        with phase(f"seed {size:,} profiles"):
            account, owner, slug = seed(size)
        with phase(f"seed ~{2 * size:,} subscriptions and their ledger"):
            news = seed_subscriptions(account, slug, size)
        pages, baseline = build_pages(account, owner, slug, size, clients)
        pages += resource_pages(account, owner, news, size, clients)
        for page in [*pages, baseline]:
            queries, kib = probe(page)
            detail(f"queries {page.name}={queries} ({kib:.0f} KiB) {page.url}")
        with phase(f"measure {len(pages) + 1} urls"):
            measure([*pages, baseline])
    finally:
        with phase("cleanup"):
            for client in clients:
                client.logout()
            cleanup()
    return summarise(size, pages, baseline, " (target <= 300 ms at 1M profiles, 2M subscriptions)", budget_ms=BUDGET_MS)


def cleanup() -> None:
    with transaction.atomic():
        account = Account.objects.filter(slug=SLUG).first()
        if account is not None:
            # One statement a table, rather than the ORM's cascade collecting millions of rows. ANALYZE
            # first: with statistics from an emptier table (a crashed run) PostgreSQL plans the
            # foreign-key checks of the delete on profile_db_id_idx, a full index scan per row.
            with connection.cursor() as cursor:
                cursor.execute(f'ANALYZE "{Profile._meta.db_table}"')
                for model in (ConsentRecord, Subscription, Profile):
                    cursor.execute(f'DELETE FROM "{model._meta.db_table}" WHERE account_id = %s', [account.pk])
            account.delete()
        User.objects.filter(email=EMAIL).delete()


def seed(size: int) -> tuple[Account, User, str]:
    owner = User.objects.create_user(email=EMAIL, password=None, full_name="Bench Owner")
    account = account_create(name="Bench profile pages", slug=SLUG, owner=owner, actor=Actor.system(),
                             timezone_name="Europe/Berlin", default_phone_region="DE")
    actor = Actor.system()
    db = database_create(account=account, name="Big shop", slug="big-shop", actor=actor)
    field_add(database=db, name="city", label="City", type="string", indexed=True, actor=actor)
    field_add(database=db, name="loyalty_points", label="Loyalty points", type="integer", indexed=True, actor=actor)
    field_add(database=db, name="vip", label="VIP", type="boolean", actor=actor)
    field_add(database=db, name="tier", label="Tier", type="enum", choices=["bronze", "silver", "gold"], actor=actor)
    cities = "ARRAY[" + ",".join(f"'{c}'" for c in CITIES) + "]"
    lasts = "ARRAY[" + ",".join(f"'{c}'" for c in LAST) + "]"
    firsts = "ARRAY[" + ",".join(f"'{c}'" for c in FIRST) + "]"
    # Deterministic pseudo-random spread from the row number (g * prime % range).
    sql = f"""
        INSERT INTO "{Profile._meta.db_table}"
            (account_id, database_id, email, phone, first_name, last_name, birthday, gender, timezone, data,
             created_at, updated_at)
        SELECT %(account)s, %(db)s,
               'customer' || g || '@example.com',
               CASE WHEN g %% 10 <> 0 THEN '+49151' || (10000000 + g) ELSE NULL END,
               ({firsts})[1 + (g * 7) %% {len(FIRST)}],
               ({lasts})[1 + (g * 13) %% {len(LAST)}],
               NULL, '', '',
               jsonb_build_object(
                   'city', ({cities})[1 + (g * 31) %% {len(CITIES)}],
                   'loyalty_points', (g * 7919) %% 20000,
                   'vip', (g * 7919) %% 20000 > 15000,
                   'tier', CASE WHEN (g * 7919) %% 20000 > 15000 THEN 'gold'
                                WHEN (g * 7919) %% 20000 > 5000 THEN 'silver' ELSE 'bronze' END),
               now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval
        FROM generate_series(1::bigint, %(n)s::bigint) AS g
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"account": account.pk, "db": db.pk, "n": size})
        cursor.execute(f'ANALYZE "{Profile._meta.db_table}"')
    detail(f"data profiles={size} database={db.slug}")
    return account, owner, db.slug


def _rows(response) -> int:
    return len(re.findall(r'data-profile="\d+"', response.content.decode()))


def build_pages(account: Account, owner: User, slug: str, size: int, clients: list[Client]) -> tuple[list[Page], Page]:
    c = [signed_in(owner, account, clients)]
    base = f"/databases/{slug}/"
    first = get_ok(c[0], base)
    if _rows(first) == 0:
        raise RuntimeError(f"the profile list at {base} shows no rows")
    pages = [Page("list", base, c)]
    # Deep page by following next links a few times, then from there.
    url = base
    for _ in range(5):
        m = re.search(r'rel="next" href="([^"]+)"', get_ok(c[0], url).content.decode())
        if not m:
            break
        url = html.unescape(m.group(1))
    pages.append(Page("list_page6", url, c))
    target = size // 2
    email_url = f"{base}?q=customer{target}@example.com"
    if _rows(get_ok(c[0], email_url)) != 1:
        raise RuntimeError(f"search by e-mail {email_url} did not find exactly one profile")
    pages.append(Page("search_email", email_url, c))
    pages.append(Page("search_name", f"{base}?q=Novak", c))
    pages.append(Page("filter_city", f"{base}?f0=city&op0=eq&v0=Leipzig", c))
    pages.append(Page("filter_points", f"{base}?f0=loyalty_points&op0=gt&v0=19990", c))
    profile_id = Profile.objects.filter(database__slug=slug, database__account=account, email=f"customer{target}@example.com").values_list("id", flat=True).get()
    pages.append(Page("card", f"{base}profiles/{profile_id}/", c))
    for page in pages[3:6]:
        if _rows(get_ok(c[0], page.url)) == 0:
            raise RuntimeError(f"{page.name} shows no rows: {page.url}")
    return pages, Page("healthz", "/healthz", c)


# --- resources and subscriptions ------------------------------------------------------------------


def _status_sql(hash_sql: str) -> str:
    cases = " ".join(f"WHEN {hash_sql} < {bound} THEN '{status}'" for bound, status in STATUS_MIX[:-1])
    return f"CASE {cases} ELSE '{STATUS_MIX[-1][1]}' END"


def _subscribe_sql(*, channel: str, address: str, where: str, salt: int, meta: str = "'{}'::jsonb") -> str:
    """INSERT .. SELECT of one channel's subscriptions for the profiles of a database."""
    reasons = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in REASONS.items())
    return f"""
        INSERT INTO "{Subscription._meta.db_table}"
            (account_id, resource_id, profile_id, channel, address, status, reason, suspended_until, opted_out,
             priority, meta, source, confirmed_at, created_at, changed_at, updated_at)
        SELECT account_id, %(resource)s, id, '{channel}', address, status,
               CASE status {reasons} ELSE '' END,
               CASE WHEN status = 'suspended' THEN now() + ((1 + id %% 60) || ' days')::interval END,
               CASE WHEN status = 'subscribed' AND id %% 10 = 3 THEN '["offers"]'::jsonb ELSE '[]'::jsonb END,
               1, meta, CASE WHEN id %% 4 = 0 THEN 'form' ELSE 'import:bench' END,
               CASE WHEN status = 'subscribed' THEN created END, created, changed, changed
        FROM (
            SELECT p.account_id, p.id, {address} AS address, {meta} AS meta,
                   {_status_sql(f"((p.id * 7919 + {salt}) %% 100)")} AS status,
                   now() - ((p.id %% 700) || ' days')::interval AS created,
                   now() - ((p.id %% 90) || ' days')::interval AS changed
            FROM "{Profile._meta.db_table}" p
            WHERE p.database_id = %(db)s AND {where}
        ) s
    """


def seed_subscriptions(account: Account, slug: str, size: int) -> Resource:
    """Two resources through the service, ~2 x `size` subscriptions and their ledger set-based, then
    VACUUM ANALYZE. Returns "Shop news", the big one."""
    actor = Actor.system()
    db = ProfileDatabase.objects.get(account=account, slug=slug)
    news = resource_create(account=account, database=db, actor=actor, values={
        "name": "Shop news", "slug": "shop-news", "channels": ["email", "sms", "webpush"], "double_opt_in": ["email"],
        "categories": [{"key": "news", "label": "News"}, {"key": "offers", "label": "Offers"},
                       {"key": "events", "label": "Events"}],
        "description": "Weekly news and offers from the shop.",
    })
    events = resource_create(account=account, database=db, actor=actor, values={
        "name": "Store events", "slug": "store-events", "channels": ["email"],
    })
    webpush_meta = "jsonb_build_object('keys', jsonb_build_object('p256dh', md5(p.id::text), 'auth', md5(p.email)))"
    statements = [
        (news, _subscribe_sql(channel="email", address="p.email", where="p.email IS NOT NULL", salt=0)),
        (news, _subscribe_sql(channel="sms", address="p.phone", where="p.phone IS NOT NULL", salt=37)),
        (news, _subscribe_sql(channel="webpush", address="'https://push.example.com/send/' || p.id",
                              where="p.id %% 10 = 5", salt=71, meta=webpush_meta)),
        (events, _subscribe_sql(channel="email", address="p.email", where="p.email IS NOT NULL AND p.id %% 20 = 7",
                                salt=13)),
    ]
    ledger_columns = ("account_id, resource_id, subscription_id, profile_id, channel, address, action, old_status, "
                      "new_status, actor_type, actor_label, source, reason, user_agent, created_at")
    created_status = "CASE WHEN status = 'unconfirmed' THEN 'unconfirmed' ELSE 'subscribed' END"
    subs, ledger = Subscription._meta.db_table, ConsentRecord._meta.db_table
    with connection.cursor() as cursor:
        # A bulk load, as pg_restore does it: the rows are valid by construction (selected from the
        # profiles), and millions of deferred foreign-key checks would take most of the seed time.
        cursor.execute("SET session_replication_role = replica")
        try:
            for resource, sql in statements:
                cursor.execute(sql, {"resource": resource.pk, "db": db.pk})
            # Every subscription was created (as subscribed, or unconfirmed awaiting the opt-in)...
            cursor.execute(
                f"INSERT INTO {ledger} ({ledger_columns}) SELECT account_id, resource_id, id, profile_id, channel, address, "
                f"'created', '', {created_status}, 'system', '', source, '', '', created_at FROM {subs} WHERE account_id = %s",
                [account.pk],
            )
            # ... and those in another status since got there by a status change.
            cursor.execute(
                f"INSERT INTO {ledger} ({ledger_columns}) SELECT account_id, resource_id, id, profile_id, channel, address, "
                f"'status', 'subscribed', status, CASE WHEN status IN ('bounced', 'complained') THEN 'system' "
                f"ELSE 'subscriber' END, '', CASE WHEN status = 'unsubscribed' THEN 'link' ELSE 'bounce' END, reason, '', "
                f"changed_at FROM {subs} WHERE account_id = %s AND status NOT IN ('subscribed', 'unconfirmed')",
                [account.pk],
            )
        finally:
            cursor.execute("RESET session_replication_role")
        cursor.execute(f'SELECT count(*) FROM "{subs}" WHERE account_id = %s', [account.pk])
        n_subs = cursor.fetchone()[0]
        cursor.execute(f'SELECT count(*) FROM "{ledger}" WHERE account_id = %s', [account.pk])
        n_ledger = cursor.fetchone()[0]
    detail(f"data subscriptions={n_subs} ledger_rows={n_ledger} resources=2 (shop-news: email+sms+webpush)")
    # A bulk load writes no counter deltas: recount, as the daily check does (and time it).
    with Timer() as t:
        for resource in Resource.objects.filter(account=account):
            subscription_counts_rebuild(resource=resource)
    detail(f"subscription_counts_rebuild (the daily recount) of both resources: {t.seconds:.2f}s")
    with Timer() as t, connection.cursor() as cursor:
        for model in (Profile, Subscription, ConsentRecord):
            cursor.execute(f'VACUUM ANALYZE "{model._meta.db_table}"')
    detail(f"VACUUM ANALYZE (what autovacuum does in production): {t.seconds:.1f}s")
    for name, call in (("resource_counts", lambda: resource_counts(news)),
                       ("resources_subscribed_counts", lambda: resources_subscribed_counts(account))):
        explain(name, call)
    return news


def explain(name: str, call: Callable[[], object]) -> None:
    """Print EXPLAIN (ANALYZE, BUFFERS) of every query `call` runs, as detail lines."""
    with CaptureQueriesContext(connection) as queries:
        call()
    for q in queries.captured_queries:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {q['sql']}")
            detail(f"explain {name}: {q['sql']}")
            for (line,) in cursor.fetchall():
                detail(f"  | {line}")


def _route(name: str, args: list[object] | None = None) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def resource_pages(account: Account, owner: User, news: Resource, size: int, clients: list[Client]) -> list[Page]:
    """The card's subscriptions tab over a sample of profiles, the resource list and the resource page
    (or, until their routes exist, the selectors behind them)."""
    c = [signed_in(owner, account, clients)]
    db = news.database
    step = max(size // CARD_SAMPLE, 1)
    sample = [f"customer{g}@example.com" for g in range(1, size + 1, step)][:CARD_SAMPLE]
    ids = list(Profile.objects.filter(database=db, email__in=sample).values_list("id", flat=True))
    urls = [reverse("profiles:profile_detail", args=[db.slug, pk]) + "?tab=subscriptions" for pk in ids]
    for url in urls[:3]:
        if news.name not in get_ok(c[0], url).content.decode():
            raise RuntimeError(f"the subscriptions tab at {url} does not show {news.name!r}")
    pages = [Page("card_subscriptions", urls[0], c, urls=urls)]

    list_url = _route("resources:list")
    if list_url:
        if news.name not in get_ok(c[0], list_url).content.decode():
            raise RuntimeError(f"the resource list at {list_url} does not show {news.name!r}")
        pages.append(Page("resources_list", list_url, c))
    else:
        detail("resources:list does not exist yet: timing resources_subscribed_counts(account) in its place")
        pages.append(Page("resources_list", "(selector)", c, call=lambda: resources_subscribed_counts(account)))

    detail_url = _route("resources:detail", [news.slug])
    if detail_url:
        body = get_ok(c[0], detail_url).content.decode()
        subscribed = resource_counts(news)["email"]["subscribed"]
        if f"{subscribed:,}" not in body and str(subscribed) not in body:
            detail(f"note: {detail_url} does not show the e-mail subscribed count {subscribed} as digits")
        pages.append(Page("resource_detail", detail_url, c))
    else:
        detail("resources:detail does not exist yet: timing resource_counts(resource) in its place")
        pages.append(Page("resource_counts", "(selector)", c, call=lambda: resource_counts(news)))
    return pages
