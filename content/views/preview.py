"""The preview document: what the editor's `<iframe sandbox>` shows.

Tenant HTML runs no script here, by two locks that each suffice: the frame's `sandbox` attribute
(no allow-scripts, no allow-same-origin) and this response's own `Content-Security-Policy: sandbox`
(so the document is sandboxed even when opened outside the frame, and loads nothing but https/data
images and fonts and inline styles). Only this origin may frame it (X-Frame-Options SAMEORIGIN, in
place of the site's DENY).

GET renders a saved version (?version=<id>, else the channel's current one); POST renders the
draft the editor's form posts (target = the frame). Either "as" ?profile=<id> of the template's
database, or a sample person; a template's own error is shown in place, with its part and line.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_http_methods

from accounts.access import account_required
from accounts.permissions import Perm
from content.forms import channel_form
from content.models import TemplateVersion
from content.views import CHANNEL_LABELS, get_template, get_version, pick_channel
from content.views.drafts import (
    Outcome,
    parse_sample_data,
    preview_context,
    profile_pick,
    render_draft,
    render_saved,
)
from resources.models import Channel

PREVIEW_CSP = ("sandbox; default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
               "font-src https: data:")


def _sandboxed(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = PREVIEW_CSP
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_http_methods(["GET", "POST"])
@never_cache
@xframe_options_sameorigin
@account_required(Perm.ACCOUNT_VIEW)
def template_preview(request: HttpRequest, pk: int) -> HttpResponse:
    template = get_template(request, pk)
    post = request.method == "POST"
    params = request.POST if post else request.GET
    channel = pick_channel(params.get("channel"))
    profile = profile_pick(template, params.get("profile"))
    sample, problem = parse_sample_data(params.get("sample_data", "") if post else "")
    outcome: Outcome | None = None
    invalid: dict[str, Any] = {}
    if post:
        form = channel_form(channel, request.POST)
        if form.is_valid():
            data = form.data_dict()
            if data:
                ctx = preview_context(template=template, channel=channel, profile=profile, data=sample)
                outcome = render_draft(template=template, channel=channel, data=data, context=ctx)
        else:
            invalid = {k: list(v) for k, v in form.errors.items()}
    else:
        version = (get_version(request, template, params["version"]) if params.get("version") else
                   TemplateVersion.objects.filter(template=template, channel=channel, is_current=True).first())
        if version is not None:
            channel = version.channel
            ctx = preview_context(template=template, channel=channel, profile=profile, data=sample)
            outcome = render_saved(version=version, context=ctx)
    if outcome is not None and outcome.error is None and channel == Channel.EMAIL:
        # The e-mail itself, as a mail client would get it; nothing of ours is mixed into it.
        html = str(outcome.parts.get("html") or "")
        return _sandboxed(HttpResponse(html, content_type="text/html; charset=utf-8"))
    context = {"channel": channel, "channel_label": CHANNEL_LABELS[channel], "outcome": outcome,
               "invalid": invalid, "sample_problem": problem, "template": template}
    return _sandboxed(render(request, "content/preview.html", context))
