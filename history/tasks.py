"""Thin Celery tasks for the history: take ids, call a service."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(bind=True)
def events_drain_trigger_task(self) -> int:
    """Hand the stored events owed to the registered handlers (the outbox) to them: queued by the
    first batch after a quiet moment, and by beat every 10 s for what no task was queued for
    (Redis down at commit) and for handlers due a retry."""
    from history.services import events_drain
    from history.services.dispatch import LINGER

    # Run eagerly (the embedded setup's tests, a shell) it must not keep the caller waiting.
    return events_drain(linger=0.0 if self.request.is_eager else LINGER)


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
