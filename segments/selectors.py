"""Reads on segments shared by the views, the API, tasks and the mailings: lists, the members of a
segment of any kind, audiences made of several segments, and a profile's segments.

Members are always a queryset of Profile (one query, with the compiled conditions or the stored
members as a semi-join), so a caller can count it, page it by id, or embed it in its own
INSERT .. SELECT (`member_ids_sql`). A broken segment raises SegmentBroken: it is never read as
empty and never becomes an audience.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import IntegerField, QuerySet, Value

from accounts.models import Account
from profiles.models import Profile, ProfileDatabase
from segments.compiler import profiles_matching
from segments.conditions import Catalog, ConditionError, SegmentBroken, SegmentError, clean_conditions
from segments.models import Segment, SegmentMember, SegmentMovement, SegmentRun


def segment_list(*, account: Account, database: ProfileDatabase | None = None, kind: str | None = None,
                 q: str = "") -> QuerySet[Segment]:
    qs = Segment.objects.for_account(account).select_related("database")
    if database is not None:
        qs = qs.filter(database=database)
    if kind:
        qs = qs.filter(kind=kind)
    if q.strip():
        qs = qs.filter(name__icontains=q.strip()[:100])
    return qs.order_by("name", "id")


def _refuse_broken(segment: Segment) -> None:
    if segment.state == Segment.State.BROKEN:
        raise SegmentBroken({segment.problem_path: f"“{segment.name}” is broken: {segment.problem}"})


def segment_members_query(segment: Segment, *, now: datetime | None = None) -> QuerySet[Profile]:
    """The profiles in the segment now: the stored members of a static or updatable segment, the
    conditions evaluated now for a dynamic one. Raises SegmentBroken (marked broken, or an
    updatable or dynamic segment whose conditions name something that is gone)."""
    _refuse_broken(segment)
    base = Profile.objects.filter(account_id=segment.account_id, database_id=segment.database_id)
    if segment.kind == Segment.Kind.STATIC:
        return base.filter(pk__in=SegmentMember.objects.filter(segment_id=segment.pk).values("profile_id"))
    catalog = Catalog.load(segment.database)
    try:
        # An updatable segment's members are only as good as its conditions: checked at use too.
        tree = clean_conditions(segment.conditions, catalog, segment_id=segment.pk, fill_salts=False)
    except ConditionError as exc:
        raise SegmentBroken(exc.errors) from None
    if segment.kind == Segment.Kind.UPDATABLE:
        return base.filter(pk__in=SegmentMember.objects.filter(segment_id=segment.pk).values("profile_id"))
    return profiles_matching(tree, catalog, now=now, stack=(segment.pk,))


def member_ids_sql(queryset: QuerySet[Profile]) -> tuple[str, list[Any]]:
    """SQL selecting the profile ids of `queryset` (from segment_members_query or audience), with
    its parameters, to embed in a set-based statement (`INSERT .. SELECT .. WHERE profile_id IN (sql)`)."""
    sql, params = queryset.order_by().values("id").query.sql_with_params()
    return sql, list(params)


def audience(*, database: ProfileDatabase, include: Sequence[Segment], exclude: Sequence[Segment] = (),
             now: datetime | None = None) -> QuerySet[Profile]:
    """The profiles of `database` in any of `include` and in none of `exclude`: one query (stored
    members as semi/anti-joins, dynamic segments inlined). Raises SegmentError when a segment
    belongs to another database (or account) or `include` is empty, SegmentBroken when one is broken."""
    if not include:
        raise SegmentError({"include": "name at least one segment"})
    for seg in (*include, *exclude):
        if seg.database_id != database.pk or seg.account_id != database.account_id:
            raise SegmentError({"segments": f"segment {seg.pk} is not a segment of {database.name}"})
        _refuse_broken(seg)
    catalog = Catalog.load(database)
    tree = {"type": "group", "op": "and", "negate": False, "items": [
        {"type": "group", "op": "or", "negate": False,
         "items": [{"type": "segment", "segment": s.pk, "negate": False} for s in include]},
        *({"type": "segment", "segment": s.pk, "negate": True} for s in exclude),
    ]}
    return profiles_matching(tree, catalog, now=now)


def segments_of_profile(profile: Profile, *, now: datetime | None = None) -> list[Segment]:
    """The segments the profile is in (the card): stored memberships, and the dynamic segments of
    its database evaluated for it now (one query for all of them; broken ones are left out)."""
    stored = list(Segment.objects.filter(
        pk__in=SegmentMember.objects.filter(profile_id=profile.pk).values("segment_id"),
        database_id=profile.database_id,
    ))
    dynamic = list(Segment.objects.filter(database_id=profile.database_id, kind=Segment.Kind.DYNAMIC)
                   .exclude(state=Segment.State.BROKEN))
    found: set[int] = set()
    if dynamic:
        catalog = Catalog.load(profile.database)
        parts = []
        for seg in dynamic:
            try:
                tree = clean_conditions(seg.conditions, catalog, segment_id=seg.pk, fill_salts=False)
                qs = profiles_matching(tree, catalog, now=now, stack=(seg.pk,))
            except SegmentError:
                continue
            parts.append(qs.filter(pk=profile.pk).annotate(seg_id=Value(seg.pk, output_field=IntegerField()))
                         .values("seg_id"))
        for i in range(0, len(parts), 50):
            chunk = parts[i:i + 50]
            first, *rest = chunk
            found.update(row["seg_id"] for row in (first.union(*rest, all=True) if rest else first))
    return sorted([*stored, *(s for s in dynamic if s.pk in found)], key=lambda s: (s.name.lower(), s.pk))


def segment_runs(segment: Segment, *, limit: int = 200) -> list[SegmentRun]:
    """The latest finished recalculations, oldest first (the size chart)."""
    runs = list(SegmentRun.objects.filter(segment=segment, finished_at__isnull=False).order_by("-started_at", "-id")[:limit])
    return runs[::-1]


def run_movements(run: SegmentRun, *, entered: bool | None = None, after: int = 0, limit: int = 100) -> QuerySet[SegmentMovement]:
    """Who entered (or left) at one update, by profile id (keyset: `after` the last id seen)."""
    qs = SegmentMovement.objects.filter(run=run, profile_id__gt=after)
    if entered is not None:
        qs = qs.filter(entered=entered)
    return qs.order_by("profile_id")[:limit]
