"""Schemas of the segments API. Conditions and schedules travel as the JSON documented in
segments.conditions and segments.schedule; pydantic checks only their outer shape (an object), the
services validate them against the database and name the offending node."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field as F
from ninja import Schema
from pydantic import ConfigDict, StringConstraints

KindName = Literal["static", "dynamic", "updatable"]
StateName = Literal["ok", "computing", "broken", "failed"]
TriggerName = Literal["manual", "schedule", "api", "create"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
SlugText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
MAX_MEMBERS_PER_CALL = 1000

_CONDITIONS = (
    'The condition tree, a group at the root: {"type": "group", "op": "and", "items": [...]}. Node types: '
    "group, field, subscription, event, segment, sample (see the API guide / segments.conditions). "
    "Errors name the node: `loc` is [\"conditions\", \"items\", 2, \"value\"]."
)
_SCHEDULE = (
    'Updatable segments only, in the account\'s timezone: {"every_hours": N}, {"daily_at": "HH:MM"} '
    'or {"cron": "m h dom mon dow"}; at most once an hour.'
)

EXAMPLE_TREE: dict[str, Any] = {
    "type": "group", "op": "and", "items": [
        {"type": "field", "field": "city", "operator": "eq", "value": "Berlin"},
        {"type": "field", "field": "points", "operator": "gt", "value": 5000},
        {"type": "event", "event": "message.opened", "count": {"op": "at_least", "n": 1}, "window": {"last_days": 30},
         "where": {"channel": "email"}},
    ],
}


# --- segments -------------------------------------------------------------------------------------


class SegmentIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Active Berlin VIPs", "kind": "dynamic", "conditions": EXAMPLE_TREE},
        {"name": "Hourly VIPs", "kind": "updatable", "conditions": EXAMPLE_TREE, "schedule": {"every_hours": 1}},
        {"name": "Fair visitors", "kind": "static"},
    ]})

    name: Name
    slug: SlugText | None = F(None, description="Made from the name when left out; unique in the database.")
    description: str = F("", max_length=5000)
    kind: KindName = F("dynamic", description="static: a fixed list (a snapshot of the conditions, or filled by hand); "
                                              "dynamic: evaluated when used; updatable: recalculated on a schedule.")
    conditions: dict[str, Any] | None = F(None, description=_CONDITIONS + " May be left out for a static segment.")
    schedule: dict[str, Any] | None = F(None, description=_SCHEDULE)


class SegmentPatch(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Berlin VIPs"}, {"schedule": {"daily_at": "06:30"}}, {"kind": "static"},
    ]})

    name: Name | None = None
    slug: SlugText | None = None
    description: str | None = F(None, max_length=5000)
    kind: KindName | None = F(None, description="To dynamic drops stored members; to static keeps them "
                                                "(a dynamic segment is snapshotted).")
    conditions: dict[str, Any] | None = F(None, description=_CONDITIONS + " null removes a static segment's conditions.")
    schedule: dict[str, Any] | None = F(None, description=_SCHEDULE)


class SegmentProblemOut(Schema):
    loc: list[str | int] = F(description='Where in the conditions, e.g. ["conditions", "items", 0, "field"].')
    message: str


class SegmentOut(Schema):
    id: int
    database: str = F(description="The profile database's slug.")
    name: str
    slug: str
    description: str
    kind: KindName
    conditions: dict[str, Any] | None
    schedule: dict[str, Any] | None
    state: StateName = F(description="broken: a field, event type, resource or segment it names is gone "
                                     "(see `problem`); it is not used as an audience until fixed.")
    problem: SegmentProblemOut | None = F(description="Why the segment is broken or its last update failed.")
    size: int | None = F(description="Members at the last calculation (static and updatable), or the last count.")
    compute_ms: int | None
    last_computed_at: datetime | None
    next_run_at: datetime | None = F(description="Updatable: the next scheduled recalculation.")
    created_at: datetime
    updated_at: datetime


# --- counts ---------------------------------------------------------------------------------------


class CountIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"conditions": EXAMPLE_TREE}]})

    conditions: dict[str, Any] = F(..., description=_CONDITIONS)
    segment: int | None = F(None, description="The id of the segment these conditions are an edit of "
                                              "(so a condition naming a segment that uses it is refused as a cycle).")


class WarningOut(Schema):
    loc: list[str | int]
    message: str


class CountOut(Schema):
    count: int = F(description="Profiles matching now.")
    ms: int = F(description="How long the query took, in milliseconds.")
    source: Literal["conditions", "members"] = F(
        "conditions", description="members: a static segment without conditions (its stored members were counted).")
    warnings: list[WarningOut] = F([], description="Conditions that are valid but costly on a big database.")


# --- members --------------------------------------------------------------------------------------


class SegmentMemberOut(Schema):
    profile_id: int
    keys: dict[str, Any] = F(description="The profile's match keys (e.g. email, customer_id) that hold a value.")
    added_at: datetime | None = F(description="When it joined (static and updatable segments).")


class MembersIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"profile_ids": [42, 57]},
        {"key": "email", "values": ["ann@example.com", "ben@example.com"]},
    ]})

    profile_ids: list[int] | None = F(None, max_length=MAX_MEMBERS_PER_CALL,
                                      description=f"Profile ids (up to {MAX_MEMBERS_PER_CALL:,}).")
    key: str | None = F(None, max_length=64, description="A match key of the database (email, phone, customer_id...), "
                                                         "with `values`.")
    values: list[str | int] | None = F(None, max_length=MAX_MEMBERS_PER_CALL,
                                       description=f"Match-key values (up to {MAX_MEMBERS_PER_CALL:,}), with `key`.")


class UnknownOut(Schema):
    index: int = F(description="The item's position in profile_ids or values, from 0.")
    value: str | int
    message: str


class MembersAddedOut(Schema):
    added: int = F(description="Profiles that joined (members already in are not counted).")
    size: int | None
    unknown: list[UnknownOut] = F(description="Items that name no profile of the database, with why.")


class MembersRemovedOut(Schema):
    removed: int
    size: int | None
    unknown: list[UnknownOut]


# --- explain and runs -----------------------------------------------------------------------------


class ExplainOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "segment": 7, "profile": 42, "matched": False, "member": None, "at": "2026-11-28T10:00:00+00:00",
        "tree": {"node": {"type": "group", "op": "and", "negate": False}, "matched": False, "why": "1 of 2 matched",
                 "items": [
                     {"node": {"type": "field", "field": "city", "operator": "eq", "value": "Berlin"},
                      "matched": True, "why": "City: “Berlin”"},
                     {"node": {"type": "event", "event": "message.opened", "count": {"op": "exists", "n": 1},
                               "window": {"last_days": 30}, "where": {}},
                      "matched": False, "why": "0 matching events"},
                 ]},
    }]})

    segment: int
    profile: int
    matched: bool = F(description="Whether the conditions match the profile now.")
    member: bool | None = F(description="Stored membership (static and updatable segments; null for dynamic).")
    at: datetime = F(description="The moment the conditions were evaluated at.")
    tree: dict[str, Any] | None = F(description="The conditions, each node with `matched` and `why` (the value seen, "
                                                "the number of matching events...); groups carry `items`.")


class RunOut(Schema):
    id: int
    trigger: TriggerName
    started_at: datetime
    finished_at: datetime | None
    size: int | None
    entered: int = F(description="Profiles that joined at this run (updatable and static snapshots).")
    left: int
    duration_ms: int | None
    job_id: int | None
