"""Members of static segments put in and taken out by hand, from a list of match keys, an import
or the API (set-based), and what erasure and merge do to memberships."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from profiles.models import Profile
from profiles.services import profiles_by_key
from segments.conditions import SegmentError
from segments.models import Segment, SegmentMember

MEMBER = SegmentMember._meta.db_table
PROFILE = Profile._meta.db_table
MAX_IDS_PER_CALL = 100_000
CHUNK = 20_000


@dataclass
class MembersResult:
    """What a change of members did: how many were added (or removed), and the values that named
    no profile (by value, why)."""

    changed: int = 0
    unknown: dict[Any, str] = field(default_factory=dict)


def _static(segment: Segment) -> Segment:
    seg = Segment.objects.select_for_update().select_related("account", "database").get(pk=segment.pk)
    if seg.kind != Segment.Kind.STATIC:
        raise SegmentError({"segment": f"“{seg.name}” is {seg.get_kind_display().lower()}: its members follow its conditions"})
    return seg


def _ids(profile_ids: Iterable[Any]) -> list[int]:
    out = []
    for raw in profile_ids:
        if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).strip().isdigit():
            raise SegmentError({"profiles": f"{raw!r} is not a profile id"})
        out.append(int(raw))
    ids = sorted(set(out))
    if len(ids) > MAX_IDS_PER_CALL:
        raise SegmentError({"profiles": f"at most {MAX_IDS_PER_CALL:,} profiles at a time"})
    return ids


def _id_list_sql(ids: list[int]) -> tuple[str, Any]:
    """A placeholder matching any of `ids` (one parameter, whatever the count)."""
    if connection.vendor == "postgresql":
        return "= ANY(%s)", ids
    return "IN (SELECT value FROM json_each(%s))", json.dumps(ids)


def _insert(segment: Segment, ids: list[int]) -> int:
    added = 0
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cur:
        for i in range(0, len(ids), CHUNK):
            match, param = _id_list_sql(ids[i:i + CHUNK])
            cur.execute(
                f"INSERT INTO {MEMBER} (segment_id, profile_id, added_at) SELECT %s, p.id, %s FROM {PROFILE} p"  # noqa: S608
                f" WHERE p.database_id = %s AND p.id {match} ON CONFLICT DO NOTHING",
                [segment.pk, now, segment.database_id, param])
            added += max(cur.rowcount, 0)
    return added


def _delete(segment: Segment, ids: list[int]) -> int:
    removed = 0
    with connection.cursor() as cur:
        for i in range(0, len(ids), CHUNK):
            match, param = _id_list_sql(ids[i:i + CHUNK])
            cur.execute(f"DELETE FROM {MEMBER} WHERE segment_id = %s AND profile_id {match}", [segment.pk, param])  # noqa: S608
            removed += max(cur.rowcount, 0)
    return removed


def segment_resize(segment: Segment, delta: int) -> None:  # also the import hook's (segments.importing)
    if delta:
        Segment.objects.filter(pk=segment.pk).update(size=Greatest(Coalesce(F("size"), Value(0)) + delta, Value(0)))


@transaction.atomic
def segment_members_add(*, segment: Segment, profile_ids: Iterable[Any], actor: Actor, source: str = "ui") -> MembersResult:
    """Add profiles (by id) to a static segment: one INSERT .. SELECT .. ON CONFLICT DO NOTHING;
    ids that are not profiles of the segment's database are reported, members already in count
    as unchanged. Raises SegmentError for other kinds."""
    seg = _static(segment)
    ids = _ids(profile_ids)
    existing = set(Profile.objects.filter(database_id=seg.database_id, pk__in=ids).values_list("pk", flat=True)) \
        if len(ids) <= 1000 else None
    added = _insert(seg, ids)
    segment_resize(seg, added)
    result = MembersResult(changed=added)
    if existing is not None:
        result.unknown = {i: f"no profile #{i} in {seg.database.name}" for i in ids if i not in existing}
    audit_log(account=seg.account, actor=actor, verb="segment.members_added", target=seg,
              data={"added": added, "asked": len(ids), "source": source})
    return result


@transaction.atomic
def segment_members_remove(*, segment: Segment, profile_ids: Iterable[Any], actor: Actor, source: str = "ui") -> MembersResult:
    """Remove profiles (by id) from a static segment: one DELETE. Raises SegmentError for other kinds."""
    seg = _static(segment)
    ids = _ids(profile_ids)
    removed = _delete(seg, ids)
    segment_resize(seg, -removed)
    audit_log(account=seg.account, actor=actor, verb="segment.members_removed", target=seg,
              data={"removed": removed, "asked": len(ids), "source": source})
    return MembersResult(changed=removed)


def _by_key(seg: Segment, key: str, values: list[Any]) -> tuple[list[int], dict[Any, str]]:
    from profiles.services import ProfileValidationError

    try:
        lookup, norm = profiles_by_key(database=seg.database, key=key, raw_values=values)
    except ProfileValidationError as exc:
        raise SegmentError({"key": next(iter(exc.errors.values()), "is not a match key")}) from None
    unknown: dict[Any, str] = {}
    ids = []
    for raw in values:
        value = norm.get(raw)
        if value is None or value not in lookup.ids:
            unknown[raw] = lookup.errors.get(raw) or lookup.errors.get(value) or "no profile with this key"
        else:
            ids.append(lookup.ids[value])
    return ids, unknown


@transaction.atomic
def segment_members_add_by_key(*, segment: Segment, key: str, values: Iterable[Any], actor: Actor,
                               source: str = "ui") -> MembersResult:
    """Add the profiles named by match-key values (a CSV column of e-mails, customer ids...) to a
    static segment; values that name no profile are reported with why. Never creates profiles."""
    seg = _static(segment)
    values = list(values)
    if len(values) > MAX_IDS_PER_CALL:
        raise SegmentError({"values": f"at most {MAX_IDS_PER_CALL:,} values at a time"})
    ids, unknown = _by_key(seg, key, values)
    added = _insert(seg, sorted(set(ids)))
    segment_resize(seg, added)
    audit_log(account=seg.account, actor=actor, verb="segment.members_added", target=seg,
              data={"added": added, "asked": len(values), "unknown": len(unknown), "key": key, "source": source})
    return MembersResult(changed=added, unknown=unknown)


@transaction.atomic
def segment_members_remove_by_key(*, segment: Segment, key: str, values: Iterable[Any], actor: Actor,
                                  source: str = "ui") -> MembersResult:
    seg = _static(segment)
    values = list(values)
    if len(values) > MAX_IDS_PER_CALL:
        raise SegmentError({"values": f"at most {MAX_IDS_PER_CALL:,} values at a time"})
    ids, unknown = _by_key(seg, key, values)
    removed = _delete(seg, sorted(set(ids)))
    segment_resize(seg, -removed)
    audit_log(account=seg.account, actor=actor, verb="segment.members_removed", target=seg,
              data={"removed": removed, "asked": len(values), "unknown": len(unknown), "key": key, "source": source})
    return MembersResult(changed=removed, unknown=unknown)


# --- profile lifecycle (registered in SegmentsConfig.ready) ------------------------------------------


def members_erase(profile: Profile) -> None:
    """Erasure: the profile leaves every stored segment (sizes follow)."""
    segment_ids = list(SegmentMember.objects.filter(profile_id=profile.pk).values_list("segment_id", flat=True))
    if not segment_ids:
        return
    SegmentMember.objects.filter(profile_id=profile.pk).delete()
    Segment.objects.filter(pk__in=segment_ids, size__gt=0).update(size=F("size") - 1)


def members_merge(target: Profile, source: Profile) -> None:
    """Merge: the surviving profile takes the merged one's memberships (once per segment)."""
    theirs = set(SegmentMember.objects.filter(profile_id=source.pk).values_list("segment_id", flat=True))
    if not theirs:
        return
    both = theirs & set(SegmentMember.objects.filter(profile_id=target.pk, segment_id__in=theirs)
                        .values_list("segment_id", flat=True))
    if both:
        SegmentMember.objects.filter(profile_id=source.pk, segment_id__in=both).delete()
        Segment.objects.filter(pk__in=both, size__gt=0).update(size=F("size") - 1)
    SegmentMember.objects.filter(profile_id=source.pk).update(profile_id=target.pk)
