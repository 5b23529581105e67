"""Adding fired triggers to the ledger, set-based: the day run, the subscription each fire goes to,
the skips decided at insert (consent, suppression, category opt-out, frequency cap), ONE
`INSERT .. ON CONFLICT DO NOTHING RETURNING` per 500 rows (the trigger key makes a repeat insert
nothing), the run's `planned` and the counters in the same transaction, and the due rows handed
to the trigger queue after commit."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from mailings.models import LedgerEntry, Mailing, Run
from mailings.services.sending import id_filter
from mailings.services.stats import stats_add
from resources.models import Status, Subscription

log = logging.getLogger(__name__)

# Preference order when a profile holds several subscriptions on the resource and channel.
_STATUS_RANK = {Status.SUBSCRIBED: 0, Status.UNCONFIRMED: 1, Status.SUSPENDED: 2, Status.UNSUBSCRIBED: 3}


# --- inserting rows ------------------------------------------------------------------------------


@dataclass
class Fire:
    """One trigger to add to the ledger: a mailing, a profile (and, when known, the subscription
    or address the trigger is about), its key, template data and when it may go."""

    mailing: Mailing
    profile_id: int
    key: str
    data: dict[str, Any] | None = None
    not_before: datetime | None = None
    subscription_id: int | None = None
    address: str = ""


@dataclass
class Inserted:
    id: int
    mailing_id: int
    run_id: int
    status: str
    reason: str
    due: bool
    key: str | None = None  # the fire's trigger key


def _day_run(mailing: Mailing, now: datetime) -> Run | None:
    """The mailing's run of the UTC day (`lifecycle.trigger_run`: made on first use, unique per
    (mailing, slot), its template version frozen). A run the tick finished earlier today (it had
    drained) is reopened; None when the run failed (no template version) or was cancelled."""
    from mailings.services.lifecycle import trigger_run

    run = trigger_run(mailing=mailing, now=now)
    if run.state == Run.State.DONE:
        Run.objects.filter(pk=run.pk, state=Run.State.DONE).update(state=Run.State.SENDING, finished_at=None)
        run.state = Run.State.SENDING
    if run.state in (Run.State.CANCELLED, Run.State.FAILED):
        return None
    return run


def _skips(chosen: Sequence[tuple[Fire, tuple[Any, ...]]], now: datetime) -> dict[tuple[int, int], tuple[str, str]]:
    """(mailing, subscription) -> (reason, detail) for the chosen subscriptions that may not be
    sent to: the planner's own test (`planning.skip_reason_sql`: status, suppression, category
    opt-out, frequency cap; a confirmation mailing may go to an unconfirmed address), one query
    per mailing in the batch. The cap counts every queued or sending row, the day run's own
    included (run_id None): a trigger's earlier messages today use up the allowance too."""
    from mailings.services.planning import skip_reason_sql

    by_mailing: dict[int, tuple[Mailing, set[int]]] = {}
    for f, sub in chosen:
        by_mailing.setdefault(f.mailing.pk, (f.mailing, set()))[1].add(sub[0])
    out: dict[tuple[int, int], tuple[str, str]] = {}
    for mailing, sub_ids in by_mailing.values():
        case, params, cap_text = skip_reason_sql(mailing, run_id=None, now=now, alias="s")
        only, only_params = id_filter("s.id", sorted(sub_ids))
        with connection.cursor() as cur:
            # Only the planner's CASE (constants and placeholders) and placeholders are joined here.
            cur.execute(f"SELECT s.id, {case} FROM {Subscription._meta.db_table} s "  # noqa: S608
                        f"WHERE {only}", [*params, *only_params])
            for sub_id, reason in cur.fetchall():
                if reason:
                    out[(mailing.pk, sub_id)] = (reason, cap_text if reason == LedgerEntry.Reason.CAPPED else "")
    return out


def _columns() -> list[str]:
    return ["account_id", "mailing_id", "run_id", "subscription_id", "profile_id", "channel", "address", "status",
            "reason", "detail", "attempts", "not_before", "trigger_key", "data", "message_id", "created_at", "updated_at"]


def _insert(rows: list[tuple[Any, ...]]) -> list[tuple[int, int, int, str, str, Any, str | None]]:
    """INSERT the rows, skipping those whose trigger key the mailing has seen; returns (id,
    mailing_id, run_id, status, reason, not_before, trigger_key) of the rows actually inserted."""
    if not rows:
        return []
    cols = _columns()
    returning = " ON CONFLICT DO NOTHING RETURNING id, mailing_id, run_id, status, reason, not_before, trigger_key"
    out: list[tuple[int, int, int, str, str, Any, str | None]] = []
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # One array per column (unnest): 17 parameters whatever the number of rows, so neither
            # psycopg nor PostgreSQL handles thousands of placeholders (a scenario's send step
            # fires for a whole batch of participations at once).
            source = "SELECT * FROM unnest(" + ", ".join(f"%s::{t}[]" for t in _PG_TYPES) + ")"  # noqa: S608 - fixed types
            for lo in range(0, len(rows), 5000):
                chunk = rows[lo:lo + 5000]
                cur.execute(f"INSERT INTO {LedgerEntry._meta.db_table} ({', '.join(cols)}) {source}{returning}",
                            [list(col) for col in zip(*chunk, strict=True)])
                out.extend(cur.fetchall())
            return out
        one = "(" + ", ".join(["%s"] * len(cols)) + ")"
        for lo in range(0, len(rows), 500):
            chunk = rows[lo:lo + 500]
            sql = (f"INSERT INTO {LedgerEntry._meta.db_table} ({', '.join(cols)}) VALUES "  # noqa: S608 - fixed names
                   + ", ".join([one] * len(chunk)) + returning)
            cur.execute(sql, [v for row in chunk for v in row])
            out.extend(cur.fetchall())
    return out


# The PostgreSQL types of `_columns()`, in order, for the unnest insert.
_PG_TYPES = ("bigint", "bigint", "bigint", "bigint", "bigint", "varchar", "varchar", "varchar", "varchar", "varchar",
             "smallint", "timestamptz", "varchar", "jsonb", "varchar", "timestamptz", "timestamptz")


def to_json(value: Any) -> str | None:
    """JSON text for the ledger's `data` column (None stays NULL)."""
    return None if value is None else json.dumps(value, default=str, separators=(",", ":"))


def rows_by_key(mailing_id: int, keys: Sequence[str]) -> dict[str, tuple[int, str, str]]:
    """{trigger key: (ledger id, status, reason)} of the mailing's rows with these keys: what a
    caller of `fires_insert` reads back for the fires it returned nothing for (a key seen before,
    or no subscription). On PostgreSQL one probe of the unique (mailing_id, trigger_key) index per
    key, whatever the planner believes of the mailing's size: a LATERAL subquery with LIMIT 1
    (which keeps it from being flattened into a join). `trigger_key IN (..)` was planned, on a
    ledger whose statistics lagged behind its growth, as a read of the mailing's every row per
    call (measured: 0.5-2 s a batch of a 100,000-trip scenario activation)."""
    if not keys:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                "SELECT l.id, k.key, l.status, l.reason FROM unnest(%s::text[]) AS k(key) CROSS JOIN LATERAL ("
                "SELECT id, status, reason FROM mailings_ledgerentry WHERE mailing_id = %s AND trigger_key = k.key "
                "AND trigger_key IS NOT NULL LIMIT 1) AS l", [list(keys), mailing_id])
            return {key: (id_, status, reason) for id_, key, status, reason in cur.fetchall()}
    return {key: (id_, status, reason) for id_, key, status, reason in LedgerEntry.objects.filter(
        mailing_id=mailing_id, trigger_key__in=list(keys)).values_list("id", "trigger_key", "status", "reason")}


def fires_insert(fires: Sequence[Fire], *, now: datetime | None = None, savepoint: bool = True) -> list[Inserted]:
    """Add the fires to their mailings' day runs: one query for the subscriptions, one for the
    suppressions, one INSERT .. ON CONFLICT DO NOTHING per 500 rows, one UPDATE per run for
    `planned`, one stats insert; the due queued rows go to `dispatch.entries_send_now` after
    commit. A fire whose profile holds no subscription on the mailing's resource and channel
    makes no row. Returns the rows inserted (a fire whose key was seen returns nothing).
    Call inside a transaction (it opens its own savepoint; `savepoint=False` when the caller's
    transaction is all or nothing anyway: two round trips fewer)."""
    if not fires:
        return []
    now = now or timezone.now()
    with transaction.atomic(savepoint=savepoint):
        # The subscriptions the fires may use, in one query.
        pairs = {(f.profile_id, f.mailing.resource_id, f.mailing.channel) for f in fires}
        cond = Q()
        for resource_id, channel in {(r, c) for _, r, c in pairs}:
            cond |= Q(resource_id=resource_id, channel=channel,
                      profile_id__in=[p for p, r, c in pairs if (r, c) == (resource_id, channel)])
        subs: dict[tuple[int, int, str], list[tuple[Any, ...]]] = defaultdict(list)
        for row in (Subscription.objects.filter(cond)
                    .values_list("id", "profile_id", "resource_id", "channel", "address", "status", "opted_out", "priority")):
            subs[(row[1], row[2], row[3])].append(row)
        chosen: list[tuple[Fire, tuple[Any, ...]]] = []
        for f in fires:
            candidates = subs.get((f.profile_id, f.mailing.resource_id, f.mailing.channel), [])
            if f.subscription_id is not None:
                candidates = [s for s in candidates if s[0] == f.subscription_id]
            elif f.address:
                candidates = [s for s in candidates if s[4] == f.address] or candidates
            if candidates:
                best = min(candidates, key=lambda s: (_STATUS_RANK.get(s[5], 9), s[7], s[0]))
                chosen.append((f, best))
        if not chosen:
            return []
        skips = _skips(chosen, now)
        runs: dict[int, Run | None] = {}
        rows: list[tuple[Any, ...]] = []
        for f, (sub_id, profile_id, _, channel, address, _, _, _) in chosen:
            m = f.mailing
            if m.pk not in runs:
                runs[m.pk] = _day_run(m, now)
            run = runs[m.pk]
            if run is None:
                continue
            reason, detail = skips.get((m.pk, sub_id), ("", ""))
            status_out = LedgerEntry.Status.SKIPPED if reason else LedgerEntry.Status.QUEUED
            not_before = f.not_before if (f.not_before and f.not_before > now and not reason) else None
            rows.append((m.account_id, m.pk, run.pk, sub_id, profile_id, channel, address, status_out, reason, detail,
                         0, not_before, f.key, to_json(f.data), "", now, now))
        inserted = _insert(rows)
        if not inserted:
            return []
        accounts = {f.mailing.pk: f.mailing.account_id for f in fires}
        per_run: Counter[int] = Counter()
        deltas: Counter[tuple[int, int, int | None, str, int | None]] = Counter()
        out: list[Inserted] = []
        for id_, mailing_id, run_id, status, reason, not_before, key in inserted:
            per_run[run_id] += 1
            account_id = accounts[mailing_id]
            deltas[(account_id, mailing_id, run_id, "planned", None)] += 1
            if status == LedgerEntry.Status.SKIPPED:
                deltas[(account_id, mailing_id, run_id, "skipped", None)] += 1
                deltas[(account_id, mailing_id, run_id, f"skipped:{reason}", None)] += 1
            else:
                deltas[(account_id, mailing_id, run_id, "queued", None)] += 1  # as the planner counts them
            due = status == LedgerEntry.Status.QUEUED and not_before is None
            out.append(Inserted(id_, mailing_id, run_id, status, reason, due, key))
        stats_add(deltas, when=now)
        due_by_run: dict[int, list[int]] = defaultdict(list)
        for row in out:
            if row.due:
                due_by_run[row.run_id].append(row.id)
        if due_by_run:
            transaction.on_commit(lambda: _send_now(due_by_run))
        # Last, so that the row lock every concurrent fire into the day run waits for is held
        # from here to the commit only (in order of run id: two batches never deadlock).
        for run_id, n in sorted(per_run.items()):
            Run.objects.filter(pk=run_id).update(planned=F("planned") + n)
    return out


def _send_now(due_by_run: Mapping[int, list[int]]) -> None:
    """After commit: the due rows to the trigger queue. Never raises (the tick hands out whatever
    could not be handed now: the rows are queued in the database)."""
    from mailings.services.dispatch import entries_send_now

    for run_id, ids in due_by_run.items():
        try:
            entries_send_now(entries=ids, run_id=run_id)
        except Exception:
            log.warning("triggers: could not hand %d rows of run %s out now; the tick will", len(ids), run_id,
                        exc_info=True)


