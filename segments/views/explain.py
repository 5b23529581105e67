"""Why a profile is (or is not) in a segment: the conditions as a tree, each marked matched or not,
with what the core saw (the value of the field, how many events it found...)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.access import account_required
from accounts.permissions import Perm
from profiles.models import Profile
from profiles.selectors import search_kind
from profiles.services import ProfileValidationError, profile_find
from segments import services
from segments.conditions import SegmentError
from segments.models import Segment, SegmentMember
from segments.views import get_segment
from segments.views.builder import Catalogue
from segments.views.words import describe, group_label


def find_profile(request: HttpRequest, segment: Segment, text: str) -> tuple[Profile | None, str]:
    """The profile of the segment's database named by an id (123 or #123), an e-mail or a phone."""
    text = text.strip()
    if not text:
        return None, ""
    qs = Profile.objects.for_account(request.account).filter(database=segment.database)
    if text.lstrip("#").isdigit():
        found = qs.filter(pk=int(text.lstrip("#"))).first()
        return (found, "") if found else (None, f"No profile #{text.lstrip('#')} in {segment.database.name}.")
    kind = search_kind(text)
    if kind not in ("email", "phone"):
        return None, "Enter the profile's e-mail address, phone number or id (such as #123)."
    try:
        found = profile_find(database=segment.database, key=kind, value=text)
    except ProfileValidationError as exc:
        return None, f"{text}: {next(iter(exc.errors.values()))}."
    return (found, "") if found else (None, f"No profile in {segment.database.name} has {text}.")


def _as_dict(node: Any) -> dict[str, Any]:
    """The core's answer (an Explained, or its as_dict()) as a plain dict."""
    if hasattr(node, "as_dict"):
        return node.as_dict()
    return node if isinstance(node, dict) else {}


def explain_tree(explained: Any, cat: Catalogue) -> dict[str, Any]:
    """The explained tree with each node's words, for `segments/_explain_node.html`."""

    def walk(item: dict[str, Any], nested: bool = False) -> dict[str, Any]:
        node = item.get("node") or {}
        is_group = node.get("type") == "group"
        children = [walk(c) for c in item.get("items") or []]
        out = {
            "group": is_group,
            "text": group_label(node) if is_group else describe(node, cat),
            "matched": bool(item.get("matched")),
            "why": item.get("why") or "",
            "items": children,
        }
        return out

    return walk(_as_dict(explained))


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def segment_explain(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_segment(request, pk)
    text = request.GET.get("profile", "")[:200]
    profile, error = find_profile(request, segment, text)
    context: dict[str, Any] = {"segment": segment, "database": segment.database, "query": text.strip(),
                               "profile": profile, "error": error, "section": "segments"}
    if profile is not None:
        try:
            result = services.segment_explain(segment=segment, profile=profile)
        except SegmentError as exc:
            context["explain_error"] = exc.message or str(exc)
            context["member"] = (SegmentMember.objects.filter(segment_id=segment.pk, profile_id=profile.pk).exists()
                                 if segment.is_stored else None)
        else:
            context["member"] = result.get("member")
            if result.get("tree"):
                tree = explain_tree(result["tree"], Catalogue.load(request, segment.database, segment))
                context.update(tree=tree, matched=bool(result.get("matched")))
    template = "segments/segment_explain.html"
    if request.htmx and request.htmx.target == "explain-result":
        template += "#result"
    return render(request, template, context)
