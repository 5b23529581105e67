"""What happens to events around them: merge, erasure, retention, and the consent ledger's changes
recorded as events."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone as tz

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from history.catalogue import type_id
from history.models import Event, HistorySettings
from history.services.ingest import EventIn, TypeBook, events_ingest

if TYPE_CHECKING:
    from collections.abc import Callable

    from profiles.models import Profile
    from resources.models import ConsentRecord

log = logging.getLogger(__name__)

RETENTION_BATCH = 5000
BRIN_REBUILD_AFTER = 100_000  # deleted rows after which the occurred_at BRIN is rebuilt
MIN_RETENTION_DAYS = 7
MAX_RETENTION_DAYS = 3653


# --- merge and erasure (registered in profiles' MERGE_HANDLERS / ERASURE_HANDLERS) ---------------


def events_merge(target: Profile, source: Profile) -> None:
    """The surviving profile takes the merged one's events (one UPDATE, in the merge's transaction)."""
    Event.objects.filter(account_id=source.account_id, profile_id=source.pk).update(profile_id=target.pk)


def events_erase(profile: Profile) -> None:
    """Erasure removes the profile's events (in the erasure's transaction)."""
    Event.objects.filter(account_id=profile.account_id, profile_id=profile.pk).delete()


# --- retention -----------------------------------------------------------------------------------


class RetentionError(ValueError):
    pass


@transaction.atomic
def retention_set(*, account: Account, days: int | None, actor: Actor) -> HistorySettings:
    if days is not None and not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise RetentionError(f"Keep events between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS:,} days, or leave it empty "
                             "to keep them all.")
    settings, _ = HistorySettings.objects.select_for_update().get_or_create(account=account)
    if settings.retention_days != days:
        old = settings.retention_days
        settings.retention_days = days
        settings.save()
        audit_log(account=account, actor=actor, verb="history.retention_changed", target_label="Event retention",
                  data={"old": old, "new": days})
    return settings


def retention_cutoff(settings: HistorySettings, now: Any = None) -> Any:
    return (now or tz.now()) - timedelta(days=settings.retention_days) if settings.retention_days else None


def retention_cleanup(*, account_id: int, batch: int = RETENTION_BATCH, max_batches: int | None = None,
                      progress: Callable[[int], None] | None = None) -> int:
    """Delete the account's events older than its retention period, `batch` rows per transaction
    (short transactions: the table stays writable, replicas keep up). Returns how many went."""
    settings = HistorySettings.objects.filter(account_id=account_id).first()
    if settings is None or not settings.retention_days:
        return 0
    cutoff = retention_cutoff(settings)
    total = 0
    n = 0
    while max_batches is None or n < max_batches:
        n += 1
        with transaction.atomic():
            ids = list(Event.objects.filter(account_id=account_id, occurred_at__lt=cutoff)
                       .order_by().values_list("id", flat=True)[:batch])
            if not ids:
                break
            deleted = _delete_ids(ids)
        total += deleted
        if progress:
            progress(total)
        if len(ids) < batch:
            break
    HistorySettings.objects.filter(pk=settings.pk).update(last_cleanup_at=tz.now(), last_cleanup_deleted=total)
    if total >= BRIN_REBUILD_AFTER:
        _rebuild_time_index()
    if total:
        log.info("retention: account %s: %s events older than %s deleted", account_id, total, cutoff)
    return total


def _rebuild_time_index() -> None:
    """New rows reuse the pages a big delete freed, which blurs the BRIN on occurred_at (each range
    then spans more time) until it is rebuilt: a few seconds at 10M rows, without blocking writes
    (docs/history.md). Needs autocommit (the beat task's), so it is skipped inside a transaction."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    try:
        with connection.cursor() as cur:
            cur.execute("REINDEX INDEX CONCURRENTLY event_occurred_brin")
    except DatabaseError:
        log.warning("retention: could not rebuild event_occurred_brin", exc_info=True)


def _delete_ids(ids: list[int]) -> int:
    # A raw DELETE by id: the ORM's delete() would first collect the rows for cascades it has no need of.
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("DELETE FROM history_event WHERE id = ANY(%s)", [ids])
        else:
            cur.execute(f"DELETE FROM history_event WHERE id IN ({','.join(['%s'] * len(ids))})", ids)  # noqa: S608
        return cur.rowcount


def retention_accounts_due() -> list[int]:
    return list(HistorySettings.objects.filter(retention_days__isnull=False).values_list("account_id", flat=True))


# --- the consent ledger, recorded as events (registered in resources' CONSENT_HANDLERS) -----------

_SUBSCRIBED = type_id("subscription.subscribed")
_CHANGED = type_id("subscription.changed")
_UNSUBSCRIBED = type_id("message.unsubscribed")
_COMPLAINED = type_id("message.complained")


def consent_events(records: list[ConsentRecord]) -> None:
    """Record subscription changes in the history: a new subscription as "subscribed", a change to
    unsubscribed as "unsubscribed", to complained as "marked as spam", any other status change as
    "subscription status changed". Keyed by the ledger row, so recording twice stores once."""
    by_account: dict[int, list[EventIn]] = {}
    for r in records:
        if r.profile_id is None or r.pk is None:
            continue
        if r.action == "created":
            name = "subscription.subscribed"
        elif r.action == "status" and r.new_status == "unsubscribed":
            name = "message.unsubscribed"
        elif r.action == "status" and r.new_status == "complained":
            name = "message.complained"
        elif r.action == "status":
            name = "subscription.changed"
        else:
            continue
        props: dict[str, Any] = {"status": r.new_status, "address": r.address}
        if r.action == "status":
            props["old_status"] = r.old_status
        if r.reason:
            props["reason"] = r.reason
        by_account.setdefault(r.account_id, []).append(EventIn(
            type=name, profile_id=r.profile_id, occurred_at=r.created_at, properties=props, key=f"consent:{r.pk}",
            channel=r.channel, resource_id=r.resource_id, source=f"consent:{r.source}"[:32],
        ))
    for account_id, events in by_account.items():
        account = Account.objects.get(pk=account_id)
        book = TypeBook.for_account(account)
        for start in range(0, len(events), 1000):
            results = events_ingest(account=account, events=events[start:start + 1000], source="consent", book=book)
            bad = [r for r in results if r.status == "error" and r.field != "profile"]
            if bad:
                log.warning("consent events: %d not recorded, first: %s %s", len(bad), bad[0].field, bad[0].error)
