"""Suppression lists (admin): the list with counts per kind, adding and removing one, the CSV
import (a Job) and the CSV export. Everyone may look; CHANNELS_MANAGE changes."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.models import Job
from accounts.permissions import Perm
from cdp.tables import Column, EmptyState, Filter, Table
from resources.forms import SuppressionAddForm, SuppressionImportForm, add_service_errors
from resources.models import Suppression
from resources.selectors import suppression_counts
from resources.services import ResourceError, suppression_add, suppression_remove
from resources.suppressions_io import (
    JOB_KIND,
    MAX_BYTES,
    SuppressionImportError,
    suppressions_export_rows,
    suppressions_import_start,
)

KIND_PLURALS = {Suppression.Kind.EMAIL: "E-mail addresses", Suppression.Kind.DOMAIN: "E-mail domains",
                Suppression.Kind.PHONE: "Phone numbers"}
KIND_ICONS = {Suppression.Kind.EMAIL: "envelope-slash", Suppression.Kind.DOMAIN: "globe2", Suppression.Kind.PHONE: "telephone-x"}


def _table(request: HttpRequest) -> Table:
    can_manage = request.membership.can(Perm.CHANNELS_MANAGE)
    return Table(
        request,
        Suppression.objects.for_account(request.account),
        id="suppressions",
        columns=[Column("Value", sort="value"), Column("Kind"), Column("Reason"), Column("Note"), Column("Added by"),
                 Column("Added", sort="created_at"), *([Column("", classes="text-end")] if can_manage else [])],
        search_fields=["value"],
        search_placeholder="Search addresses, domains, phones",
        filters=[Filter("kind", "All kinds", Suppression.Kind.choices), Filter("reason", "All reasons", Suppression.Reason.choices)],
        default_sort="-created_at",
        row_template="resources/suppression_row.html",
        empty=EmptyState(
            "No suppressed addresses", "Addresses, whole e-mail domains and phone numbers listed here never get a message.",
            icon="slash-circle",
            action_url=reverse("resources:suppression_import") if can_manage else "",
            action_label="Import a CSV",
        ),
    )


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def suppression_list(request: HttpRequest) -> HttpResponse:
    """The list; a POST adds one (CHANNELS_MANAGE)."""
    form = SuppressionAddForm(request.POST or None)
    if request.method == "POST":
        if not request.membership.can(Perm.CHANNELS_MANAGE):
            raise PermissionDenied("Your role does not allow changing suppression lists.")
        if form.is_valid():
            data = form.cleaned_data
            try:
                row, created = suppression_add(account=request.account, kind=data["kind"], value=data["value"],
                                               reason=data["reason"], note=data["note"], actor=Actor.from_request(request))
            except ResourceError as exc:
                add_service_errors(form, exc)
            else:
                if created:
                    messages.success(request, f"{row.value} is suppressed: nothing will be sent to it.")
                else:
                    messages.info(request, f"{row.value} was already on the list.")
                return redirect("resources:suppression_list")
    table = _table(request)
    if table.is_partial_request:
        return render(request, "components/table.html", {"table": table})
    counts = suppression_counts(request.account)
    kinds = [{"value": k, "label": label, "n": counts.get(k, 0), "plural": KIND_PLURALS[Suppression.Kind(k)], "icon": KIND_ICONS[Suppression.Kind(k)]}
             for k, label in Suppression.Kind.choices]
    context = {"table": table, "form": form, "kinds": kinds, "section": "suppressions",
               "can_manage": request.membership.can(Perm.CHANNELS_MANAGE)}
    return render(request, "resources/suppression_list.html", context, status=400 if form.is_bound else 200)


@require_POST
@account_required(Perm.CHANNELS_MANAGE)
def suppression_remove_view(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(Suppression.objects.for_account(request.account), pk=pk)
    value = row.value
    suppression_remove(suppression=row, actor=Actor.from_request(request))
    messages.success(request, f"{value} is no longer suppressed.")
    return redirect("resources:suppression_list")


# --- import and export ---------------------------------------------------------------------------


def _import_jobs(request: HttpRequest) -> list[Job]:
    return list(Job.objects.for_account(request.account).filter(kind=JOB_KIND).select_related("created_by")[:5])


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def suppression_import(request: HttpRequest) -> HttpResponse:
    form = SuppressionImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            job = suppressions_import_start(account=request.account, upload=form.cleaned_data["file"],
                                            actor=Actor.from_request(request))
        except SuppressionImportError as exc:
            form.add_error("file", str(exc))
        else:
            return redirect("resources:suppression_import_detail", pk=job.pk)
    context = {"form": form, "jobs": _import_jobs(request), "max_mb": MAX_BYTES // (1024 * 1024), "section": "suppressions"}
    return render(request, "resources/suppression_import.html", context, status=400 if form.is_bound else 200)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def suppression_import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The import's progress bar and, once it has ended, its counts and first problems. The result
    section polls this view (a few bytes) until the job has ended."""
    job = get_object_or_404(Job.objects.for_account(request.account).filter(kind=JOB_KIND), pk=pk)
    if request.htmx and request.htmx.target == "import-result":
        return render(request, "resources/suppression_import_detail.html#result", {"job": job})
    return render(request, "resources/suppression_import_detail.html", {"job": job, "section": "suppressions"})


@require_GET
@account_required(Perm.DATA_EDIT)
def suppression_export(request: HttpRequest) -> StreamingHttpResponse:
    response = StreamingHttpResponse(suppressions_export_rows(request.account), content_type="text/csv; charset=utf-8")
    name = f"suppressions-{request.account.slug}-{timezone.now():%Y%m%d-%H%M%S}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
