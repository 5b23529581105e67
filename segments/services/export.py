"""A segment's members to CSV in the background (a Job with progress and a download), streamed
in chunks of ids like the profile export (`profiles.exporting`), with the same cells."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable
from typing import IO

from django.core.files import File
from django.db import transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.jobs import job_claim, job_create, job_failing, job_progress, job_succeed
from accounts.models import Job
from profiles.exporting import CHUNK_SIZE, csv_cell
from segments.conditions import SegmentError
from segments.models import Segment
from segments.selectors import segment_members_query


@transaction.atomic
def segment_export_job(*, segment: Segment, actor: Actor) -> Job:
    """Start exporting the segment's members (any kind; a dynamic one as it is when the job runs).
    Raises SegmentBroken for a broken segment."""
    from segments.tasks import segment_export_bulk_task

    segment_members_query(segment)  # refuse a broken segment now, not in the worker
    job = job_create(account=segment.account, kind="segments.export", title=f"Export of “{segment.name}”",
                     created_by=actor.user, params={"segment_id": segment.pk})
    audit_log(account=segment.account, actor=actor, verb="segment.exported", target=segment, data={"job": job.pk})
    segment_export_bulk_task.delay_on_commit(job.pk)
    return job


def segment_members_export(*, segment: Segment, out: IO[str], progress: Callable[[int], None] | None = None) -> int:
    """Write the members as CSV (header: the database's field names, then the profile id).
    Returns how many rows were written."""
    fields = list(segment.database.fields.all())
    columns = [f.name for f in fields if f.is_system]
    at = {name: i for i, name in enumerate(columns)}
    plan = [(at[f.name] if f.is_system else None, f.name, f.type) for f in fields]
    data_at, id_at = len(columns), len(columns) + 1
    writer = csv.writer(out)
    writer.writerow([*(f.name for f in fields), "profile_id"])
    done = 0
    qs = segment_members_query(segment).order_by("id")
    for row in qs.values_list(*columns, "data", "id").iterator(chunk_size=CHUNK_SIZE):
        data = row[data_at] or {}
        writer.writerow([*(csv_cell(row[i] if i is not None else data.get(name), t) for i, name, t in plan), row[id_at]])
        done += 1
        if progress is not None and done % CHUNK_SIZE == 0:
            progress(done)
    return done


def segment_export_job_run(*, job_id: int) -> None:
    """Run an export Job (the task calls this; a second delivery finds it claimed)."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    path = ""
    try:
        with job_failing(job, expected=(SegmentError, Segment.DoesNotExist)):
            segment = Segment.objects.select_related("database__account").get(pk=job.params["segment_id"],
                                                                             account_id=job.account_id)
            job_progress(job=job, progress=0, total=segment.size or None, message=f"Writing the members of “{segment.name}”")
            with tempfile.NamedTemporaryFile("w", encoding="utf-8-sig", newline="", suffix=".csv", delete=False) as tmp:
                path = tmp.name
                written = segment_members_export(
                    segment=segment, out=tmp,
                    progress=lambda n: job_progress(job=job, progress=n, message=f"{n:,} profiles written"),
                )
            name = f"segment-{segment.slug}-{timezone.now():%Y%m%d-%H%M%S}.csv"
            with open(path, "rb") as fh:
                job_succeed(job=job, result={"rows": written}, file=File(fh, name=name),
                            message=f"{written:,} profile{'' if written == 1 else 's'} exported")
    finally:
        if path:
            os.unlink(path)
