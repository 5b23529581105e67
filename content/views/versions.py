"""A template's history per channel, comparing two versions, restoring one, and the links the
current version catalogued (the ids click tracking counts by)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from content import services
from content.diff import version_diff
from content.models import Template, TemplateVersion
from content.views import (
    CHANNEL_LABELS,
    CHANNELS,
    can_edit,
    error_text,
    get_template,
    get_version,
    pick_channel,
)

VERSIONS_SHOWN = 200


def _tabs(template: Template) -> list[tuple[str, str, str, bool]]:
    have = set(TemplateVersion.objects.filter(template=template, is_current=True).values_list("channel", flat=True))
    return [(c, label, icon, c in have) for c, label, icon in CHANNELS]


def _lint_counts(lint: Any) -> dict[str, int]:
    counts = {"error": 0, "warning": 0, "info": 0}
    for m in lint or []:
        level = m.get("level") if isinstance(m, dict) else None
        if level in counts:
            counts[level] += 1
    return counts


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def template_versions(request: HttpRequest, pk: int) -> HttpResponse:
    """The versions of one channel (?channel=), newest first, with two radio columns to compare."""
    template = get_template(request, pk)
    channel = pick_channel(request.GET.get("channel"))
    versions = list(TemplateVersion.objects.for_account(request.account).filter(template=template, channel=channel)
                    .select_related("created_by").defer("compiled").order_by("-number")[:VERSIONS_SHOWN])
    for v in versions:
        v.lint_counts = _lint_counts(v.lint)
    context = {"template": template, "channel": channel, "channel_label": CHANNEL_LABELS[channel],
               "tabs": _tabs(template), "versions": versions, "can_edit": can_edit(request), "section": "templates",
               "page": "versions"}
    return render(request, "content/template_versions.html", context)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def version_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Two versions of the template side by side (?mode=split, the default) or as one unified diff
    (?mode=unified); ?a= is the older, ?b= the newer. Without them: the current version against
    the one before it."""
    template = get_template(request, pk)
    mode = "unified" if request.GET.get("mode") == "unified" else "split"
    if request.GET.get("a") and request.GET.get("b"):
        a = get_version(request, template, request.GET["a"])
        b = get_version(request, template, request.GET["b"])
    else:
        channel = pick_channel(request.GET.get("channel"))
        latest = list(TemplateVersion.objects.for_account(request.account).filter(template=template, channel=channel)
                      .select_related("created_by").order_by("-number")[:2])
        if len(latest) < 2:
            messages.info(request, "There is nothing to compare yet: this channel has fewer than two versions.")
            return redirect(f"{template.get_absolute_url()}?channel={channel}")
        b, a = latest
    if a.number > b.number and a.channel == b.channel:
        a, b = b, a
    context = {"template": template, "a": a, "b": b, "mode": mode, "diffs": _diffs(a, b),
               "channel": b.channel, "channel_label": CHANNEL_LABELS[b.channel], "tabs": _tabs(template),
               "can_edit": can_edit(request), "section": "templates", "page": "versions"}
    return render(request, "content/version_compare.html", context)


def _diffs(a: TemplateVersion, b: TemplateVersion) -> list[dict[str, Any]]:
    """content.diff's per-part diffs, with the unified text split into classed lines for the page."""
    out = []
    for d in version_diff(a, b):
        lines = []
        for line in (d.unified or "").splitlines():
            if line.startswith(("+++", "---")):
                continue
            cls = ("diff-add" if line.startswith("+") else "diff-del" if line.startswith("-")
                   else "sep" if line.startswith("@@") else "diff-same")
            lines.append((cls, line))
        out.append({"part": d.part, "changed": d.changed, "rows": d.rows, "lines": lines})
    return out


@require_POST
@account_required(Perm.CONTENT_EDIT)
def version_restore(request: HttpRequest, pk: int, version: int) -> HttpResponse:
    """A new version with the data of an old one (the old one stays in the history)."""
    template = get_template(request, pk)
    old = get_version(request, template, version)
    try:
        new = services.template_version_restore(version=old, actor=Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, f"Version {old.number} cannot be restored: {error_text(exc)}")
        return redirect(f"{template.get_absolute_url()}?channel={old.channel}")
    messages.success(request, f"Version {old.number} is restored as version {new.number}.")
    return redirect(f"{template.get_absolute_url()}?channel={old.channel}")


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def template_links(request: HttpRequest, pk: int) -> HttpResponse:
    """The catalogued links of the channel's current version (or ?version=)."""
    template = get_template(request, pk)
    if request.GET.get("version"):
        version: TemplateVersion | None = get_version(request, template, request.GET["version"])
        channel = version.channel
    else:
        channel = pick_channel(request.GET.get("channel"))
        version = TemplateVersion.objects.filter(template=template, channel=channel, is_current=True).first()
    context = {"template": template, "channel": channel, "channel_label": CHANNEL_LABELS[channel],
               "tabs": _tabs(template), "version": version, "links": list(version.links or []) if version else [],
               "can_edit": can_edit(request), "section": "templates", "page": "links"}
    return render(request, "content/template_links.html", context)
