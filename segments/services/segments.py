"""Segments: create, change, delete (audited, validated), and live counts and samples of
conditions that are not saved yet (the builder)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.access import Actor
from accounts.audit import audit_log
from cdp.sentinels import UNSET
from profiles.models import Profile, ProfileDatabase
from segments.compiler import profiles_matching
from segments.conditions import (
    Catalog,
    ConditionError,
    SegmentBroken,
    SegmentError,
    clean_conditions,
    segment_refs,
)
from segments.models import Segment, SegmentMember, SegmentMovement
from segments.schedule import clean_schedule, next_run

MAX_SEGMENTS_PER_DATABASE = 1000
# A live count that takes longer is stopped (PostgreSQL): the builder says so instead of waiting.
COUNT_TIMEOUT_MS = 20_000
# Segment queries hash sets of profile ids; the default 4 MB makes bitmaps lossy and hashes spill.
WORK_MEM = "64MB"


@contextmanager
def evaluation_settings(*, timeout_ms: int | None = None) -> Iterator[None]:
    """A transaction tuned for one big segment query (PostgreSQL): no JIT (compiling the plan
    costs 0.1-0.5 s on these queries and gains nothing), more memory for hashes, optionally a
    statement timeout."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:  # one round trip; each setting lasts until the transaction ends
                if timeout_ms:
                    cur.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', %s, true),"
                                " set_config('statement_timeout', %s, true)", [WORK_MEM, str(int(timeout_ms))])
                else:
                    cur.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', %s, true)", [WORK_MEM])
        yield


def _cancelled(exc: OperationalError) -> bool:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "57014" or getattr(cause, "pgcode", None) == "57014"


def _clean_name(name: Any) -> str:
    name = str(name or "").strip()
    if not name:
        raise SegmentError({"name": "a name is required"})
    if len(name) > 200:
        raise SegmentError({"name": "at most 200 characters"})
    return name


def _unique_slug(database: ProfileDatabase, base: str, exclude: int | None = None) -> str:
    base = (slugify(base) or "segment")[:70]
    slug, n = base, 1
    taken = Segment.objects.filter(database=database)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    while taken.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def _clean_kind_and_tree(*, kind: str, conditions: Any, schedule: Any, catalog: Catalog,
                         segment_id: int | None) -> tuple[Any, Any]:
    if kind not in Segment.Kind.values:
        raise SegmentError({"kind": f"must be one of {', '.join(Segment.Kind.values)}"})
    if kind == Segment.Kind.STATIC and conditions is None:
        tree = None
    else:
        tree = clean_conditions(conditions, catalog, segment_id=segment_id)
    if kind == Segment.Kind.UPDATABLE:
        if schedule is None:
            raise ConditionError({"schedule": "an updatable segment needs a schedule"})
        schedule = clean_schedule(schedule)
    else:
        schedule = None
    return tree, schedule


def _enqueue_recalculation(segment: Segment, trigger: str) -> None:
    from segments.tasks import segment_recalculate_bulk_task

    segment_recalculate_bulk_task.delay_on_commit(segment.pk, trigger)


@transaction.atomic
def segment_create(*, database: ProfileDatabase, name: str, kind: str, actor: Actor, conditions: Any = None,
                   schedule: Any = None, description: str = "", slug: str | None = None, compute: bool = True) -> Segment:
    """A new segment of `database`. Conditions are validated against the database (ConditionError
    names the offending node); static segments may have none (filled by hand). With `compute`,
    its first calculation (the snapshot of a static one, the first members of an updatable one,
    the size of a dynamic one) is queued after commit. Raises SegmentError."""
    name = _clean_name(name)
    catalog = Catalog.load(database)
    tree, schedule = _clean_kind_and_tree(kind=kind, conditions=conditions, schedule=schedule, catalog=catalog,
                                          segment_id=None)
    if len(catalog.segments) >= MAX_SEGMENTS_PER_DATABASE:
        raise SegmentError({"name": f"a database has at most {MAX_SEGMENTS_PER_DATABASE:,} segments"})
    if slug:
        slug = slugify(slug)[:80]
        if not slug:
            raise SegmentError({"slug": "use letters, digits and hyphens"})
        if Segment.objects.filter(database=database, slug=slug).exists():
            raise SegmentError({"slug": f"another segment of {database.name} uses {slug!r}"})
    else:
        slug = _unique_slug(database, name)
    now = timezone.now()
    try:
        with transaction.atomic():
            segment = Segment.objects.create(
                account=database.account, database=database, name=name, slug=slug, description=(description or "").strip(),
                kind=kind, conditions=tree, schedule=schedule, created_by=actor.user,
                next_run_at=next_run(schedule, now, database.account.tzinfo) if schedule else None,
            )
    except IntegrityError:
        raise SegmentError({"slug": f"another segment of {database.name} uses {slug!r}"}) from None
    audit_log(account=database.account, actor=actor, verb="segment.created", target=segment,
              data={"database": database.slug, "kind": kind})
    if compute and tree is not None:
        _enqueue_recalculation(segment, "create")
    return segment


@transaction.atomic
def segment_update(*, segment: Segment, actor: Actor, name: str | None = None, description: str | None = None,
                   slug: str | None = None, kind: str | None = None, conditions: Any = UNSET, schedule: Any = UNSET) -> Segment:
    """Change a segment. New conditions are validated (cycles through other segments included) and
    clear a broken state; an updatable segment with new conditions or a new schedule is due at once
    (the tick recalculates it within a minute). Changing the kind: to dynamic drops the stored
    members; to static keeps an updatable segment's members (a dynamic one is snapshotted)."""
    seg = Segment.objects.select_for_update().select_related("database__account").get(pk=segment.pk)
    catalog = Catalog.load(seg.database)
    new_kind = kind if kind is not None else seg.kind
    new_conditions = seg.conditions if conditions is UNSET else conditions
    new_schedule = seg.schedule if schedule is UNSET else schedule
    changed: dict[str, Any] = {}
    conditions_changed = conditions is not UNSET or new_kind != seg.kind
    if conditions_changed or schedule is not UNSET:
        tree, clean_sched = _clean_kind_and_tree(kind=new_kind, conditions=new_conditions, schedule=new_schedule,
                                                 catalog=catalog, segment_id=seg.pk)
    else:
        tree, clean_sched = seg.conditions, seg.schedule
    if name is not None and _clean_name(name) != seg.name:
        seg.name = changed["name"] = _clean_name(name)
    if description is not None and description.strip() != seg.description:
        seg.description = changed["description"] = description.strip()
    if slug is not None and slug != seg.slug:
        new_slug = slugify(slug)[:80]
        if not new_slug:
            raise SegmentError({"slug": "use letters, digits and hyphens"})
        if Segment.objects.filter(database=seg.database, slug=new_slug).exclude(pk=seg.pk).exists():
            raise SegmentError({"slug": f"another segment of {seg.database.name} uses {new_slug!r}"})
        seg.slug = changed["slug"] = new_slug
    if tree != seg.conditions:
        seg.conditions = tree
        changed["conditions"] = True
    old_kind = seg.kind
    if new_kind != old_kind:
        seg.kind = changed["kind"] = new_kind
    if clean_sched != seg.schedule:
        seg.schedule = clean_sched
        changed["schedule"] = clean_sched
    now = timezone.now()
    recalc = False
    if "conditions" in changed or "kind" in changed or "schedule" in changed:
        if seg.state == Segment.State.BROKEN:
            seg.state, seg.problem, seg.problem_path = Segment.State.OK, "", ""
        if seg.kind == Segment.Kind.UPDATABLE:
            # New conditions or kind: due now; a new schedule alone: its next slot.
            due_now = "conditions" in changed or "kind" in changed
            seg.next_run_at = now if due_now else next_run(seg.schedule, now, seg.account.tzinfo)
        else:
            seg.next_run_at = None
        if seg.kind == Segment.Kind.DYNAMIC and old_kind != Segment.Kind.DYNAMIC:
            SegmentMember.objects.filter(segment_id=seg.pk).delete()
            seg.size = None
        if seg.kind == Segment.Kind.STATIC and old_kind == Segment.Kind.DYNAMIC and seg.conditions is not None:
            recalc = True
        if seg.kind == Segment.Kind.DYNAMIC and "conditions" in changed:
            recalc = True  # its size
    if not changed:
        return seg
    seg.save()
    audit_log(account=seg.account, actor=actor, verb="segment.updated", target=seg,
              data={k: v for k, v in changed.items() if k not in ("description",)})
    if recalc:
        _enqueue_recalculation(seg, "manual")
    return seg


# Higher apps (mailings, scenarios) register here in AppConfig.ready() a function naming what of
# theirs uses a segment ("mailing “News”"), so deleting it is refused instead of silently
# changing their audience.
SEGMENT_USERS: list[Callable[[Segment], list[str]]] = []


def segment_users(segment: Segment) -> list[Segment]:
    """The other segments whose conditions name this one."""
    out = []
    for other in Segment.objects.filter(database_id=segment.database_id).exclude(pk=segment.pk).only("id", "name", "conditions"):
        if any(ref == segment.pk for _, ref in segment_refs(other.conditions)):
            out.append(other)
    return out


@transaction.atomic
def segment_delete(*, segment: Segment, actor: Actor) -> None:
    """Delete a segment with its members and history. Refused (SegmentError) while another
    segment's conditions name it."""
    seg = Segment.objects.select_for_update().select_related("account").get(pk=segment.pk)
    names = [f"segment “{u.name}”" for u in segment_users(seg)]
    for users in SEGMENT_USERS:
        names.extend(users(seg))
    if names:
        listed = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
        raise SegmentError({"segment": f"used by {listed}: change those first"})
    # One DELETE each: the ORM would load the members to cascade.
    SegmentMember.objects.filter(segment_id=seg.pk).delete()
    SegmentMovement.objects.filter(run__segment_id=seg.pk).delete()
    audit_log(account=seg.account, actor=actor, verb="segment.deleted", target_label=seg.name,
              data={"segment": seg.pk, "kind": seg.kind})
    seg.delete()


def conditions_clean(*, database: ProfileDatabase, conditions: Any, segment: Segment | None = None) -> dict[str, Any]:
    """The normalised tree for the builder (samples get their salt here). Raises ConditionError."""
    return clean_conditions(conditions, Catalog.load(database), segment_id=segment.pk if segment else None)


def _matching(database: ProfileDatabase, conditions: Any, segment: Segment | None) -> Any:
    if segment is not None and segment.database_id != database.pk:
        raise SegmentError({"segment": "belongs to another database"})
    catalog = Catalog.load(database)
    sid = segment.pk if segment is not None else None
    tree = clean_conditions(conditions, catalog, segment_id=sid)
    return profiles_matching(tree, catalog, stack=(sid,) if sid else ())


def segment_count(*, database: ProfileDatabase, conditions: Any, segment: Segment | None = None) -> tuple[int, int]:
    """(profiles matching, milliseconds the query took), nothing stored: the builder's live count.
    Raises ConditionError, SegmentBroken, or SegmentError when the count takes too long."""
    qs = _matching(database, conditions, segment)
    start = time.perf_counter()
    try:
        with evaluation_settings(timeout_ms=COUNT_TIMEOUT_MS):
            n = qs.count()
    except OperationalError as exc:
        if _cancelled(exc):
            raise SegmentError({"": f"counting took longer than {COUNT_TIMEOUT_MS / 1000:g} s: narrow the conditions "
                                    "(a time window on events, an indexed field)"}) from None
        raise
    return n, int((time.perf_counter() - start) * 1000)


def segment_sample(*, database: ProfileDatabase, conditions: Any, limit: int = 10,
                   segment: Segment | None = None) -> list[Profile]:
    """A few matching profiles (the newest), for the builder."""
    qs = _matching(database, conditions, segment)
    with evaluation_settings(timeout_ms=COUNT_TIMEOUT_MS):
        return list(qs.order_by("-id")[: max(1, min(limit, 100))])


def segment_check(*, segment: Segment) -> Segment:
    """Validate a saved segment against the current schema and record the outcome: broken (with
    the problem and its path) or, if it was broken and is fine again, ok. Never raises for that."""
    seg = Segment.objects.select_related("database__account").get(pk=segment.pk)
    catalog = Catalog.load(seg.database)
    try:
        if seg.conditions is not None or seg.kind != Segment.Kind.STATIC:
            tree = clean_conditions(seg.conditions, catalog, segment_id=seg.pk, fill_salts=False)
            profiles_matching(tree, catalog, stack=(seg.pk,))
    except (ConditionError, SegmentBroken) as exc:
        mark_broken(seg, exc)
    else:
        if seg.state == Segment.State.BROKEN:
            Segment.objects.filter(pk=seg.pk, state=Segment.State.BROKEN).update(
                state=Segment.State.OK, problem="", problem_path="")
            seg.state, seg.problem, seg.problem_path = Segment.State.OK, "", ""
    return seg


def mark_broken(segment: Segment, exc: SegmentError) -> None:
    problem = f"{exc.path}: {exc.message}" if exc.path else exc.message
    Segment.objects.filter(pk=segment.pk).update(state=Segment.State.BROKEN, problem=problem[:5000],
                                                 problem_path=exc.path[:300])
    segment.state, segment.problem, segment.problem_path = Segment.State.BROKEN, problem[:5000], exc.path[:300]
