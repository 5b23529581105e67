"""F6 (SMTP 421/451 for one domain), F7 (550 for one address), F8 (connection dropped after DATA)."""

from __future__ import annotations

import pytest

from tests.faults.servers import Rule
from tests.faults.stack import add_subscribers, broadcast, check_invariants, drain, wait_for_run

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def test_it_backs_off_a_domain_that_says_try_later_and_sends_it_once_without_delaying_others(stack, world):
    from mailings.models import LedgerEntry

    add_subscribers(world, 600, domains=("a.example.com", "b.example.com", "slow.example.net", "busy.example.net"))
    stack.smtp.rules = [Rule("slow.example.net", "451", times=2), Rule("busy.example.net", "421", times=2)]
    stack.start_worker("w1")
    run = wait_for_run(broadcast(world))
    drain(run, timeout=60, progress=lambda: len(stack.smtp.arrivals))
    counts = check_invariants(run, stack.smtp, max_ambiguous=0)
    assert counts.get("sent", 0) == 600, counts

    rows = list(LedgerEntry.objects.filter(run=run).values("address", "attempts", "sent_at"))
    refused = {a for a, code, _ in stack.smtp.answers}
    slow = [r for r in rows if r["address"].endswith(("@slow.example.net", "@busy.example.net"))]
    others = [r for r in rows if not r["address"].endswith(("@slow.example.net", "@busy.example.net"))]
    assert {r["address"] for r in slow} <= refused, "every slow-domain address was refused first"
    assert all(r["attempts"] >= 2 for r in slow), "slow-domain rows were retried (new claims)"
    # Accepted exactly once each (check_invariants: no duplicate refs) and nothing else delayed:
    assert all(r["attempts"] == 1 for r in others), [r for r in others if r["attempts"] != 1][:5]
    last_other = max(r["sent_at"] for r in others)
    last_slow = max(r["sent_at"] for r in slow)
    assert last_other <= last_slow, "the other domains finished before the backed-off ones"


def test_it_fails_a_rejected_address_after_one_attempt_and_suppresses_it_next_run(stack, world):
    from mailings.models import LedgerEntry
    from mailings.services.lifecycle import mailing_duplicate, mailing_launch

    subs = add_subscribers(world, 300)
    bad = subs[10][2]
    stack.smtp.rules = [Rule(bad, "550")]
    stack.start_worker("w1")
    mailing = broadcast(world)
    run = wait_for_run(mailing)
    drain(run, timeout=40, progress=lambda: len(stack.smtp.arrivals))
    counts = check_invariants(run, stack.smtp, max_ambiguous=0)
    assert counts == {"sent": 299, "failed": 1}, counts
    row = LedgerEntry.objects.get(run=run, address=bad)
    assert (row.reason, row.attempts) == ("hard_bounce", 1), (row.reason, row.attempts, row.detail)
    assert "550" in row.detail
    refusals = [a for a in stack.smtp.answers if a[0] == bad]
    assert len(refusals) == 1, refusals

    second = mailing_launch(mailing=mailing_duplicate(mailing=mailing, actor=world.actor), actor=world.actor)
    run2 = wait_for_run(second)
    drain(run2, timeout=40, progress=lambda: len(stack.smtp.arrivals))
    check_invariants(run2, stack.smtp, max_ambiguous=0)
    row2 = LedgerEntry.objects.get(run=run2, address=bad)
    assert row2.status == "skipped" and row2.reason in ("bounced", "suppressed"), (row2.status, row2.reason)
    assert len([a for a in stack.smtp.answers if a[0] == bad]) == 1, "not tried again"


def test_it_marks_a_message_whose_connection_dropped_after_data_ambiguous_and_never_resends_it(stack, world):
    from mailings.models import LedgerEntry
    from mailings.services.dispatch import ledger_sweep

    subs = add_subscribers(world, 300)
    lost = subs[20][2]
    stack.smtp.rules = [Rule(lost, "drop")]
    stack.start_worker("w1")
    run = wait_for_run(broadcast(world))
    drain(run, timeout=40, progress=lambda: len(stack.smtp.arrivals))
    counts = check_invariants(run, stack.smtp)
    assert counts == {"sent": 299, "ambiguous": 1}, counts
    row = LedgerEntry.objects.get(run=run, address=lost)
    assert (row.status, row.reason) == ("ambiguous", "connection_lost"), (row.status, row.reason, row.detail)
    # More sweeps and ticks change nothing: it is never sent again.
    for _ in range(3):
        ledger_sweep()
    assert [a.rcpt for a in stack.smtp.snapshot()].count(lost) == 1
    row.refresh_from_db()
    assert row.status == "ambiguous"
