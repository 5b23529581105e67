"""The dispatch's settings and its ledger statements: handing rows out, claiming them, stamping a
chunk before it goes on the wire, releasing a failed batch's rows. Each is ONE statement, written
for PostgreSQL (FOR UPDATE SKIP LOCKED) and SQLite (a conditional UPDATE: one writer at a time)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

from mailings import throttle as throttle_mod
from mailings.models import LedgerEntry, Mailing
from mailings.services.sending import Row, id_filter

Status = LedgerEntry.Status
Reason = LedgerEntry.Reason

BATCH_SIZE = 500  # ledger ids a task
CHUNK_SIZE = 100  # rows a wire stamp: at most this many rows are in doubt when a worker dies
MAX_BATCHES_PER_KICK = 200  # one huge run does not starve the tick
MAX_ATTEMPTS = 5
MAX_SLEEP = 2.0  # seconds a batch may sleep for one provider/mailing token wait; longer waits defer
SLEEP_BUDGET = 20.0  # seconds a batch may sleep for tokens in all
TEMPORARY_CODES = (421, 429, 450, 451, 452)
LIVE_MAILING_STATES = (Mailing.State.SENDING, Mailing.State.SCHEDULED)


def seconds(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def handout_lease() -> timedelta:
    """How long a handed-out row waits for its task to claim it (MAILINGS_HANDOUT_LEASE, s)."""
    return timedelta(seconds=seconds("MAILINGS_HANDOUT_LEASE", 600))


def claim_lease() -> timedelta:
    """How long a claim lasts without news (MAILINGS_CLAIM_LEASE, s); a batch renews it as it goes."""
    return timedelta(seconds=seconds("MAILINGS_CLAIM_LEASE", 300))


def get_throttle() -> throttle_mod.Throttle:
    """The process's throttle (tests replace this function)."""
    return throttle_mod.default_throttle()


def is_trigger_queue(mailing: Mailing) -> bool:
    return mailing.kind == Mailing.Kind.TRIGGER or mailing.transactional


# At most this many rows handed out at once go to the trigger queue: a trigger that fires for a
# crowd (a scenario step moving 500 profiles, a bulk API call, a backlog of delayed triggers) is
# bulk work, and on the trigger queue it would make every single event's message wait behind it.
URGENT_ROWS = 50


def task_for(mailing: Mailing, rows: int = 1) -> Any:
    """The task (so the queue) for `rows` rows of the mailing handed out together: the trigger
    queue for trigger and transactional mail, unless there are more than URGENT_ROWS of them."""
    from mailings.tasks import batch_send_bulk_task, batch_send_trigger_task

    return batch_send_trigger_task if is_trigger_queue(mailing) and rows <= URGENT_ROWS else batch_send_bulk_task



# --- handing out ---------------------------------------------------------------------------------


def handout(run_id: int, now: datetime, limit: int, ids: Sequence[int] | None = None,
            after: int | None = None) -> list[int]:
    """Lease up to `limit` due queued rows of the run that are not handed out (or whose handout
    lease passed), of `ids` if given, above id `after` if given: one UPDATE; returns their ids,
    ascending."""
    adapt = connection.ops.adapt_datetimefield_value
    where = ("run_id = %s AND status = 'queued' AND (not_before IS NULL OR not_before <= %s) "
             "AND (lease_until IS NULL OR lease_until <= %s)")
    params: list[Any] = [run_id, adapt(now), adapt(now)]
    source, source_params = "mailings_ledgerentry", []
    lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    if ids is not None and connection.vendor == "postgresql":
        source, source_params = by_ids(ids, columns="id, run_id, status, not_before, lease_until")
        lock = ""  # by_ids locks each row it reads
    elif ids is not None:
        only, only_params = id_filter("id", ids)
        where, params = f"{where} AND {only}", [*params, *only_params]
    if after is not None:
        where, params = f"{where} AND id > %s", [*params, after]
    rows = f"SELECT id FROM {source} WHERE {where} ORDER BY id LIMIT %s{lock}"  # noqa: S608 (placeholders only)
    with connection.cursor() as cur:
        cur.execute(f"UPDATE mailings_ledgerentry SET lease_until = %s WHERE id IN ({rows}) RETURNING id",  # noqa: S608
                    [adapt(now + handout_lease()), *source_params, *params, limit])
        return sorted(r[0] for r in cur.fetchall())


def by_ids(ids: Sequence[int], *, columns: str) -> tuple[str, list[Any]]:
    """PostgreSQL: a FROM item `l` of the ledger rows with these ids, each read by one probe of
    the primary key and locked (FOR UPDATE SKIP LOCKED: a row another transaction holds is left
    out), whatever the planner believes of the rows' run. Filter them outside: a condition inside
    the LIMIT 1 subquery could let the planner read them by another index. With the ids as an
    `id = ANY` list beside `run_id = ..`, a planner whose statistics had not seen the run yet (a
    trigger day run growing between two ANALYZEs) read every row of the run for each batch."""
    return (f"unnest(%s::bigint[]) AS k(wanted) CROSS JOIN LATERAL (SELECT {columns} FROM mailings_ledgerentry "  # noqa: S608
            "WHERE id = k.wanted LIMIT 1 FOR UPDATE SKIP LOCKED) AS l", [list(ids)])


# Rows one hand-out statement takes: a kick of 100k rows hands them out slice by slice, and each
# slice's batches are published as soon as it is committed. In one statement the first batch
# waited for all 100k rows to be leased (~3 s on the 2-core machine, its workers idle meanwhile),
# and that statement's row locks were held as long.
KICK_SLICE = BATCH_SIZE * 10


def kick_limit(mailing: Mailing) -> int:
    """Rows one kick hands out: a speed-limited mailing gets about two ticks' worth, so its
    batches do not sit in workers waiting for tokens."""
    if mailing.speed_limit:
        return max(1, min(BATCH_SIZE * MAX_BATCHES_PER_KICK, math.ceil(mailing.speed_limit / 6)))
    return BATCH_SIZE * MAX_BATCHES_PER_KICK


# --- claiming -----------------------------------------------------------------------------------


def claim(run_id: int, ids: Sequence[int], now: datetime, lease: datetime | None = None) -> list[int]:
    """queued -> sending for the given rows of the run that are due, while the run sends and its
    mailing is live: ONE statement (SKIP LOCKED on PostgreSQL: rows another worker is claiming
    are left to it). Counts an attempt and sets the claim lease (`lease`, default now +
    claim_lease()); the lease's exact value is the batch's token: `stamp` and `release` touch
    only rows that still carry it. Returns the claimed ids."""
    adapt = connection.ops.adapt_datetimefield_value
    if not ids:
        return []
    live = "('sending', 'scheduled')"
    due = "run_id = %s AND status = 'queued' AND (not_before IS NULL OR not_before <= %s)"
    if connection.vendor == "postgresql":
        # Each id read by its primary key (`by_ids`): a batch's claim reads the batch's rows only.
        source, params = by_ids(ids, columns="id, run_id, status, not_before")
        target = f"id IN (SELECT id FROM {source} WHERE {due})"  # noqa: S608 (constants and placeholders only)
    else:
        where, params = id_filter("id", ids)
        target = f"{where} AND {due}"
    sql = (
        "UPDATE mailings_ledgerentry SET status = 'sending', lease_until = %s, attempts = attempts + 1, "  # noqa: S608
        f"updated_at = %s, wire_at = NULL WHERE {target} AND EXISTS (SELECT 1 FROM mailings_run r "
        "JOIN mailings_mailing m ON m.id = r.mailing_id "
        f"WHERE r.id = %s AND r.state = 'sending' AND m.state IN {live}) RETURNING id"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [adapt(lease or now + claim_lease()), adapt(now), *params, run_id, adapt(now), run_id])
        return sorted(r[0] for r in cur.fetchall())


def release(ids: Sequence[int], leases: Sequence[datetime]) -> None:
    """Rows of a batch that failed before their chunk went on the wire: back to the queue, the
    attempt not counted (rows on the wire stay `sending` for the sweeper). Only rows that still
    carry one of the batch's `leases` (its claim and renewals) are the batch's."""
    if not ids or not leases:
        return
    adapt = connection.ops.adapt_datetimefield_value
    where, params = id_filter("id", ids)
    mine, mine_params = id_filter("lease_until", [adapt(x) for x in leases])
    with connection.cursor() as cur:
        cur.execute("UPDATE mailings_ledgerentry SET status = 'queued', lease_until = NULL, "  # noqa: S608
                    f"attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE {where} "
                    f"AND status = 'sending' AND wire_at IS NULL AND {mine}", [*params, *mine_params])


def release_handout(ids: Sequence[int]) -> None:
    """Queued rows a batch task did not claim: their handout lease is cleared (one UPDATE)."""
    if not ids:
        return
    where, params = id_filter("id", ids)
    with connection.cursor() as cur:
        cur.execute(f"UPDATE mailings_ledgerentry SET lease_until = NULL WHERE {where} AND status = 'queued'",  # noqa: S608
                    params)


def stamp(chunk: Sequence[Row], remaining: Sequence[int], now: datetime, *, lease: datetime,
          renew: datetime | None = None, keep_ids: bool = False, messages: dict[int, str] | None = None) -> set[int]:
    """Before a chunk goes on the wire: its rows get `wire_at` (and, for transactional mail, the
    Message-ID, so a resend after a lost connection reuses it). Only rows still `sending` under
    the batch's current `lease` are touched (a row the sweeper took back and another worker
    claimed carries another lease). With `renew`, every row of the batch still to send moves to
    that new lease in the same statement. ONE UPDATE; returns the chunk's ids still ours."""
    adapt = connection.ops.adapt_datetimefield_value
    chunk_ids = [r.id for r in chunk]
    in_chunk, chunk_params = id_filter("id", chunk_ids)
    mid_sql, mid_params = "", []
    if keep_ids and messages:
        cases = " ".join("WHEN %s THEN %s" for _ in messages)
        mid_sql = f", message_id = CASE id {cases} ELSE message_id END"
        for lid, mid in messages.items():
            mid_params.extend((lid, mid[:255]))
    if renew is not None:
        where, params = id_filter("id", remaining)
        sql = (f"UPDATE mailings_ledgerentry SET wire_at = CASE WHEN {in_chunk} THEN %s ELSE wire_at END, "  # noqa: S608
               f"lease_until = %s{mid_sql} WHERE {where} AND status = 'sending' AND lease_until = %s RETURNING id")
        all_params = [*chunk_params, adapt(now), adapt(renew), *mid_params, *params, adapt(lease)]
    else:
        sql = (f"UPDATE mailings_ledgerentry SET wire_at = %s{mid_sql} WHERE {in_chunk} "  # noqa: S608
               "AND status = 'sending' AND lease_until = %s RETURNING id")
        all_params = [adapt(now), *mid_params, *chunk_params, adapt(lease)]
    with connection.cursor() as cur:
        cur.execute(sql, all_params)
        ours = {r[0] for r in cur.fetchall()}
    return ours & set(chunk_ids)
