"""Entry steps and the exit step.

An entry step is where a participation starts (`participations_enter` puts it there): it simply
goes on by its one exit, "next". An exit step completes the trip: its handler returns an
outcome with nothing set, which the core reads as "completed here"."""

from __future__ import annotations

from scenarios.engine.steps import Handler, Item, Outcome, StepRun, same
from scenarios.graph import ENTRY_KINDS


def entry_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Every entry kind: exit "next"."""
    return same(Outcome(exit="next"), len(items))


def exit_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """No exit: the trip completes here."""
    return same(Outcome(outcome="completed"), len(items))


HANDLERS: dict[str, Handler] = dict.fromkeys(ENTRY_KINDS, entry_run)
HANDLERS["exit"] = exit_run
