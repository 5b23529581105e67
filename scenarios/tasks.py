"""Thin Celery tasks of the scenario engine: take ids, call the engine, safe to run twice (the
database decides what is due and the conditional writes what happens; the broker never does).
Every task here runs on the `scenarios` queue (routed by name in cdp/celery.py), except
`participations_advance_trigger_task`: the event-driven advances (event and API entries, released
waits; small id lists) go on the `trigger` queue so they never wait behind a big activation's
batches."""

from __future__ import annotations

from celery import shared_task


@shared_task
def participations_advance_task(ids: list[int]) -> int:
    """Advance one batch of participations (those still due)."""
    from scenarios.engine import participations_advance

    return participations_advance(ids=ids)


@shared_task
def participations_advance_trigger_task(ids: list[int]) -> int:
    """Advance a small event-driven batch (an event or API entry, a released wait) on the real-time
    `trigger` queue: the same body as `participations_advance_task`, another queue."""
    from scenarios.engine import participations_advance

    return participations_advance(ids=ids)


@shared_task
def entries_at_activation_task(scenario_id: int, version_id: int, step_key: str, after: int = 0) -> int:
    """Let in the next chunk of a `members_at_start` segment's members (profile ids above `after`)
    after an activation, then queue the next chunk (scenarios queue: bulk work, after commit)."""
    from scenarios.entries import entries_at_activation_chunk

    return entries_at_activation_chunk(scenario_id=scenario_id, version_id=version_id, step_key=step_key, after=after)


@shared_task
def scenarios_tick_task() -> int:
    """The engine tick (beat, every 2 s): poll entries, hand out the due participations."""
    from scenarios.engine import engine_tick

    return engine_tick()


@shared_task
def housekeeping_task() -> None:
    """Fold the step counters' deltas and retire published versions nobody is on any more (beat,
    every 10 minutes)."""
    from scenarios.engine.housekeeping import versions_retire
    from scenarios.engine.stats import stats_compact

    stats_compact()
    versions_retire()
