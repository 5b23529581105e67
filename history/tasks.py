"""Thin Celery tasks for the history: take ids, call a service."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=5, acks_late=True)
def events_dispatch_trigger_task(self, ids: list[int], only: list[str] | None = None) -> dict[str, int]:
    """Hand a stored batch to the registered handlers (trigger queue: reacts within a second). A
    handler that fails is retried with backoff, alone: the others are not called twice."""
    from history.handlers import HandlerError
    from history.services import events_dispatch

    try:
        return events_dispatch(ids, only=only)
    except HandlerError as exc:
        failed = [name for name, _ in exc.failed]
        raise self.retry(args=[ids, failed], exc=exc, countdown=min(2 ** self.request.retries, 30)) from exc


@shared_task
def tracking_drain_trigger_task() -> int:
    """Store the buffered open/click hits (enqueued by the first hit of each second; beat: every 30 s)."""
    from history.tracking import drain

    return drain()


@shared_task
def retention_cleanup_bulk_task() -> int:
    """Delete events older than each account's retention period, in batches (beat: hourly)."""
    from history.services import retention_accounts_due, retention_cleanup

    total = 0
    for account_id in retention_accounts_due():
        total += retention_cleanup(account_id=account_id)
    return total


@shared_task
def retention_cleanup_account_bulk_task(account_id: int) -> int:
    """Delete one account's events older than its retention period now (the settings page's
    "Clean up now"), in batches; the page shows it running until last_cleanup_at moves."""
    from history.services import retention_cleanup

    return retention_cleanup(account_id=account_id)
