"""The scenario pages (signed-in team members): the list, a new scenario, the editor with the live
figures (the diagram, the step forms in a side panel, validation, publishing and the lifecycle
buttons), the participants and a participation's path, the report.

Everyone in the account reads (analysts see the diagram, figures and paths, without edit
buttons); writing needs Perm.SCENARIOS_EDIT (a POST without it is the styled 403). Another
account's scenario, step or participation is a 404: every lookup goes through
`.for_account(request.account)`.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from accounts.permissions import Perm
from scenarios.models import Scenario, ScenarioVersion, Step

STATE_ICONS = {"draft": "pencil", "active": "play-circle", "paused": "pause-circle", "stopped": "stop-circle"}
SECTION = "scenarios"


def can_edit(request: HttpRequest) -> bool:
    return request.membership.can(Perm.SCENARIOS_EDIT)


def get_scenario(request: HttpRequest, pk: int) -> Scenario:
    """The current account's scenario (Http404 for another account's or none)."""
    return get_object_or_404(Scenario.objects.for_account(request.account).select_related("database"), pk=pk)


def get_draft(scenario: Scenario) -> ScenarioVersion:
    """The scenario's draft version (Http404 when it has none: nothing to edit)."""
    draft = ScenarioVersion.objects.filter(scenario=scenario, state=ScenarioVersion.State.DRAFT).first()
    if draft is None:
        raise Http404("This scenario has no draft to edit.")
    return draft


def get_draft_step(scenario: Scenario, key: str) -> Step:
    """A step of the scenario's draft by key (Http404: no draft, or no such step in it)."""
    draft = get_draft(scenario)
    return get_object_or_404(Step.objects.filter(version=draft, account_id=scenario.account_id), key=key)
