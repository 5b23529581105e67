"""F1 (kill -9 a worker mid-broadcast) and F2 (SIGTERM a worker mid-broadcast)."""

from __future__ import annotations

import pytest

from tests.faults.stack import add_subscribers, broadcast, check_invariants, drain, wait_for_run

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

SIZE = 1500


def test_it_keeps_the_invariants_when_a_worker_is_killed_mid_broadcast(stack, world):
    from mailings.services.dispatch import CHUNK_SIZE

    add_subscribers(world, SIZE)
    stack.smtp.delay_s = 0.003  # ~5 s of sending: the kill lands mid-run
    worker = stack.start_worker("w1")
    run = wait_for_run(broadcast(world))
    assert stack.smtp.wait_for(200, timeout=90) >= 200, stack.logs()
    worker.kill()
    arrived_before = len(stack.smtp.snapshot())
    assert arrived_before < SIZE, "the run finished before the kill: nothing was tested"

    stack.start_worker("w2")
    print(drain(run, timeout=60, progress=lambda: len(stack.smtp.arrivals)))
    # Only the chunk the killed worker had on the wire may be in doubt; everything else was sent.
    counts = check_invariants(run, stack.smtp, max_ambiguous=CHUNK_SIZE)
    assert counts.get("sent", 0) + counts.get("ambiguous", 0) == SIZE, counts
    assert counts.get("failed", 0) == 0 and counts.get("skipped", 0) == 0, counts


def test_it_finishes_the_batch_in_hand_on_sigterm_and_sends_nothing_twice(stack, world):
    add_subscribers(world, SIZE)
    stack.smtp.delay_s = 0.003
    worker = stack.start_worker("w1")
    run = wait_for_run(broadcast(world))
    assert stack.smtp.wait_for(200, timeout=90) >= 200, stack.logs()
    code = worker.terminate(timeout=60)  # warm shutdown: the batch in hand is finished
    assert code == 0, f"the worker did not shut down cleanly ({code})\n{stack.logs()}"
    assert len(stack.smtp.snapshot()) < SIZE, "the run finished before the SIGTERM: nothing was tested"

    stack.start_worker("w2")
    print(drain(run, timeout=60, progress=lambda: len(stack.smtp.arrivals)))
    counts = check_invariants(run, stack.smtp, max_ambiguous=0)
    assert counts.get("sent", 0) == SIZE, counts
    assert not stack.smtp.duplicates()
