"""Thin Celery tasks for resources: take ids, call a service."""

from __future__ import annotations

from celery import shared_task

from resources.services import subscriptions_resume_due


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
