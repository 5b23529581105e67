"""Thin Celery tasks for profiles: take ids, call services, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

from accounts import jobs
from profiles.services import field_values_remove

log = logging.getLogger(__name__)


@shared_task
def field_values_remove_task(job_id: int) -> None:
    job = jobs.job_claim(job_id=job_id)
    if job is None:
        return
    try:
        removed = field_values_remove(
            database_id=job.params["database_id"],
            name=job.params["field"],
            progress=lambda n: jobs.job_progress(job=job, progress=n, message=f"{n:,} profiles cleaned"),
        )
        jobs.job_succeed(job=job, result={"profiles": removed}, message=f"Removed the values from {removed:,} profiles")
    except Exception as exc:
        log.exception("field value removal %s failed", job_id)
        jobs.job_fail(job=job, error=f"{type(exc).__name__}: {exc}")
        raise
