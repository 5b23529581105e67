"""The scenarios services (see each module): scenarios (create, settings, delete, and the state
machine: activate, pause, resume, stop), editing (the draft version, its steps and transitions),
validation (what stops publishing), publishing (a draft becomes the live version, with its send
steps' trigger mailings), transfer (export and import as JSON). Refusals are ScenarioError."""

from __future__ import annotations

from scenarios.services.editing import (
    DEFAULT_CONFIGS,
    draft_get_or_create,
    graph_replace,
    step_add,
    step_delete,
    step_move,
    step_update,
    transition_delete,
    transition_set,
)
from scenarios.services.errors import ScenarioError
from scenarios.services.publishing import step_mailings_release, version_publish
from scenarios.services.scenarios import (
    AUDIT_VERBS,
    scenario_activate,
    scenario_create,
    scenario_delete,
    scenario_pause,
    scenario_resume,
    scenario_stop,
    scenario_update,
)
from scenarios.services.transfer import scenario_export, scenario_import
from scenarios.services.validation import Problem, step_label, version_validate

__all__ = [
    "AUDIT_VERBS",
    "DEFAULT_CONFIGS",
    "Problem",
    "ScenarioError",
    "draft_get_or_create",
    "graph_replace",
    "scenario_activate",
    "scenario_create",
    "scenario_delete",
    "scenario_export",
    "scenario_import",
    "scenario_pause",
    "scenario_resume",
    "scenario_stop",
    "scenario_update",
    "step_add",
    "step_delete",
    "step_label",
    "step_mailings_release",
    "step_move",
    "step_update",
    "transition_delete",
    "transition_set",
    "version_publish",
    "version_validate",
]
