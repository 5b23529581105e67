"""Thin Celery tasks for mailings: take ids, call services, safe to run twice (the ledger's
claim decides what is sent, never the broker). Routed by name: *_bulk_task to the bulk queue
(broadcast batches, planning), *_trigger_task to the trigger queue (trigger sends, so a big
broadcast never delays a welcome e-mail), the others to default."""

from __future__ import annotations

from celery import shared_task


@shared_task
def run_plan_bulk_task(run_id: int) -> None:
    """Plan a run (its ledger rows, in one statement) and hand its first batches out."""
    from mailings.services.planning import run_plan

    run_plan(run_id=run_id)


@shared_task
def batch_send_bulk_task(run_id: int, ids: list[int]) -> None:
    """Claim and send one batch of a run's ledger rows (a broadcast or regular run)."""
    from mailings.services.dispatch import batch_send

    batch_send(run_id=run_id, ids=ids)


@shared_task
def batch_send_trigger_task(run_id: int, ids: list[int]) -> None:
    """The same on the trigger queue: trigger and transactional rows."""
    from mailings.services.dispatch import batch_send

    batch_send(run_id=run_id, ids=ids)


@shared_task
def mailings_tick_task() -> None:
    """The system tick (beat, every few seconds; idempotent, so two beats do no harm): start due
    runs, hand out due ledger rows, sweep expired claims, finish drained runs."""
    from mailings.services.dispatch import dispatch_tick, ledger_sweep
    from mailings.services.lifecycle import mailings_tick

    mailings_tick()
    ledger_sweep()
    dispatch_tick()


@shared_task
def housekeeping_task() -> None:
    """Fold the counters' deltas and forget old handled-event marks (beat, every 10 minutes)."""
    from mailings.services.ledger import handled_events_prune
    from mailings.services.stats import stats_compact

    stats_compact()
    handled_events_prune()
