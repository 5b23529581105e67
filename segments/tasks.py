"""Thin Celery tasks for segments: take ids, call services, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task
def segment_recalculate_bulk_task(segment_id: int, trigger: str = "schedule") -> None:
    """Recalculate one segment (the tick's claimed slot, a new segment's first calculation)."""
    from segments.models import Segment
    from segments.services import SegmentBroken, segment_recalculate

    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        return
    try:
        segment_recalculate(segment=segment, trigger=trigger)
    except SegmentBroken as exc:
        # Recorded on the segment (state broken, with the problem); nothing to retry.
        log.warning("segment %s is broken: %s", segment_id, exc)


@shared_task
def segment_recalculate_job_bulk_task(job_id: int) -> None:
    """Run a recalculation Job with its progress (the segment page's "Recalculate")."""
    from segments.services import segment_recalculate_job_run

    segment_recalculate_job_run(job_id=job_id)


@shared_task
def segment_export_bulk_task(job_id: int) -> None:
    """Write a segment's members to a CSV file on the job."""
    from segments.services import segment_export_job_run

    segment_export_job_run(job_id=job_id)


@shared_task
def segments_tick_task() -> list[int]:
    """Queue the updatable segments that are due (beat: every minute)."""
    from segments.services import segments_tick

    return segments_tick()
