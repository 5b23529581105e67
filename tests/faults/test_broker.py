"""F3 (Redis down while a mailing is launched and a trigger call arrives) and F4 (Redis
flushed mid-run)."""

from __future__ import annotations

import pytest

from tests.faults.stack import (
    add_subscribers,
    broadcast,
    check_invariants,
    drain,
    mailing_values,
    trigger_call,
    wait_for_run,
)

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web_redis_down(stack, settings):
    """The web side's Redis (broker, cache, throttle) goes through the proxy, which is down."""
    if not stack.redis_url:
        pytest.skip("needs REDIS_URL: the embedded filesystem broker has no server to lose")
    proxied = stack.redis_proxy.url_for(stack.redis_url)
    settings.REDIS_URL = proxied
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": proxied}}
    stack.redis_proxy.down()
    yield stack.redis_proxy
    stack.redis_proxy.up()


def test_it_accepts_a_launch_and_a_trigger_call_while_redis_is_down_and_sends_once_it_is_back(
        stack, world, caller, web_redis_down):
    from mailings.models import LedgerEntry, Run
    from mailings.services.lifecycle import mailing_create

    add_subscribers(world, 300)
    api = caller(world.account, role="marketer")
    bulk = mailing_create(account=world.account, actor=world.actor, values=mailing_values(world))
    trig = mailing_create(account=world.account, actor=world.actor, values=mailing_values(
        world, name="Order confirmation", kind="trigger", transactional=True, schedule={}, trigger={"on": "api"}))
    launched = api.post(f"/api/v1/mailings/{trig.pk}/launch")
    assert launched.status_code == 200, launched.content
    launched = api.post(f"/api/v1/mailings/{bulk.pk}/launch")
    assert launched.status_code == 200, launched.content
    address = world.subscribers[7][2]
    answer = trigger_call(api, trig, address, key="order-1001")
    assert answer.status_code in (200, 201, 202), answer.content

    web_redis_down.up()
    stack.start_worker("w1")
    run = wait_for_run(bulk, timeout=30)
    drain(run, timeout=60, progress=lambda: len(stack.smtp.arrivals))
    check_invariants(run, stack.smtp, max_ambiguous=0)
    assert LedgerEntry.objects.filter(run=run, status="sent").count() == 300

    trigger_run = Run.objects.get(mailing_id=trig.pk)
    drain(trigger_run, timeout=30, progress=lambda: len(stack.smtp.arrivals), finished=False)
    entry = LedgerEntry.objects.get(mailing_id=trig.pk, trigger_key__endswith="order-1001")
    assert entry.status == "sent", entry.__dict__
    assert stack.smtp.count_by_ref()[f"L{entry.pk}"] == 1


def test_it_completes_a_run_whose_queue_was_flushed(stack, world):
    if not stack.redis_url:
        pytest.skip("needs REDIS_URL")
    add_subscribers(world, 1500)
    stack.smtp.delay_s = 0.003
    stack.start_worker("w1")
    run = wait_for_run(broadcast(world))
    assert stack.smtp.wait_for(100, timeout=90) >= 100, stack.logs()
    stack.flush_broker()  # every batch task waiting in Redis is gone
    arrived = len(stack.smtp.snapshot())
    assert arrived < 1500, "the run finished before the flush: nothing was tested"

    result = drain(run, timeout=60, progress=lambda: len(stack.smtp.arrivals))
    counts = check_invariants(run, stack.smtp, max_ambiguous=0)
    assert counts.get("sent", 0) == 1500, (counts, result)
