"""The engine's tick (beat, every 2 s; safe to run twice at once): poll the entries that come
from no event (new profiles, segment movements), then hand the due participations out in
batches, each claimed with a short hand-out lease in the same statement so a second tick does
not hand it out again while its task waits in the queue."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from scenarios.models import Participation, Scenario

log = logging.getLogger(__name__)

BATCH = 500
MAX_BATCHES = 50  # bounded work per tick: 25,000 participations; the next tick takes the rest
HANDOUT_LEASE = timedelta(seconds=60)


def _prep(value: datetime) -> object:
    return Participation._meta.get_field("next_run_at").get_db_prep_value(value, connection)


def due_claim(*, now: datetime, limit: int = BATCH) -> list[int]:
    """Claim up to `limit` due participations of active scenarios (open, next_run_at <= now, no
    live lease), oldest due first, setting their hand-out lease; returns their ids. On PostgreSQL
    rows locked by another claim or by a running advance are skipped (SKIP LOCKED)."""
    p = connection.ops.quote_name(Participation._meta.db_table)
    s = connection.ops.quote_name(Scenario._meta.db_table)
    lock = " FOR UPDATE OF p SKIP LOCKED" if connection.vendor == "postgresql" else ""
    free = "(lease_until IS NULL OR lease_until < %s)"
    sql = (f"UPDATE {p} SET lease_until = %s WHERE {free} AND id IN ("  # noqa: S608 (names and placeholders only)
           f"SELECT p.id FROM {p} p JOIN {s} s ON s.id = p.scenario_id "
           f"WHERE p.state IN ('active', 'waiting') AND p.next_run_at <= %s "
           f"AND (p.lease_until IS NULL OR p.lease_until < %s) AND s.state = 'active' "
           f"ORDER BY p.next_run_at, p.id LIMIT %s{lock}) RETURNING id")
    with connection.cursor() as cur:
        cur.execute(sql, [_prep(now + HANDOUT_LEASE), _prep(now), _prep(now), _prep(now), limit])
        return sorted(r[0] for r in cur.fetchall())


def engine_tick(*, now: datetime | None = None, max_batches: int = MAX_BATCHES) -> int:
    """Poll the entries (`scenarios.entries.entries_poll`), then hand out the due participations in
    batches of BATCH to `participations_advance_task` (after each batch's commit). Returns how
    many were handed out."""
    from mailings.queue import publish
    from scenarios.tasks import participations_advance_task

    now = now or timezone.now()
    try:
        from scenarios.entries import entries_poll

        entries_poll(now=now)
    except Exception:  # an entry bug must not stop the participations already inside from moving
        log.exception("scenarios: entries_poll failed; the engine goes on")
    handed = 0
    for _ in range(max_batches):
        with transaction.atomic():
            ids = due_claim(now=now)
            if ids:
                transaction.on_commit(lambda ids=ids: publish(participations_advance_task, ids))
        handed += len(ids)
        if len(ids) < BATCH:
            break
    return handed
