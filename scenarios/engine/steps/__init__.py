"""The step handlers: what each step kind does to a group of participations standing on it.

The engine core (`scenarios.engine.participations_advance`) groups a batch of participations by
(version, step) and calls `run_group(run, items)` once per group. A handler is set-based: it does
its work for the whole group with a fixed number of queries (one ledger insert for a send step,
one compiled query for a condition, one UPDATE for a field change), never one query per profile.

Contract of a handler (`HANDLERS[kind]`):

- It returns one `Outcome` per item, in the items' order.
- It is idempotent per (participation, seq): the core may call it again for the same item (a
  redelivered task, a crash before the core's conditional UPDATE). Side effects are keyed by
  `f"{item.id}:{item.seq}"` (the send ledger's trigger key, the webhook's X-CDP-Delivery) or
  are naturally repeatable (setting a field to a value, adding to a static segment).
- It does not move participations, write path rows or counters: the core does, from the
  outcomes.

Outcome semantics (the core applies them):

- `exit` set: leave the step by that exit now (the core follows the transition; none: completed).
- `wait_until` set and no `exit`: stay, state WAITING until then; `wait` is stored on the row and
  handed back as `item.wait` next time (`waiting_for`: the event type an event wait listens for).
- `retry` (a message): a transient failure; the core backs off and calls again (`item.attempts`
  counts the failures so far), then fails the trip when its attempts are used up.
- `fail` (a message): the trip fails now.
- `outcome`: a short line for the path log ("queued: ledger #12", "condition: no").
- `context`: keys merged (shallowly) into the participation's context.
- Nothing set (an exit step): the trip completes here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, transaction

if TYPE_CHECKING:
    from scenarios.models import Scenario, ScenarioVersion, Step

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One participation as a handler sees it (read by the core in its claim)."""

    id: int
    profile_id: int
    account_id: int
    scenario_id: int
    version_id: int
    seq: int
    attempts: int
    context: dict[str, Any]
    wait: dict[str, Any] | None
    entered_at: datetime
    step_entered_at: datetime | None  # when it came to this step (None: the core does not know; "now")


@dataclass
class Outcome:
    """What a step did for one item (see the module docstring for how the core applies it)."""

    exit: str | None = None
    wait_until: datetime | None = None
    waiting_for: str = ""
    wait: dict[str, Any] | None = None
    retry: str = ""
    fail: str = ""
    outcome: str = ""
    context: dict[str, Any] | None = None


@dataclass
class StepRun:
    """The step a group stands on, with its scenario and version (loaded once by the core)."""

    scenario: Scenario
    version: ScenarioVersion
    step: Step
    now: datetime


Handler = Callable[[StepRun, list[Item]], list[Outcome]]


def _handlers() -> dict[str, Handler]:
    from scenarios.engine.steps import data, entries, logic, messages, timing, webhook

    table: dict[str, Handler] = {}
    for module in (entries, messages, timing, logic, data, webhook):
        table.update(module.HANDLERS)
    return table


HANDLERS: dict[str, Handler] = {}


def handler_for(kind: str) -> Handler | None:
    """The handler of a step kind (every kind of `scenarios.graph.STEP_KINDS` has one)."""
    if not HANDLERS:
        HANDLERS.update(_handlers())
    return HANDLERS.get(kind)


def run_group(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Run the step `run.step` for `items` (participations standing on it): one Outcome per item,
    same order. Never raises for a step's own trouble: an unknown kind fails the trips; a
    database error inside the handler is rolled back to a savepoint (nothing half-written) and
    becomes a `retry` for the whole group, so the core backs off instead of losing the batch."""
    if not items:
        return []
    handler = handler_for(run.step.kind)
    if handler is None:
        return same(Outcome(fail=f"Step {run.step.key}: unknown step kind “{run.step.kind}”"), len(items))
    try:
        with transaction.atomic():
            outcomes = handler(run, items)
    except DatabaseError as exc:
        log.warning("scenarios: step %s (%s) of scenario %s failed for %d participations: %s", run.step.key,
                    run.step.kind, run.scenario.pk, len(items), exc, exc_info=True)
        return [Outcome(retry=f"database error: {_short(exc)}") for _ in items]
    if len(outcomes) != len(items):  # a handler bug; never let the core misapply outcomes
        raise AssertionError(f"handler {run.step.kind} returned {len(outcomes)} outcomes for {len(items)} items")
    return outcomes


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def same(outcome: Outcome, n: int) -> list[Outcome]:
    """`n` separate copies of an outcome (outcomes carry dicts: never share one object)."""
    return [Outcome(**{**outcome.__dict__, "context": dict(outcome.context) if outcome.context else None,
                       "wait": dict(outcome.wait) if outcome.wait else None}) for _ in range(n)]


__all__ = ["HANDLERS", "Handler", "Item", "Outcome", "StepRun", "handler_for", "run_group", "same"]
