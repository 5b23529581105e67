"""Helpers of the step handler tests (no tests here): a scenario with one step under test, the
participations standing on it, and a call of `run_group` the way the engine core makes it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from mailings.tests.factories import World
from scenarios.engine.steps import Item, Outcome, StepRun, run_group
from scenarios.models import Participation, Scenario
from scenarios.tests.factories import make_participation, make_scenario, step_of


def one_step(world: World, kind: str, config: dict[str, Any], *, exits: Sequence[str] = ("next",),
             **kw: Any) -> Scenario:
    """An active scenario: s1 entry.api -> s2 <kind> -> each of its exits to an exit step."""
    steps: list[tuple[Any, ...]] = [("s1", "entry.api", {}), ("s2", kind, config)]
    edges = [("s1", "next", "s2")]
    for n, exit_ in enumerate(exits, start=3):
        steps.append((f"s{n}", "exit", {}))
        edges.append(("s2", exit_, f"s{n}"))
    return make_scenario(world, steps=steps, edges=edges, **kw)


def enter(scenario: Scenario, profile_ids: Sequence[int], *, key: str = "s2", **values: Any) -> list[Participation]:
    return [make_participation(scenario, pid, step_key=key, **values) for pid in profile_ids]


def item_of(p: Participation, *, step_entered_at: datetime | None = None) -> Item:
    return Item(id=p.pk, profile_id=p.profile_id, account_id=p.account_id, scenario_id=p.scenario_id,
                version_id=p.version_id, seq=p.seq, attempts=p.attempts, context=dict(p.context or {}),
                wait=p.wait, entered_at=p.entered_at, step_entered_at=step_entered_at or p.entered_at)


def run(scenario: Scenario, parts: Sequence[Participation] | Sequence[Item], *, key: str = "s2",
        now: datetime | None = None, step_entered_at: datetime | None = None) -> list[Outcome]:
    """`run_group` for the participations (or items) standing on step `key` of the live version."""
    scenario = Scenario.objects.select_related("account", "database").get(pk=scenario.pk)
    items = [p if isinstance(p, Item) else item_of(p, step_entered_at=step_entered_at) for p in parts]
    step_run = StepRun(scenario=scenario, version=scenario.live_version, step=step_of(scenario, key),
                       now=now or timezone.now())
    return run_group(step_run, items)
