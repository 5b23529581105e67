"""The list of templates, a new template, its settings, and archive / duplicate / delete.

The list shows each template's channels (its current versions) from one extra query for the page's
rows, never one per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.forms import ConfirmNameForm
from cdp.tables import Column, EmptyState, Filter, Table
from content import services
from content.forms import KIND_CHOICES, TemplateForm
from content.models import Template, TemplateVersion
from content.views import CHANNEL_LABELS, CHANNELS, can_edit, error_dict, error_text, get_template
from resources.models import CHANNEL_ICONS, Channel


@dataclass(frozen=True)
class ChannelFilter(Filter):
    """Templates with a current version on the channel (a subquery: no duplicate rows)."""

    def apply(self, qs: QuerySet, value: str) -> QuerySet:
        current = TemplateVersion.objects.filter(channel=value, is_current=True).values("template_id")
        return qs.filter(pk__in=current)


@dataclass(frozen=True)
class ArchivedFilter(Filter):
    def apply(self, qs: QuerySet, value: str) -> QuerySet:
        return qs.filter(archived_at__isnull=False) if value == "archived" else qs


def _annotate_rows(rows: list[Template]) -> None:
    """Each row's current channels (icons, in tab order) and who changed it last: one query."""
    ids = [r.pk for r in rows]
    current: dict[int, list[tuple[str, Any, Any]]] = {}
    if ids:
        for tid, channel, at, full_name, email in (
            TemplateVersion.objects.filter(template_id__in=ids, is_current=True)
            .values_list("template_id", "channel", "created_at", "created_by__full_name", "created_by__email")
        ):
            current.setdefault(tid, []).append((channel, at, full_name or email or ""))
    order = {c: i for i, (c, _, _) in enumerate(CHANNELS)}
    for row in rows:
        versions = sorted(current.get(row.pk, []), key=lambda v: order.get(v[0], 99))
        row.channel_icons = [(c, CHANNEL_LABELS.get(c, c), CHANNEL_ICONS.get(c, "circle")) for c, _, _ in versions]
        latest = max(versions, key=lambda v: v[1], default=None)
        if latest is not None and latest[2]:
            row.changed_by = latest[2]
        elif row.created_by_id:
            row.changed_by = row.created_by.get_full_name() or row.created_by.email
        else:
            row.changed_by = ""


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def template_list(request: HttpRequest) -> HttpResponse:
    qs = Template.objects.for_account(request.account).select_related("database", "created_by")
    if request.GET.get("state") != "archived":
        qs = qs.filter(archived_at__isnull=True)
    editable = can_edit(request)
    new_url = reverse("content:template_create")
    table = Table(
        request, qs, id="templates",
        columns=[Column("Template", sort="name"), Column("Channels"), Column("Kind"), Column("Database"),
                 Column("Updated", sort="updated_at"), Column("By")],
        search_fields=["name", "description"],
        search_placeholder="Search templates",
        filters=[ChannelFilter("channel", "All channels", Channel.choices),
                 Filter("kind", "All kinds", KIND_CHOICES),
                 ArchivedFilter("state", "Active", [("archived", "Archived")])],
        default_sort="-updated_at",
        row_template="content/_template_row.html",
        empty=EmptyState(
            "No templates yet",
            "A template is one message, written once per channel: an e-mail, an SMS, a push, a Telegram post. "
            "Mailings and scenarios send templates.",
            icon="file-earmark-richtext", action_url=new_url if editable else "", action_label="New template",
        ),
    )
    _annotate_rows(table.rows)
    if table.is_filtered:
        table.empty = EmptyState("No templates match", "Try another word, or clear the search and filters.",
                                 icon="search")
    context = {"table": table, "can_edit": editable, "new_url": new_url, "section": "templates"}
    if table.is_partial_request:
        return render(request, "components/table.html", context)
    return render(request, "content/template_list.html", context)


@require_http_methods(["GET", "POST"])
@account_required(Perm.CONTENT_EDIT)
def template_create(request: HttpRequest) -> HttpResponse:
    form = TemplateForm(request.POST or None, account=request.account)
    if request.method == "POST" and form.is_valid():
        try:
            template = services.template_create(
                account=request.account, name=form.cleaned_data["name"], database=form.cleaned_data["database"],
                kind=form.cleaned_data["kind"], description=form.cleaned_data["description"],
                actor=Actor.from_request(request))
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, f"{template.name} is created: write its e-mail, or pick another channel.")
            return redirect(template)
    status = 400 if form.is_bound else 200
    return render(request, "content/template_form.html", {"form": form, "section": "templates"}, status=status)


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def template_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """Name, kind, database and description; reading for everyone, saving for CONTENT_EDIT."""
    template = get_template(request, pk)
    editable = can_edit(request)
    if request.method == "POST" and not editable:
        messages.error(request, "Your role cannot change templates.")
        return redirect(template)
    initial = {"name": template.name, "kind": template.kind, "database": template.database,
               "description": template.description}
    form = TemplateForm(request.POST or None, initial=initial, account=request.account)
    if request.method == "POST" and form.is_valid():
        try:
            services.template_update(template=template, actor=Actor.from_request(request), **form.cleaned_data)
        except ValidationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect(template)
    if not editable:
        for f in form.fields.values():
            f.disabled = True
    context = {"form": form, "template": template, "can_edit": editable, "section": "templates"}
    return render(request, "content/template_form.html", context, status=400 if form.is_bound else 200)


@require_POST
@account_required(Perm.CONTENT_EDIT)
def template_archive(request: HttpRequest, pk: int) -> HttpResponse:
    """Archive (hidden from the list and from new mailings), or bring back with restore=1."""
    template = get_template(request, pk)
    restore = request.POST.get("restore") == "1"
    try:
        services.template_archive(template=template, actor=Actor.from_request(request), archived=not restore)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"{template.name} is {'back in the list' if restore else 'archived'}.")
    return redirect(template)


@require_POST
@account_required(Perm.CONTENT_EDIT)
def template_duplicate(request: HttpRequest, pk: int) -> HttpResponse:
    template = get_template(request, pk)
    try:
        copy = services.template_duplicate(template=template, actor=Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, f"{template.name} cannot be copied: {error_text(exc)}")
        return redirect(template)
    messages.success(request, f"{copy.name} is a copy of {template.name}.")
    return redirect(copy)


@require_http_methods(["GET", "POST"])
@account_required(Perm.CONTENT_EDIT)
def template_delete(request: HttpRequest, pk: int) -> HttpResponse:
    template = get_template(request, pk)
    form = ConfirmNameForm(request.POST or None, expected=template.name, what="template")
    if request.method == "POST" and form.is_valid():
        name = template.name
        try:
            services.template_delete(template=template, actor=Actor.from_request(request))
        except ValidationError as exc:
            form.add_error(None, error_text(exc))
        else:
            messages.success(request, f"{name} is deleted.")
            return redirect("content:template_list")
    context = {"template": template, "form": form, "section": "templates"}
    return render(request, "content/template_delete.html", context, status=400 if form.is_bound else 200)


def _form_errors(form: Any, exc: ValidationError) -> None:
    for part, msgs in error_dict(exc).items():
        for m in msgs:
            form.add_error(part if part in form.fields else None, m)
