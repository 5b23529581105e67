"""F5: PostgreSQL restarted mid-run (for the workers: their connections go through a proxy that is
cut and refuses new connections for a while, which is what a restart looks like from a client;
the shared server itself is not restarted, other test runs use it)."""

from __future__ import annotations

import time

import pytest

from tests.faults.stack import BATCH, add_subscribers, broadcast, check_invariants, drain, wait_for_run

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def test_it_keeps_the_invariants_when_postgresql_restarts_mid_run(stack, world):
    if not stack.postgres:
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    add_subscribers(world, 1500)
    stack.smtp.delay_s = 0.003
    worker = stack.start_worker("w1", via_pg_proxy=True)
    run = wait_for_run(broadcast(world))
    assert stack.smtp.wait_for(200, timeout=90) >= 200, stack.logs()
    stack.pg_proxy.down()  # every connection cut, new ones refused
    time.sleep(2.0)
    during = len(stack.smtp.snapshot())
    stack.pg_proxy.up()
    assert during < 1500, "the run finished before the restart: nothing was tested"

    drain(run, timeout=60, progress=lambda: len(stack.smtp.arrivals))
    counts = check_invariants(run, stack.smtp, max_ambiguous=BATCH)
    assert worker.alive, f"the worker died with its database connection\n{stack.logs()}"
    assert len(stack.smtp.snapshot()) > during, "nothing was sent after the database came back"
    assert counts.get("sent", 0) + counts.get("ambiguous", 0) == 1500, counts
