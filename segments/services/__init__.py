"""Writes on segments. Modules: segments (create, change, delete, live counts), compute (the
set-based recalculation, its Job, the schedule tick), members (static members by hand, by match
key, and on erasure and merge), explain (why a profile is or is not in a segment), export (members to CSV as a Job)."""

from __future__ import annotations

from segments.conditions import ConditionError, SegmentBroken, SegmentError  # noqa: F401
from segments.services.compute import (  # noqa: F401
    segment_claim_slot,
    segment_recalculate,
    segment_recalculate_job,
    segment_recalculate_job_run,
    segments_due,
    segments_tick,
)
from segments.services.explain import segment_explain  # noqa: F401
from segments.services.export import segment_export_job, segment_export_job_run, segment_members_export  # noqa: F401
from segments.services.members import (  # noqa: F401
    MembersResult,
    members_erase,
    members_merge,
    segment_members_add,
    segment_members_add_by_key,
    segment_members_remove,
    segment_members_remove_by_key,
)
from segments.services.segments import (  # noqa: F401
    SEGMENT_USERS,
    UNSET,
    conditions_clean,
    segment_check,
    segment_count,
    segment_create,
    segment_delete,
    segment_sample,
    segment_update,
    segment_users,
)
