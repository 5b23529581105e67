"""Thin Celery tasks for profiles: take ids, call services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from accounts import jobs
from profiles.services import field_values_remove


@shared_task
def field_values_remove_task(job_id: int) -> None:
    job = jobs.job_claim(job_id=job_id)
    if job is None:
        return
    with jobs.job_failing(job):
        removed = field_values_remove(
            database_id=job.params["database_id"],
            name=job.params["field"],
            progress=lambda n: jobs.job_progress(job=job, progress=n, message=f"{n:,} profiles cleaned"),
        )
        jobs.job_succeed(job=job, result={"profiles": removed}, message=f"Removed the values from {removed:,} profiles")


@shared_task
def profile_export_task(job_id: int) -> None:
    """Write a database's profiles (the job's search and filters) to a CSV file on the job.

    Streams through a temporary file, so memory stays flat however big the database is."""
    import os
    import tempfile

    from django.core.files import File
    from django.utils import timezone

    from profiles.exporting import export_queryset, profiles_export
    from profiles.models import ProfileDatabase
    from profiles.selectors import FilterError

    job = jobs.job_claim(job_id=job_id)
    if job is None:
        return
    path = ""
    try:
        # FilterError: the schema changed since the export was asked for, so there is nothing to retry.
        with jobs.job_failing(job, expected=(FilterError,)):
            database = ProfileDatabase.objects.select_related("account").get(
                pk=job.params["database_id"], account_id=job.account_id
            )
            _, qs = export_queryset(database=database, filters=job.params)
            total = qs.count()  # once per export, in the background: the progress bar's 100 %
            jobs.job_progress(job=job, progress=0, total=total, message=f"Writing {total:,} profiles")
            # utf-8-sig: spreadsheet programs read the BOM and show accents and non-Latin names right.
            with tempfile.NamedTemporaryFile("w", encoding="utf-8-sig", newline="", suffix=".csv", delete=False) as tmp:
                path = tmp.name
                written = profiles_export(
                    database=database, filters=job.params, out=tmp,
                    progress=lambda n: jobs.job_progress(job=job, progress=n, message=f"{n:,} of {total:,} profiles written"),
                )
            name = f"profiles-{database.slug}-{timezone.now():%Y%m%d-%H%M%S}.csv"
            message = f"{written:,} profile{'' if written == 1 else 's'} exported"
            with open(path, "rb") as fh:
                jobs.job_succeed(job=job, result={"rows": written}, message=message, file=File(fh, name=name))
    finally:
        if path:
            os.unlink(path)


from profiles.tasks_import import profile_import_bulk_task  # noqa: E402, F401
