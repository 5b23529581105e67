"""Schemas of the scenarios API. Step configs travel as the JSON documented in `scenarios.graph`;
pydantic checks the outer shape, the services validate the rest and name the field or step at
fault."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field as F
from ninja import Schema
from pydantic import ConfigDict, StringConstraints

StateName = Literal["draft", "active", "paused", "stopped"]
ReentryName = Literal["never", "after_exit", "always"]
ParticipationState = Literal["open", "active", "waiting", "completed", "exited", "failed"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

_GOAL = ('The global exit: {"type": "order.placed", "filters": [{"property": "total", "op": "gte", "value": 10}]}; '
         "{} for none. A profile whose event matches leaves the scenario wherever it is.")
_STEPS = ('The draft\'s whole graph: [{"key": "s1", "kind": "entry.api", "title": "API", "config": {}, "col": 0, '
          '"row": 0}, ...]. Kinds and configs: see the step kinds in the API docs (scenarios.graph). A step without a '
          "key gets the next free one.")
_TRANSITIONS = 'Connections by step key: [{"source": "s1", "exit": "next", "target": "s2"}, ...].'

EXAMPLE_CREATE: dict[str, Any] = {
    "name": "Welcome journey", "database": "customers", "reentry": "never",
    "goal": {"type": "order.placed", "filters": []},
    "steps": [{"key": "s1", "kind": "entry.api", "config": {}},
              {"key": "s2", "kind": "send", "title": "Welcome",
               "config": {"channel": "email", "resource_id": 3, "template_id": 12}},
              {"key": "s3", "kind": "exit", "config": {}}],
    "transitions": [{"source": "s1", "exit": "next", "target": "s2"}, {"source": "s2", "exit": "next", "target": "s3"}],
}


class StepIn(Schema):
    model_config = ConfigDict(extra="forbid")

    key: str | None = F(None, max_length=16, examples=["s2"])
    kind: str = F(..., max_length=32, examples=["send"])
    title: str = F("", max_length=200)
    config: dict[str, Any] = F(default_factory=dict)
    col: int = F(0, ge=0, le=999)
    row: int = F(0, ge=0, le=999)


class TransitionIn(Schema):
    model_config = ConfigDict(extra="forbid")

    source: str = F(..., max_length=16)
    exit: str = F("next", max_length=32)
    target: str = F(..., max_length=16)


class _Settings(Schema):
    description: str | None = F(None, max_length=5000)
    reentry: ReentryName | None = F(None, description="never: once per profile; after_exit: again once the previous "
                                                      "trip ended; always: several trips at once.")
    goal: dict[str, Any] | None = F(None, description=_GOAL)
    steps: list[StepIn] | None = F(None, max_length=500, description=_STEPS)
    transitions: list[TransitionIn] | None = F(None, max_length=2500, description=_TRANSITIONS)


class ScenarioIn(_Settings):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_CREATE]})

    name: Name
    database: str = F(..., description="The profile database's slug: profiles of it enter.")
    starter: str | None = F(None, description='An entry kind to start the draft with (e.g. "entry.api"), when no '
                                              "steps are given.")


class ScenarioPatch(_Settings):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Welcome journey (v2)"}, {"goal": {}}, {"step_limit": 50}]})

    name: Name | None = None
    step_limit: int | None = F(None, ge=1, le=10_000, description="Steps a profile may take a day (the loop guard).")
    webhooks_private_ok: bool | None = F(None, description="Admins and owners: allow webhooks to private addresses.")


class ActivateIn(Schema):
    model_config = ConfigDict(extra="forbid")

    mapping: dict[str, str] | None = F(None, description="Move profiles inside older versions: {old step key: new "
                                                         "step key}; unmapped ones finish on their version.")
    publish: bool = F(False, description="A draft scenario that was live before: publish its draft too.")


class EnterIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"profile": {"email": "ann@example.com"}, "data": {"order": "A-1001"}}]})

    profile: dict[str, Any] = F(..., description='One match key: {"email": "ann@example.com"}, {"id": 42}...')
    data: dict[str, Any] | None = F(None, description="The trip's data: templates read it as data.<name>.")
    fields: dict[str, Any] | None = F(None, description="Profile fields to create or update the profile with first "
                                                        "(needs the data permission).")


class EnterOut(Schema):
    participation_id: int
    scenario_id: int


class StepOut(Schema):
    key: str
    kind: str
    title: str
    config: dict[str, Any]
    col: int
    row: int
    mailing: int | None = None


class TransitionOut(Schema):
    source: str
    exit: str
    target: str


class ProblemOut(Schema):
    step: str
    field: str
    message: str


class VersionOut(Schema):
    id: int
    number: int
    state: str
    note: str
    published_at: datetime | None = None


class ScenarioSummaryOut(Schema):
    id: int
    name: str
    state: StateName
    database: str
    reentry: ReentryName
    live_version: int | None = None
    figures: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ScenarioOut(ScenarioSummaryOut):
    description: str
    goal: dict[str, Any]
    step_limit: int
    webhooks_private_ok: bool
    activated_at: datetime | None = None
    stopped_at: datetime | None = None
    versions: list[VersionOut]
    graph_version: int | None = F(None, description="The version the graph below is: the draft, else the live one.")
    steps: list[StepOut]
    transitions: list[TransitionOut]
    problems: list[ProblemOut] = F(default_factory=list, description="What stops publishing the draft.")


class ParticipantOut(Schema):
    id: int
    profile_id: int
    profile: str
    state: str
    step_key: str
    step_title: str
    version_number: int
    entry: str
    entered_at: datetime
    next_run_at: datetime | None = None
    finished_at: datetime | None = None
    exit_reason: str
    error: str
    waiting_for: str
