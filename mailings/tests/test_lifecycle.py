"""The mailing lifecycle: validation, what stops a launch, every transition and refusal, runs per
slot, the schedule tick (two ticks make one run; one run per local day across DST)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from content.services import template_version_save
from mailings.models import FrequencyCap, LedgerEntry, Mailing, MailingStat, Run
from mailings.services import lifecycle
from mailings.services.errors import MailingError
from mailings.services.lifecycle import (
    mailing_cancel,
    mailing_create,
    mailing_delete,
    mailing_duplicate,
    mailing_launch,
    mailing_pause,
    mailing_problems,
    mailing_resume,
    mailing_update,
    mailings_tick,
    run_start,
)
from mailings.tests.factories import make_mailing, make_run, make_sender, make_template, queue_entries

NOW = datetime(2025, 3, 26, 9, 0, tzinfo=UTC)


def values(world, **over):
    return {"name": "Spring sale", "kind": "broadcast", "channel": "email", "resource": world.resource.pk,
            "sender": world.sender.pk, "template": world.template.pk, "schedule": {"mode": "now"}, **over}


# --- create / update ------------------------------------------------------------------------------


def test_it_creates_a_draft_and_audits_it(world):
    mailing = mailing_create(account=world.account, actor=world.actor,
                             values=values(world, categories=["news"], cap={"max_messages": 2, "days": 7, "scope": "profile"},
                                           send_window={"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "18:00"}))
    assert mailing.state == Mailing.State.DRAFT and mailing.database_id == world.database.pk
    assert mailing.send_window == {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "18:00", "tz": "recipient"}
    assert FrequencyCap.objects.get(mailing=mailing).max_messages == 2
    assert AuditEvent.objects.filter(verb="mailing.created", account=world.account).exists()


@pytest.mark.parametrize(("over", "field"), [
    ({"name": " "}, "name"),
    ({"channel": "telegram"}, "channel"),
    ({"channel": "sms", "sender": None}, None),
    ({"channel": "sms"}, "sender"),
    ({"categories": ["gossip"]}, "categories"),
    ({"schedule": {"mode": "soon"}}, "schedule"),
    ({"schedule": {"mode": "at", "at": "tomorrow"}}, "schedule"),
    ({"kind": "regular", "schedule": {"cron": "every day"}}, "schedule"),
    ({"kind": "regular", "schedule": {"every_hours": 0}}, "schedule"),
    ({"kind": "trigger", "trigger": {"on": "event", "event": "no_such_event"}}, "trigger"),
    ({"kind": "trigger", "trigger": {"on": "subscription", "delay_seconds": -5}}, "trigger"),
    ({"speed_limit": "fast"}, "speed_limit"),
    ({"send_window": {"days": [9], "start": "09:00", "end": "10:00"}}, "send_window"),
    ({"cap": {"max_messages": 20, "days": 7}}, "cap.max_messages"),
    ({"audience": "everyone"}, "audience"),
    ({"colour": "red"}, "colour"),
])
def test_it_refuses_bad_values_per_field(world, over, field):
    if field is None:
        assert mailing_create(account=world.account, actor=world.actor, values=values(world, **over)).channel == "sms"
        return
    with pytest.raises(MailingError) as exc:
        mailing_create(account=world.account, actor=world.actor, values=values(world, **over))
    assert field in exc.value.errors


def test_it_refuses_another_accounts_objects(world, other_world):
    for field, value in (("resource", other_world.resource.pk), ("sender", other_world.sender.pk),
                         ("template", other_world.template.pk)):
        with pytest.raises(MailingError) as exc:
            mailing_create(account=world.account, actor=world.actor, values=values(world, **{field: value}))
        assert field in exc.value.errors


def test_it_refuses_a_provider_of_another_account_or_channel_and_a_sender_off_email(world, other_world):
    from delivery.models import ProviderAccount

    theirs = ProviderAccount.objects.create(account=other_world.account, channel="email", kind="locmem", name="Theirs",
                                            secrets={})
    sms = ProviderAccount.objects.create(account=world.account, channel="sms", kind="locmem", name="SMS gateway",
                                         secrets={})
    for overrides, field, message in (
        ({"provider": theirs.pk}, "provider", "choose one of this account's provider accounts"),
        ({"provider": sms.pk}, "provider", "SMS gateway sends SMS, not email"),
        ({"channel": "sms", "sender": world.sender.pk}, "sender", "only e-mail has a sender"),
        ({"template": "nonsense"}, "template", "choose one of this account's templates"),
    ):
        with pytest.raises(MailingError) as exc:
            mailing_create(account=world.account, actor=world.actor, values=values(world, **overrides))
        assert exc.value.errors[field] == message


def test_it_accepts_a_trigger_on_a_system_event(world):
    mailing = mailing_create(account=world.account, actor=world.actor, values=values(
        world, kind="trigger", schedule={"mode": "now"},
        trigger={"on": "event", "event": "message.clicked", "filters": [{"property": "url", "op": "contains", "value": "sale"}],
                 "delay_seconds": "3600"}))
    assert mailing.trigger == {"on": "event", "event": "message.clicked", "delay_seconds": 3600,
                               "filters": [{"property": "url", "op": "contains", "value": "sale"}]}
    assert mailing.schedule == {}


def test_it_updates_only_the_given_fields(world, mailing):
    mailing_update(mailing=mailing, actor=world.actor, values={"name": "Summer sale", "track_opens": False})
    mailing.refresh_from_db()
    assert (mailing.name, mailing.track_opens, mailing.template_id) == ("Summer sale", False, world.template.pk)


def test_it_refuses_to_change_kind_channel_or_resource_after_launch(world, mailing):
    mailing_update(mailing=mailing, actor=world.actor, values={"schedule": {"mode": "at", "at": "2099-01-01T10:00:00+00:00"}})
    mailing_launch(mailing=mailing, actor=world.actor)
    with pytest.raises(MailingError) as exc:
        mailing_update(mailing=mailing, actor=world.actor, values={"channel": "sms", "sender": None})
    assert "channel" in exc.value.errors
    mailing_update(mailing=mailing, actor=world.actor, values={"schedule": {"mode": "at", "at": "2099-02-01T10:00:00+00:00"}})
    mailing.refresh_from_db()
    assert mailing.next_run_at == datetime(2099, 2, 1, 10, tzinfo=UTC)


# --- problems -------------------------------------------------------------------------------------


def test_it_lists_what_stops_a_launch(world, settings):
    template = make_template(world.account, world.database, name="No SMS", channels=["email"])
    mailing = make_mailing(world, channel="sms", template=template)
    assert "template" in mailing_problems(mailing)
    broken = make_template(world.account, world.database, name="No unsubscribe", channels=[],
                           email={"subject": "Hi", "html": "<p>Hi</p>"})
    template_version_save(template=broken, channel="email", data={"subject": "Hi", "html": "<p>Hi</p>"}, actor=world.actor)
    problems = mailing_problems(make_mailing(world, template=broken))
    assert "unsubscribe" in problems["template"]
    # A sender on an unverified domain may send only through a local backend.
    unverified = make_sender(world.account, domain="new.example", verified=False)
    assert mailing_problems(make_mailing(world, sender=unverified)) == {}
    settings.DELIVERY_BACKENDS = {"email": {"BACKEND": "delivery.backends.smtp.SmtpBackend",
                                            "OPTIONS": {"host": "127.0.0.1", "port": 2525}}}
    assert "sender" in mailing_problems(make_mailing(world, sender=unverified))
    assert mailing_problems(make_mailing(world, audience="segments")) == {"include_segments": "choose at least one segment"}
    past = make_mailing(world, schedule={"mode": "at", "at": "2020-01-01T10:00:00+00:00"})
    assert "schedule" in mailing_problems(past)


def test_it_refuses_a_launch_with_problems_and_changes_nothing(world):
    mailing = make_mailing(world, template=None)
    with pytest.raises(MailingError) as exc:
        mailing_launch(mailing=mailing, actor=world.actor)
    assert exc.value.errors == {"template": "choose a template"}
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.DRAFT and not Run.objects.exists()


# --- launch ---------------------------------------------------------------------------------------


def test_it_launches_now_with_a_frozen_version_and_plans_after_commit(world, mailing, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        mailing_launch(mailing=mailing, actor=world.actor)
    mailing.refresh_from_db()
    run = Run.objects.get(mailing=mailing)
    assert run.slot == "once" and run.version == world.version
    assert run.planned == 5 and run.state in (Run.State.SENDING, Run.State.DONE)
    assert mailing.state in (Mailing.State.SENDING, Mailing.State.DONE) and mailing.launched_at
    assert AuditEvent.objects.filter(verb="mailing.launched").exists()
    with pytest.raises(MailingError, match="draft"):
        mailing_launch(mailing=mailing, actor=world.actor)


def test_it_schedules_a_broadcast_at_a_time(world):
    mailing = make_mailing(world, schedule={"mode": "at", "at": "2025-03-27T10:00:00+00:00"})
    mailing_launch(mailing=mailing, actor=world.actor, now=NOW)
    assert mailing.refresh_from_db() is None and mailing.state == Mailing.State.SCHEDULED
    assert mailing.next_run_at == datetime(2025, 3, 27, 10, tzinfo=UTC)
    assert not Run.objects.exists()


def test_it_schedules_a_local_time_broadcast_when_the_first_timezone_gets_there(world):
    mailing = make_mailing(world, schedule={"mode": "local", "date": "2025-03-27", "time": "10:00"})
    mailing_launch(mailing=mailing, actor=world.actor, now=NOW)
    mailing.refresh_from_db()
    assert mailing.next_run_at == datetime(2025, 3, 26, 20, tzinfo=UTC)  # 10:00 at UTC+14


def test_it_schedules_a_regular_mailing_for_its_next_slot(world):
    mailing = make_mailing(world, kind="regular", schedule={"daily_at": "10:00"})
    mailing_launch(mailing=mailing, actor=world.actor, now=NOW)  # 10:00 Berlin (CET) = 09:00 UTC: just due
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SCHEDULED
    assert mailing.next_run_at == datetime(2025, 3, 27, 9, tzinfo=UTC)


def test_it_launches_a_trigger_mailing_listening_and_refreshes_the_caches(world, monkeypatch):
    calls = []
    monkeypatch.setattr("cdp.confcache.changed", lambda: calls.append(1))
    mailing = make_mailing(world, kind="trigger", schedule={}, trigger={"on": "api"})
    mailing_launch(mailing=mailing, actor=world.actor)
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SENDING and not Run.objects.exists()
    mailing_pause(mailing=mailing, actor=world.actor)
    assert len(calls) == 2


def test_it_makes_one_run_per_slot(world, mailing):
    assert run_start(mailing=mailing, slot="once", scheduled_for=NOW) is not None
    assert run_start(mailing=mailing, slot="once", scheduled_for=NOW) is None
    assert Run.objects.filter(mailing=mailing).count() == 1


def test_it_fails_a_run_whose_template_lost_its_channel_version(world):
    template = make_template(world.account, world.database, name="Email only", channels=["email"])
    mailing = make_mailing(world, channel="sms", template=template)
    run = run_start(mailing=mailing, slot="once", scheduled_for=NOW)
    assert run.state == Run.State.FAILED and "SMS" in run.error
    mailing.refresh_from_db()
    assert "SMS" in mailing.last_error


# --- pause / resume / cancel ----------------------------------------------------------------------


def test_it_pauses_and_resumes_with_its_runs(world, mailing, monkeypatch, django_capture_on_commit_callbacks):
    kicked = []
    monkeypatch.setattr("mailings.services.planning.kick", kicked.append)
    run = make_run(mailing)
    mailing_pause(mailing=mailing, actor=world.actor)
    mailing.refresh_from_db()
    run.refresh_from_db()
    assert mailing.state == Mailing.State.PAUSED and run.state == Run.State.PAUSED
    with pytest.raises(MailingError, match="sending"):
        mailing_pause(mailing=mailing, actor=world.actor)
    with django_capture_on_commit_callbacks(execute=True):
        mailing_resume(mailing=mailing, actor=world.actor)
    mailing.refresh_from_db()
    run.refresh_from_db()
    assert mailing.state == Mailing.State.SENDING and run.state == Run.State.SENDING
    assert kicked == [run.pk]
    with pytest.raises(MailingError, match="paused"):
        mailing_resume(mailing=mailing, actor=world.actor)
    assert AuditEvent.objects.filter(verb__in=["mailing.paused", "mailing.resumed"]).count() == 2


def test_it_refuses_to_pause_a_draft(world, mailing):
    with pytest.raises(MailingError, match="draft"):
        mailing_pause(mailing=mailing, actor=world.actor)


def test_a_resumed_regular_mailing_waits_for_its_next_slot(world):
    mailing = make_mailing(world, kind="regular", schedule={"daily_at": "10:00"})
    mailing_launch(mailing=mailing, actor=world.actor, now=NOW)
    mailing_pause(mailing=mailing, actor=world.actor)
    later = NOW + timedelta(days=3, hours=2)
    mailing_resume(mailing=mailing, actor=world.actor, now=later)
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SCHEDULED
    assert mailing.next_run_at == datetime(2025, 3, 30, 8, tzinfo=UTC)  # 10:00 CEST, the next day's slot


def test_it_cancels_queued_rows_in_one_update_with_their_counters(world, mailing, django_assert_max_num_queries):
    run = make_run(mailing)
    rows = queue_entries(run)
    LedgerEntry.objects.filter(pk=rows[0].pk).update(status="sent")
    mailing_cancel(mailing=mailing, actor=world.actor)
    assert set(LedgerEntry.objects.filter(run=run).values_list("status", "reason")) == {
        ("sent", ""), ("skipped", "cancelled")}
    stats = dict(MailingStat.objects.filter(run_id=run.pk).values_list("metric", "delta"))
    assert stats["skipped:cancelled"] == 4 and stats["skipped"] == 4
    run.refresh_from_db()
    mailing.refresh_from_db()
    assert run.state == Run.State.CANCELLED and mailing.state == Mailing.State.CANCELLED and mailing.finished_at
    for action in (mailing_cancel, mailing_pause, mailing_resume):
        with pytest.raises(MailingError):
            action(mailing=mailing, actor=world.actor)
    with pytest.raises(MailingError):
        mailing_update(mailing=mailing, actor=world.actor, values={"name": "x"})


def test_it_refuses_to_cancel_a_draft(world, mailing):
    with pytest.raises(MailingError):
        mailing_cancel(mailing=mailing, actor=world.actor)


# --- duplicate / delete ---------------------------------------------------------------------------


def test_it_duplicates_a_mailing_as_a_draft(world, mailing):
    lifecycle.cap_set(account=world.account, actor=world.actor, mailing=mailing, max_messages=2, days=3)
    make_run(mailing)
    copy = mailing_duplicate(mailing=mailing, actor=world.actor)
    assert copy.pk != mailing.pk and copy.state == Mailing.State.DRAFT and copy.name == "Copy of Spring sale"
    assert copy.template_id == mailing.template_id and FrequencyCap.objects.get(mailing=copy).max_messages == 2
    assert not Run.objects.filter(mailing=copy).exists()


def test_it_deletes_drafts_and_finished_mailings_only(world, mailing):
    run = make_run(mailing)
    queue_entries(run)
    with pytest.raises(MailingError, match="cancel"):
        mailing_delete(mailing=mailing, actor=world.actor)
    mailing_cancel(mailing=mailing, actor=world.actor)
    mailing_delete(mailing=mailing, actor=world.actor)
    assert not Mailing.objects.filter(pk=mailing.pk).exists()
    assert not LedgerEntry.objects.filter(mailing_id=mailing.pk).exists()
    assert not MailingStat.objects.filter(mailing_id=mailing.pk).exists()
    assert AuditEvent.objects.filter(verb="mailing.deleted").exists()


# --- the tick -------------------------------------------------------------------------------------


def test_two_ticks_start_one_run(world):
    mailing = make_mailing(world, schedule={"mode": "at", "at": "2025-03-26T10:00:00+00:00"})
    mailing_launch(mailing=mailing, actor=world.actor, now=NOW)
    assert mailings_tick(now=NOW + timedelta(minutes=59)) == 0
    assert mailings_tick(now=NOW + timedelta(hours=1)) == 1
    assert mailings_tick(now=NOW + timedelta(hours=1)) == 0
    mailing.refresh_from_db()
    run = Run.objects.get(mailing=mailing)
    assert (run.slot, run.state, run.scheduled_for) == ("once", Run.State.PLANNING, datetime(2025, 3, 26, 10, tzinfo=UTC))
    assert mailing.state == Mailing.State.SENDING and mailing.next_run_at is None


def test_a_tick_does_not_start_a_paused_mailing(world):
    mailing = make_mailing(world, schedule={"mode": "at", "at": "2025-03-26T10:00:00+00:00"})
    mailing_launch(mailing=mailing, actor=world.actor, now=NOW)
    mailing_pause(mailing=mailing, actor=world.actor)
    assert mailings_tick(now=NOW + timedelta(hours=2)) == 0


def test_a_regular_mailing_runs_once_per_local_day_across_the_spring_change(world):
    # Europe/Berlin skips 02:00-03:00 on 30 March 2025: the 02:30 slot that day runs at 03:00 CEST.
    mailing = make_mailing(world, kind="regular", schedule={"daily_at": "02:30"})
    start = datetime(2025, 3, 28, 12, tzinfo=UTC)
    mailing_launch(mailing=mailing, actor=world.actor, now=start)
    t = start
    while t < datetime(2025, 4, 1, 12, tzinfo=UTC):
        mailings_tick(now=t)
        mailings_tick(now=t)  # a second scheduler ticking the same instant
        t += timedelta(minutes=20)
    runs = list(Run.objects.filter(mailing=mailing).order_by("scheduled_for").values_list("slot", "scheduled_for"))
    assert runs == [
        ("2025-03-29T02:30", datetime(2025, 3, 29, 1, 30, tzinfo=UTC)),
        ("2025-03-30T02:30", datetime(2025, 3, 30, 1, 0, tzinfo=UTC)),
        ("2025-03-31T02:30", datetime(2025, 3, 31, 0, 30, tzinfo=UTC)),
        ("2025-04-01T02:30", datetime(2025, 4, 1, 0, 30, tzinfo=UTC)),
    ]
    mailing.refresh_from_db()
    assert mailing.next_run_at == datetime(2025, 4, 2, 0, 30, tzinfo=UTC)


def test_a_late_tick_starts_only_the_latest_missed_slot(world):
    mailing = make_mailing(world, kind="regular", schedule={"every_hours": 1})
    mailing_launch(mailing=mailing, actor=world.actor, now=NOW)
    assert mailings_tick(now=NOW + timedelta(hours=5, minutes=10)) == 1
    assert Run.objects.get(mailing=mailing).scheduled_for == NOW + timedelta(hours=5)
    mailing.refresh_from_db()
    assert mailing.next_run_at == NOW + timedelta(hours=6)


def test_the_tick_republishes_runs_stuck_in_planning(world, mailing, monkeypatch):
    published = []
    monkeypatch.setattr(lifecycle, "publish_on_commit", lambda task, *args: published.append((task.name, args)))
    run = make_run(mailing, state=Run.State.PLANNING)
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    fresh = make_run(make_mailing(world, name="Fresh"), state=Run.State.PLANNING)
    mailings_tick()
    assert [args for _, args in published] == [(run.pk,)]
    assert fresh.pk not in [args[0] for _, args in published]
