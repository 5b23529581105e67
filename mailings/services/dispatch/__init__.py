"""The dispatch: hand queued ledger rows out in batches, claim and send a batch, sweep expired
claims, finish drained runs (ARCHITECTURE.md "Send ledger", COMMON.md's row lifecycle).

- `run_kick`: a run's due, queued, not handed-out rows get `lease_until = now + HANDOUT_LEASE`
  (one UPDATE per KICK_SLICE rows) and go to Celery as batches of BATCH_SIZE ids, each slice's
  as soon as it is committed (bulk queue; trigger queue for trigger and transactional mailings).
  A row whose handout lease passes unclaimed (Redis flushed, a lost task) is handed out again by
  the next kick.
- `batch_send`: claims with a conditional UPDATE (FOR UPDATE SKIP LOCKED on PostgreSQL), only
  while the run sends and the mailing is not paused or cancelled; re-checks consent on what ONE
  load query returns; sends chunk by chunk on one open backend, stamping `wire_at` before each
  chunk goes on the wire; writes every chunk's outcomes in one UPDATE (mailings.services.sending).
  Safe to run twice: the claim decides, so a replayed batch sends nothing twice.
- `ledger_sweep`: expired claims without `wire_at` go back to the queue; with `wire_at` they are
  ambiguous (marketing) or re-queued once with the same Message-ID (transactional); rows past
  MAX_ATTEMPTS fail.
- `dispatch_tick`: kick every sending run; finish drained runs and move their mailing on.
- `entries_send_now`: trigger rows straight to the trigger queue (latency), or sent in-process.

Throttling (mailings.throttle, shared by every worker through Redis): before each chunk, the
recipient domains' buckets (a backed-off or saturated domain's rows go back to the queue with
`not_before`, not counting an attempt, without holding up other domains), then the provider's and
the mailing's speed limit (short waits are slept, long ones deferred). A provider's "slow down"
(SMTP 421/451, HTTP 429) backs the domain or provider key off.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone as tz

from mailings.models import LedgerEntry, Mailing, Run
from mailings.queue import publish_on_commit
from mailings.services.dispatch.batch import STRUCK, Batch
from mailings.services.dispatch.common import (  # noqa: F401 (the package's constants)
    BATCH_SIZE,
    CHUNK_SIZE,
    KICK_SLICE,
    LIVE_MAILING_STATES,
    MAX_ATTEMPTS,
    MAX_BATCHES_PER_KICK,
    claim,
    claim_lease,
    handout,
    handout_lease,
    kick_limit,
    release,
    release_handout,
    task_for,
)
from mailings.services.stats import StatKey, stats_add

log = logging.getLogger(__name__)

Status = LedgerEntry.Status
Reason = LedgerEntry.Reason


def run_kick(*, run_id: int, now: datetime | None = None) -> int:
    """Hand out the run's due queued rows (bounded: MAX_BATCHES_PER_KICK batches) to Celery,
    after commit. Nothing when the run is not sending or its mailing is paused or cancelled.
    Returns how many rows were handed out. Idempotent: a row is leased before it is published."""
    now = now or tz.now()
    run = Run.objects.filter(pk=run_id).select_related("mailing").first()
    if run is None or run.state != Run.State.SENDING or run.mailing.state not in LIVE_MAILING_STATES:
        return 0
    limit, total, after, task = kick_limit(run.mailing), 0, None, None
    while total < limit:
        # Slice by slice (KICK_SLICE rows a statement, each above the last slice's ids): outside a
        # transaction each slice's batches go out while the next slice is handed out.
        want = min(KICK_SLICE, limit - total)
        ids = handout(run_id, now, want, after=after)
        if not ids:
            break
        if task is None:  # the queue is chosen by the kick's size: a kick of more than one slice is bulk
            task = task_for(run.mailing, len(ids))
        size = min(BATCH_SIZE, len(ids))
        for lo in range(0, len(ids), size):
            publish_on_commit(task, run_id, ids[lo:lo + size])
        total += len(ids)
        after = ids[-1]
        if len(ids) < want:
            break
    return total


def entries_send_now(*, entries: list[int], run_id: int, inline: bool = False) -> int:
    """Send these (trigger) rows now: leased and published at once (after commit when called in a
    transaction) to the trigger queue, or to the bulk queue when they are more than URGENT_ROWS
    (a crowd is bulk work), or claimed and sent in this process (`inline`). Rows not due yet or
    already handed out are left to the tick. Returns the rows handed out."""
    if not entries:
        return 0
    now = tz.now()
    ids = handout(run_id, now, len(entries), ids=sorted({int(e) for e in entries}))
    if inline:
        for lo in range(0, len(ids), BATCH_SIZE):
            batch_send(run_id=run_id, ids=ids[lo:lo + BATCH_SIZE])
        return len(ids)
    run = Run.objects.filter(pk=run_id).select_related("mailing").first()
    if run is None:
        return 0
    task = task_for(run.mailing, len(ids))
    for lo in range(0, len(ids), BATCH_SIZE):
        # Outside a transaction on_commit publishes at once; inside, once the rows are committed.
        publish_on_commit(task, run_id, ids[lo:lo + BATCH_SIZE])
    return len(ids)


def batch_send(*, run_id: int, ids: list[int]) -> dict[str, Any]:
    """Claim and send one batch of a run's ledger rows. Returns counts by outcome ("claimed",
    "sent", "failed", "skipped", "ambiguous", "queued" (retries), "deferred" (throttled)) and
    per-phase seconds ("timings": load, render, compose (MIME + DKIM), smtp, ledger, throttle).
    Safe to call twice with the same ids: only rows still queued are claimed."""
    ids = sorted({int(i) for i in ids})
    if not ids:
        return {"claimed": 0}
    now = tz.now()
    lease = now + claim_lease()
    claimed = claim(run_id, ids, now, lease)
    if len(claimed) < len(ids):
        # Rows this batch could not take (paused, not due yet) give their handout back, so a resume
        # or the tick hands them out at once instead of after HANDOUT_LEASE.
        release_handout(sorted(set(ids) - set(claimed)))
    if not claimed:
        return {"claimed": 0}
    if len(STRUCK) > 10_000:
        STRUCK.clear()
    batch = None
    try:
        batch = Batch(run_id, now, lease)
        result = batch.send(claimed)
    except BaseException:
        try:
            release(claimed, batch.leases if batch is not None else [lease])
        except Exception:  # the database is what failed: the sweeper puts them back
            log.warning("mailings: could not release the rows of a failed batch of run %s", run_id, exc_info=True)
        raise
    run_finish_if_drained(run_id=run_id)
    log.debug("mailings: batch of run %s: %s", run_id, result)
    return result


# --- the sweeper --------------------------------------------------------------------------------


def _sweep_update(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def ledger_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Expired leases, set-based (a few UPDATEs, each on the lease index):
    - a queued row whose handout lease passed (its task was lost): the lease is cleared, so the
      next kick hands it out again ("handed_out_again");
    - a claim that expired before its chunk went on the wire: back to the queue ("requeued"),
      or failed (attempts) once it has used MAX_ATTEMPTS;
    - a claim that expired after its chunk went on the wire (the worker died mid-send): the
      message may have arrived: ambiguous (connection_lost) for marketing; a transactional row
      on its first try goes back to the queue and is resent with the same Message-ID
      ("resent"), after that it is ambiguous too.
    Terminal rows are never touched; counters follow in the same transaction."""
    now = now or tz.now()
    at = connection.ops.adapt_datetimefield_value(now)
    expired = "status = 'sending' AND lease_until <= %s"
    transactional = "mailing_id IN (SELECT id FROM mailings_mailing WHERE transactional)"
    done: Counter[str] = Counter(dict.fromkeys(("handed_out_again", "requeued", "resent", "failed", "ambiguous"), 0))
    deltas: Counter[StatKey] = Counter()
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("UPDATE mailings_ledgerentry SET lease_until = NULL WHERE status = 'queued' "
                        "AND lease_until <= %s", [at])
            done["handed_out_again"] = max(cur.rowcount, 0)
        for account_id, mailing_id, run_id in _sweep_update(
                "UPDATE mailings_ledgerentry SET status = 'failed', reason = 'attempts', lease_until = NULL, "  # noqa: S608 (constants and placeholders only)
                f"detail = 'The worker stopped {MAX_ATTEMPTS} times while sending it.', updated_at = %s "
                f"WHERE {expired} AND wire_at IS NULL AND attempts >= %s RETURNING account_id, mailing_id, run_id",
                [at, at, MAX_ATTEMPTS]):
            deltas[(account_id, mailing_id, run_id, "failed", None)] += 1
            deltas[(account_id, mailing_id, run_id, "failed:attempts", None)] += 1
            done["failed"] += 1
        done["requeued"] = len(_sweep_update(
            "UPDATE mailings_ledgerentry SET status = 'queued', lease_until = NULL, updated_at = %s "  # noqa: S608 (constants and placeholders only)
            f"WHERE {expired} AND wire_at IS NULL RETURNING id", [at, at]))
        done["resent"] = len(_sweep_update(
            "UPDATE mailings_ledgerentry SET status = 'queued', lease_until = NULL, wire_at = NULL, "  # noqa: S608 (constants and placeholders only)
            "detail = 'Resending: the connection was lost while sending.', updated_at = %s "
            f"WHERE {expired} AND wire_at IS NOT NULL AND attempts <= 1 AND {transactional} RETURNING id", [at, at]))
        for account_id, mailing_id, run_id in _sweep_update(
                "UPDATE mailings_ledgerentry SET status = 'ambiguous', reason = 'connection_lost', lease_until = NULL, "  # noqa: S608 (constants and placeholders only)
                "detail = 'The worker stopped while the message was being sent.', updated_at = %s "
                f"WHERE {expired} AND wire_at IS NOT NULL RETURNING account_id, mailing_id, run_id", [at, at]):
            deltas[(account_id, mailing_id, run_id, "ambiguous", None)] += 1
            done["ambiguous"] += 1
        if deltas:
            stats_add(deltas, when=now)
    return dict(done)


# --- the tick -----------------------------------------------------------------------------------


TRIGGER_DAY_GRACE = timedelta(minutes=10)


def run_finish_if_drained(*, run_id: int, now: datetime | None = None) -> bool:
    """A sending run with no queued or sending row left is done (a trigger mailing's run of
    today stays open: events may still add rows), and its mailing moves on: a broadcast is done;
    a regular mailing waits for its next slot (scheduled) or is done when its schedule ended.
    Returns whether the run finished now. Safe to call concurrently (conditional UPDATEs)."""
    now = now or tz.now()
    run = Run.objects.filter(pk=run_id, state=Run.State.SENDING).select_related("mailing").first()
    if run is None:
        return False
    mailing = run.mailing
    # A trigger run stays open through its day, and a few minutes past midnight: an insert into
    # yesterday's run that had not committed at 00:00 must still find it sending.
    if mailing.kind == Mailing.Kind.TRIGGER and run.slot >= f"day:{(now - TRIGGER_DAY_GRACE).date().isoformat()}":
        return False
    if LedgerEntry.objects.filter(run_id=run_id, status__in=(Status.QUEUED, Status.SENDING)).exists():
        return False
    with transaction.atomic():
        if not Run.objects.filter(pk=run_id, state=Run.State.SENDING).update(state=Run.State.DONE, finished_at=now):
            return False
        if mailing.kind == Mailing.Kind.TRIGGER:
            return True  # listening on: a new day's run comes with the next event
        if Run.objects.filter(mailing_id=mailing.pk, state__in=(Run.State.PLANNING, Run.State.SENDING,
                                                                 Run.State.PAUSED)).exists():
            return True
        live = Mailing.objects.filter(pk=mailing.pk)
        if mailing.kind == Mailing.Kind.BROADCAST:
            live.filter(state=Mailing.State.SENDING).update(state=Mailing.State.DONE, finished_at=now)
        else:
            live.filter(state=Mailing.State.SENDING, next_run_at__isnull=False).update(state=Mailing.State.SCHEDULED)
            live.filter(state__in=(Mailing.State.SENDING, Mailing.State.SCHEDULED), next_run_at__isnull=True).update(
                state=Mailing.State.DONE, finished_at=now)
    return True


def dispatch_tick(*, now: datetime | None = None) -> None:
    """The dispatch's part of the system tick: hand out every sending run's due rows (rows
    deferred by a send window, a delay, a back-off or the throttle become due here), and finish
    the runs that drained. Idempotent: two ticks hand nothing out twice (the handout lease)."""
    now = now or tz.now()
    runs = list(Run.objects.filter(state=Run.State.SENDING).select_related("mailing").order_by("id"))
    for run in runs:
        try:
            if run.mailing.state in LIVE_MAILING_STATES:
                run_kick(run_id=run.pk, now=now)
            run_finish_if_drained(run_id=run.pk, now=now)
        except Exception:  # one broken run must not stop the others
            log.exception("mailings: the dispatch tick failed for run %s", run.pk)
