"""Adding the profiles of an import to a static segment, in the import's transaction and
set-based (an ImportHook, registered as "segment" in SegmentsConfig.ready).

Options (ProfileImport.extra["segment"]): {"segment": <id>}, a static segment of the import's
database. Every profile the file named (in "add only" mode, the created ones) becomes a member
with one INSERT .. SELECT from the import's id table (members already in are left as they were);
the segment's size follows and the change is audited ("segment.members_added"). It reports
{"segment": name, "segment_id": id, "named": N, "added": N, "already": N}.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import connection
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Membership
from cdp.forms import StyledForm
from profiles.importing.report import Result
from profiles.models import ProfileDatabase
from segments.models import Segment
from segments.services.members import MEMBER, segment_resize

LABEL = "Add the imported profiles to a segment"


def _segment_id(options: Any) -> int | None:
    raw = options.get("segment") if isinstance(options, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).strip().isdigit():
        return None
    return int(raw)


def _problem(database: ProfileDatabase, segment: Segment | None) -> str:
    if segment is None:
        return "Add to segment: the segment no longer exists; pick another one."
    if segment.database_id != database.pk:
        return f"Add to segment: pick a segment of {database.name}."
    if segment.kind != Segment.Kind.STATIC:
        return (f"Add to segment: “{segment.name}” is {segment.get_kind_display().lower()} (its members follow its "
                "conditions); pick a static segment.")
    return ""


def check_segment(database: ProfileDatabase, options: Any) -> list[str]:
    pk = _segment_id(options)
    if pk is None:
        return ["Add to segment: expected the id of a static segment."]
    problem = _problem(database, Segment.objects.filter(pk=pk).first())
    return [problem] if problem else []


def _actor(database: ProfileDatabase, actor_label: str) -> Actor:
    """The team member who started the import (the label is their e-mail), else the system."""
    member = Membership.objects.filter(account_id=database.account_id, user__email=actor_label).select_related("user").first() \
        if actor_label and "@" in actor_label else None
    return Actor(user=member.user) if member is not None else Actor.system()


def add_imported(*, database: ProfileDatabase, options: dict[str, Any], ids_table: str, result: Result, source: str,
                 actor_label: str) -> None:
    # Locked like segment_members_add: a concurrent change of members, of its kind or its deletion waits.
    segment = Segment.objects.select_for_update().select_related("account").filter(pk=_segment_id(options)).first()
    problem = _problem(database, segment)
    if problem:
        # Deleted or changed since the import was started: the profiles are imported all the same.
        result.extra["segment"] = {"segment": segment.name if segment else "", "named": 0, "added": 0, "already": 0,
                                   "problem": problem.removeprefix("Add to segment: ")}
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {ids_table}")  # noqa: S608
        named = cur.fetchone()[0]
        # "WHERE true": SQLite would read ON CONFLICT after a bare FROM as a join's ON.
        cur.execute(
            f"INSERT INTO {MEMBER} (segment_id, profile_id, added_at) SELECT %s, i.id, %s FROM {ids_table} i "  # noqa: S608
            "WHERE i.id IS NOT NULL ON CONFLICT DO NOTHING",
            [segment.pk, now],
        )
        added = max(cur.rowcount, 0)
    segment_resize(segment, added)
    audit_log(account=segment.account, actor=_actor(database, actor_label), verb="segment.members_added", target=segment,
              data={"added": added, "asked": named, "source": source[:64]})
    result.extra["segment"] = {"segment": segment.name, "segment_id": segment.pk, "named": named, "added": added,
                               "already": named - added}


# --- the mapping step's option and the command line ----------------------------------------------


class ImportSegmentForm(StyledForm):
    """Optional: empty means "add to no segment". Field names are prefixed "segment-"."""

    segment = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Static segment",
                                     help_text="Profiles already in it stay; nobody is removed.")

    def __init__(self, data: Any = None, *, database: ProfileDatabase, initial: dict[str, Any] | None = None) -> None:
        super().__init__(data, prefix="segment", initial=initial or {})
        self.fields["segment"].choices = [("", "Do not add to a segment")] + [
            (s.pk, s.name) for s in Segment.objects.filter(database=database, kind=Segment.Kind.STATIC).order_by("name", "id")
        ]

    def options(self) -> dict[str, Any] | None:
        """The hook's options (Options.extra["segment"]), or None when no segment was chosen."""
        pk = self.cleaned_data.get("segment")
        return {"segment": pk} if pk else None


def import_segment_form(database: ProfileDatabase, data: Any = None, initial: dict[str, Any] | None = None) -> ImportSegmentForm:
    return ImportSegmentForm(data, database=database, initial=initial)


def import_segment_parse_cli(database: ProfileDatabase, text: str) -> dict[str, Any]:
    """SEGMENT_SLUG (a static segment of the database) -> the hook's options.
    Raises ValueError with a message for the command line."""
    slug = text.strip()
    segment = Segment.objects.filter(database=database, slug=slug).first() if slug else None
    if segment is None or segment.kind != Segment.Kind.STATIC:
        known = ", ".join(Segment.objects.filter(database=database, kind=Segment.Kind.STATIC).order_by("slug")
                          .values_list("slug", flat=True)) or "none"
        what = f"{segment.name!r} is {segment.get_kind_display().lower()}, not static" if segment is not None \
            else f"No segment {slug!r} in {database.name}"
        raise ValueError(f"{what} (its static segments: {known}).")
    return {"segment": segment.pk}
