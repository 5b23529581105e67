"""pages: server time of the main UI pages through the whole middleware stack.

Data: `size` small accounts (5-20 members each, audit events, a few invitations and jobs)
and one big account with min(size * 10, 5000) members, so the member list runs at scale.
The owner of the big account also belongs to a few small ones (the account switcher lists them).

Project path: django.test.Client in this process, signed in (session + current account), GETs
each page; the time is perf_counter around `client.get`. Baseline: the same client GETting
/healthz (liveness: no query) through the same middleware, the floor of framework cost. Requests are
interleaved round by round, so machine noise falls on every page and the baseline alike.

Result: project_s = p95 of the slowest page, baseline_s = p95 of /healthz,
rate = project requests per second of server time.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.db import connection, transaction
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.middleware import SESSION_KEY
from accounts.models import Account, AuditEvent, Invitation, Job, Membership, User, hash_secret
from accounts.permissions import Role
from bench.harness import (
    LAST_NAMES,
    Result,
    detail,
    format_ms,
    make_rng,
    percentiles,
    person_name,
    phase,
    register,
)

PREFIX = "bench-pages-"  # on every account slug and user e-mail this benchmark makes
DOMAIN = "bench.test"
REQUESTS = 200  # measured requests per page
WARMUP = 5  # rounds before measuring: templates compiled, connections open
SMALL_CLIENTS = 20  # "dashboard_small" rotates over this many small accounts' owners
PER_PAGE = 25  # the member table's page size (cdp.tables.Table.per_page)

TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
MEMBER_ROLES = (Role.ADMIN, Role.MARKETER, Role.MARKETER, Role.MARKETER, Role.ANALYST, Role.ANALYST)
# fmt: off
VERBS = (
    "auth.login", "auth.login", "auth.logout", "member.invited", "member.joined", "member.role_changed",
    "account.updated", "api_token.created", "audit.exported",
)
# fmt: on
JOB_STATES = (Job.State.SUCCEEDED, Job.State.SUCCEEDED, Job.State.FAILED, Job.State.RUNNING, Job.State.QUEUED)
HISTORY = timedelta(days=30)


@dataclass
class Seeded:
    big: Account
    big_owner: User
    small_owners: list[tuple[Account, User]]
    search_term: str
    search_matches: int
    counts: dict[str, int]


@dataclass
class Page:
    """One thing to time. Request by request it GETs `url`, or the next of `urls` (a sample of
    cards, say), with the next of `clients`; or, where a page does not exist yet, it times
    `call()` (a selector) in its place."""

    name: str
    url: str
    clients: list[Client]
    times: list[float] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    call: Callable[[], object] | None = None

    def url_for(self, i: int) -> str:
        return self.urls[i % len(self.urls)] if self.urls else self.url

    def request(self, i: int) -> float:
        """One timed request (or call); raises unless the page answers 200."""
        if self.call is not None:
            start = time.perf_counter()
            self.call()
            return time.perf_counter() - start
        url = self.url_for(i)
        client = self.clients[i % len(self.clients)]
        start = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}, expected 200")
        return elapsed


@register("pages", small_size=200)
def run(size: int) -> Result:
    """UI pages (dashboard, member list, search, page 2) server time p95 vs /healthz; size = accounts."""
    with phase("cleanup leftovers"):
        cleanup()
    clients: list[Client] = []
    try:
        with phase("seed"):
            seeded = seed(size)
        detail("data " + " ".join(f"{k}={v}" for k, v in seeded.counts.items()))
        pages, baseline = build_pages(seeded, clients)
        for page in [*pages, baseline]:
            queries, kib = probe(page)
            detail(f"queries {page.name}={queries} ({kib:.0f} KiB) {page.url}")
        with phase(f"measure {len(pages) + 1} urls x {REQUESTS} requests"):
            measure([*pages, baseline])
    finally:
        with phase("cleanup"):
            for client in clients:
                client.logout()  # deletes its session row
            cleanup()

    return summarise(size, pages, baseline)


def summarise(size: int, pages: list[Page], baseline: Page, note: str = "", budget_ms: float | None = None) -> Result:
    """Detail lines per page (with `ok`/`OVER` against `budget_ms`, the p95 target, if given),
    then the result: the slowest page's p95 against the baseline's."""
    for page in [*pages, baseline]:
        kind = "baseline" if page is baseline else ("selector" if page.call else "page")
        stats = percentiles(page.times)
        verdict = ""
        if budget_ms is not None and page is not baseline:
            verdict = f" {'ok' if stats['p95'] * 1000 <= budget_ms else 'OVER'} (p95 budget {budget_ms:.0f}ms)"
        detail(f"{kind:<8} {page.name:<18} {format_ms(stats)}{verdict}")
    worst = max(pages, key=lambda p: percentiles(p.times)["p95"])
    detail(f"slowest page by p95: {worst.name}{note}")
    project_times = [t for page in pages for t in page.times]
    return Result(
        size=size,
        project_s=percentiles(worst.times)["p95"],
        baseline_s=percentiles(baseline.times)["p95"],
        rate=len(project_times) / sum(project_times),
    )


# --- data --------------------------------------------------------------------------------------


def cleanup() -> None:
    """Delete everything a run made (accounts cascade to memberships, events, invitations, jobs)."""
    with transaction.atomic():
        Account.objects.filter(slug__startswith=PREFIX).delete()
        User.objects.filter(email__startswith=PREFIX).delete()


def seed(size: int) -> Seeded:
    rng = make_rng("pages", size)
    now = timezone.now()

    def ago(span: timedelta) -> datetime:
        return now - span * rng.random()

    accounts = [
        Account(
            name=f"Bench {rng.choice(LAST_NAMES)} & Co {i}",
            slug=f"{PREFIX}{i:05d}",
            timezone=rng.choice(TIMEZONES),
        )
        for i in range(size)
    ]
    big = Account(name="Bench big account", slug=f"{PREFIX}big", timezone="Europe/Berlin")
    Account.objects.bulk_create([*accounts, big], batch_size=2000)

    users: list[User] = []
    memberships: list[Membership] = []
    members_of: dict[int, list[User]] = {}

    def add_member(account: Account, email_local: str, role: str) -> User:
        joined = ago(HISTORY * 12)
        user = User(
            email=f"{PREFIX}{email_local}@{DOMAIN}",
            full_name=person_name(rng),
            password=UNUSABLE_PASSWORD_PREFIX,
            date_joined=joined,
        )
        users.append(user)
        memberships.append(Membership(account=account, user=user, role=role, created_at=joined))
        members_of.setdefault(account.pk, []).append(user)
        return user

    small_owners = []
    for i, account in enumerate(accounts):
        owner = add_member(account, f"{i:05d}-00", Role.OWNER)
        small_owners.append((account, owner))
        for j in range(1, rng.randint(5, 20)):
            add_member(account, f"{i:05d}-{j:02d}", rng.choice(MEMBER_ROLES))
    big_members = min(size * 10, 5000)
    big_owner = add_member(big, "big-00000", Role.OWNER)
    for j in range(1, big_members):
        add_member(big, f"big-{j:05d}", Role.OWNER if j == 1 else rng.choice(MEMBER_ROLES))
    User.objects.bulk_create(users, batch_size=2000)
    for account in accounts[:5]:
        memberships.append(Membership(account=account, user=big_owner, role=Role.ADMIN))
    Membership.objects.bulk_create(memberships, batch_size=2000)

    events: list[AuditEvent] = []
    invitations: list[Invitation] = []
    jobs: list[Job] = []
    for account in [*accounts, big]:
        is_big = account is big
        members = members_of[account.pk]
        for _ in range(min(size * 25, 25000) if is_big else rng.randint(10, 60)):
            actor = rng.choice(members)
            target = rng.choice(members)
            events.append(
                AuditEvent(
                    account=account,
                    actor=actor,
                    actor_label=actor.email,
                    verb=rng.choice(VERBS),
                    target_type="accounts.user",
                    target_id=str(target.pk),
                    target_label=target.email,
                    ip=f"192.0.2.{rng.randint(1, 254)}",
                    created_at=ago(HISTORY),
                )
            )
        for k in range(30 if is_big else rng.randint(0, 3)):
            invitations.append(
                Invitation(
                    account=account,
                    email=f"{PREFIX}invite-{account.slug}-{k}@{DOMAIN}",
                    role=rng.choice(MEMBER_ROLES),
                    key_hash=hash_secret(f"{PREFIX}{account.slug}-{k}"),
                    invited_by=members[0],
                    created_at=ago(HISTORY),
                    expires_at=now + timedelta(days=rng.uniform(-3, 7)),
                )
            )
        for k in range(8 if is_big else rng.randint(0, 3)):
            state = rng.choice(JOB_STATES)
            total = rng.randint(1000, 100_000)
            jobs.append(
                Job(
                    account=account,
                    kind="bench.pages",
                    title=f"Bench job {k}",
                    state=state,
                    total=total,
                    progress=total if state == Job.State.SUCCEEDED else rng.randint(0, total),
                    created_by=rng.choice(members),
                    created_at=ago(HISTORY),
                )
            )
    AuditEvent.objects.bulk_create(events, batch_size=2000)
    Invitation.objects.bulk_create(invitations, batch_size=2000)
    Job.objects.bulk_create(jobs, batch_size=2000)

    search_term = rng.choice(LAST_NAMES).lower()
    search_matches = sum(
        1 for u in members_of[big.pk] if search_term in u.email.lower() or search_term in u.full_name.lower()
    )
    counts = {
        "accounts": len(accounts) + 1,
        "big_members": big_members,
        "users": len(users),
        "memberships": len(memberships),
        "audit_events": len(events),
        "invitations": len(invitations),
        "jobs": len(jobs),
    }
    return Seeded(big, big_owner, small_owners, search_term, search_matches, counts)


# --- requests ----------------------------------------------------------------------------------


def signed_in(user: User, account: Account, clients: list[Client]) -> Client:
    client = Client()
    client.force_login(user)
    session = client.session
    session[SESSION_KEY] = account.pk
    session.save()
    clients.append(client)
    return client


def get_ok(client: Client, url: str) -> HttpResponse:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}, expected 200")
    return response


def member_rows(response: HttpResponse) -> list[str]:
    return re.findall(r'<tr data-member="([^"]+)"', response.content.decode())


def build_pages(seeded: Seeded, clients: list[Client]) -> tuple[list[Page], Page]:
    """The pages to measure (with checks that they show what they should) and the baseline."""
    big = [signed_in(seeded.big_owner, seeded.big, clients)]
    small = [signed_in(owner, account, clients) for account, owner in seeded.small_owners[:SMALL_CLIENTS]]

    members_url = "/settings/members/"
    first = get_ok(big[0], members_url)
    first_rows = member_rows(first)
    expected = min(PER_PAGE, seeded.counts["big_members"])
    if len(first_rows) != expected:
        raise RuntimeError(f"member list shows {len(first_rows)} rows, expected {expected}")
    pages = [
        Page("dashboard", "/", big),
        Page("dashboard_small", "/", small),
        Page("members", members_url, big),
    ]

    search_url = f"{members_url}?q={seeded.search_term}"
    found = member_rows(get_ok(big[0], search_url))
    if len(found) != min(PER_PAGE, seeded.search_matches):
        raise RuntimeError(
            f"search {seeded.search_term!r} shows {len(found)} rows, expected {min(PER_PAGE, seeded.search_matches)}"
        )
    pages.append(Page("members_search", search_url, big))

    next_link = re.search(r'rel="next" href="([^"]+)"', first.content.decode())
    if next_link:
        page2_url = html.unescape(next_link.group(1))
        page2_rows = member_rows(get_ok(big[0], page2_url))
        if not page2_rows or set(page2_rows) & set(first_rows):
            raise RuntimeError("page 2 of the member list is empty or repeats page 1")
        pages.append(Page("members_page2", page2_url, big))
    else:
        detail("members_page2 skipped: the big account fits on one page")
    return pages, Page("healthz", "/healthz", big)


def probe(page: Page) -> tuple[int, float]:
    """SQL queries and response size of one request to the page (size 0 for a call)."""
    with CaptureQueriesContext(connection) as queries:
        if page.call is not None:
            page.call()
            return len(queries.captured_queries), 0.0
        response = get_ok(page.clients[0], page.url_for(0))
    return len(queries.captured_queries), len(response.content) / 1024


def measure(pages: list[Page]) -> None:
    for i in range(WARMUP + REQUESTS):
        for page in pages:
            elapsed = page.request(i)
            if i >= WARMUP:
                page.times.append(elapsed)
