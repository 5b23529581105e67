"""The list of mailings, a mailing's page (state, actions by state, live progress, runs) and the
state changes: launch, pause, resume, cancel, duplicate, delete.

Figures come from the counters (MailingStat sums), never a COUNT over the ledger: the list reads
one grouped sum for the rows of its page; the progress partial reads `selectors.run_progress`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.forms import ConfirmNameForm
from cdp.tables import Column, EmptyState, Filter, Table
from mailings import selectors
from mailings.forms import FIELD_STEP, schedule_words, window_words
from mailings.models import Mailing, Run
from mailings.services import lifecycle
from mailings.services.errors import MailingError
from mailings.views import KIND_ICONS, STATE_ICONS, can_edit, get_mailing, get_run, latest_run

RUNS_SHOWN = 30


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def mailing_list(request: HttpRequest) -> HttpResponse:
    editable = can_edit(request)
    new_url = reverse("mailings:create")
    table = Table(
        request,
        Mailing.objects.for_account(request.account).select_related("resource", "template"),
        id="mailings",
        columns=[Column("Mailing", sort="name"), Column("State"), Column("Audience", classes="text-end"),
                 Column("Sent", classes="text-end"), Column("Open rate", classes="text-end"),
                 Column("Click rate", classes="text-end"), Column("Next run"), Column("Created", sort="created_at")],
        search_fields=["name", "description"],
        search_placeholder="Search mailings",
        filters=[Filter("state", "All states", Mailing.State.choices), Filter("kind", "All kinds", Mailing.Kind.choices)],
        default_sort="-created_at",
        row_template="mailings/_mailing_row.html",
        empty=EmptyState(
            "No mailings yet",
            "A mailing sends a template to a resource's subscribers: once, on a schedule, or when something happens.",
            icon="envelope-paper", action_url=new_url if editable else "", action_label="New mailing"),
    )
    # One grouped sum over the counters for the page's mailings, whatever their size.
    figures = selectors.list_figures([m.pk for m in table.rows])
    for row in table.rows:
        f = figures.get(row.pk) or {}
        started = row.state != Mailing.State.DRAFT and bool(f.get("planned"))
        row.planned = f.get("planned") if started else None
        row.sent = f.get("sent") if started else None
        row.open_rate = f.get("open_rate")
        row.click_rate = f.get("click_rate")
    if table.is_filtered:
        table.empty = EmptyState("No mailings match", "Try another word, or clear the filters.", icon="search")
    context = {"table": table, "can_edit": editable, "new_url": new_url, "section": "mailings",
               "state_icons": STATE_ICONS, "kind_icons": KIND_ICONS, "tabs": _tabs(request)}
    if table.is_partial_request:
        return render(request, "components/table.html", context)
    return render(request, "mailings/mailing_list.html", context)


def _tabs(request: HttpRequest) -> list[dict[str, Any]]:
    """Quick state tabs above the table (links; the state filter of the table does the same)."""
    current = request.GET.get("state", "")
    base = reverse("mailings:list")
    tabs = [("", "All"), ("draft", "Drafts"), ("scheduled", "Scheduled"), ("sending", "Sending"),
            ("paused", "Paused"), ("done", "Done")]
    return [{"label": label, "url": f"{base}?state={key}" if key else base, "active": key == current}
            for key, label in tabs]


# --- one mailing ---------------------------------------------------------------------------------


def progress_context(mailing: Mailing, run: Run | None) -> dict[str, Any]:
    """What the progress partial shows: `selectors.run_progress(run=)` and whether to poll."""
    progress = selectors.run_progress(run=run) if run is not None else None
    live = run is not None and run.state in (Run.State.PLANNING, Run.State.SENDING)
    return {"mailing": mailing, "run": run, "progress": progress, "poll": live}


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def mailing_detail(request: HttpRequest, pk: int) -> HttpResponse:
    mailing = get_mailing(request, pk)
    runs = list(Run.objects.for_account(request.account).filter(mailing=mailing)
                .order_by("-scheduled_for", "-id")[:RUNS_SHOWN])
    run = runs[0] if runs else None
    problems: dict[str, str] = {}
    if mailing.state == Mailing.State.DRAFT:
        problems = lifecycle.mailing_problems(mailing)
    context = {
        "mailing": mailing,
        "runs": runs,
        **progress_context(mailing, run),
        "problems": [(field, message, FIELD_STEP.get(field, "review")) for field, message in problems.items()],
        "schedule": schedule_words(mailing),
        "window": window_words(mailing.send_window),
        "cap": next(iter(mailing.caps.all()), None),
        "segments_in": list(mailing.include_segments.all()),
        "segments_out": list(mailing.exclude_segments.all()),
        "can_edit": can_edit(request),
        "state_icons": STATE_ICONS,
        "kind_icons": KIND_ICONS,
        "section": "mailings",
    }
    return render(request, "mailings/mailing_detail.html", context)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def mailing_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The live progress partial (polled every 2 s while its run plans or sends); ?run=<id>."""
    mailing = get_mailing(request, pk)
    run = get_run(request, mailing, request.GET.get("run")) or latest_run(mailing)
    response = render(request, "mailings/_progress.html", progress_context(mailing, run))
    if request.htmx and run is not None and not progress_context(mailing, run)["poll"]:
        # Finished: the page's state badge and buttons changed too; refresh them once.
        response["HX-Trigger"] = "mailing-finished"
    return response


# --- state changes -------------------------------------------------------------------------------


def _transition(request: HttpRequest, pk: int, change: Callable[..., Any], done: str) -> HttpResponse:
    mailing = get_mailing(request, pk)
    try:
        change(mailing=mailing, actor=Actor.from_request(request))
    except MailingError as exc:
        problems = exc.text
        messages.error(request, f"{mailing.name}: {problems}")
    else:
        messages.success(request, done.format(name=mailing.name))
    return redirect(mailing)


@require_POST
@account_required(Perm.MAILINGS_EDIT)
def mailing_launch(request: HttpRequest, pk: int) -> HttpResponse:
    mailing = get_mailing(request, pk)
    try:
        mailing = lifecycle.mailing_launch(mailing=mailing, actor=Actor.from_request(request))
    except MailingError as exc:
        messages.error(request, "It cannot be launched yet: " + exc.text)
        return redirect("mailings:edit", mailing.pk, "review")
    if mailing.state == Mailing.State.SCHEDULED:
        messages.success(request, f"{mailing.name} is scheduled.")
    else:
        messages.success(request, f"{mailing.name} is launched.")
    return redirect(mailing)


@require_POST
@account_required(Perm.MAILINGS_EDIT)
def mailing_pause(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(request, pk, lifecycle.mailing_pause, "{name} is paused: nothing more goes out until you resume it.")


@require_POST
@account_required(Perm.MAILINGS_EDIT)
def mailing_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(request, pk, lifecycle.mailing_resume, "{name} is sending again; nobody gets it twice.")


@require_http_methods(["GET", "POST"])
@account_required(Perm.MAILINGS_EDIT)
def mailing_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation page (what has gone out, what will not); POST: cancel."""
    mailing = get_mailing(request, pk)
    if request.method == "POST":
        return _transition(request, pk, lifecycle.mailing_cancel, "{name} is cancelled: the rest will not be sent.")
    run = latest_run(mailing)
    return render(request, "mailings/mailing_cancel.html", {
        "mailing": mailing, "progress": selectors.run_progress(run=run) if run else None, "section": "mailings"})


@require_POST
@account_required(Perm.MAILINGS_EDIT)
def mailing_duplicate(request: HttpRequest, pk: int) -> HttpResponse:
    mailing = get_mailing(request, pk)
    try:
        copy = lifecycle.mailing_duplicate(mailing=mailing, actor=Actor.from_request(request))
    except MailingError as exc:
        messages.error(request, f"{mailing.name} cannot be copied: " + exc.text)
        return redirect(mailing)
    messages.success(request, f"{copy.name} is a draft copy of {mailing.name}: change what you need, then launch it.")
    return redirect("mailings:edit", copy.pk, "basics")


@require_http_methods(["GET", "POST"])
@account_required(Perm.MAILINGS_EDIT)
def mailing_delete(request: HttpRequest, pk: int) -> HttpResponse:
    mailing = get_mailing(request, pk)
    form = ConfirmNameForm(request.POST or None, expected=mailing.name, what="mailing")
    if request.method == "POST" and form.is_valid():
        name = mailing.name
        try:
            lifecycle.mailing_delete(mailing=mailing, actor=Actor.from_request(request))
        except MailingError as exc:
            form.add_error(None, exc.text)
        else:
            messages.success(request, f"{name} is deleted.")
            return redirect("mailings:list")
    return render(request, "mailings/mailing_delete.html", {"mailing": mailing, "form": form, "section": "mailings"},
                  status=400 if form.is_bound else 200)
