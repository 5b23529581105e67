"""The life of a Job: created by a service, claimed and advanced by a task, watched by a page.

Every transition is a conditional UPDATE, so two workers running the same task (a redelivery
after a lost ack) cannot both run the job: `job_claim` returns False for the second one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.core.files.base import File
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, Job, User

log = logging.getLogger(__name__)

# A running job whose task has not reported for this long is taken to have died with its worker.
STALE_AFTER = timedelta(minutes=10)


def job_create(
    *,
    account: Account,
    kind: str,
    title: str,
    created_by: User | None = None,
    params: dict[str, Any] | None = None,
    total: int | None = None,
) -> Job:
    return Job.objects.create(
        account=account, kind=kind, title=title, created_by=created_by, params=params or {}, total=total
    )


def job_claim(*, job_id: int) -> Job | None:
    """Move a queued job to running. Returns the job, or None if someone else has it or it ended."""
    now = timezone.now()
    changed = Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING, started_at=now, heartbeat_at=now
    )
    if changed != 1:
        return None
    return Job.objects.get(pk=job_id)


def job_progress(*, job: Job, progress: int, total: int | None = None, message: str = "") -> None:
    job.progress = progress
    fields = {"progress": progress, "heartbeat_at": timezone.now()}
    if total is not None:
        job.total = total
        fields["total"] = total
    if message:
        job.message = message[:500]
        fields["message"] = job.message
    Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(**fields)


def job_succeed(*, job: Job, result: dict[str, Any] | None = None, message: str = "", file: File | None = None) -> None:
    with transaction.atomic():
        job.state = Job.State.SUCCEEDED
        job.finished_at = timezone.now()
        job.heartbeat_at = job.finished_at
        job.result = result or {}
        if job.total is not None:
            job.progress = job.total
        if message:
            job.message = message[:500]
        if file is not None:
            job.result_file.save(file.name, file, save=False)
        job.save(
            update_fields=[
                "state", "finished_at", "heartbeat_at", "result", "progress", "message", "result_file",
            ]
        )


def job_fail(*, job: Job, error: str) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk).exclude(state__in=Job.FINISHED).update(
        state=Job.State.FAILED, error=error[:5000], finished_at=now, heartbeat_at=now
    )
    job.refresh_from_db()


@contextmanager
def job_failing(job: Job, *, expected: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Marks `job` failed when the block raises, for the tasks that run jobs.

    `expected` errors are the input's fault: the job fails with their message and the task ends
    normally (nothing to retry). Anything else is logged, fails the job with its type and message,
    and is raised again for Celery.
    """
    try:
        yield
    except expected as exc:
        job_fail(job=job, error=str(exc))
    except Exception as exc:
        log.exception("job %s (%s) failed", job.pk, job.kind)
        job_fail(job=job, error=f"{type(exc).__name__}: {exc}")
        raise


def jobs_sweep() -> int:
    """Fail running jobs whose worker stopped reporting. Returns how many."""
    cutoff = timezone.now() - STALE_AFTER
    now = timezone.now()
    count = Job.objects.filter(state=Job.State.RUNNING, heartbeat_at__lt=cutoff).update(
        state=Job.State.FAILED,
        error="The worker running this job stopped responding. Start the job again.",
        finished_at=now,
    )
    if count:
        log.warning("jobs_sweep: marked %d stale job(s) failed", count)
    return count
