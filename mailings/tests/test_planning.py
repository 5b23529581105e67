"""Planning a run: one INSERT .. SELECT, skips by reason, no_address, caps at each level and scope,
local-time sending, send windows, idempotency, and the preview counting the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mailings.models import LedgerEntry, Mailing, MailingStat, Run
from mailings.services.lifecycle import cap_set
from mailings.services.planning import audience_preview, run_plan
from mailings.tests.factories import (
    add_subscribers,
    make_mailing,
    make_resource,
    make_run,
    queue_entries,
)
from resources.models import Subscription, Suppression

# A Saturday, 10:00 UTC (11:00 in Berlin, the account's timezone).
NOW = datetime(2025, 3, 22, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_kick(monkeypatch):
    """Planning kicks the dispatcher after commit; these tests look at the plan alone."""
    monkeypatch.setattr("mailings.services.planning.kick", lambda run_id: None)


def plan(mailing: Mailing, *, now: datetime = NOW) -> Run:
    run = make_run(mailing, state=Run.State.PLANNING, scheduled_for=now)
    return run_plan(run_id=run.pk, now=now)


def outcome(run: Run) -> dict[str, int]:
    out: dict[str, int] = {}
    for status, reason in LedgerEntry.objects.filter(run=run).values_list("status", "reason"):
        key = reason or status
        out[key] = out.get(key, 0) + 1
    return out


def stats(run: Run) -> dict[str, int]:
    out: dict[str, int] = {}
    for metric, delta in MailingStat.objects.filter(run_id=run.pk).values_list("metric", "delta"):
        out[metric] = out.get(metric, 0) + delta
    return out


def by_address(world, prefix: str = "person") -> dict[str, Subscription]:
    return {s.address: s for s in world.subscriptions()}


def test_it_plans_every_subscription_with_its_skip_reason(world, mailing):
    subs = by_address(world)
    Subscription.objects.filter(pk=subs["person0@example.com"].pk).update(status="unsubscribed")
    Subscription.objects.filter(pk=subs["person1@example.com"].pk).update(status="unconfirmed")
    Subscription.objects.filter(pk=subs["person2@example.com"].pk).update(opted_out=["news"])
    Suppression.objects.create(account=world.account, kind="email", value="person3@example.com")
    add_subscribers(world.resource, 2, start=50, domain="blocked.example")
    Suppression.objects.create(account=world.account, kind="domain", value="blocked.example")
    add_subscribers(world.resource, 3, start=60, email=False, sms=True)  # SMS only: no e-mail address
    Mailing.objects.filter(pk=mailing.pk).update(categories=["news"])
    mailing.refresh_from_db()

    run = plan(mailing)

    assert outcome(run) == {"unsubscribed": 1, "unconfirmed": 1, "opted_out": 1, "suppressed": 3, "queued": 1}
    assert run.state == Run.State.SENDING and run.planned == 7 and run.exclusions == {"no_address": 3}
    assert stats(run) == {"planned": 7, "queued": 1, "skipped": 6, "skipped:unsubscribed": 1, "skipped:unconfirmed": 1,
                          "skipped:opted_out": 1, "skipped:suppressed": 3}
    mailing.refresh_from_db()
    queued = LedgerEntry.objects.get(run=run, status="queued")
    assert (queued.address, queued.not_before) == ("person4@example.com", None)


def test_it_checks_phone_suppressions_on_sms(world):
    mailing = make_mailing(world, channel="sms")
    phone = world.subscriptions("sms").order_by("id").first().address
    Suppression.objects.create(account=world.account, kind="phone", value=phone)
    Suppression.objects.create(account=world.account, kind="email", value="person1@example.com")  # another channel
    assert outcome(plan(mailing)) == {"suppressed": 1, "queued": 4}


def test_a_confirmation_trigger_may_go_to_unconfirmed_subscriptions(world):
    Subscription.objects.filter(resource=world.resource).update(status="unconfirmed")
    mailing = make_mailing(world, kind="trigger", trigger={"on": "confirmation"}, transactional=True)
    from mailings.services.planning import skip_reason_sql

    case, params, _ = skip_reason_sql(mailing, run_id=None, now=NOW)
    with connection.cursor() as cur:
        cur.execute(f"SELECT {case} FROM resources_subscription s "  # noqa: S608 (the planner's own SQL)
                    "WHERE s.resource_id = %s AND s.channel = 'email'",
                    [*params, world.resource.pk])
        assert {r for (r,) in cur.fetchall()} == {None}


def test_a_replan_is_harmless(world, mailing):
    run = plan(mailing)
    assert run_plan(run_id=run.pk, now=NOW).planned == 5  # not planning any more: returned as it is
    Run.objects.filter(pk=run.pk).update(state=Run.State.PLANNING)  # a second task that got past the check
    run = run_plan(run_id=run.pk, now=NOW)
    assert LedgerEntry.objects.filter(run=run).count() == 5


def test_it_plans_a_segments_audience(world):
    from segments.services import segment_create, segment_members_add

    vip = segment_create(database=world.database, name="VIP", kind="static", actor=world.actor, compute=False)
    gone = segment_create(database=world.database, name="Gone", kind="static", actor=world.actor, compute=False)
    segment_members_add(segment=vip, profile_ids=world.profile_ids[:3], actor=world.actor)
    segment_members_add(segment=gone, profile_ids=world.profile_ids[2:3], actor=world.actor)
    extra = add_subscribers(world.resource, 2, start=70, email=False, sms=True)
    segment_members_add(segment=vip, profile_ids=extra[:1], actor=world.actor)
    mailing = make_mailing(world, include=[vip], exclude=[gone])

    run = plan(mailing)

    assert sorted(LedgerEntry.objects.filter(run=run).values_list("profile_id", flat=True)) == world.profile_ids[:2]
    assert run.exclusions == {"no_address": 1}


def test_it_plans_a_thousand_profiles_in_one_insert(world, mailing, django_assert_max_num_queries):
    add_subscribers(world.resource, 1000, start=1000)
    cap_set(account=world.account, actor=world.actor, max_messages=3, days=7)
    run = make_run(mailing, state=Run.State.PLANNING, scheduled_for=NOW)
    with django_assert_max_num_queries(12) as queries:
        run_plan(run_id=run.pk, now=NOW)
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT INTO mailings_ledgerentry" in q["sql"]]
    assert len(inserts) == 1
    assert LedgerEntry.objects.filter(run=run, status="queued").count() == 1005


# --- caps -----------------------------------------------------------------------------------------


def sent_before(world, profile_ids, *, channel="email", resource=None, transactional=False, days_ago=1, status="sent",
                name="Earlier"):
    """Ledger rows of an earlier mailing to these profiles' `channel` subscriptions."""
    earlier = make_mailing(world, name=name, channel=channel, resource=resource or world.resource,
                           transactional=transactional)
    run = make_run(earlier, slot=f"earlier-{name}")
    subs = Subscription.objects.filter(resource=resource or world.resource, channel=channel, profile_id__in=profile_ids)
    rows = queue_entries(run, subscriptions=subs, status=status)
    LedgerEntry.objects.filter(pk__in=[r.pk for r in rows]).update(sent_at=NOW - timedelta(days=days_ago))
    return rows


def test_it_skips_recipients_at_the_accounts_cap_with_the_rule(world, mailing):
    cap_set(account=world.account, actor=world.actor, max_messages=1, days=7)
    sent_before(world, world.profile_ids[:2])
    sent_before(world, world.profile_ids[2:3], days_ago=8, name="Long ago")  # outside the 7 days
    sent_before(world, world.profile_ids[3:4], transactional=True, name="Receipt")  # receipts do not count
    preview = audience_preview(mailing=mailing, now=NOW)
    assert (preview.capped, preview.cap) == (2, "at most 1 in 7 days per recipient (account policy)")
    run = plan(mailing)
    assert outcome(run) == {"capped": 2, "queued": 3}
    capped = LedgerEntry.objects.filter(run=run, reason="capped").first()
    assert capped.detail == "at most 1 in 7 days per recipient (account policy)"


def test_rows_queued_by_another_run_count_towards_the_cap(world, mailing):
    cap_set(account=world.account, actor=world.actor, max_messages=1, days=7)
    sent_before(world, world.profile_ids[:1], status="queued")
    assert outcome(plan(mailing)) == {"capped": 1, "queued": 4}


def test_the_mailings_cap_overrides_the_resources_and_the_accounts(world, mailing):
    sent_before(world, world.profile_ids[:2])
    cap_set(account=world.account, actor=world.actor, max_messages=1, days=7)
    cap_set(account=world.account, actor=world.actor, resource=world.resource, max_messages=2, days=7)
    assert audience_preview(mailing=mailing, now=NOW).capped == 0  # the resource allows 2
    cap_set(account=world.account, actor=world.actor, mailing=mailing, max_messages=1, days=3)
    run = plan(mailing)
    assert outcome(run)["capped"] == 2
    assert LedgerEntry.objects.filter(run=run, reason="capped").first().detail == \
        "at most 1 in 3 days per recipient (mailing policy)"


def test_transactional_mailings_ignore_caps(world):
    cap_set(account=world.account, actor=world.actor, max_messages=1, days=7)
    sent_before(world, world.profile_ids)
    assert outcome(plan(make_mailing(world, transactional=True))) == {"queued": 5}


@pytest.mark.parametrize(("scope", "expected"), [
    ("profile", 4),  # every earlier message counts: person0, 1, 2 and 3
    ("profile_resource", 3),  # not person2's, from the other resource
    ("profile_channel", 3),  # not person1's SMS
    ("address", 2),  # the same address on the channel, any resource: person0 and person2, not person3's old one
])
def test_it_counts_a_cap_per_scope(world, mailing, scope, expected):
    other = make_resource(world.account, world.database, name="Other shop", channels=["email"])
    # person0: an e-mail here; person1: an SMS here; person2: an e-mail from the other resource;
    # person3: an e-mail here to another address of theirs.
    sent_before(world, world.profile_ids[:1], name="a")
    sent_before(world, world.profile_ids[1:2], channel="sms", name="b")
    Subscription.objects.create(account=world.account, resource=other, profile_id=world.profile_ids[2], channel="email",
                                address="person2@example.com")
    sent_before(world, world.profile_ids[2:3], resource=other, name="c")
    earlier = sent_before(world, world.profile_ids[3:4], name="d")
    LedgerEntry.objects.filter(pk=earlier[0].pk).update(address="old-address@example.com")
    cap_set(account=world.account, actor=world.actor, max_messages=1, days=7, scope=scope)
    assert outcome(plan(mailing)).get("capped", 0) == expected


# --- local time, send windows ---------------------------------------------------------------------


def test_it_sends_at_a_local_time_in_each_recipients_timezone(world):
    ny = add_subscribers(world.resource, 2, start=100, timezone_name="America/New_York")
    tokyo = add_subscribers(world.resource, 1, start=200, timezone_name="Asia/Tokyo")
    bad = add_subscribers(world.resource, 1, start=300, timezone_name="Mars/Olympus")
    mailing = make_mailing(world, schedule={"mode": "local", "date": "2025-03-24", "time": "09:00"})
    run = plan(mailing)
    when = dict(LedgerEntry.objects.filter(run=run).values_list("profile_id", "not_before"))
    assert {when[p] for p in ny} == {datetime(2025, 3, 24, 13, tzinfo=UTC)}  # EDT, UTC-4
    assert when[tokyo[0]] == datetime(2025, 3, 24, 0, tzinfo=UTC)
    # Blank and invalid timezones: the account's (Berlin, CET in March).
    assert {when[p] for p in [*world.profile_ids, *bad]} == {datetime(2025, 3, 24, 8, tzinfo=UTC)}


def test_a_local_time_already_passed_somewhere_sends_there_now(world):
    mailing = make_mailing(world, schedule={"mode": "local", "date": "2025-03-22", "time": "09:00"})
    run = plan(mailing)  # 09:00 in Berlin was two hours before NOW
    assert set(LedgerEntry.objects.filter(run=run).values_list("not_before", flat=True)) == {None}


def test_it_delays_rows_outside_the_send_window_to_its_next_opening(world):
    tokyo = add_subscribers(world.resource, 2, start=200, timezone_name="Asia/Tokyo")
    window = {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00", "tz": "recipient"}
    mailing = make_mailing(world, send_window=window)
    preview = audience_preview(mailing=mailing, now=NOW)
    assert (preview.sendable, preview.outside_window) == (7, 7)  # Saturday everywhere
    run = plan(mailing)
    when = dict(LedgerEntry.objects.filter(run=run).values_list("profile_id", "not_before"))
    assert {when[p] for p in world.profile_ids} == {datetime(2025, 3, 24, 8, tzinfo=UTC)}  # Monday 09:00 CET
    assert {when[p] for p in tokyo} == {datetime(2025, 3, 24, 0, tzinfo=UTC)}  # Monday 09:00 JST


def test_an_open_window_delays_nothing(world):
    mailing = make_mailing(world, send_window={"days": [5], "start": "08:00", "end": "20:00", "tz": "account"})
    run = plan(mailing)
    assert set(LedgerEntry.objects.filter(run=run).values_list("not_before", flat=True)) == {None}
    assert audience_preview(mailing=mailing, now=NOW).outside_window == 0


# --- the preview ----------------------------------------------------------------------------------


def test_the_preview_counts_what_the_plan_does_and_writes_nothing(world, mailing):
    subs = by_address(world)
    Subscription.objects.filter(pk=subs["person0@example.com"].pk).update(status="bounced")
    Suppression.objects.create(account=world.account, kind="email", value="person1@example.com")
    add_subscribers(world.resource, 2, start=60, email=False, sms=True)
    preview = audience_preview(mailing=mailing, now=NOW)
    assert not LedgerEntry.objects.exists() and not MailingStat.objects.exists()
    assert (preview.audience, preview.sendable, preview.no_address) == (7, 3, 2)
    assert preview.excluded == {"bounced": 1, "suppressed": 1} and preview.planned == 5
    run = plan(mailing)
    assert outcome(run) == {"bounced": 1, "suppressed": 1, "queued": 3}


def test_a_broken_segment_fails_the_run_and_the_preview_says_why(world):
    from segments.models import Segment
    from segments.services import segment_create

    seg = segment_create(database=world.database, name="Broken", kind="static", actor=world.actor, compute=False)
    mailing = make_mailing(world, include=[seg])
    Segment.objects.filter(pk=seg.pk).update(state=Segment.State.BROKEN)
    assert audience_preview(mailing=mailing, now=NOW).error
    run = plan(mailing)
    mailing.refresh_from_db()
    assert run.state == Run.State.FAILED and run.error and mailing.last_error
    assert not LedgerEntry.objects.filter(run=run).exists()


def test_a_paused_mailings_run_is_planned_and_parked(world, mailing):
    run = make_run(mailing, state=Run.State.PLANNING)
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.PAUSED)
    run = run_plan(run_id=run.pk, now=NOW)
    assert run.state == Run.State.PAUSED and run.planned == 5


def test_it_skips_category_opt_outs_set_based(world, mailing):
    add_subscribers(world.resource, 300, start=5000, opted_out=["offers"])
    Mailing.objects.filter(pk=mailing.pk).update(categories=["offers", "news"])
    mailing.refresh_from_db()
    run = make_run(mailing, state=Run.State.PLANNING)
    with CaptureQueriesContext(connection) as ctx:
        run_plan(run_id=run.pk, now=NOW)
    assert outcome(Run.objects.get(pk=run.pk)) == {"opted_out": 300, "queued": 5}
    assert len(ctx.captured_queries) < 15
