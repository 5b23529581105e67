"""A scenario's page: the diagram of a version with the live figures, and the editor of the draft.

The page shows the draft when there is one (else the live version, else the newest); `?v=<number>`
shows another version read-only. Editing happens in the side panel: the palette (step kinds by
group), a step's form (its config with real selects, and a "goes to" select per exit), the delete
confirmation. Each panel is a real page too (GET without htmx renders the whole page with that
panel open), and each form posts to a real URL: with htmx the answer is the `#editor` partial
(diagram, problems, panel), without it a redirect to the page.

Queries are bounded whatever the number of steps: the scenario, its versions, the shown version's
steps and transitions, the names the summaries use (templates, segments, resources: one query
each), validation, and the figures (`selectors.scenario_report` without per-mailing reports, plus
one grouped sum over the send steps' mailing counters).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from content.models import Template
from mailings import selectors as mailing_selectors
from resources.models import Resource
from scenarios import diagram as drawing
from scenarios import selectors
from scenarios.forms import MoveForm, StepForm, add_service_errors, make_step_form
from scenarios.graph import STEP_KINDS, exits_of
from scenarios.models import Scenario, ScenarioVersion, Step, Transition
from scenarios.services.editing import (
    draft_get_or_create,
    step_add,
    step_delete,
    step_move,
    step_update,
    transition_delete,
    transition_set,
)
from scenarios.services.errors import ScenarioError
from scenarios.services.validation import version_validate
from scenarios.views import SECTION, STATE_ICONS, can_edit, get_draft, get_draft_step, get_scenario
from segments.models import Segment

EDITOR = "scenarios/scenario_detail.html"
GROUPS = [("entry", "Entries"), ("message", "Messages"), ("timing", "Timing"), ("logic", "Logic"),
          ("data", "Data and systems"), ("end", "End")]


@dataclass
class Target:
    exit: str
    target_key: str


def palette() -> list[tuple[str, list[Any]]]:
    """The step kinds by group, in the order people build a flow."""
    by_group: dict[str, list[Any]] = defaultdict(list)
    for spec in STEP_KINDS.values():
        by_group[spec.group].append(spec)
    return [(label, by_group[g]) for g, label in GROUPS if by_group.get(g)]


def shown_version(scenario: Scenario, versions: list[ScenarioVersion], raw: str | None) -> ScenarioVersion | None:
    """`?v=<number>` (Http404 when it names no version), else the draft, else the live, else the newest."""
    if raw:
        found = next((v for v in versions if str(v.number) == raw), None)
        if found is None:
            raise Http404("No such version.")
        return found
    draft = next((v for v in versions if v.state == ScenarioVersion.State.DRAFT), None)
    if draft is not None:
        return draft
    live = next((v for v in versions if v.pk == scenario.live_version_id), None)
    return live or (versions[0] if versions else None)


def _names(account_id: int, steps: list[Step]) -> dict[str, dict[int, str]]:
    """{what: {id: name}} for the ids the steps' configs name (one query per kind of thing)."""
    want: dict[str, set[int]] = defaultdict(set)

    def add(what: str, raw: Any) -> None:
        with contextlib.suppress(TypeError, ValueError):
            want[what].add(int(raw))

    for s in steps:
        c = s.config or {}
        add("templates", c.get("template_id"))
        add("segments", c.get("segment_id"))
        add("resources", c.get("resource_id"))
        tree = c.get("conditions") if isinstance(c.get("conditions"), dict) else {}
        for node in tree.get("items") or []:
            if isinstance(node, dict):
                add("segments", node.get("segment"))
                add("resources", node.get("resource"))
    out: dict[str, dict[int, str]] = {}
    for what, model in (("templates", Template), ("segments", Segment), ("resources", Resource)):
        ids = want.get(what)
        out[what] = dict(model.objects.filter(account_id=account_id, pk__in=ids).values_list("pk", "name")) if ids else {}
    return out


def _figures(scenario: Scenario, version: ScenarioVersion | None, steps: list[Step]) -> tuple[dict[str, dict[str, Any]], Any]:
    """({step key: figures}, the report) for a scenario that has run; ({}, None) for a draft one."""
    if scenario.state == Scenario.State.DRAFT and not scenario.live_version_id:
        return {}, None
    report = selectors.scenario_report(scenario, version=version, with_messages=False)
    mailing_ids = [s.mailing_id for s in steps if s.kind == "send" and s.mailing_id]
    messages_of = mailing_selectors.list_figures(mailing_ids) if mailing_ids else {}
    out: dict[str, dict[str, Any]] = {}
    for row in report.steps:
        out[row.key] = {"in_now": row.in_now, "waiting": row.waiting, "entered": row.entered, "passed": row.passed,
                        "exited": row.exited, "failed": row.failed}
    for s in steps:
        if s.kind == "send" and s.mailing_id in messages_of:
            m = messages_of[s.mailing_id]
            out.setdefault(s.key, {})["messages"] = {"sent": m["sent"], "opened": m["opened_unique"],
                                                     "clicked": m["clicked_unique"], "mailing_id": s.mailing_id}
    return out, report


def editor_context(request: HttpRequest, scenario: Scenario, *, version_number: str | None = None,
                   panel: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the page and its `#editor` partial show."""
    versions = list(ScenarioVersion.objects.filter(scenario=scenario).order_by("-number"))
    version = shown_version(scenario, versions, version_number)
    steps: list[Step] = []
    transitions: list[Transition] = []
    if version is not None:
        steps = list(Step.objects.filter(version=version).order_by("row", "col", "id"))
        transitions = list(Transition.objects.filter(version=version))
    editable = can_edit(request) and version is not None and version.state == ScenarioVersion.State.DRAFT \
        and scenario.state != Scenario.State.STOPPED
    problems = version_validate(version) if version is not None and version.state == ScenarioVersion.State.DRAFT else []
    by_step: dict[str, list[str]] = defaultdict(list)
    for p in problems:
        if p.step_key:
            by_step[p.step_key].append(p.message)
    figures, report = _figures(scenario, version, steps)
    picture = drawing.build(steps, transitions, names=_names(scenario.account_id, steps), problems=by_step,
                            figures=figures)
    draft = next((v for v in versions if v.state == ScenarioVersion.State.DRAFT), None)
    live = next((v for v in versions if v.pk == scenario.live_version_id), None)
    return {
        "scenario": scenario, "versions": versions, "version": version, "draft": draft, "live": live,
        "diagram": picture, "problems": problems, "editable": editable, "can_edit": can_edit(request),
        "palette": palette() if editable else [], "panel": panel or {}, "report": report,
        "state_icons": STATE_ICONS, "section": SECTION,
        "show_figures": report is not None,
    }


def render_editor(request: HttpRequest, scenario: Scenario, *, panel: dict[str, Any] | None = None,
                  partial: str = "editor", status: int = 200) -> HttpResponse:
    """The page, or (htmx) one of its partials: `editor` (diagram + problems + panel) or `panel`."""
    context = editor_context(request, scenario, version_number=request.GET.get("v") or None, panel=panel)
    template = EDITOR
    if request.htmx:
        template = f"{EDITOR}#{partial}"
        status = 200  # htmx swaps only 2xx answers; the errors are in the partial it swaps in
    return render(request, template, context, status=status)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def scenario_detail(request: HttpRequest, pk: int) -> HttpResponse:
    scenario = get_scenario(request, pk)
    return render_editor(request, scenario)


@require_POST
@account_required(Perm.SCENARIOS_EDIT)
def draft_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Start editing a published scenario: its draft, a copy of the live version."""
    scenario = get_scenario(request, pk)
    try:
        with transaction.atomic():
            draft = draft_get_or_create(scenario=scenario, actor=Actor.from_request(request))
    except ScenarioError as exc:
        messages.error(request, exc.text)
    else:
        messages.success(request, f"Version {draft.number} is a draft copy of the live one: change it, then "
                                  "publish it. Profiles inside stay where they are until then.")
    return redirect(scenario)


# --- the side panel: palette, step forms --------------------------------------------------------------


def _steps_for_form(version: ScenarioVersion) -> list[Step]:
    return list(Step.objects.filter(version=version).order_by("row", "col", "id"))


def _with_targets(step: Step, steps: list[Step]) -> Step:
    key_of = {s.pk: s.key for s in steps}
    step.outgoing_list = [Target(t.exit, key_of.get(t.target_id, "")) for t in Transition.objects.filter(source=step)]
    return step


def _step_panel(form: StepForm, *, action: str, step: Step | None) -> dict[str, Any]:
    return {"kind": "step", "form": form, "action": action, "step": step, "spec": form.spec}


@require_GET
@account_required(Perm.SCENARIOS_EDIT)
def step_palette(request: HttpRequest, pk: int) -> HttpResponse:
    scenario = get_scenario(request, pk)
    get_draft(scenario)
    after = request.GET.get("after", "")
    return render_editor(request, scenario, partial="panel", panel={
        "kind": "palette", "after": after, "exit": request.GET.get("exit", "")})


def _place_after(steps: list[Step], after: Step | None, exit_: str) -> tuple[int | None, int | None]:
    """Where a step added "after s3 by exit x" goes: the next column, on the row of that exit."""
    if after is None:
        return None, None
    exits = exits_of(after.kind, after.config or {})
    row = after.row + (exits.index(exit_) if exit_ in exits else 0)
    return drawing.free_cell(steps, after.col + 1, row)


@require_http_methods(["GET", "POST"])
@account_required(Perm.SCENARIOS_EDIT)
def step_add_view(request: HttpRequest, pk: int) -> HttpResponse:
    """GET ?kind=..[&after=s3&exit=yes]: the new step's form; POST: add it (connected from `after`'s
    exit when given) with its connections."""
    scenario = get_scenario(request, pk)
    draft = get_draft(scenario)
    params = request.POST if request.method == "POST" else request.GET
    kind = params.get("kind", "")
    if kind not in STEP_KINDS:
        raise Http404("No such kind of step.")
    steps = _steps_for_form(draft)
    after = next((s for s in steps if s.key == params.get("after")), None)
    exit_ = params.get("exit", "")
    form = make_step_form(request.POST if request.method == "POST" else None, kind=kind, account=request.account,
                          scenario=scenario, steps=steps)
    action = reverse("scenarios:step_add", args=[scenario.pk])
    panel = _step_panel(form, action=action, step=None) | {"after": after.key if after else "", "exit": exit_}
    if request.method == "POST" and form.is_valid():
        actor = Actor.from_request(request)
        col, row = _place_after(steps, after, exit_)
        try:
            with transaction.atomic():
                step = step_add(version=draft, kind=kind, config=form.config(), title=form.cleaned_data.get("title", ""),
                                col=col, row=row, actor=actor)
                if after is not None and exit_ in exits_of(after.kind, after.config or {}):
                    transition_set(source=after, exit=exit_, target=step, actor=actor)
                _connect(step, form.targets(), steps, actor)
        except ScenarioError as exc:
            add_service_errors(form, exc.errors)
        else:
            return _saved(request, scenario, f"Step {step.key} “{step.title}” is added.")
    return render_editor(request, scenario, partial="panel" if request.method == "GET" else "editor", panel=panel,
                         status=400 if form.is_bound else 200)


def _connect(step: Step, targets: dict[str, str], steps: list[Step], actor: Actor) -> None:
    """Point each exit of `step` at its chosen step ("" disconnects it)."""
    by_key = {s.key: s for s in steps}
    for ex, key in targets.items():
        if key and key in by_key and key != step.key:
            transition_set(source=step, exit=ex, target=by_key[key], actor=actor)
        elif not key:
            transition_delete(source=step, exit=ex, actor=actor)


def _saved(request: HttpRequest, scenario: Scenario, text: str) -> HttpResponse:
    messages.success(request, text)
    if request.htmx:
        return render_editor(request, scenario)
    return redirect(scenario)


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def step_edit(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    """GET: the step's form (read-only for an analyst or a published version); POST: save it."""
    scenario = get_scenario(request, pk)
    if request.method == "POST" and not can_edit(request):
        raise PermissionDenied("Your role does not allow this (build and run automation scenarios).")
    versions = list(ScenarioVersion.objects.filter(scenario=scenario).order_by("-number"))
    version = shown_version(scenario, versions, request.GET.get("v") or None)
    if version is None:
        raise Http404("No such step.")
    steps = _steps_for_form(version)
    step = next((s for s in steps if s.key == key), None)
    if step is None or step.kind not in STEP_KINDS:
        raise Http404("No such step.")
    _with_targets(step, steps)
    editable = can_edit(request) and version.state == ScenarioVersion.State.DRAFT
    if request.method == "POST" and not editable:
        raise Http404("Only the draft is edited.")
    form = make_step_form(request.POST if request.method == "POST" else None, kind=step.kind,
                          account=request.account, scenario=scenario, steps=steps, step=step)
    panel = _step_panel(form, action=reverse("scenarios:step_edit", args=[scenario.pk, key]), step=step)
    panel["readonly"] = not editable
    if request.method == "POST" and form.is_valid():
        actor = Actor.from_request(request)
        try:
            with transaction.atomic():
                step = step_update(step=step, config=form.config(), title=form.cleaned_data.get("title", ""), actor=actor)
                _connect(step, form.targets(), steps, actor)
        except ScenarioError as exc:
            add_service_errors(form, exc.errors)
        else:
            return _saved(request, scenario, f"Step {step.key} “{step.title}” is saved.")
    return render_editor(request, scenario, partial="panel" if request.method == "GET" else "editor", panel=panel,
                         status=400 if form.is_bound else 200)


MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


@require_POST
@account_required(Perm.SCENARIOS_EDIT)
def step_move_view(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    """Move a step one cell; a step already in the cell it moves to swaps places with it."""
    scenario = get_scenario(request, pk)
    step = get_draft_step(scenario, key)
    form = MoveForm(request.POST)
    if form.is_valid():
        dc, dr = MOVES[form.cleaned_data["direction"]]
        col, row = step.col + dc, step.row + dr
        if col >= 0 and row >= 0:
            actor = Actor.from_request(request)
            other = Step.objects.filter(version_id=step.version_id, col=col, row=row).exclude(pk=step.pk).first()
            try:
                with transaction.atomic():
                    if other is not None:
                        step_move(step=other, col=step.col, row=step.row, actor=actor)
                    step_move(step=step, col=col, row=row, actor=actor)
            except ScenarioError as exc:
                messages.error(request, exc.text)
    if request.htmx:
        return render_editor(request, scenario)
    return redirect(scenario)


@require_http_methods(["GET", "POST"])
@account_required(Perm.SCENARIOS_EDIT)
def step_delete_view(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    """GET: the confirmation (in the panel); POST: delete the step and its connections."""
    scenario = get_scenario(request, pk)
    step = get_draft_step(scenario, key)
    if request.method == "POST":
        try:
            step_delete(step=step, actor=Actor.from_request(request))
        except ScenarioError as exc:
            messages.error(request, exc.text)
        else:
            return _saved(request, scenario, f"Step {step.key} “{step.title}” is deleted.")
        return redirect(scenario)
    incoming = Transition.objects.filter(target=step).count()
    return render_editor(request, scenario, partial="panel", panel={"kind": "delete", "step": step,
                                                                     "incoming": incoming})
