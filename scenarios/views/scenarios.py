"""The list of scenarios, a new one, its settings, import and export, delete, and the lifecycle:
activate, publish a new version (with the optional step mapping for the profiles inside), pause,
resume, stop. Every change is a POST to a real URL followed by a redirect (toasts say what
happened; refusals say why)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.forms import ConfirmNameForm, StyledForm
from cdp.tables import Column, EmptyState, Filter, Table
from scenarios import selectors, services
from scenarios.forms import ImportForm, ScenarioForm, add_service_errors
from scenarios.models import Participation, Scenario, ScenarioVersion, Step
from scenarios.services.errors import ScenarioError
from scenarios.views import SECTION, STATE_ICONS, can_edit, get_scenario


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def scenario_list(request: HttpRequest) -> HttpResponse:
    editable = can_edit(request)
    new_url = reverse("scenarios:create")
    table = Table(
        request,
        selectors.scenario_list(account=request.account),  # the API's list too (no webhook secret decrypted)
        id="scenarios",
        columns=[Column("Scenario", sort="name"), Column("State"), Column("Entries"),
                 Column("In it now", classes="text-end"), Column("Completed", classes="text-end"),
                 Column("Created", sort="created_at")],
        search_fields=["name", "description"],
        search_placeholder="Search scenarios",
        filters=[Filter("state", "All states", Scenario.State.choices)],
        default_sort="-created_at",
        row_template="scenarios/_scenario_row.html",
        empty=EmptyState(
            "No scenarios yet",
            "A scenario moves profiles through messages, waits and conditions: a welcome journey, "
            "reminders, an abandoned cart.",
            icon="diagram-2", action_url=new_url if editable else "", action_label="New scenario"),
    )
    # One grouped count for the page's scenarios, whatever their size.
    figures = selectors.list_figures([s.pk for s in table.rows])
    for row in table.rows:
        row.figures = figures.get(row.pk) or {}
    if table.is_filtered:
        table.empty = EmptyState("No scenarios match", "Try another word, or clear the filters.", icon="search")
    context = {"table": table, "can_edit": editable, "new_url": new_url, "section": SECTION,
               "state_icons": STATE_ICONS, "import_form": ImportForm(account=request.account) if editable else None}
    if table.is_partial_request:
        return render(request, "components/table.html", context)
    return render(request, "scenarios/scenario_list.html", context)


@require_http_methods(["GET", "POST"])
@account_required(Perm.SCENARIOS_EDIT)
def scenario_create(request: HttpRequest) -> HttpResponse:
    form = ScenarioForm(request.POST or None, account=request.account)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            with transaction.atomic():
                scenario = services.scenario_create(
                    account=request.account, database=d["database"], name=d["name"], reentry=d["reentry"],
                    goal=form.goal(), description=d.get("description", ""), actor=Actor.from_request(request))
        except ScenarioError as exc:
            add_service_errors(form, exc.errors)
        else:
            messages.success(request, f"{scenario.name} is created: add its entry and steps from the palette.")
            return redirect(scenario)
    return render(request, "scenarios/scenario_form.html", {"form": form, "section": SECTION, "scenario": None},
                  status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@account_required(Perm.SCENARIOS_EDIT)
def scenario_settings(request: HttpRequest, pk: int) -> HttpResponse:
    scenario = get_scenario(request, pk)
    form = ScenarioForm(request.POST or None, account=request.account, scenario=scenario)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            services.scenario_update(scenario=scenario, actor=Actor.from_request(request), values={
                "name": d["name"], "description": d.get("description", ""), "reentry": d["reentry"],
                "goal": form.goal()})
        except ScenarioError as exc:
            add_service_errors(form, exc.errors)
        else:
            messages.success(request, f"{d['name']}: the settings are saved.")
            return redirect(scenario)
    return render(request, "scenarios/scenario_form.html", {"form": form, "section": SECTION, "scenario": scenario},
                  status=400 if form.is_bound else 200)


@require_http_methods(["POST"])
@account_required(Perm.SCENARIOS_EDIT)
def scenario_import(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES, account=request.account)
    if form.is_valid():
        try:
            scenario = services.scenario_import(account=request.account, database=form.cleaned_data["database"],
                                                data=form.cleaned_data["file"], actor=Actor.from_request(request))
        except ScenarioError as exc:
            messages.error(request, "The file cannot be imported: " + str(exc))
        else:
            messages.success(request, f"{scenario.name} is imported as a draft: check it, then activate it.")
            return redirect(scenario)
    else:
        messages.error(request, "The file cannot be imported: " + "; ".join(
            str(e) for errs in form.errors.values() for e in errs))
    return redirect("scenarios:list")


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def scenario_export(request: HttpRequest, pk: int) -> HttpResponse:
    scenario = get_scenario(request, pk)
    data = services.scenario_export(scenario)
    response = HttpResponse(json.dumps(data, indent=2, default=str), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="scenario-{slugify(scenario.name) or scenario.pk}.json"'
    return response


@require_http_methods(["GET", "POST"])
@account_required(Perm.SCENARIOS_EDIT)
def scenario_delete(request: HttpRequest, pk: int) -> HttpResponse:
    scenario = get_scenario(request, pk)
    form = ConfirmNameForm(request.POST or None, expected=scenario.name, what="scenario")
    if request.method == "POST" and form.is_valid():
        name = scenario.name
        try:
            services.scenario_delete(scenario=scenario, actor=Actor.from_request(request))
        except ScenarioError as exc:
            form.add_error(None, exc.text)
        else:
            messages.success(request, f"{name} is deleted.")
            return redirect("scenarios:list")
    return render(request, "scenarios/scenario_delete.html", {"scenario": scenario, "form": form, "section": SECTION},
                  status=400 if form.is_bound else 200)


# --- lifecycle ----------------------------------------------------------------------------------------


def _change(request: HttpRequest, pk: int, change: Callable[..., Any], done: str, refused: str) -> HttpResponse:
    scenario = get_scenario(request, pk)
    try:
        with transaction.atomic():
            change(scenario=scenario, actor=Actor.from_request(request))
    except ScenarioError as exc:
        messages.error(request, f"{refused}: {exc.text}")
    else:
        messages.success(request, done.format(name=scenario.name))
    return redirect(scenario)


@require_POST
@account_required(Perm.SCENARIOS_EDIT)
def scenario_activate(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.scenario_activate, "{name} is active: profiles enter it now.",
                   "It cannot be activated yet")


@require_POST
@account_required(Perm.SCENARIOS_EDIT)
def scenario_pause(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.scenario_pause,
                   "{name} is paused: nobody enters or moves until you resume it.", "It cannot be paused")


@require_POST
@account_required(Perm.SCENARIOS_EDIT)
def scenario_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.scenario_resume, "{name} runs again: profiles carry on where they were.",
                   "It cannot be resumed")


@require_POST
@account_required(Perm.SCENARIOS_EDIT)
def scenario_stop(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.scenario_stop,
                   "{name} is stopped: everyone inside has left it, and nobody enters again.", "It cannot be stopped")


class MappingForm(StyledForm):
    """For each step of an older version with profiles in it: where they go in the new version
    ("" = they stay and finish on their version)."""

    def __init__(self, *args: Any, occupied: list[tuple[str, str, int]], targets: list[tuple[str, str]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows = []
        for key, title, n in occupied:
            name = f"map_{key}"
            self.fields[name] = forms.ChoiceField(
                required=False, label=f"{key} “{title}” ({n} inside)",
                choices=[("", "Stay: finish on their version"), *targets],
                widget=forms.Select(attrs={"class": "form-select"}))
            self.rows.append(name)

    def mapping(self) -> dict[str, str]:
        return {name[4:]: self.cleaned_data[name] for name in self.rows if self.cleaned_data.get(name)}


@require_http_methods(["GET", "POST"])
@account_required(Perm.SCENARIOS_EDIT)
def scenario_publish(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: publish the draft: its problems, and the mapping of the profiles inside older versions;
    POST: publish (refused with the problems when it does not validate)."""
    scenario = get_scenario(request, pk)
    draft = ScenarioVersion.objects.filter(scenario=scenario, state=ScenarioVersion.State.DRAFT).first()
    if draft is None:
        messages.info(request, "There is no draft to publish: edit the scenario first.")
        return redirect(scenario)
    report = selectors.scenario_report(scenario, with_messages=False)
    occupied = [(r.key, r.title, r.in_now) for r in report.steps if r.in_now]
    targets = [(s.key, f"{s.key} · {s.title}") for s in Step.objects.filter(version=draft).order_by("row", "col", "id")
               if not s.is_entry]
    form = MappingForm(request.POST or None, occupied=occupied, targets=targets)
    if request.method == "POST" and form.is_valid():
        actor = Actor.from_request(request)
        try:
            with transaction.atomic():
                # A draft scenario starts; a running one publishes its draft (moving the mapped profiles).
                services.scenario_activate(scenario=scenario, actor=actor, mapping=form.mapping() or None,
                                           publish=True)
        except ScenarioError as exc:
            form.add_error(None, exc.text)
        else:
            moved = form.mapping()
            extra = f" Profiles at {', '.join(moved)} moved to it." if moved else ""
            messages.success(request, f"Version {draft.number} of {scenario.name} is live: new entries follow it.{extra}")
            return redirect(scenario)
    from scenarios.services.validation import version_validate

    in_now = Participation.objects.filter(scenario=scenario, state__in=Participation.OPEN_STATES).count()
    return render(request, "scenarios/scenario_publish.html", {
        "scenario": scenario, "draft": draft, "form": form, "problems": version_validate(draft), "in_now": in_now,
        "section": SECTION}, status=400 if form.is_bound else 200)
