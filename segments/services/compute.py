"""Recalculating segments: the set-based membership refresh, the recalculation Job, and the tick
that runs updatable segments on their schedules.

The refresh evaluates the compiled query once and stores the difference in one statement on
PostgreSQL (data-modifying CTEs: the members that left are deleted, the new ones inserted with
ON CONFLICT DO NOTHING, and for an updatable segment both are written as movements), and through
a temporary table on SQLite (one INSERT .. SELECT and one DELETE). Never a loop over profiles.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.jobs import job_claim, job_create, job_failing, job_progress, job_succeed
from accounts.models import Job
from segments.compiler import profiles_matching
from segments.conditions import Catalog, ConditionError, SegmentBroken, SegmentError, clean_conditions
from segments.evaluate import moment
from segments.models import Segment, SegmentMember, SegmentRun
from segments.schedule import next_run
from segments.services.segments import evaluation_settings, mark_broken

log = logging.getLogger(__name__)

MEMBER = SegmentMember._meta.db_table
MOVEMENT = "segments_segmentmovement"
TICK_LIMIT = 200


def _ids_sql(segment: Segment, catalog: Catalog, now: datetime) -> tuple[str, list[Any]]:
    """The compiled query selecting the ids of the matching profiles, as SQL and parameters."""
    tree = clean_conditions(segment.conditions, catalog, segment_id=segment.pk, fill_salts=False)
    qs = profiles_matching(tree, catalog, now=now, stack=(segment.pk,)).order_by().values("id")
    try:
        sql, params = qs.query.sql_with_params()
    except EmptyResultSet:
        return f"SELECT id FROM {qs.model._meta.db_table} WHERE 1 = 0", []  # noqa: S608 (a table name)
    return sql, list(params)


def _store_pg(segment: Segment, sql: str, params: list[Any], *, run: SegmentRun | None, now: datetime) -> tuple[int, int, int]:
    movements = ""
    tail: list[Any] = []
    if run is not None:
        movements = (f", seg_mv AS (INSERT INTO {MOVEMENT} (run_id, profile_id, entered)"  # noqa: S608 (table names are the models' own)
                     " SELECT %s, profile_id, TRUE FROM seg_ins UNION ALL SELECT %s, profile_id, FALSE FROM seg_del)")
        tail = [run.pk, run.pk]
    # Table names are the models' own; the compiled query's values are parameters.
    statement = (
        f"WITH seg_q AS MATERIALIZED ({sql}),"  # noqa: S608 (table names are the models' own)
        f" seg_del AS (DELETE FROM {MEMBER} m WHERE m.segment_id = %s"
        "   AND NOT EXISTS (SELECT 1 FROM seg_q WHERE seg_q.id = m.profile_id) RETURNING m.profile_id),"
        f" seg_ins AS (INSERT INTO {MEMBER} (segment_id, profile_id, added_at)"
        "   SELECT %s, seg_q.id, %s FROM seg_q"
        f"   WHERE NOT EXISTS (SELECT 1 FROM {MEMBER} m WHERE m.segment_id = %s AND m.profile_id = seg_q.id)"
        "   ON CONFLICT DO NOTHING RETURNING profile_id)"
        f"{movements}"
        " SELECT (SELECT count(*) FROM seg_q), (SELECT count(*) FROM seg_ins), (SELECT count(*) FROM seg_del)"
    )
    with connection.cursor() as cur:
        cur.execute(statement, [*params, segment.pk, segment.pk, now, segment.pk, *tail])
        size, entered, left = cur.fetchone()
    return int(size), int(entered), int(left)


def _store_sqlite(segment: Segment, sql: str, params: list[Any], *, run: SegmentRun | None, now: datetime) -> tuple[int, int, int]:
    added_at = connection.ops.adapt_datetimefield_value(now)
    s = segment.pk
    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS segments_calc (profile_id INTEGER PRIMARY KEY)")
        cur.execute("DELETE FROM temp.segments_calc")
        cur.execute(f"INSERT INTO temp.segments_calc (profile_id) {sql}", params)
        if run is not None:
            cur.execute(
                f"INSERT INTO {MOVEMENT} (run_id, profile_id, entered) SELECT %s, c.profile_id, 1 FROM temp.segments_calc c"  # noqa: S608 (table names are the models' own)
                f" WHERE NOT EXISTS (SELECT 1 FROM {MEMBER} m WHERE m.segment_id = %s AND m.profile_id = c.profile_id)",
                [run.pk, s])
            cur.execute(
                f"INSERT INTO {MOVEMENT} (run_id, profile_id, entered) SELECT %s, m.profile_id, 0 FROM {MEMBER} m"  # noqa: S608 (table names are the models' own)
                " WHERE m.segment_id = %s AND NOT EXISTS (SELECT 1 FROM temp.segments_calc c WHERE c.profile_id = m.profile_id)",
                [run.pk, s])
        cur.execute(
            f"DELETE FROM {MEMBER} WHERE segment_id = %s AND NOT EXISTS"  # noqa: S608 (table names are the models' own)
            f" (SELECT 1 FROM temp.segments_calc c WHERE c.profile_id = {MEMBER}.profile_id)", [s])
        left = cur.rowcount
        cur.execute(
            f"INSERT INTO {MEMBER} (segment_id, profile_id, added_at) SELECT %s, c.profile_id, %s FROM temp.segments_calc c"  # noqa: S608 (table names are the models' own)
            f" WHERE NOT EXISTS (SELECT 1 FROM {MEMBER} m WHERE m.segment_id = %s AND m.profile_id = c.profile_id)"
            " ON CONFLICT DO NOTHING", [s, added_at, s])
        entered = cur.rowcount
        cur.execute("SELECT count(*) FROM temp.segments_calc")
        size = cur.fetchone()[0]
        cur.execute("DELETE FROM temp.segments_calc")
    return int(size), int(entered), int(left)


def _count(sql: str, params: list[Any]) -> int:
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM ({sql}) seg_q", params)  # noqa: S608 (our compiled SQL)
        return int(cur.fetchone()[0])


def segment_recalculate(*, segment: Segment, trigger: str = SegmentRun.Trigger.MANUAL, job: Job | None = None,
                        now: datetime | None = None) -> SegmentRun:
    """Evaluate a segment now and record it: a SegmentRun (size, entered, left, duration), and the
    segment's size, last_computed_at, compute_ms and state.

    - static: a snapshot: the members become the profiles its conditions match (without
      conditions, the members stay and are counted);
    - updatable: the same, and who entered and left is written as movements of the run (from the
      second calculation on: at the first, everyone entered);
    - dynamic: only counted.

    Raises SegmentBroken (and marks the segment broken) when its conditions name something that is
    gone; any other failure marks it failed with the error and is raised again.
    """
    seg = Segment.objects.select_related("database__account").get(pk=segment.pk)
    now = moment(now)
    catalog = Catalog.load(seg.database)
    counted_only = seg.kind == Segment.Kind.STATIC and seg.conditions is None
    sql: str = ""
    params: list[Any] = []
    if not counted_only:
        try:
            sql, params = _ids_sql(seg, catalog, now)
        except (ConditionError, SegmentBroken) as exc:
            mark_broken(seg, exc)
            raise SegmentBroken(exc.errors) from None
    Segment.objects.filter(pk=seg.pk).update(state=Segment.State.COMPUTING)
    start = time.perf_counter()
    try:
        with evaluation_settings():
            Segment.objects.select_for_update().filter(pk=seg.pk).first()  # one refresh of a segment at a time
            run = SegmentRun.objects.create(account_id=seg.account_id, segment=seg, trigger=trigger, job=job, started_at=now)
            if counted_only:
                size, entered, left = SegmentMember.objects.filter(segment_id=seg.pk).count(), 0, 0
            elif seg.kind == Segment.Kind.DYNAMIC:
                size, entered, left = _count(sql, params), 0, 0
            else:
                # Movements from the second calculation on: at the first, everyone "entered".
                first = seg.last_computed_at is None and not SegmentMember.objects.filter(segment_id=seg.pk).exists()
                moves = seg.kind == Segment.Kind.UPDATABLE and not first
                store = _store_pg if connection.vendor == "postgresql" else _store_sqlite
                size, entered, left = store(seg, sql, params, run=run if moves else None, now=now)
            ms = int((time.perf_counter() - start) * 1000)
            run.finished_at, run.size, run.entered, run.left, run.duration_ms = timezone.now(), size, entered, left, ms
            run.save(update_fields=["finished_at", "size", "entered", "left", "duration_ms"])
            Segment.objects.filter(pk=seg.pk).update(size=size, last_computed_at=now, compute_ms=ms, state=Segment.State.OK,
                                                     problem="", problem_path="")
    except Exception as exc:
        Segment.objects.filter(pk=seg.pk).update(state=Segment.State.FAILED, problem=f"{type(exc).__name__}: {exc}"[:5000],
                                                 problem_path="")
        raise
    return run


@transaction.atomic
def segment_recalculate_job(*, segment: Segment, actor: Actor, trigger: str = SegmentRun.Trigger.MANUAL) -> Job:
    """A Job that recalculates the segment in the background (bulk queue), with progress."""
    from segments.tasks import segment_recalculate_job_bulk_task

    job = job_create(account=segment.account, kind="segments.recalculate", title=f"Recalculate “{segment.name}”",
                     created_by=actor.user, params={"segment_id": segment.pk, "trigger": trigger}, total=2)
    audit_log(account=segment.account, actor=actor, verb="segment.recalculated", target=segment, data={"job": job.pk})
    segment_recalculate_job_bulk_task.delay_on_commit(job.pk)
    return job


def segment_recalculate_job_run(*, job_id: int) -> None:
    """Run a recalculation Job (the task calls this; a second delivery finds it claimed and returns)."""
    job = job_claim(job_id=job_id)
    if job is None:
        return
    with job_failing(job, expected=(SegmentError, Segment.DoesNotExist)):
        segment = Segment.objects.get(pk=job.params["segment_id"], account_id=job.account_id)
        job_progress(job=job, progress=1, message=f"Evaluating “{segment.name}”")
        run = segment_recalculate(segment=segment, trigger=job.params.get("trigger") or SegmentRun.Trigger.MANUAL, job=job)
        message = f"{run.size:,} profiles in {run.duration_ms:,} ms"
        if segment.kind == Segment.Kind.UPDATABLE or run.entered or run.left:
            message += f" ({run.entered:,} entered, {run.left:,} left)"
        job_succeed(job=job, result={"run": run.pk, "size": run.size, "entered": run.entered, "left": run.left,
                                     "duration_ms": run.duration_ms}, message=message)


def segments_due(*, now: datetime | None = None) -> list[Segment]:
    """The updatable segments whose next run is due, oldest slot first."""
    now = now or timezone.now()
    return list(Segment.objects.filter(kind=Segment.Kind.UPDATABLE, next_run_at__lte=now)
                .select_related("account").order_by("next_run_at")
                .only("id", "schedule", "next_run_at", "account__timezone")[:TICK_LIMIT])


def segment_claim_slot(*, segment: Segment, now: datetime) -> bool:
    """Take the slot `segment.next_run_at` (as read) by moving next_run_at to the following one, in
    one conditional UPDATE: of two schedulers that read the same slot exactly one gets True."""
    slot = segment.next_run_at
    following = next_run(segment.schedule or {"every_hours": 1}, now, segment.account.tzinfo, slot=slot)
    return Segment.objects.filter(pk=segment.pk, kind=Segment.Kind.UPDATABLE, next_run_at=slot).update(
        next_run_at=following) == 1


STOPPED = "The last calculation stopped before it finished (its worker was lost). Recalculate it."


def segments_unstick() -> int:
    """Segments left "computing" by a worker that died mid-calculation are marked failed, saying so
    (the tick runs it every minute). A calculation in progress holds its segment's row lock, so
    SKIP LOCKED passes over it; on SQLite the update waits for the running writer and then finds
    its segment no longer computing."""
    with transaction.atomic():
        stuck = list(Segment.objects.select_for_update(skip_locked=True).filter(state=Segment.State.COMPUTING)
                     .values_list("pk", flat=True))
        if not stuck:
            return 0
        n = Segment.objects.filter(pk__in=stuck, state=Segment.State.COMPUTING).update(
            state=Segment.State.FAILED, problem=STOPPED, problem_path="")
    if n:
        log.warning("segments: %d segment(s) left computing by a lost worker marked failed", n)
    return n


def segments_tick(*, now: datetime | None = None) -> list[int]:
    """Claim the updatable segments that are due and queue their recalculation (bulk queue). Two
    schedulers ticking the same minute run each slot once (RELIABILITY.md F10); a scheduler that
    was down runs a missed segment once, then keeps its rhythm. Returns the claimed ids."""
    from segments.tasks import segment_recalculate_bulk_task

    now = now or timezone.now()
    segments_unstick()
    claimed = []
    for seg in segments_due(now=now):
        if segment_claim_slot(segment=seg, now=now):
            claimed.append(seg.pk)
            segment_recalculate_bulk_task.delay_on_commit(seg.pk, SegmentRun.Trigger.SCHEDULE)
    if claimed:
        log.info("segments_tick: %d segment(s) due", len(claimed))
    return claimed
