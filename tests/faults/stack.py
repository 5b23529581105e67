"""The system under fault: seeded data, a mailing, the drain loop and the invariant checker
(RELIABILITY.md invariants 1-4), shared by every fault test.

- `make_world(account, user)`: a profile database, a resource with e-mail, a verified sending
  domain with its DKIM key (RSA-2048) and a sender, a marketing template with a tracked link and
  the unsubscribe links, all through the apps' services.
- `add_subscribers(world, n, domains)`: n profiles with a subscribed e-mail subscription each
  (bulk_create: set-based, like an import), addresses spread over `domains`.
- `broadcast(world, ...)`: a broadcast created and launched through mailings.services.lifecycle.
- `drain(run, ...)`: tick (sweeper + dispatch) until the run is finished and every row is
  terminal, bounded in time. Leases and back-offs are minutes in production; when nothing has
  moved for `stall` seconds (every worker idle or dead), the drain expires the run's leases and
  delays in the database, which is what waiting them out would do.
- `check_invariants(run, smtp, ...)`: invariants 1-4 and the counters, with the ledger state in
  the assertion message.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from tests.faults.servers import FaultSmtp

# Ledger ids a dispatch task gets (COMMON.md: batches of 500): the most one worker has in flight.
BATCH = 500

SUBJECT = "Hello {{ profile.first_name }}, news from {{ resource.name }}"
HTML = """<!DOCTYPE html><html><head><style>p { color: #333333; }</style></head><body>
<p>Hello {{ profile.first_name }} {{ profile.last_name }},</p>
<p>Our spring collection is here: <a href="https://shop.example/spring">have a look</a>.</p>
<p><a href="{{ links.preferences }}">Preferences</a> &middot; <a href="{{ links.unsubscribe }}">Unsubscribe</a></p>
</body></html>"""


@dataclass
class World:
    account: Any
    actor: Any
    database: Any
    resource: Any
    sender: Any
    template: Any
    version: Any
    subscribers: list[tuple[int, int, str]] = field(default_factory=list)  # (profile, subscription, address)


def make_world(account: Any, user: Any) -> World:
    from accounts.access import Actor
    from bench.render.data import _sending
    from content.services import template_create, template_version_save
    from profiles.services import database_create
    from resources.services import resource_create

    actor = Actor(user=user)
    system = Actor.system()
    db = database_create(account=account, name="Shop", slug="shop", actor=system)
    resource = resource_create(account=account, database=db, actor=system,
                               values={"name": "Shop news", "slug": "shop-news", "channels": ["email"]})
    sender, *_ = _sending(account)
    template = template_create(account=account, name="Spring", database=db, kind="marketing", actor=system)
    version = template_version_save(template=template, channel="email", actor=system,
                                    data={"subject": SUBJECT, "html": HTML})
    return World(account=account, actor=actor, database=db, resource=resource, sender=sender,
                 template=template, version=version)


def add_subscribers(world: World, n: int, domains: tuple[str, ...] = ("a.example.com", "b.example.com", "c.example.com"),
                    *, prefix: str = "user") -> list[tuple[int, int, str]]:
    """n profiles with one subscribed e-mail subscription each, set-based. Returns (profile id,
    subscription id, address) in id order (the order the dispatch hands them out)."""
    from profiles.models import Profile
    from resources.models import Subscription

    start = len(world.subscribers)
    profiles = [Profile(account=world.account, database=world.database,
                        email=f"{prefix}{i}@{domains[i % len(domains)]}", first_name=f"P{i}", last_name="Fault")
                for i in range(start, start + n)]
    Profile.objects.bulk_create(profiles)
    subs = Subscription.objects.bulk_create([
        Subscription(account=world.account, resource=world.resource, profile_id=p.pk, channel="email",
                     address=p.email, status="subscribed", source="import:faults")
        for p in profiles
    ])
    made = [(s.profile_id, s.pk, s.address) for s in subs]
    world.subscribers += made
    return made


def mailing_values(world: World, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": extra.pop("name", "Spring broadcast"), "kind": "broadcast", "transactional": False,
        "channel": "email", "resource": world.resource.pk, "sender": world.sender.pk, "provider": None,
        "template": world.template.pk, "audience": "database", "include_segments": [], "exclude_segments": [],
        "categories": [], "schedule": {"mode": "now"}, "trigger": {}, "speed_limit": None, "send_window": None,
        "track_opens": True, "track_clicks": True, "cap": None,
    }
    values.update(extra)
    return values


def broadcast(world: World, **extra: Any) -> Any:
    """Create and launch a broadcast; returns the mailing (its run appears once launched)."""
    from mailings.services.lifecycle import mailing_create, mailing_launch

    mailing = mailing_create(account=world.account, actor=world.actor, values=mailing_values(world, **extra))
    return mailing_launch(mailing=mailing, actor=world.actor)


def wait_for_run(mailing: Any, *, timeout: float = 60.0, planned: bool = True, stall: float = 3.0) -> Any:
    """The mailing's (first) run, once it exists (and is planned), bounded; ticking meanwhile. A
    run still planning after `stall` seconds lost its planning task (the broker was down): the
    tick re-publishes it once it is STUCK_PLANNING old, so the tick is asked as if that had passed."""
    from mailings.models import Run
    from mailings.services.dispatch import dispatch_tick
    from mailings.services.lifecycle import STUCK_PLANNING, mailings_tick

    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        run = Run.objects.filter(mailing_id=mailing.pk).order_by("id").first()
        if run is not None and (not planned or run.planned_at is not None or run.state != Run.State.PLANNING):
            return run
        late = run is not None and time.monotonic() - started > stall
        mailings_tick(now=timezone.now() + STUCK_PLANNING + timedelta(seconds=1) if late else None)
        dispatch_tick()
        time.sleep(0.2)
    raise AssertionError(f"mailing {mailing.pk} has no {'planned ' if planned else ''}run after "
                         f"{timeout}s; runs: {list(Run.objects.filter(mailing_id=mailing.pk).values('id', 'state'))}")


class ApiClient:
    """A JSON API client of its own (a Django test Client each: safe to use one per thread)."""

    def __init__(self, token: str) -> None:
        from django.test import Client

        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def post(self, path: str, data: Any = None, *, headers: dict[str, str] | None = None) -> Any:
        import json

        return self.client.post(path, json.dumps(data if data is not None else {}), content_type="application/json",
                                headers={**self.headers, **(headers or {})})


def trigger_call(api: Any, mailing: Any, address: str, *, key: str, data: dict[str, Any] | None = None) -> Any:
    """POST /api/v1/mailings/{id}/trigger for the profile with this e-mail, with an Idempotency-Key."""
    body = {"profile": {"email": address}, "data": data or {"order": {"number": key, "total": "42.00"}}}
    return api.post(f"/api/v1/mailings/{mailing.pk}/trigger", body, headers={"Idempotency-Key": key})


# --- the drain ----------------------------------------------------------------------------------


def _counts(run_id: int) -> dict[str, int]:
    with connection.cursor() as cur:
        cur.execute("SELECT status, COUNT(*) FROM mailings_ledgerentry WHERE run_id = %s GROUP BY status", [run_id])
        return dict(cur.fetchall())


def ledger_state(run_id: int, *, sample: int = 8) -> str:
    """The run and its ledger by (status, reason), and a few open rows: what an assertion shows."""
    from mailings.models import LedgerEntry, Run

    run = Run.objects.filter(pk=run_id).values("id", "state", "planned", "exclusions", "error").first()
    with connection.cursor() as cur:
        cur.execute("SELECT status, reason, COUNT(*), MAX(attempts) FROM mailings_ledgerentry WHERE run_id = %s "
                    "GROUP BY status, reason ORDER BY status, reason", [run_id])
        groups = cur.fetchall()
    open_rows = list(LedgerEntry.objects.filter(run_id=run_id, status__in=["queued", "sending"]).order_by("id")
                     .values("id", "status", "attempts", "lease_until", "not_before", "wire_at")[:sample])
    lines = [f"run {run}", *(f"  {s:<9} {r or '-':<16} {n:>6} (max attempts {a})" for s, r, n, a in groups)]
    lines += [f"  open: {row}" for row in open_rows]
    return "\n".join(lines)


def fast_forward(run_id: int) -> int:
    """Expire the run's hand-out leases and delays (what waiting them out would do) and forget
    the throttle's back-offs. Returns the rows touched. Only called when nothing moved for a while.
    Claims (`sending` rows) are left to their own lease (the workers' MAILINGS_CLAIM_LEASE, 6 s):
    "nothing moved" is also what a live worker looks like while it builds its first chunk (compile,
    key, connect) or renders to its time limit, and expiring its claim would make the sweep take
    the rows from it (a second attempt, or an ambiguous row when its chunk was on the wire)."""
    from django.conf import settings

    past = timezone.now() - timedelta(seconds=1)
    with connection.cursor() as cur:
        cur.execute("UPDATE mailings_ledgerentry SET lease_until = %s WHERE run_id = %s "
                    "AND status = 'queued' AND lease_until > %s", [past, run_id, past])
        n = cur.rowcount
        cur.execute("UPDATE mailings_ledgerentry SET not_before = %s WHERE run_id = %s "
                    "AND status = 'queued' AND not_before > %s", [past, run_id, past])
        n += cur.rowcount
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        keys = list(client.scan_iter(match="mailings:bo:*", count=500))
        if keys:
            client.delete(*keys)
    return n


class DrainTimeout(AssertionError):
    pass


def drain(run: Any, *, timeout: float = 40.0, stall: float = 3.0, progress: Any = None,
          finished: bool = True) -> dict[str, Any]:
    """Tick until the run is finished and none of its rows is queued or sending (bounded by
    `timeout`); `finished=False` for a trigger run, which stays open all day: only its rows count. `progress()` returns something that changes while work gets done (the SMTP
    server's arrivals); when neither it nor the ledger moved for `stall` seconds, the run's leases
    and delays are expired (fast_forward). Returns {"seconds", "fast_forwards", "counts"}."""
    from mailings.models import Run
    from mailings.services.dispatch import dispatch_tick, ledger_sweep

    started = time.monotonic()
    deadline = started + timeout
    last: Any = None
    changed = time.monotonic()
    forwards = 0
    while time.monotonic() < deadline:
        ledger_sweep()
        dispatch_tick()
        counts = _counts(run.pk)
        state = Run.objects.filter(pk=run.pk).values_list("state", flat=True).first()
        if ((state in Run.FINISHED_STATES or not finished)
                and not counts.get("queued") and not counts.get("sending")):
            return {"seconds": time.monotonic() - started, "fast_forwards": forwards, "counts": counts}
        signature = (tuple(sorted(counts.items())), state, progress() if progress else None)
        now = time.monotonic()
        if signature != last:
            last, changed = signature, now
        elif now - changed > stall:
            fast_forward(run.pk)
            forwards += 1
            changed = now
        time.sleep(0.25)
    raise DrainTimeout(f"run {run.pk} did not drain in {timeout}s\n{ledger_state(run.pk)}")


# --- the invariants -----------------------------------------------------------------------------


def check_invariants(run: Any, smtp: FaultSmtp, *, forbidden: dict[str, float] | None = None,
                     max_ambiguous: int | None = None, marketing: bool = True) -> dict[str, int]:
    """RELIABILITY.md invariants 1-4 on a drained run, and the counters against the ledger.

    forbidden: address -> time.time() when its unsubscribe / suppression / erasure committed: no
    message may arrive for it after that (the tests pick rows claimed well after the commit).
    Returns the counts by status."""
    from django.db.models import Sum

    from mailings.models import LedgerEntry, MailingStat, Run

    state = ledger_state(run.pk)
    run = Run.objects.get(pk=run.pk)
    rows = list(LedgerEntry.objects.filter(run_id=run.pk).values("id", "status", "reason", "address", "attempts"))
    by_status = Counter(r["status"] for r in rows)
    # 1. every row terminal, every skip and failure with its reason
    open_rows = [r for r in rows if r["status"] not in LedgerEntry.TERMINAL]
    assert not open_rows, f"invariant 1: {len(open_rows)} rows not terminal\n{state}"
    unexplained = [r for r in rows if r["status"] in ("skipped", "failed", "ambiguous") and not r["reason"]]
    assert not unexplained, f"invariant 1: rows without a reason: {unexplained[:5]}\n{state}"
    assert run.state in Run.FINISHED_STATES, f"run not finished: {run.state}\n{state}"
    # 2. the counts add up to the plan
    total = sum(by_status[s] for s in ("sent", "failed", "skipped", "ambiguous"))
    assert total == run.planned == len(rows), f"invariant 2: {dict(by_status)} vs planned {run.planned}\n{state}"
    stats = dict(MailingStat.objects.filter(run_id=run.pk, metric__in=["sent", "failed", "skipped", "ambiguous"])
                 .values("metric").annotate(total=Sum("delta")).values_list("metric", "total"))
    for metric in ("sent", "failed", "skipped", "ambiguous"):
        assert stats.get(metric, 0) == by_status[metric], (
            f"counter {metric}={stats.get(metric, 0)} but the ledger has {by_status[metric]}\n{state}")
    # 3. at most once per row at the server; sent rows arrived; skipped and failed ones did not
    arrivals = smtp.snapshot()
    refs = Counter(a.ref for a in arrivals)
    ids = {f"L{r['id']}": r for r in rows}
    if marketing:
        dups = {ref: n for ref, n in refs.items() if n > 1 and ref in ids}
        assert not dups, f"invariant 3: duplicates at the SMTP server {dict(list(dups.items())[:10])}\n{state}"
    accepted = Counter(a.ref for a in arrivals if not a.dropped)
    missing = [r["id"] for r in rows if r["status"] == "sent" and not accepted.get(f"L{r['id']}")]
    assert not missing, f"invariant 3: {len(missing)} rows sent but never accepted, e.g. {missing[:5]}\n{state}"
    stray = [ref for ref in refs if ref in ids and ids[ref]["status"] in ("skipped", "failed")
             and accepted.get(ref)]
    assert not stray, f"invariant 3: skipped/failed rows accepted by the server: {stray[:5]}\n{state}"
    if max_ambiguous is not None:
        assert by_status["ambiguous"] <= max_ambiguous, (
            f"{by_status['ambiguous']} ambiguous rows, at most {max_ambiguous} expected\n{state}")
    # 4. nothing after an unsubscribe / suppression / erasure committed
    for address, committed in (forbidden or {}).items():
        late = [a for a in arrivals if a.rcpt == address.lower() and a.at > committed]
        assert not late, f"invariant 4: {address} got {len(late)} message(s) after its opt-out committed\n{state}"
    return dict(by_status)
