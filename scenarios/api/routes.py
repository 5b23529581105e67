"""API: scenarios (issue 9, item 6).

`{scenario_id}` is resolved through the token's account while the path is validated: another
account's scenario is a 404 whatever was sent. Every token reads (list, detail, participants,
export; the report needs the reports permission, which every role has); creating, changing,
activating, pausing, resuming, stopping, deleting, importing and entering profiles need the
scenarios permission (marketers and up); an enter call that upserts profile fields also needs
the data permission.

A refused write is a 422 whose details name each field or step (`loc: ["steps", 3, "kind"]`,
`["steps", "s4", "template_id"]`, `["mapping", "s3"]`); a refused transition (pausing a draft,
activating a stopped scenario) is a 409 `conflict`.
"""

from __future__ import annotations

import re
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Body, Header, Query, Router, Status

from accounts.access import Actor
from accounts.permissions import Perm
from cdp.api.auth import require
from cdp.api.errors import ERRORS, ApiError
from cdp.api.pagination import CursorPage, paginate
from cdp.api.types import id_ref
from profiles.models import ProfileDatabase
from scenarios import selectors, services
from scenarios.api.schemas import (
    ActivateIn,
    EnterIn,
    EnterOut,
    ParticipantOut,
    ParticipationState,
    ScenarioIn,
    ScenarioOut,
    ScenarioPatch,
    ScenarioSummaryOut,
    StateName,
)
from scenarios.models import Scenario, ScenarioVersion, Step, Transition
from scenarios.services import ScenarioError

router = Router()

TAGS = ["scenarios"]


def _scenarios(account: Any) -> QuerySet[Scenario]:
    return Scenario.objects.for_account(account).select_related("account", "database", "live_version")


ScenarioRef = id_ref(Scenario, what="scenario", example=7, queryset=_scenarios)


# --- errors ---------------------------------------------------------------------------------------


def _loc(key: str) -> list[str | int]:
    """"steps[3].config.template_id" -> ["steps", 3, "config", "template_id"]; "s4" -> ["steps", "s4"]."""
    if key == "__all__":
        return []
    if re.fullmatch(r"s\d+", key):
        return ["steps", key]
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", key) if p]


def _refused(exc: ScenarioError, what: str) -> ApiError:
    """Validation problems and values that do not fit are a 422 naming each; a refusal for the
    scenario's state (only "__all__") is a 409."""
    if exc.problems:
        details = [{"loc": ["steps", p.step_key, *([p.field] if p.field else [])] if p.step_key else [p.field or "steps"],
                    "message": p.message, "type": "invalid_graph"} for p in exc.problems]
        first = exc.problems[0].message.rstrip(".")
        more = f" (and {len(exc.problems) - 1} more problem{'s' if len(exc.problems) > 2 else ''})" \
            if len(exc.problems) > 1 else ""
        return ApiError(422, f"{what}: {first}{more}.", details=details)
    details = [{"loc": _loc(k), "message": v, "type": "conflict" if k == "__all__" else "invalid_value"}
               for k, v in exc.errors.items()]
    summary = "; ".join(v if k == "__all__" else f"{k}: {v}" for k, v in exc.errors.items())
    if set(exc.errors) == {"__all__"}:
        return ApiError(409, f"{what}: {summary.rstrip('.')}.", code="conflict", details=details)
    return ApiError(422, f"{what}: {summary.rstrip('.')}.", details=details)


# --- output ---------------------------------------------------------------------------------------


def _summary(s: Scenario, figures: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {"id": s.pk, "name": s.name, "state": s.state, "database": s.database.slug, "reentry": s.reentry,
            "live_version": s.live_version.number if s.live_version else None,
            "figures": figures.get(s.pk) or {}, "created_at": s.created_at, "updated_at": s.updated_at}


def _detail(scenario: Scenario) -> dict[str, Any]:
    s = _scenarios(scenario.account).get(pk=scenario.pk)
    versions = list(ScenarioVersion.objects.filter(scenario=s).order_by("-number"))
    draft = next((v for v in versions if v.state == ScenarioVersion.State.DRAFT), None)
    graph = draft or s.live_version
    steps = list(Step.objects.filter(version=graph).order_by("key", "id")) if graph else []
    edges = (list(Transition.objects.filter(version=graph).select_related("source", "target")
                  .order_by("source__key", "exit")) if graph else [])
    problems = services.version_validate(draft) if draft is not None else []
    return {
        **_summary(s, selectors.list_figures([s.pk])),
        "description": s.description, "goal": s.goal or {}, "step_limit": s.step_limit,
        "webhooks_private_ok": s.webhooks_private_ok, "activated_at": s.activated_at, "stopped_at": s.stopped_at,
        "versions": [{"id": v.pk, "number": v.number, "state": v.state, "note": v.note, "published_at": v.published_at}
                     for v in versions],
        "graph_version": graph.number if graph else None,
        "steps": [{"key": st.key, "kind": st.kind, "title": st.title, "config": st.config or {}, "col": st.col,
                   "row": st.row, "mailing": st.mailing_id} for st in steps],
        "transitions": [{"source": t.source.key, "exit": t.exit, "target": t.target.key} for t in edges],
        "problems": [{"step": p.step_key, "field": p.field, "message": p.message} for p in problems],
    }


def _graph(payload: ScenarioIn | ScenarioPatch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    if "steps" not in payload.model_fields_set and "transitions" not in payload.model_fields_set:
        return None
    steps = [s.model_dump() for s in (payload.steps or [])]
    return steps, [t.model_dump() for t in (payload.transitions or [])]


# --- list, create, read, change, delete -------------------------------------------------------------


@router.get("/scenarios", tags=TAGS, response={200: CursorPage[ScenarioSummaryOut], **ERRORS},
            summary="List scenarios, newest first")
def scenario_list_api(request: HttpRequest, state: StateName | None = None, q: str = "", cursor: str | None = None,
                      limit: int | None = None) -> dict:
    """Each with its figures: profiles in it now (active, waiting), completed, exited, failed."""
    require(request, Perm.ACCOUNT_VIEW)
    page = paginate(selectors.scenario_list(account=request.auth.account, q=q, state=state), cursor=cursor, limit=limit)
    figures = selectors.list_figures([s.pk for s in page["items"]])
    page["items"] = [_summary(s, figures) for s in page["items"]]
    return page


@router.post("/scenarios", tags=TAGS, response={201: ScenarioOut, **ERRORS}, summary="Create a draft scenario")
def scenario_create_api(request: HttpRequest, payload: ScenarioIn) -> Status:
    """A draft with version 1 as its draft: empty, one `starter` entry step, or the `steps` and
    `transitions` given. What only stops publishing is listed in `problems`."""
    require(request, Perm.SCENARIOS_EDIT)
    account = request.auth.account
    database = ProfileDatabase.objects.filter(account=account, slug=payload.database).first()
    if database is None:
        raise ApiError(422, f"There is no database {payload.database!r} in this account.",
                       details=[{"loc": ["database"], "message": "not a database of this account", "type": "not_found"}])
    actor = Actor.from_request(request)
    graph = _graph(payload)
    try:
        from django.db import transaction

        with transaction.atomic():
            scenario = services.scenario_create(
                account=account, database=database, name=payload.name, actor=actor, reentry=payload.reentry or "never",
                goal=payload.goal, description=payload.description or "",
                starter=payload.starter if graph is None else None)
            if graph is not None:
                services.graph_replace(scenario=scenario, steps=graph[0], transitions=graph[1], actor=actor)
    except ScenarioError as exc:
        raise _refused(exc, "The scenario was not created") from exc
    return Status(201, _detail(scenario))


@router.get("/scenarios/{int:scenario_id}", tags=TAGS, response={200: ScenarioOut, **ERRORS}, summary="A scenario")
def scenario_get_api(request: HttpRequest, scenario_id: ScenarioRef) -> dict:
    """Its settings, versions, the graph of its draft (else its live version) and what stops
    publishing the draft."""
    require(request, Perm.ACCOUNT_VIEW)
    return _detail(scenario_id)


@router.patch("/scenarios/{int:scenario_id}", tags=TAGS, response={200: ScenarioOut, **ERRORS},
              summary="Change a scenario's settings or its draft's graph")
def scenario_update_api(request: HttpRequest, scenario_id: ScenarioRef, payload: ScenarioPatch) -> dict:
    """Only the keys sent change. `steps` (with `transitions`) replace the whole graph of the
    draft, which is made from the live version when there is none: profiles inside are not
    affected until the draft is published (`POST .../activate`)."""
    require(request, Perm.SCENARIOS_EDIT)
    from django.db import transaction

    actor = Actor.from_request(request)
    values = {k: getattr(payload, k) for k in payload.model_fields_set if k not in ("steps", "transitions")}
    graph = _graph(payload)
    try:
        with transaction.atomic():
            if values:
                services.scenario_update(scenario=scenario_id, actor=actor, values=values)
            if graph is not None:
                services.graph_replace(scenario=scenario_id, steps=graph[0], transitions=graph[1], actor=actor)
    except ScenarioError as exc:
        raise _refused(exc, "The scenario was not changed") from exc
    return _detail(scenario_id)


@router.delete("/scenarios/{int:scenario_id}", tags=TAGS, response={204: None, **ERRORS},
               summary="Delete a draft or stopped scenario")
def scenario_delete_api(request: HttpRequest, scenario_id: ScenarioRef) -> Status:
    """409 for an active or paused scenario, and for one whose messages are on record."""
    require(request, Perm.SCENARIOS_EDIT)
    try:
        services.scenario_delete(scenario=scenario_id, actor=Actor.from_request(request))
    except ScenarioError as exc:
        raise _refused(exc, "The scenario was not deleted") from exc
    return Status(204, None)


# --- transitions ------------------------------------------------------------------------------------


@router.post("/scenarios/{int:scenario_id}/activate", tags=TAGS, response={200: ScenarioOut, **ERRORS},
             summary="Activate a scenario, or publish the draft of a running one")
def scenario_activate_api(request: HttpRequest, scenario_id: ScenarioRef, payload: ActivateIn | None = None) -> dict:
    """A draft scenario: its draft is validated and published, and profiles start entering. An
    active or paused one with a draft: the draft is published as the new live version; profiles
    inside older versions finish there unless `mapping` moves them. Validation problems are a
    422 naming each step; a stopped scenario, or nothing to publish, is a 409."""
    require(request, Perm.SCENARIOS_EDIT)
    body = payload or ActivateIn()
    try:
        services.scenario_activate(scenario=scenario_id, actor=Actor.from_request(request), mapping=body.mapping,
                                   publish=body.publish)
    except ScenarioError as exc:
        raise _refused(exc, "The scenario was not activated") from exc
    return _detail(scenario_id)


def _transition(request: HttpRequest, scenario: Scenario, action: Any, what: str) -> dict:
    require(request, Perm.SCENARIOS_EDIT)
    try:
        action(scenario=scenario, actor=Actor.from_request(request))
    except ScenarioError as exc:
        raise _refused(exc, what) from exc
    return _detail(scenario)


@router.post("/scenarios/{int:scenario_id}/pause", tags=TAGS, response={200: ScenarioOut, **ERRORS},
             summary="Pause an active scenario")
def scenario_pause_api(request: HttpRequest, scenario_id: ScenarioRef) -> dict:
    """Nobody enters and nobody moves until it is resumed (messages already queued still go)."""
    return _transition(request, scenario_id, services.scenario_pause, "The scenario was not paused")


@router.post("/scenarios/{int:scenario_id}/resume", tags=TAGS, response={200: ScenarioOut, **ERRORS},
             summary="Resume a paused scenario")
def scenario_resume_api(request: HttpRequest, scenario_id: ScenarioRef) -> dict:
    return _transition(request, scenario_id, services.scenario_resume, "The scenario was not resumed")


@router.post("/scenarios/{int:scenario_id}/stop", tags=TAGS, response={200: ScenarioOut, **ERRORS},
             summary="Stop a scenario for good")
def scenario_stop_api(request: HttpRequest, scenario_id: ScenarioRef) -> dict:
    """Everyone inside exits (reason `stopped`) and its messages not yet sent are not sent."""
    return _transition(request, scenario_id, services.scenario_stop, "The scenario was not stopped")


# --- entering, participants, report -----------------------------------------------------------------


@router.post("/scenarios/{int:scenario_id}/enter", tags=TAGS, response={202: EnterOut, **ERRORS},
             summary="Let a profile into an active scenario at its API entry")
def scenario_enter_api(request: HttpRequest, scenario_id: ScenarioRef, payload: EnterIn,
                       idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> Status:
    """The profile is named by one match key (created or updated with `fields` first); `data`
    is the trip's data for templates and webhooks. With an `Idempotency-Key` the call happens
    once: the same key again answers the same participation. 409/422 when the scenario is not
    active or has no API entry, the profile is unknown, or the re-entry rule refuses it."""
    require(request, Perm.SCENARIOS_EDIT)
    if payload.fields:
        require(request, Perm.DATA_EDIT)
    if len(payload.profile) != 1:
        raise ApiError(422, 'Name the profile by one match key, e.g. {"email": "ann@example.com"} or {"id": 42}.',
                       details=[{"loc": ["profile"], "message": "exactly one match key", "type": "invalid_value"}])
    from scenarios.entries import scenario_enter

    (key, value), = payload.profile.items()
    try:
        pid = scenario_enter(scenario=scenario_id, key=key, value=value, data=payload.data, upsert=payload.fields,
                             idempotency_key=idempotency_key, actor=Actor.from_request(request))
    except ScenarioError as exc:
        raise _refused(exc, "The profile did not enter") from exc
    return Status(202, {"participation_id": pid, "scenario_id": scenario_id.pk})


@router.get("/scenarios/{int:scenario_id}/participants", tags=TAGS,
            response={200: CursorPage[ParticipantOut], **ERRORS}, summary="The scenario's participants, newest first")
def scenario_participants_api(request: HttpRequest, scenario_id: ScenarioRef, state: ParticipationState | None = None,
                              step: str | None = Query(None, max_length=16), cursor: str | None = None,
                              limit: int | None = None) -> dict:
    """One row per trip: where it is (step key and title, version), its state, when it entered and
    is next due, why it exited or failed. Filters: `state` ("open" = active or waiting), `step`."""
    require(request, Perm.ACCOUNT_VIEW)
    page = paginate(selectors.participants_query(scenario_id, state=state, step_key=step), cursor=cursor, limit=limit)
    page["items"] = [vars(r) for r in selectors.participant_rows(page["items"])]
    return page


@router.get("/scenarios/{int:scenario_id}/report", tags=TAGS, response={200: dict[str, Any], **ERRORS},
            summary="A scenario's per-step report")
def scenario_report_api(request: HttpRequest, scenario_id: ScenarioRef) -> dict:
    """Per step: in it now, entered, passed, exited, failed, and for send steps the messages'
    figures (sent, delivered, opened, clicked, skipped by reason); totals by state and reason."""
    require(request, Perm.REPORTS_VIEW)
    return selectors.scenario_report(scenario_id).as_dict()


# --- export, import ---------------------------------------------------------------------------------


@router.get("/scenarios/{int:scenario_id}/export", tags=TAGS, response={200: dict[str, Any], **ERRORS},
            summary="A scenario as JSON")
def scenario_export_api(request: HttpRequest, scenario_id: ScenarioRef) -> dict:
    """Settings and the graph of its draft (else live version), with the names of the templates,
    resources, segments, senders and providers it refers to, for `POST /scenarios/import`."""
    require(request, Perm.ACCOUNT_VIEW)
    return services.scenario_export(scenario_id)


@router.post("/scenarios/import", tags=TAGS, response={201: ScenarioOut, **ERRORS},
             summary="Create a draft scenario from an export")
def scenario_import_api(request: HttpRequest, document: dict[str, Any] = Body(...),  # noqa: B008 - ninja's style
                        database: str | None = None, name: str | None = Query(None, max_length=200)) -> Status:
    """The body is a document from `GET /scenarios/{id}/export`, from this account or another:
    references are mapped by name; what is not found is emptied and listed in the draft's note.
    `?database=<slug>` chooses the database (default: the export's by slug or name, or the
    account's only one). Faults are a 422 naming each by path (`steps[3].config.template_id`)."""
    require(request, Perm.SCENARIOS_EDIT)
    account = request.auth.account
    target = None
    if database:
        target = ProfileDatabase.objects.filter(account=account, slug=database).first()
        if target is None:
            raise ApiError(422, f"There is no database {database!r} in this account.",
                           details=[{"loc": ["query", "database"], "message": "not a database of this account",
                                     "type": "not_found"}])
    try:
        scenario = services.scenario_import(account=account, data=document, actor=Actor.from_request(request),
                                            database=target, name=name)
    except ScenarioError as exc:
        raise _refused(exc, "The scenario was not imported") from exc
    return Status(201, _detail(scenario))
