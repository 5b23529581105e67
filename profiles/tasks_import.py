"""The import task: takes an import id, runs the pipeline, moves its Job. Safe to run twice
(job_claim lets one worker in) and safe to crash (all writes are one transaction at the end).

The name ends in `_bulk_task`, so `cdp.celery` routes it to the bulk queue.
"""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from django.db import DatabaseError, connection
from django.utils import timezone

from accounts import jobs
from accounts.models import Job
from profiles.importing import ImportFileError, ImportMappingError, import_run
from profiles.models import ProfileImport

log = logging.getLogger(__name__)


@shared_task
def profile_import_bulk_task(import_id: int) -> None:
    imp = ProfileImport.objects.select_related("database__account", "created_by").filter(pk=import_id).first()
    if imp is None or imp.job_id is None:
        return
    job = jobs.job_claim(job_id=imp.job_id)
    if job is None:
        return

    def progress(done: int, total: int | None, message: str) -> None:
        jobs.job_progress(job=job, progress=done, total=total, message=message)

    heartbeat = _Heartbeat(job.pk)
    heartbeat.start()
    try:
        with jobs.job_failing(job, expected=(ImportFileError, ImportMappingError)):
            result = import_run(profile_import=imp, progress=progress)
            jobs.job_succeed(
                job=job,
                result={k: v for k, v in result.as_dict().items() if k != "phases"},
                message=f"{result.rows:,} rows: {result.created:,} created, {result.updated:,} updated, "
                f"{result.unchanged:,} unchanged, {result.failed:,} failed",
            )
    finally:
        heartbeat.stop()


class _Heartbeat(threading.Thread):
    """Keeps the job's heartbeat fresh while one long statement runs (the final SQL of a big file
    takes minutes), so `jobs_sweep` does not take a working import for a dead one."""

    EVERY = 60.0

    def __init__(self, job_id: int) -> None:
        super().__init__(name=f"import-heartbeat-{job_id}", daemon=True)
        self.job_id = job_id
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(self.EVERY):
                try:
                    Job.objects.filter(pk=self.job_id, state=Job.State.RUNNING).update(heartbeat_at=timezone.now())
                except DatabaseError:  # SQLite: the import holds the write lock; try again later
                    log.debug("import heartbeat for job %s skipped", self.job_id)
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
