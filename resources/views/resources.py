"""Resources (admin): the list, creating one, its page with counters and the embeddable form,
settings, rotating the public key, deleting."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.forms import ConfirmNameForm
from profiles.models import ProfileDatabase
from resources.forms import ResourceForm, add_service_errors
from resources.models import CHANNEL_ICONS, STATUS_TONES, Channel, Resource, Status, Subscription
from resources.selectors import resource_counts, resources_subscribed_counts
from resources.services import (
    ResourceError,
    resource_create,
    resource_delete,
    resource_rotate_public_key,
    resource_update,
)
from resources.views import get_resource

# The counters' colours: the statuses' own, but complaints in orange so that a stacked bar tells
# them apart from bounces.
STATUS_COLOURS = {**STATUS_TONES, Status.COMPLAINED: "orange"}

SHORT_LABELS = {Status.UNCONFIRMED: "Unconfirmed"}


def channel_badges(channels: list[str]) -> list[dict[str, str]]:
    return [{"value": c, "label": Channel(c).label, "icon": CHANNEL_ICONS[Channel(c)]} for c in channels if c in Channel.values]


# --- list and create -----------------------------------------------------------------------------


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def resource_list(request: HttpRequest) -> HttpResponse:
    resources = list(Resource.objects.for_account(request.account).select_related("database"))
    counts = resources_subscribed_counts(request.account) if resources else {}
    for r in resources:
        r.subscribed = counts.get(r.pk, 0)
        r.channel_badges = channel_badges(r.channels)
    has_databases = bool(resources) or ProfileDatabase.objects.for_account(request.account).exists()
    context = {"resources": resources, "has_databases": has_databases, "section": "resources"}
    return render(request, "resources/resource_list.html", context)


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def resource_create_view(request: HttpRequest) -> HttpResponse:
    databases = ProfileDatabase.objects.for_account(request.account).order_by("name", "id")
    form = ResourceForm(request.POST or None, databases=databases, initial={"channels": [Channel.EMAIL]})
    if request.method == "POST" and form.is_valid():
        try:
            resource = resource_create(account=request.account, database=form.cleaned_data["database"],
                                       values=form.values(), actor=Actor.from_request(request))
        except ResourceError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"{resource.name} is ready. Embed its sign-up form or add subscriptions.")
            return redirect(resource)
    context = {"form": form, "has_databases": databases.exists(), "section": "resources"}
    return render(request, "resources/resource_create.html", context, status=400 if form.is_bound else 200)


# --- the resource page ---------------------------------------------------------------------------


def subscribe_url(resource: Resource) -> str:
    """The public subscribe endpoint's absolute URL (its route belongs to the public pages)."""
    try:
        path = reverse("public:subscribe", args=[resource.public_key])
    except NoReverseMatch:  # the public pages are not installed: the path they will have
        path = f"/p/subscribe/{resource.public_key}/"
    return settings.SITE_URL + path


def embed_snippet(resource: Resource, action: str) -> str:
    """A plain HTML form for any site; `website` is a honeypot that people leave empty."""
    lines = [
        f'<form method="post" action="{escape(action)}">',
        '  <label>E-mail <input type="email" name="email" required autocomplete="email"></label>',
        '  <label>First name <input type="text" name="first_name" autocomplete="given-name"></label>',
        "  <!-- Leave this hidden field empty: it catches bots. -->",
        '  <div style="position:absolute;left:-10000px" aria-hidden="true">',
        '    <input type="text" name="website" tabindex="-1" autocomplete="off" value="">',
        "  </div>",
    ]
    if resource.categories:
        lines.append("  <fieldset>")
        lines.append("    <legend>I would like to hear about</legend>")
        for c in resource.categories:
            lines.append(f'    <label><input type="checkbox" name="categories" value="{escape(c["key"])}" checked> '
                         f'{escape(c["label"])}</label>')
        lines.append("  </fieldset>")
    lines.append('  <button type="submit">Subscribe</button>')
    lines.append("</form>")
    return "\n".join(lines)


def counter_rows(resource: Resource, counts: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """One row per channel: counts per status and the bar's segments (percent of the channel's total)."""
    rows = []
    for channel in [c for c in Channel.values if c in counts]:
        bucket = counts[channel]
        total = bucket["total"]
        cells = [{"status": s, "label": Status(s).label, "n": bucket.get(s, 0), "colour": STATUS_COLOURS[Status(s)]}
                 for s in Status.values]
        segments = [{**c, "percent": round(c["n"] * 100 / total, 2)} for c in cells if c["n"] and total]
        rows.append({"channel": channel, "label": Channel(channel).label, "icon": CHANNEL_ICONS.get(Channel(channel), "dot"),
                     "enabled": channel in resource.channels, "cells": cells, "total": total, "segments": segments,
                     "double_opt_in": channel in resource.double_opt_in})
    return rows


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def resource_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """Counters at 1M subscriptions: one index-only GROUP BY (resource_counts), nothing else per row."""
    resource = get_resource(request, slug)
    rows = counter_rows(resource, resource_counts(resource))
    totals = {s: sum(r["cells"][i]["n"] for r in rows) for i, s in enumerate(Status.values)}
    action = subscribe_url(resource)
    context = {
        "resource": resource,
        "rows": rows,
        "statuses": [{"value": s, "label": Status(s).label, "short": SHORT_LABELS.get(s, Status(s).label), "colour": STATUS_COLOURS[Status(s)], "total": totals[s]}
                     for s in Status.values],
        "grand_total": sum(r["total"] for r in rows),
        "subscribe_url": action,
        "snippet": embed_snippet(resource, action),
        "channel_badges": channel_badges(resource.channels),
        "visible_fields": _field_labels(resource, resource.preference_visible_fields),
        "editable_fields": set(resource.preference_editable_fields),
        "section": "resources",
    }
    return render(request, "resources/resource_detail.html", context)


def _field_labels(resource: Resource, names: list[str]) -> list[dict[str, str]]:
    if not names:
        return []
    labels = dict(resource.database.fields.filter(name__in=names).values_list("name", "label"))
    return [{"name": n, "label": labels.get(n, n)} for n in names]


# --- settings, key, delete -----------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def resource_settings(request: HttpRequest, slug: str) -> HttpResponse:
    resource = get_resource(request, slug)
    fields = list(resource.database.fields.all())
    form = ResourceForm(request.POST or None, fields=fields, initial=ResourceForm.initial_for(resource))
    if request.method == "POST" and form.is_valid():
        try:
            changed = resource_update(resource=resource, values=form.values(), actor=Actor.from_request(request))
        except ResourceError as exc:
            resource.refresh_from_db()
            add_service_errors(form, exc)
        else:
            messages.success(request, "Settings saved." if changed else "Nothing changed.")
            return redirect(resource)
    context = {"resource": resource, "form": form, "section": "resources"}
    return render(request, "resources/resource_settings.html", context, status=400 if form.is_bound else 200)


@require_POST
@account_required(Perm.CHANNELS_MANAGE)
def resource_rotate_key(request: HttpRequest, slug: str) -> HttpResponse:
    resource = get_resource(request, slug)
    resource_rotate_public_key(resource=resource, actor=Actor.from_request(request))
    messages.success(request, "A new public key is in place. Update the forms embedded on your sites: the old key no longer works.")
    return redirect(reverse("resources:detail", args=[resource.slug]) + "#embed")


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def resource_delete_view(request: HttpRequest, slug: str) -> HttpResponse:
    resource = get_resource(request, slug)
    form = ConfirmNameForm(request.POST or None, expected=resource.name, what="resource")
    if request.method == "POST" and form.is_valid():
        name = resource.name
        resource_delete(resource=resource, actor=Actor.from_request(request))
        messages.success(request, f"{name} and its subscriptions are deleted.")
        return redirect("resources:list")
    count = Subscription.objects.filter(resource=resource).count()
    context = {"resource": resource, "form": form, "subscriptions": count, "section": "resources"}
    return render(request, "resources/resource_delete.html", context, status=400 if form.is_bound else 200)
