"""The send step: messages into the send ledger through the step's trigger mailing."""

from __future__ import annotations

import pytest

from mailings.models import LedgerEntry, Mailing
from mailings.tests.factories import add_profiles_without_subscription
from scenarios.models import Step
from scenarios.tests.test_steps_support import enter, one_step, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def send_scenario(world):
    return one_step(world, "send", {})


def test_it_queues_one_ledger_row_per_participation_keyed_by_the_trip(world, send_scenario):
    parts = enter(send_scenario, world.profile_ids[:3])
    outcomes = run(send_scenario, parts)
    mailing_id = Step.objects.get(version=send_scenario.live_version, key="s2").mailing_id
    rows = {r.trigger_key: r for r in LedgerEntry.objects.filter(mailing_id=mailing_id)}
    assert sorted(rows) == sorted(f"scn:{p.pk}:0" for p in parts)
    for p, o in zip(parts, outcomes, strict=True):
        row = rows[f"scn:{p.pk}:0"]
        assert row.profile_id == p.profile_id
        assert o.exit == "next"
        assert o.outcome == f"{row.status}: ledger #{row.pk}"
        assert o.context == {"messages": {"s2": row.pk}}


def test_it_inserts_nothing_the_second_time_and_still_names_the_row(world, send_scenario):
    parts = enter(send_scenario, world.profile_ids[:2])
    first = run(send_scenario, parts)
    second = run(send_scenario, parts)
    assert LedgerEntry.objects.count() == 2
    assert [o.context for o in second] == [o.context for o in first]
    assert all(o.exit == "next" and "ledger #" in o.outcome for o in second)


def test_a_first_visit_reads_its_rows_from_the_insert_not_the_ledger(world, send_scenario):
    """The rows come back from the INSERT; the ledger is read by trigger key only for repeats and
    fires with no subscription (on PostgreSQL a key lookup over a mailing whose statistics lag
    read the mailing's every row: a 100,000-trip activation slowed to 250 trips a second)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    parts = enter(send_scenario, world.profile_ids[:3])
    with CaptureQueriesContext(connection) as queries:
        outcomes = run(send_scenario, parts)
    rows = {r.trigger_key: r.pk for r in LedgerEntry.objects.all()}
    assert len(rows) == 3 and all("ledger #" in o.outcome for o in outcomes)
    reads = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT") and "trigger_key" in q["sql"]]
    assert reads == []


def test_it_passes_the_trips_data_to_the_ledger(world, send_scenario):
    [p] = enter(send_scenario, world.profile_ids[:1], context={"data": {"order": "A-17"}})
    run(send_scenario, [p])
    assert LedgerEntry.objects.get().data == {"order": "A-17"}


def test_it_goes_on_with_the_skip_reason_for_an_unsubscribed_profile(world, send_scenario):
    pid = world.profile_ids[0]
    world.subscriptions().filter(profile_id=pid).update(status="unsubscribed")
    [o] = run(send_scenario, enter(send_scenario, [pid]))
    row = LedgerEntry.objects.get()
    assert (row.status, row.reason) == ("skipped", "unsubscribed")
    assert (o.exit, o.outcome) == ("next", "skipped: unsubscribed")
    assert o.context == {"messages": {"s2": row.pk}}


def test_it_goes_on_without_a_row_when_the_profile_has_no_subscription(world, send_scenario):
    [pid] = add_profiles_without_subscription(world.database, 1)
    [o] = run(send_scenario, enter(send_scenario, [pid]))
    assert LedgerEntry.objects.count() == 0
    assert (o.exit, o.outcome, o.context) == ("next", "no subscription on Shop news email", None)


def test_it_keeps_earlier_messages_of_the_trip_in_the_context(world, send_scenario):
    [p] = enter(send_scenario, world.profile_ids[:1], context={"messages": {"s9": 123}})
    [o] = run(send_scenario, [p])
    assert o.context["messages"]["s9"] == 123 and "s2" in o.context["messages"]


def test_it_fails_the_trips_when_the_step_has_no_mailing(world, send_scenario):
    Step.objects.filter(version=send_scenario.live_version, key="s2").update(mailing=None)
    outcomes = run(send_scenario, enter(send_scenario, world.profile_ids[:2]))
    assert [o.fail for o in outcomes] == ["the send step has no mailing (publish the scenario)"] * 2
    assert LedgerEntry.objects.count() == 0


def test_it_skips_when_the_mailing_was_cancelled(world, send_scenario):
    mailing_id = Step.objects.get(version=send_scenario.live_version, key="s2").mailing_id
    Mailing.objects.filter(pk=mailing_id).update(state=Mailing.State.CANCELLED)
    [o] = run(send_scenario, enter(send_scenario, world.profile_ids[:1]))
    assert (o.exit, o.outcome) == ("next", "skipped: the step's mailing is cancelled")
    assert LedgerEntry.objects.count() == 0
