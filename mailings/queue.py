"""Handing work to Celery without ever failing the caller: the database holds what is due
(queued ledger rows, runs in `planning`, `next_run_at`), so a task that could not be published
(Redis down, F3) is picked up by the tick once the broker is back."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

log = logging.getLogger(__name__)


def publish(task: Any, *args: Any) -> bool:
    """Publish now, without the broker's retry loop (a launch must not hang for seconds when Redis
    is down). Returns whether it was published."""
    try:
        task.apply_async(args=args, retry=False)
        return True
    except Exception:  # the tick hands the work out again
        log.warning("mailings: could not queue %s%r; the tick will", getattr(task, "name", task), args, exc_info=True)
        return False


def publish_on_commit(task: Any, *args: Any) -> None:
    transaction.on_commit(lambda: publish(task, *args))
