"""F9 (the same API call / inbound report twice, concurrently: one state change) and F10 (two
schedulers tick the same slot: one run)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from tests.faults.stack import ApiClient, add_subscribers, drain, mailing_values, trigger_call

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def concurrently(*calls: Callable[[], Any], timeout: float = 30.0) -> list[Any]:
    """Run the calls in threads released together (each with its own database connection);
    returns their results (or the exceptions they raised), bounded by `timeout`."""
    barrier = threading.Barrier(len(calls), timeout=timeout)
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:  # reported to the test, which asserts on it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a concurrent call hung"
    return results


def _trigger_mailing(world: Any) -> Any:
    from mailings.services.lifecycle import mailing_create, mailing_launch

    mailing = mailing_create(account=world.account, actor=world.actor, values=mailing_values(
        world, name="Order confirmation", kind="trigger", transactional=True, schedule={}, trigger={"on": "api"}))
    return mailing_launch(mailing=mailing, actor=world.actor)


def test_it_makes_one_send_of_the_same_trigger_call_made_twice_at_once(stack, world, api_token):
    from mailings.models import LedgerEntry, Run
    from mailings.services.triggers import trigger_fire
    from profiles.models import Profile

    subs = add_subscribers(world, 20)
    mailing = _trigger_mailing(world)
    stack.start_worker("w1")
    token = api_token(world.account, "marketer")
    callers = [ApiClient(token), ApiClient(token)]
    answers = concurrently(*(lambda c=c: trigger_call(c, mailing, subs[3][2], key="order-7") for c in callers))
    codes = sorted(getattr(a, "status_code", None) for a in answers)
    # Either both answer the one row, or the second is told the first is still running (409).
    assert codes in ([202, 202], [202, 409]), [(getattr(a, "status_code", a), getattr(a, "content", b"")[:300])
                                               for a in answers]
    retried = trigger_call(callers[0], mailing, subs[3][2], key="order-7")  # the same call again, later
    assert retried.status_code == 202, retried.content
    ids = {a.json()["ledger_id"] for a in [*answers, retried] if a.status_code == 202}
    assert len(ids) == 1, ids

    profile = Profile.objects.get(pk=subs[5][0])
    fired = concurrently(*(lambda: trigger_fire(mailing=mailing, profile=profile, data={"n": 1}, key="svc-9")
                           for _ in range(2)))
    assert not [f for f in fired if isinstance(f, Exception)], fired
    assert fired[0].pk == fired[1].pk

    run = Run.objects.get(mailing_id=mailing.pk)
    drain(run, timeout=30, finished=False, progress=lambda: len(stack.smtp.arrivals))
    rows = list(LedgerEntry.objects.filter(mailing_id=mailing.pk).values("id", "status", "trigger_key"))
    assert len(rows) == 2 and all(r["status"] == "sent" for r in rows), rows
    arrived = stack.smtp.count_by_ref()
    assert [arrived[f"L{r['id']}"] for r in rows] == [1, 1], arrived


def test_it_applies_the_same_bounce_report_twice_at_once_as_one_change(stack, world):
    from history.models import Event
    from mailings.bounces.report import InboundReport
    from mailings.models import LedgerEntry, MailingStat
    from mailings.services.feedback import inbound_apply
    from resources.models import Subscription
    from tests.faults.stack import broadcast, check_invariants, wait_for_run

    subs = add_subscribers(world, 30)
    stack.start_worker("w1")
    run = wait_for_run(broadcast(world))
    drain(run, timeout=30, progress=lambda: len(stack.smtp.arrivals))
    check_invariants(run, stack.smtp)
    entry = LedgerEntry.objects.get(run=run, subscription_id=subs[4][1])
    report = InboundReport(kind="hard_bounce", ref=f"L{entry.pk}", recipient=entry.address, status="5.1.1",
                           diagnostic="550 5.1.1 user unknown", reason="mailbox does not exist",
                           fingerprint="f9" * 16)
    outcomes = concurrently(*(lambda: inbound_apply(report=report, source="test") for _ in range(2)))
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes

    entry.refresh_from_db()
    assert entry.bounced_at is not None
    # history.catalogue: message.hard_bounced is system type 4.
    hard = Event.objects.filter(account_id=world.account.pk, type_id=4, ledger_id=entry.pk)
    assert hard.count() == 1
    stat = sum(MailingStat.objects.filter(run_id=run.pk, metric="bounced_hard").values_list("delta", flat=True))
    assert stat == 1
    assert Subscription.objects.get(pk=subs[4][1]).status == "bounced"


def test_it_makes_one_run_when_two_schedulers_tick_the_same_slot(stack, world):
    from mailings.models import Mailing, Run
    from mailings.services.lifecycle import mailing_create, mailing_launch, mailings_tick

    add_subscribers(world, 20)
    mailing = mailing_create(account=world.account, actor=world.actor, values=mailing_values(
        world, name="Daily", kind="regular", schedule={"daily_at": "10:00"}))
    mailing = mailing_launch(mailing=mailing, actor=world.actor)
    due = Mailing.objects.get(pk=mailing.pk).next_run_at
    assert due is not None, "a launched regular mailing has its next run time"
    for now in (due + timedelta(seconds=1), due + timedelta(seconds=1), due + timedelta(minutes=5)):
        results = concurrently(*(lambda n=now: mailings_tick(now=n) for _ in range(3)))
        assert not [r for r in results if isinstance(r, Exception)], results
    runs = list(Run.objects.filter(mailing_id=mailing.pk).values_list("slot", flat=True))
    assert len(runs) == 1, runs
