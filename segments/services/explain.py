"""Why a profile is (not) in a segment: the segment's conditions evaluated for one profile,
condition by condition (`segments.evaluate`), with what was seen: the field's value, how many
matching events and subscriptions there are, membership of the segments it names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from history.models import Event
from profiles.models import Profile
from segments.compiler import Compiler
from segments.conditions import Catalog, ConditionError, SegmentBroken, SegmentError, clean_conditions
from segments.evaluate import EvalContext, explain, moment
from segments.models import Segment, SegmentMember


class DatabaseFacts:
    """Facts about one profile read from the database with the compiler's own filters, so the
    explanation counts exactly what the segment's query counts."""

    def __init__(self, compiler: Compiler) -> None:
        self.compiler = compiler

    def subscriptions(self, profile_id: int, node: dict[str, Any]) -> int:
        return self.compiler.subscription_set(node).filter(profile_id=profile_id).count()

    def event_count(self, profile_id: int, node: dict[str, Any], ctx: EvalContext) -> int:
        return Event.objects.filter(self.compiler.event_filter(node), profile_id=profile_id).count()

    def member(self, profile_id: int, segment_id: int) -> bool:
        return SegmentMember.objects.filter(segment_id=segment_id, profile_id=profile_id).exists()


def segment_explain(*, segment: Segment, profile: Profile, now: datetime | None = None) -> dict[str, Any]:
    """{"segment", "profile", "matched" (the conditions, evaluated now), "member" (stored
    membership of a static or updatable segment, else None), "tree" (each node with "matched"
    and "why", groups with "items")}. Raises SegmentError for a profile of another database and
    SegmentBroken when the conditions name something that is gone."""
    if profile.database_id != segment.database_id:
        raise SegmentError({"profile": "belongs to another database"})
    catalog = Catalog.load(segment.database)
    now = moment(now)
    member = (SegmentMember.objects.filter(segment_id=segment.pk, profile_id=profile.pk).exists()
              if segment.is_stored else None)
    out: dict[str, Any] = {"segment": segment.pk, "profile": profile.pk, "member": member, "at": now.isoformat()}
    if segment.conditions is None and segment.kind == Segment.Kind.STATIC:
        return {**out, "matched": bool(member), "tree": None}
    try:
        tree = clean_conditions(segment.conditions, catalog, segment_id=segment.pk, fill_salts=False)
        result = explain(tree, profile, DatabaseFacts(Compiler(catalog, now)), EvalContext(catalog, now, (segment.pk,)))
    except ConditionError as exc:
        raise SegmentBroken(exc.errors) from None
    return {**out, "matched": result.matched, "tree": result.as_dict()}
