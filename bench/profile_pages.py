"""profile_pages: server time of the profile pages on a big database.

Data: one account with a profile database of `size` profiles (default small size 100,000;
the issue's target is 1,000,000) with the custom fields city (indexed), loyalty_points
(indexed), vip and tier, inserted set-based with generate_series, then ANALYZEd.

Pages (django.test.Client in this process, signed in as the owner): the profile list (first
page), its page 200 by keyset cursor, a search by e-mail, a search by last name, a filter on
the indexed field city, a filter on loyalty_points > N, and a profile card. Baseline: /healthz
through the same middleware. Target: p95 <= 300 ms on every page at 1M profiles.
"""

from __future__ import annotations

import html
import re

from django.db import connection, transaction
from django.test import Client

from accounts.access import Actor
from accounts.models import Account, User
from accounts.services import account_create
from bench.harness import Result, detail, phase, register
from bench.pages import Page, get_ok, measure, probe, signed_in, summarise
from profiles.models import Profile
from profiles.services import database_create, field_add

SLUG = "bench-profile-pages"
EMAIL = "bench-profile-pages-owner@bench.test"
CITIES = ["Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart", "Leipzig", "Dresden", "Vienna", "Zurich"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
        "Rossi", "Novak", "Kowalski", "Dubois", "Garcia", "Silva", "Jensen", "Nielsen", "Yilmaz", "Ivanova"]
FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Klara", "Leon"]


@register("profile_pages", small_size=100_000)
def run(size: int) -> Result:
    """Profile list, search, filters and card at `size` profiles: p95 vs /healthz."""
    with phase("cleanup leftovers"):
        cleanup()
    clients: list[Client] = []
    try:
        with phase(f"seed {size:,} profiles"):
            account, owner, slug = seed(size)
        pages, baseline = build_pages(account, owner, slug, size, clients)
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
    return summarise(size, pages, baseline, " (target <= 300 ms at 1M profiles)")


def cleanup() -> None:
    with transaction.atomic():
        account = Account.objects.filter(slug=SLUG).first()
        if account is not None:
            # One statement for the profiles, rather than the ORM's cascade collecting a million rows.
            with connection.cursor() as cursor:
                cursor.execute(f'DELETE FROM "{Profile._meta.db_table}" WHERE account_id = %s', [account.pk])
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
               CASE WHEN g %% 3 = 0 THEN '+49151' || (10000000 + g) ELSE NULL END,
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
