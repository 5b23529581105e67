"""The editor: a template's page with a tab per channel, the channel's form, the variables sidebar,
the live preview frame, the lint panel; saving makes a new version.

One form carries the draft. Its buttons post it to three places: "Save" here (a new version),
"Preview" to content:template_preview with target = the sandboxed frame, and "Check" to
content:template_check (the inbox line, render errors and lint messages; an htmx partial, or this
page again with the draft when there is no JavaScript). static/js/template-editor.js re-submits
the preview and the check, debounced, as the person types.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from content import selectors, services
from content.forms import ChannelForm, TestSendForm, channel_form
from content.models import Template, TemplateVersion
from content.rendering import RenderError
from content.sms import sms_info
from content.views import CHANNEL_LABELS, CHANNELS, can_edit, error_dict, get_template, pick_channel
from content.views.drafts import (
    lint_draft,
    parse_sample_data,
    preview_context,
    profile_pick,
    render_draft,
    variables,
)
from resources.models import Channel

MAX_NOTE = 500
PICKER_RESULTS = 8


def _current(template: Template) -> dict[str, TemplateVersion]:
    return {v.channel: v for v in TemplateVersion.objects.filter(template=template, is_current=True)
            .select_related("created_by")}


def _apply_errors(form: ChannelForm, exc: Exception) -> None:
    """A service's refusal onto the channel form: a part's errors under its field."""
    for part, msgs in error_dict(exc).items():
        for m in msgs:
            form.add_error(part if part in form.fields else None, m)


def _panel(request: HttpRequest, template: Template, channel: str, data: dict[str, Any] | None,
           version: TemplateVersion | None) -> dict[str, Any]:
    """What the checks panel and the inbox line show for `data` (a draft) or the saved `version`:
    the rendered subject/preheader (e-mail), the render error, lint messages, the SMS counts."""
    sample, sample_problem = parse_sample_data(request.POST.get("sample_data", "") if request.method == "POST" else "")
    profile = profile_pick(template, request.POST.get("profile") if request.method == "POST"
                           else request.GET.get("profile"))
    if data is None:
        data = dict(version.data) if version is not None else {}
        lint_messages = list(version.lint or []) if version is not None else []
    else:
        lint_messages = lint_draft(template=template, channel=channel, data=data)
    outcome = None
    if data:
        ctx = preview_context(template=template, channel=channel, profile=profile, data=sample)
        outcome = render_draft(template=template, channel=channel, data=data, context=ctx)
    sms = sms_sent = None
    if channel == Channel.SMS:
        # The counter by the box counts what is written (as the JS does); the panel counts what a
        # person actually gets, variables filled in.
        sms = sms_info(str(data.get("text", "")))
        if outcome is not None and outcome.error is None:
            sms_sent = sms_info(str(outcome.parts.get("text") or ""))
    return {
        "panel_channel": channel,
        "outcome": outcome,
        "lint": [_lint_row(m) for m in lint_messages],
        "sms": sms,
        "sms_sent": sms_sent,
        "profile": profile,
        "sample_problem": sample_problem,
    }


def _lint_row(m: Any) -> dict[str, Any]:
    """A lint message as the panel shows it, from a LintMessage or its saved JSON form."""
    get = m.get if isinstance(m, dict) else lambda k, d=None: getattr(m, k, d)
    return {"level": get("level", "info"), "code": get("code", ""), "message": get("message", ""),
            "part": get("part", ""), "line": get("line")}


def _editor(request: HttpRequest, template: Template, channel: str, form: ChannelForm,
            current: dict[str, TemplateVersion], *, draft: dict[str, Any] | None, status: int = 200) -> HttpResponse:
    version = current.get(channel)
    editable = can_edit(request)
    if not editable:
        # Read-only, yet still posted to the preview and the checks (disabled fields would not be).
        for f in form.fields.values():
            f.widget.attrs["readonly"] = True
    fields = list(template.database.fields.all()) if template.database_id else []
    profile_id = request.POST.get("profile") if request.method == "POST" else request.GET.get("profile")
    preview_query = f"?channel={channel}" + (f"&profile={int(profile_id)}" if (profile_id or "").isdigit() else "")
    test_form = TestSendForm(initial={"channel": channel,
                                      "address": request.user.email if channel == Channel.EMAIL else ""})
    context = {
        "template": template,
        "channel": channel,
        "channel_label": CHANNEL_LABELS[channel],
        "tabs": [(c, label, icon, c in current) for c, label, icon in CHANNELS],
        "form": form,
        "version": version,
        "can_edit": editable,
        "variables": variables(template.database, fields),
        "preview_url": reverse("content:template_preview", args=[template.pk]) + preview_query,
        # An e-mail opens at desktop width; the other channels are phone messages.
        "width": request.GET.get("width") if request.GET.get("width") in ("desktop", "phone")
        else "desktop" if channel == Channel.EMAIL else "phone",
        "sample_data": request.POST.get("sample_data", "") if request.method == "POST" else "",
        "note_max": MAX_NOTE,
        "test_form": test_form,
        "section": "templates",
        "page": "edit",
        **_panel(request, template, channel, draft, version),
    }
    return render(request, "content/template_detail.html", context, status=status)


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def template_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The editor of one channel (?channel=email). POST saves the draft as a new version
    (CONTENT_EDIT); with action=check it shows the page again with the draft checked, unsaved."""
    template = get_template(request, pk)
    channel = pick_channel(request.POST.get("channel") if request.method == "POST" else request.GET.get("channel"))
    current = _current(template)
    version = current.get(channel)
    if request.method == "GET":
        form = channel_form(channel, version_data=version.data if version else None)
        return _editor(request, template, channel, form, current, draft=None)
    form = channel_form(channel, request.POST)
    checking = request.POST.get("action") == "check"
    if not checking and not can_edit(request):
        messages.error(request, "Your role can read templates but not change them.")
        return redirect(f"{template.get_absolute_url()}?channel={channel}")
    if not form.is_valid():
        return _editor(request, template, channel, form, current, draft=None, status=400)
    data = form.data_dict()
    if checking:
        return _editor(request, template, channel, form, current, draft=data)
    try:
        saved = services.template_version_save(template=template, channel=channel, data=data,
                                               actor=Actor.from_request(request),
                                               note=request.POST.get("note", "").strip()[:MAX_NOTE])
    except (ValidationError, RenderError) as exc:
        _apply_errors(form, exc)
        return _editor(request, template, channel, form, current, draft=data, status=400)
    messages.success(request, f"Saved as version {saved.number} of the {CHANNEL_LABELS[channel]}.")
    return redirect(f"{template.get_absolute_url()}?channel={channel}")


@require_POST
@account_required(Perm.ACCOUNT_VIEW)
def template_check(request: HttpRequest, pk: int) -> HttpResponse:
    """The panel for the posted draft (htmx partial): inbox line, render error, lint, SMS counter.
    Without htmx, the editor page again with the draft checked."""
    template = get_template(request, pk)
    channel = pick_channel(request.POST.get("channel"))
    form = channel_form(channel, request.POST)
    if not request.htmx:
        current = _current(template)
        draft = form.data_dict() if form.is_valid() else None
        return _editor(request, template, channel, form, current, draft=draft, status=200 if draft is not None else 400)
    if not form.is_valid():
        context = {"panel_channel": channel, "form_errors": form.errors, "lint": [], "outcome": None}
        return render(request, "content/_panel.html", context)
    return render(request, "content/_panel.html", _panel(request, template, channel, form.data_dict(), None))


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def template_profiles(request: HttpRequest, pk: int) -> HttpResponse:
    """The "preview as" picker: profiles of the template's database matching ?q= (e-mail prefix,
    phone, #id or names), at most PICKER_RESULTS."""
    template = get_template(request, pk)
    channel = pick_channel(request.GET.get("channel"))
    q = request.GET.get("q", "").strip()[:200]
    found = list(selectors.preview_profiles(template=template, search=q, limit=PICKER_RESULTS)) if q else []
    context = {"template": template, "channel": channel, "found": found, "q": q}
    template_name = "content/_profile_picker.html" if request.htmx else "content/profile_picker.html"
    return render(request, template_name, {**context, "section": "templates"})
