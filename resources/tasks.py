"""Thin Celery tasks for resources: take ids, call a service."""

from __future__ import annotations

from celery import shared_task

from resources.models import Resource
from resources.services import (
    subscription_counts_compact,
    subscription_counts_rebuild,
    subscriptions_resume_due,
)


@shared_task
def subscriptions_resume_task() -> int:
    """Paused subscriptions whose pause has ended are subscribed again (beat: every 5 minutes)."""
    return subscriptions_resume_due()


@shared_task
def suppressions_import_bulk_task(job_id: int) -> None:
    """Import a suppression CSV (see resources.suppressions_io). The name routes it to the bulk
    queue; job_claim lets one worker in, so a redelivered task does nothing."""
    from accounts import jobs
    from resources.suppressions_io import SuppressionImportError, suppressions_import_job

    job = jobs.job_claim(job_id=job_id)
    if job is None:
        return
    with jobs.job_failing(job, expected=(SuppressionImportError,)):
        suppressions_import_job(job)


@shared_task
def subscription_counts_compact_task() -> int:
    """Fold the subscriber counters' deltas (beat: every 10 minutes)."""
    return subscription_counts_compact()


@shared_task
def subscription_counts_rebuild_bulk_task() -> int:
    """Recount every resource from its subscriptions (beat: daily, bulk queue), so the counters
    cannot drift for long whatever wrote to the table."""
    n = 0
    for resource in Resource.objects.order_by("id").iterator():
        subscription_counts_rebuild(resource=resource)
        n += 1
    return n
