"""API: segments of a profile database (issue 6, item 9).

Paths follow cdp/api/__init__.py. `{db}` (a database's slug) and `{segment_id}` are resolved
through the token's account while the path is validated, before the body is read: another
account's database or segment is a 404 whatever was sent. Analysts (and any token) read; writes
need the segments permission (marketers and up).

Conditions are the JSON tree of segments.conditions. A tree that cannot be used is a 422 whose
details name each offending node: `loc` is the path in the body, e.g. `["conditions", "items", 2,
"items", 0, "value"]`, or `["schedule", "cron"]`. A saved segment whose field, event type,
resource or segment is gone is `state: "broken"` with its `problem`; reading its members or
counting it is a 409 `broken` (never an empty answer).
"""

from __future__ import annotations

import re
import time
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Field as F
from ninja import Query, Router, Schema, Status

from accounts.access import Actor
from accounts.api import JobOut
from accounts.permissions import Perm
from cdp.api.auth import require
from cdp.api.errors import ERRORS, ApiError
from cdp.api.pagination import CursorPage, paginate
from cdp.api.types import MAX_ID, id_ref
from profiles.api import DatabaseRef
from profiles.models import WRITABLE_SYSTEM_FIELDS, Profile, ProfileDatabase
from segments import selectors
from segments.api.schemas import (
    MAX_MEMBERS_PER_CALL,
    CountIn,
    CountOut,
    ExplainOut,
    KindName,
    MembersAddedOut,
    MembersIn,
    MembersRemovedOut,
    RunOut,
    SegmentIn,
    SegmentMemberOut,
    SegmentOut,
    SegmentPatch,
    StateName,
)
from segments.conditions import Catalog, ConditionError, SegmentBroken, SegmentError, conditions_warnings
from segments.models import Segment, SegmentMember, SegmentRun
from segments.services import (
    UNSET,
    MembersResult,
    conditions_clean,
    segment_check,
    segment_count,
    segment_create,
    segment_delete,
    segment_explain,
    segment_members_add,
    segment_members_add_by_key,
    segment_members_remove,
    segment_members_remove_by_key,
    segment_recalculate_job,
    segment_update,
)

router = Router()

SEGMENTS = ["segments"]


# --- {segment_id} in the path ---------------------------------------------------------------------


SegmentRef = id_ref(Segment, what="segment", example=7, related=("database__account",))


# --- errors ---------------------------------------------------------------------------------------


def _loc(path: str) -> list[str | int]:
    """ "items[2].items[0].value" -> ["items", 2, "items", 0, "value"]."""
    loc: list[str | int] = []
    for part in re.split(r"\.|\[(\d+)\]", path or ""):
        if part:
            loc.append(int(part) if part.isdigit() else part)
    return loc


def _condition_loc(path: str) -> list[str | int]:
    """Where a condition (or schedule) path points in a request body."""
    loc = _loc(path)
    return loc if loc[:1] == ["schedule"] else ["conditions", *loc]


def _refused(exc: SegmentError, what: str, *, status: int = 422, code: str = "") -> ApiError:
    conditional = isinstance(exc, ConditionError | SegmentBroken)
    details = [
        {"loc": _condition_loc(k) if conditional else _loc(k), "message": v,
         "type": "invalid_condition" if conditional else "invalid_value"}
        for k, v in exc.errors.items()
    ]
    summary = "; ".join(f"{k}: {v}" if k else v for k, v in exc.errors.items())
    return ApiError(status, f"{what}: {summary.rstrip('.')}.", code=code, details=details)


def _broken(exc: SegmentError) -> ApiError:
    return _refused(exc, "The segment is broken", status=409, code="broken")


def _write_refused(exc: SegmentError, what: str) -> ApiError:
    if isinstance(exc, SegmentBroken):
        return _broken(exc)
    if not isinstance(exc, ConditionError) and "slug" in exc.errors and "uses" in exc.errors["slug"]:
        return _refused(exc, what, status=409, code="conflict")
    return _refused(exc, what)


# --- output ---------------------------------------------------------------------------------------


def _segment_out(seg: Segment, database: ProfileDatabase | None = None) -> dict[str, Any]:
    problem = None
    if seg.problem:
        loc = _condition_loc(seg.problem_path) if seg.state == Segment.State.BROKEN else _loc(seg.problem_path)
        problem = {"loc": loc, "message": seg.problem}
    return {
        "id": seg.pk, "database": (database or seg.database).slug, "name": seg.name, "slug": seg.slug,
        "description": seg.description, "kind": seg.kind, "conditions": seg.conditions, "schedule": seg.schedule,
        "state": seg.state, "problem": problem, "size": seg.size, "compute_ms": seg.compute_ms,
        "last_computed_at": seg.last_computed_at, "next_run_at": seg.next_run_at,
        "created_at": seg.created_at, "updated_at": seg.updated_at,
    }


def _reloaded(seg: Segment) -> Segment:
    return Segment.objects.select_related("database__account").get(pk=seg.pk)


def _keys(profile: Profile, match_keys: list[str]) -> dict[str, Any]:
    out = {}
    for key in match_keys:
        value = getattr(profile, key, None) if key in WRITABLE_SYSTEM_FIELDS else (profile.data or {}).get(key)
        if value not in (None, ""):
            out[key] = value
    return out


# --- list and create ------------------------------------------------------------------------------


class SegmentFilter(Schema):
    kind: KindName | None = F(None, description="Only segments of this kind.")
    state: StateName | None = F(None, description="Only segments in this state (e.g. broken).")
    q: str = F("", max_length=100, description="Part of the name.")


@router.get("/databases/{slug:db}/segments", tags=SEGMENTS, response={200: CursorPage[SegmentOut], **ERRORS},
            summary="List a database's segments, newest first")
def segment_list_api(request: HttpRequest, db: DatabaseRef, filters: Query[SegmentFilter],
                     cursor: str | None = None, limit: int | None = None) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    qs = selectors.segment_list(account=request.auth.account, database=db, kind=filters.kind, q=filters.q)
    if filters.state:
        qs = qs.filter(state=filters.state)
    page = paginate(qs, cursor=cursor, limit=limit)
    page["items"] = [_segment_out(s, db) for s in page["items"]]
    return page


@router.post("/databases/{slug:db}/segments", tags=SEGMENTS, response={201: SegmentOut, **ERRORS},
             summary="Create a segment")
def segment_create_api(request: HttpRequest, db: DatabaseRef, payload: SegmentIn) -> Status:
    """The conditions are validated against the database: a field, event type, resource or segment
    that does not exist, a value that does not fit the field's type, a relative date beyond 100
    years, a cycle through other segments, or a schedule more often than hourly are a 422 whose
    `loc` names the node (`["conditions", "items", 1, "value"]`, `["schedule", "cron"]`). The
    first calculation (a static segment's snapshot, an updatable segment's members, a dynamic
    segment's size) runs in the background right after."""
    require(request, Perm.SEGMENTS_EDIT)
    try:
        seg = segment_create(database=db, name=payload.name, kind=payload.kind, actor=Actor.from_request(request),
                             conditions=payload.conditions, schedule=payload.schedule,
                             description=payload.description, slug=payload.slug)
    except SegmentError as exc:
        raise _write_refused(exc, "The segment was not created") from exc
    return Status(201, _segment_out(_reloaded(seg)))


def _warnings(tree: dict[str, Any], database: ProfileDatabase) -> list[dict[str, Any]]:
    return [{"loc": _condition_loc(path), "message": message}
            for path, message in conditions_warnings(tree, Catalog.load(database))]


def _count(database: ProfileDatabase, conditions: Any, segment: Segment | None) -> dict[str, Any]:
    try:
        tree = conditions_clean(database=database, conditions=conditions, segment=segment)
        count, ms = segment_count(database=database, conditions=tree, segment=segment)
    except (ConditionError, SegmentBroken) as exc:
        raise _refused(exc, "The conditions cannot be counted") from exc
    except SegmentError as exc:  # too slow
        raise _refused(exc, "The conditions were not counted", status=422, code="too_slow") from exc
    return {"count": count, "ms": ms, "source": "conditions", "warnings": _warnings(tree, database)}


@router.post("/databases/{slug:db}/segments/count", tags=SEGMENTS, response={200: CountOut, **ERRORS},
             summary="Count the profiles conditions match, without saving anything")
def segment_count_draft_api(request: HttpRequest, db: DatabaseRef, payload: CountIn) -> dict:
    """The builder's live count: how many profiles match now, how long the query took, and
    warnings about conditions that are costly on a big database. Nothing is stored."""
    require(request, Perm.ACCOUNT_VIEW)
    segment = None
    if payload.segment is not None:
        segment = Segment.objects.for_account(request.auth.account).filter(database=db, pk=payload.segment).first() \
            if 0 < payload.segment <= MAX_ID else None
        if segment is None:
            raise ApiError(422, f"segment: there is no segment {payload.segment} in {db.name}.",
                           details=[{"loc": ["segment"], "message": f"no segment {payload.segment} in this database",
                                     "type": "not_found"}])
    return _count(db, payload.conditions, segment)


# --- one segment ----------------------------------------------------------------------------------


@router.get("/segments/{int:segment_id}", tags=SEGMENTS, response={200: SegmentOut, **ERRORS}, summary="A segment")
def segment_get_api(request: HttpRequest, segment_id: SegmentRef) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return _segment_out(segment_id)


@router.patch("/segments/{int:segment_id}", tags=SEGMENTS, response={200: SegmentOut, **ERRORS},
              summary="Change a segment")
def segment_update_api(request: HttpRequest, segment_id: SegmentRef, payload: SegmentPatch) -> dict:
    """Only the keys sent change. New conditions are validated like a new segment's (cycles
    through other segments included) and clear a broken state; an updatable segment with new
    conditions is recalculated within a minute."""
    require(request, Perm.SEGMENTS_EDIT)
    sent = payload.model_fields_set
    try:
        seg = segment_update(
            segment=segment_id, actor=Actor.from_request(request), name=payload.name, description=payload.description,
            slug=payload.slug, kind=payload.kind,
            conditions=payload.conditions if "conditions" in sent else UNSET,
            schedule=payload.schedule if "schedule" in sent else UNSET,
        )
    except SegmentError as exc:
        raise _write_refused(exc, "The segment was not changed") from exc
    return _segment_out(_reloaded(seg))


@router.delete("/segments/{int:segment_id}", tags=SEGMENTS, response={204: None, **ERRORS}, summary="Delete a segment")
def segment_delete_api(request: HttpRequest, segment_id: SegmentRef) -> Status:
    """Deletes the segment with its members and runs. 409 `in_use` while another segment's
    conditions name it."""
    require(request, Perm.SEGMENTS_EDIT)
    try:
        segment_delete(segment=segment_id, actor=Actor.from_request(request))
    except SegmentError as exc:
        raise _refused(exc, "The segment was not deleted", status=409, code="in_use") from exc
    return Status(204, None)


@router.post("/segments/{int:segment_id}/count", tags=SEGMENTS, response={200: CountOut, **ERRORS},
             summary="Count a segment now, without storing")
def segment_count_api(request: HttpRequest, segment_id: SegmentRef) -> dict:
    """Evaluates the segment's conditions now and answers the count and the time it took; stored
    members are not changed (that is `/recalculate`). A static segment without conditions answers
    its members' count. A broken segment is 409 `broken` with the condition at fault."""
    require(request, Perm.ACCOUNT_VIEW)
    seg = segment_id
    if seg.is_broken:
        raise _broken(SegmentBroken({seg.problem_path: seg.problem}))
    if seg.kind == Segment.Kind.STATIC and seg.conditions is None:
        start = time.perf_counter()
        n = SegmentMember.objects.filter(segment_id=seg.pk, profile__database_id=seg.database_id).count()
        return {"count": n, "ms": int((time.perf_counter() - start) * 1000), "source": "members", "warnings": []}
    try:
        return _count(seg.database, seg.conditions, seg)
    except ApiError:
        checked = segment_check(segment=seg)  # a field or type deleted since: record it as broken
        if checked.is_broken:
            raise _broken(SegmentBroken({checked.problem_path: checked.problem})) from None
        raise


@router.post("/segments/{int:segment_id}/recalculate", tags=SEGMENTS, response={202: JobOut, **ERRORS},
             summary="Recalculate a segment in the background")
def segment_recalculate_api(request: HttpRequest, segment_id: SegmentRef) -> Status:
    """Queues the recalculation and answers its job (follow it at `/jobs/{id}`): a static segment
    with conditions takes a new snapshot, an updatable one refreshes its members and records who
    entered and left, a dynamic one records its size. Each run is listed at `/segments/{id}/runs`.
    A broken segment is 409 `broken`."""
    require(request, Perm.SEGMENTS_EDIT)
    seg = segment_check(segment=segment_id)
    if seg.is_broken:
        raise _broken(SegmentBroken({seg.problem_path: seg.problem}))
    job = segment_recalculate_job(segment=seg, actor=Actor.from_request(request), trigger=SegmentRun.Trigger.API)
    job.refresh_from_db()  # the job may have run already (eager workers)
    return Status(202, job)


# --- members --------------------------------------------------------------------------------------


def _members_query(seg: Segment) -> QuerySet[Profile]:
    try:
        return selectors.segment_members_query(seg)
    except SegmentBroken as exc:
        raise _broken(exc) from exc
    except ConditionError as exc:  # pragma: no cover (the selector reports these as SegmentBroken)
        raise _broken(SegmentBroken(exc.errors)) from exc


@router.get("/segments/{int:segment_id}/members", tags=SEGMENTS, response={200: CursorPage[SegmentMemberOut], **ERRORS},
            summary="A segment's members, newest profiles first")
def segment_members_api(request: HttpRequest, segment_id: SegmentRef, cursor: str | None = None,
                        limit: int | None = None) -> dict:
    """Profile ids with their match keys, paged by cursor. A static or updatable segment answers
    its stored members (as of its last calculation); a dynamic one is evaluated now."""
    require(request, Perm.ACCOUNT_VIEW)
    seg = segment_id
    match_keys = list(seg.database.match_keys)
    columns = ["id", *(k for k in match_keys if k in WRITABLE_SYSTEM_FIELDS)]
    if any(k not in WRITABLE_SYSTEM_FIELDS for k in match_keys):
        columns.append("data")
    page = paginate(_members_query(seg).only(*columns), cursor=cursor, limit=limit)
    added: dict[int, Any] = {}
    if seg.is_stored and page["items"]:
        added = dict(SegmentMember.objects.filter(segment_id=seg.pk, profile_id__in=[p.pk for p in page["items"]])
                     .values_list("profile_id", "added_at"))
    page["items"] = [{"profile_id": p.pk, "keys": _keys(p, match_keys), "added_at": added.get(p.pk)}
                     for p in page["items"]]
    return page


def _members_request(seg: Segment, payload: MembersIn) -> None:
    if seg.kind != Segment.Kind.STATIC:
        message = f"“{seg.name}” is {seg.get_kind_display().lower()}: its members follow its conditions"
        raise ApiError(409, f"{message}. Only static segments are changed by hand.", code="not_static",
                       details=[{"loc": ["segment"], "message": message, "type": "not_static"}])
    by_ids, by_key = payload.profile_ids is not None, payload.values is not None or payload.key is not None
    if by_ids == by_key:
        raise ApiError(422, "Give either profile_ids, or key and values.",
                       details=[{"loc": ["profile_ids"], "message": "give profile_ids, or key and values",
                                 "type": "missing"}])
    if by_key and (payload.key is None or payload.values is None):
        missing = "key" if payload.key is None else "values"
        raise ApiError(422, f"{missing}: required with {'values' if missing == 'key' else 'key'}.",
                       details=[{"loc": [missing], "message": "required", "type": "missing"}])
    if by_key and payload.key not in seg.database.match_keys and payload.key not in ("email", "phone", "id"):
        raise ApiError(422, f"key: {payload.key!r} is not a match key of {seg.database.name}.",
                       details=[{"loc": ["key"], "message": f"not a match key (use one of "
                                                            f"{', '.join(seg.database.match_keys)})",
                                 "type": "invalid_value"}])


def _unknown(items: list[Any], result: MembersResult) -> list[dict[str, Any]]:
    return [{"index": i, "value": v, "message": result.unknown[v]} for i, v in enumerate(items) if v in result.unknown]


def _members_change(request: HttpRequest, seg: Segment, payload: MembersIn, *, add: bool) -> dict[str, Any]:
    _members_request(seg, payload)
    actor = Actor.from_request(request)
    try:
        if payload.profile_ids is not None:
            items: list[Any] = payload.profile_ids
            if add:
                result = segment_members_add(segment=seg, profile_ids=items, actor=actor, source="api")
            else:
                result = segment_members_remove(segment=seg, profile_ids=items, actor=actor, source="api")
                known = set(Profile.objects.filter(database_id=seg.database_id, pk__in=set(items))
                            .values_list("pk", flat=True))
                result.unknown = {i: f"no profile #{i} in {seg.database.name}" for i in items if i not in known}
        else:
            items = payload.values or []
            change = segment_members_add_by_key if add else segment_members_remove_by_key
            result = change(segment=seg, key=payload.key, values=items, actor=actor, source="api")
    except SegmentError as exc:
        raise _refused(exc, "The members were not changed") from exc
    size = Segment.objects.filter(pk=seg.pk).values_list("size", flat=True).first()
    return {"added" if add else "removed": result.changed, "size": size, "unknown": _unknown(items, result)}


_MEMBERS_DOC = (
    f"Static segments only (409 `not_static` otherwise). Name up to {MAX_MEMBERS_PER_CALL:,} profiles either "
    "by id (`profile_ids`) or by a match key (`key` and `values`, normalised like an import: `ANN@Example.com` "
    "finds ann@example.com). Items that name no profile of the database are answered in `unknown` with their "
    "index and why; the others are applied. Profiles are never created."
)


@router.post("/segments/{int:segment_id}/members", tags=SEGMENTS, response={200: MembersAddedOut, **ERRORS},
             summary="Add profiles to a static segment", description=_MEMBERS_DOC)
def segment_members_add_api(request: HttpRequest, segment_id: SegmentRef, payload: MembersIn) -> dict:
    require(request, Perm.SEGMENTS_EDIT)
    return _members_change(request, segment_id, payload, add=True)


@router.delete("/segments/{int:segment_id}/members", tags=SEGMENTS, response={200: MembersRemovedOut, **ERRORS},
               summary="Remove profiles from a static segment", description=_MEMBERS_DOC)
def segment_members_remove_api(request: HttpRequest, segment_id: SegmentRef, payload: MembersIn) -> dict:
    require(request, Perm.SEGMENTS_EDIT)
    return _members_change(request, segment_id, payload, add=False)


# --- explain and runs -----------------------------------------------------------------------------


@router.get("/segments/{int:segment_id}/explain", tags=SEGMENTS, response={200: ExplainOut, **ERRORS},
            summary="Why a profile is (not) in a segment")
def segment_explain_api(request: HttpRequest, segment_id: SegmentRef, profile: int) -> dict:
    """Evaluates the conditions for one profile (`?profile=ID`, of the segment's database), node by
    node: each with `matched` and `why` (the value seen, how many matching events...)."""
    require(request, Perm.ACCOUNT_VIEW)
    seg = segment_id
    found = None
    if 0 < profile <= MAX_ID:
        found = Profile.objects.for_account(request.auth.account).filter(database_id=seg.database_id, pk=profile).first()
    if found is None:
        raise ApiError(404, f"There is no profile {profile} in the database {seg.database.slug!r}.",
                       details=[{"loc": ["query", "profile"], "message": "no such profile in the segment's database",
                                 "type": "not_found"}])
    found.database = seg.database
    try:
        return segment_explain(segment=seg, profile=found)
    except SegmentBroken as exc:
        segment_check(segment=seg)
        raise _broken(exc) from exc
    except SegmentError as exc:  # pragma: no cover (the profile is checked above)
        raise _refused(exc, "The segment cannot be explained") from exc


@router.get("/segments/{int:segment_id}/runs", tags=SEGMENTS, response={200: CursorPage[RunOut], **ERRORS},
            summary="A segment's recalculations, newest first")
def segment_runs_api(request: HttpRequest, segment_id: SegmentRef, cursor: str | None = None,
                     limit: int | None = None) -> dict:
    """Its size over time: each run with its size, how many profiles entered and left, how long it
    took and what started it."""
    require(request, Perm.ACCOUNT_VIEW)
    qs = SegmentRun.objects.for_account(request.auth.account).filter(segment=segment_id)
    return paginate(qs, cursor=cursor, limit=limit)
