"""The "Website tracking" page (history:site_tracking): for each resource, the snippet to paste with
its public key and this server's collector, how to identify people and send events, and a live
check of the latest events that came from the snippet.

The live check must stay cheap on an account with millions of events. It reads the explorer's
index (account, -id) backwards and stops after a few rows; what it may look through is bounded
twice: by the newest SCAN events of the account (the id of the SCAN-th newest, found with one
index-only scan, is a floor) and by a time window. An account whose other traffic (opens,
clicks) pushed a snippet's events out of the newest SCAN rows sees "nothing recent", which is
the honest answer to "is my snippet sending right now?".
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone as tz
from django.views.decorators.http import require_GET

from accounts.access import account_required
from accounts.models import Account
from accounts.permissions import Perm
from history.models import Event, EventType
from history.views.collect import MAX_EVENTS, SOURCE
from resources.models import Resource
from resources.views import get_resource

SCAN = 20_000  # the live check looks through at most the account's newest SCAN events
WINDOW = timedelta(days=7)  # ... received in the last WINDOW
SHOWN = 5  # ... and shows this many per resource
POLL_SECONDS = 10  # while a resource has none, its block asks again this often

SAMPLE_KEYS = {"email": "ann@example.com", "phone": "+15551234567"}
SAMPLE_VALUES: dict[str, Any] = {
    "string": "A-1", "integer": 2, "decimal": 19.9, "boolean": True, "date": "2026-11-28",
    "datetime": "2026-11-28T10:15:00Z", "list": ["red", "blue"], "json": {"size": "M"},
}


# --- what to paste -------------------------------------------------------------------------------


def script_url() -> str:
    """The snippet's stable address (never the hashed name of a static manifest: pasted snippets
    must keep working across deployments)."""
    base = settings.STATIC_URL
    if not base.startswith(("http://", "https://", "//")):  # a static host of its own is used as is
        base = settings.SITE_URL + "/" + base.lstrip("/")
    return base.rstrip("/") + "/js/cdp-track.js"


def collector_prefix() -> str:
    """The collector's address without the key (data-endpoint; the script appends the key)."""
    return settings.SITE_URL + reverse("tracking:collect", args=["KEY"]).removesuffix("KEY")


def embed_snippet(resource: Resource) -> str:
    return "\n".join([
        "<script>",
        "  window.cdp = window.cdp || function () {",
        "    (cdp.q = cdp.q || []).push(arguments);",
        "  };",
        '  cdp("page");',
        "</script>",
        f'<script async src="{script_url()}"',
        f'        data-key="{resource.public_key}"',
        f'        data-endpoint="{collector_prefix()}"></script>',
    ])


def _js_object(values: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in values.items()) + "}"


def identify_example(resource: Resource) -> str:
    key = (resource.database.match_keys or ["email"])[0]
    return f'cdp("identify", {_js_object({key: SAMPLE_KEYS.get(key, "C-1001")})});'


def track_example(custom: EventType | None) -> str:
    if custom is None:
        return 'cdp("track", "order.placed", {order_id: "1001", total: 59.9, currency: "EUR"});'
    props: dict[str, Any] = {}
    for p in custom.properties[:3]:
        if p.get("type") == "enum" and p.get("choices"):
            props[p["name"]] = p["choices"][0]
        else:
            props[p["name"]] = SAMPLE_VALUES.get(p.get("type", "string"), "A-1")
    return f'cdp("track", {json.dumps(custom.name)}, {_js_object(props)});'


# --- the live check --------------------------------------------------------------------------------


def scan_floor(account: Account) -> int:
    """The id of the account's SCAN-th newest event (0 when it has fewer): one index-only scan."""
    ids = Event.objects.filter(account=account).order_by("-id").values_list("id", flat=True)
    return ids[SCAN - 1:SCAN].first() or 0


def recent_snippet_events(resource: Resource, *, floor: int) -> list[dict[str, Any]]:
    """The latest events from the snippet for this resource (newest first, at most SHOWN)."""
    events = list(
        Event.objects.filter(account_id=resource.account_id, id__gte=floor, source=SOURCE, resource_id=resource.pk,
                             received_at__gte=tz.now() - WINDOW)
        .select_related("type", "profile")
        .order_by("-id")[:SHOWN]
    )
    return [_row(resource, e) for e in events]


def _row(resource: Resource, e: Event) -> dict[str, Any]:
    p = e.profile
    props = e.properties if isinstance(e.properties, dict) else {}
    if e.type.name == "page.viewed" and props.get("url"):
        detail = str(props["url"])
    else:
        detail = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in list(props.items())[:4])
    return {
        "event": e, "type_name": e.type.name, "type_label": e.type.label or e.type.name, "icon": e.type.icon,
        "who": p.email or p.phone or f"#{p.pk}",
        "profile_url": reverse("profiles:profile_detail", args=[resource.database.slug, p.pk]),
        "detail": detail,
    }


def _site(resource: Resource, *, floor: int, custom: EventType | None) -> dict[str, Any]:
    return {
        "resource": resource,
        "snippet": embed_snippet(resource),
        "identify": identify_example(resource),
        "track": track_example(custom),
        "match_keys": resource.database.match_keys or ["email"],
        "rows": recent_snippet_events(resource, floor=floor),
    }


def _common() -> dict[str, Any]:
    return {"window_days": WINDOW.days, "shown": SHOWN, "poll_seconds": POLL_SECONDS, "max_events": MAX_EVENTS}


# --- views -------------------------------------------------------------------------------------------


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def site_tracking(request: HttpRequest) -> HttpResponse:
    """Every resource's snippet and live check. Queries: resources, one custom type, the scan
    floor, then one bounded query per resource."""
    account = request.account
    resources = list(Resource.objects.for_account(account).select_related("database").order_by("name", "id"))
    sites = []
    if resources:
        custom = EventType.objects.for_account(account).filter(enabled=True).order_by("name").first()
        floor = scan_floor(account)
        sites = [_site(r, floor=floor, custom=custom) for r in resources]
    if request.membership.can(Perm.CHANNELS_MANAGE):
        empty = {"text": "The snippet sends events on behalf of a resource (your shop, app or site) and finds people in its "
                         "profile database. Create a resource first.",
                 "action_url": reverse("resources:create"), "action_label": "Create a resource"}
    else:
        empty = {"text": "The snippet sends events on behalf of a resource. An admin of your account creates resources; "
                         "their snippets show up here."}
    context = {
        "sites": sites, "empty": {"icon": "window-sidebar", "title": "No resources yet", **empty}, "script_url": script_url(), "collector": collector_prefix(), "section": "site_tracking", **_common(),
    }
    return render(request, "history/site_tracking.html", context)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def site_tracking_events(request: HttpRequest, slug: str) -> HttpResponse:
    """One resource's live check (the block the page refreshes). Without htmx: the page, at it."""
    resource = get_resource(request, slug)
    if not request.htmx:
        return redirect(reverse("history:site_tracking") + f"#site-{resource.slug}")
    site = {"resource": resource, "rows": recent_snippet_events(resource, floor=scan_floor(request.account))}
    return render(request, "history/_site_events.html", {"site": site, **_common()})
