"""The profile card's "Segments" tab: the segments a profile is in (static and updatable by their
stored members; the database's dynamic segments evaluated now, up to a cap), each with a "why?"
link to the explainer, and adding the profile to (or taking it out of) a static segment.

`register()` adds the tab to the card; the app's AppConfig.ready() calls it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from profiles.models import Profile
from profiles.views import get_database
from segments import selectors, services
from segments.conditions import SegmentError
from segments.models import Segment

TAB = "segments"


def card_url(database_slug: str, profile_id: int) -> str:
    return reverse("profiles:profile_detail", args=[database_slug, profile_id]) + f"?tab={TAB}"


def _memberships(profile: Profile) -> list[dict[str, Any]]:
    """[{"segment", "how"}] of the segments the profile is in (the core's `segments_of_profile`:
    stored members, and the database's dynamic segments evaluated for this profile now)."""
    return [{"segment": seg, "how": "evaluated now" if seg.kind == Segment.Kind.DYNAMIC else "member"}
            for seg in selectors.segments_of_profile(profile)]


def segments_tab_context(request: HttpRequest, profile: Profile) -> dict[str, Any]:
    rows = _memberships(profile)
    can_edit = request.membership.can(Perm.SEGMENTS_EDIT)
    in_static = {r["segment"].pk for r in rows if r["segment"].kind == Segment.Kind.STATIC}
    statics = []
    if can_edit:
        statics = [s for s in Segment.objects.for_account(request.account).filter(
            database=profile.database, kind=Segment.Kind.STATIC).order_by("name", "id").only("id", "name")
            if s.pk not in in_static]
    return {
        "segment_rows": sorted(rows, key=lambda r: r["segment"].name.lower()),
        "static_choices": statics,
        "can_edit_segments": can_edit,
        "segments_new_url": reverse("segments:create") + f"?db={profile.database.slug}",
    }


@require_POST
@account_required(Perm.SEGMENTS_EDIT)
def card_membership(request: HttpRequest, db: str, pk: int) -> HttpResponse:
    """Add the profile to a static segment (action=add) or take it out (action=remove)."""
    database = get_database(request, db)
    profile = get_object_or_404(Profile.objects.for_account(request.account).filter(database=database), pk=pk)
    back = redirect(card_url(database.slug, profile.pk))
    raw = request.POST.get("segment", "")
    if not raw.isdigit():
        messages.error(request, "Choose a segment.")
        return back
    segment = get_object_or_404(Segment.objects.for_account(request.account).filter(database=database), pk=int(raw))
    if segment.kind != Segment.Kind.STATIC:
        messages.error(request, f"{segment.name} follows its conditions: only static segments take members by hand.")
        return back
    actor = Actor.from_request(request)
    try:
        if request.POST.get("action") == "remove":
            services.segment_members_remove(segment=segment, profile_ids=[profile.pk], actor=actor)
            messages.success(request, f"Removed from {segment.name}.")
        else:
            services.segment_members_add(segment=segment, profile_ids=[profile.pk], actor=actor)
            messages.success(request, f"Added to {segment.name}.")
    except SegmentError as exc:
        messages.error(request, exc.message or str(exc))
    return back


def register() -> None:
    """Add the "Segments" tab to the profile card, after "Events" (history) when it is there."""
    from profiles.views.profiles import CardTab, add_card_tab

    add_card_tab(CardTab(TAB, "Segments", "segments/_card_segments.html", segments_tab_context), after="events")
