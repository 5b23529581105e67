"""The scenario engine: profiles enter a scenario's live version and move from step to step.

Public interface (the other parts of the app code against these names):

- `Entry`, `participations_enter(*, scenario, entries, now=None) -> list[int]` (entering.py)
- `participations_advance(*, ids, now=None) -> int`: the body of one engine task (advance.py)
- `engine_tick(*, now=None) -> int`: entries poll + due participations handed out (tick.py)
- `waits_release(*, events, names) -> int`: event waits released by events (waits.py)
- `participations_exit`, `participations_move`, `participations_erase`, `participations_merge`
  (lifecycle.py)
- counters: `scenarios.engine.stats` (`stats_add`, `step_counts`, `stats_compact`)
- the step kinds' handlers: `scenarios.engine.steps` (`run_group`)

The promise: a step run twice (a redelivered task, two workers, a crash between a side effect and
the write) has no second effect: moves are written only where `seq` is still what was read, and
side effects are keyed by (participation, seq).
"""

from __future__ import annotations

from scenarios.engine.advance import participations_advance
from scenarios.engine.entering import Entry, participations_enter
from scenarios.engine.lifecycle import (
    participations_erase,
    participations_exit,
    participations_merge,
    participations_move,
)
from scenarios.engine.tick import engine_tick
from scenarios.engine.waits import waits_release

__all__ = [
    "Entry", "engine_tick", "participations_advance", "participations_enter", "participations_erase",
    "participations_exit", "participations_merge", "participations_move", "waits_release",
]
