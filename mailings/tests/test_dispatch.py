"""The dispatch: handing out, claiming, consent at claim time, throttling, sending on one backend,
outcomes, counters, finishing runs (mailings.services.dispatch). Locmem backend from the root
conftest, and once over real SMTP (aiosmtpd) with DKIM."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta
from email import message_from_bytes

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from delivery.backends import locmem
from history.models import Event
from mailings.models import LedgerEntry, Mailing, MailingStat, Run
from mailings.services import dispatch
from mailings.services.dispatch import common as dispatch_common
from mailings.tests.factories import add_subscribers, make_mailing, make_run, make_template, queue_entries
from mailings.throttle import Throttle
from resources.models import Subscription, Suppression

Status = LedgerEntry.Status


@pytest.fixture(autouse=True)
def _local_throttle(monkeypatch) -> Throttle:
    """A fresh in-process throttle per test: buckets and back-offs never leak between tests."""
    throttle = Throttle(None)
    monkeypatch.setattr(dispatch_common, "get_throttle", lambda: throttle)
    return throttle


def stats(mailing: Mailing) -> dict[str, int]:
    rows = MailingStat.objects.filter(mailing_id=mailing.pk).values("metric").annotate(n=Sum("delta"))
    return {r["metric"]: r["n"] for r in rows if r["n"]}


def statuses(run: Run) -> dict[str, int]:
    out: dict[str, int] = {}
    for status in LedgerEntry.objects.filter(run=run).values_list("status", flat=True):
        out[status] = out.get(status, 0) + 1
    return out


def html_of(raw: bytes) -> str:
    message = message_from_bytes(raw)
    for part in message.walk():
        if part.get_content_type() == "text/html":
            return part.get_payload(decode=True).decode()
    return ""


def ids_of(run: Run) -> list[int]:
    return list(LedgerEntry.objects.filter(run=run).order_by("id").values_list("id", flat=True))


@pytest.fixture
def run(mailing) -> Run:
    run = make_run(mailing)
    queue_entries(run)
    return run


def test_it_sends_every_queued_row_once(run, mailing, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        handed = dispatch.run_kick(run_id=run.pk)
    assert handed == 5
    assert sorted(m.to for m in locmem.outbox) == [f"person{i}@example.com" for i in range(5)]
    rows = list(LedgerEntry.objects.filter(run=run))
    assert {r.status for r in rows} == {Status.SENT}
    assert all(r.sent_at and r.message_id.startswith(f"<L{r.pk}.") and r.attempts == 1 for r in rows)
    assert all(r.lease_until is None and r.wire_at is not None for r in rows)
    sent = Event.objects.filter(mailing_id=mailing.pk, type_id=1)
    assert sent.count() == 5
    assert {e.ledger_id for e in sent} == {r.pk for r in rows}
    assert {e.idempotency_key for e in sent} == {f"ledger:{r.pk}:sent" for r in rows}
    assert sent.first().properties["subject"].startswith("News for P")
    assert stats(mailing) == {"sent": 5}
    # The run drained: it and the broadcast are done.
    run.refresh_from_db()
    mailing.refresh_from_db()
    assert run.state == Run.State.DONE and run.finished_at
    assert mailing.state == Mailing.State.DONE
    # A second kick hands nothing out.
    assert dispatch.run_kick(run_id=run.pk) == 0


def test_a_kick_hands_out_slice_by_slice_and_publishes_each_slice_before_the_next(run, monkeypatch):
    """A big kick's first batches go out while the rest are still being handed out: one
    hand-out statement per KICK_SLICE rows, each above the last slice's ids."""
    from mailings.services.dispatch import common

    monkeypatch.setattr("mailings.services.dispatch.KICK_SLICE", 2)
    monkeypatch.setattr("mailings.services.dispatch.BATCH_SIZE", 1)
    steps = []
    real = common.handout

    def handout(run_id, now, limit, ids=None, after=None):
        got = real(run_id, now, limit, ids, after=after)
        steps.append(("handout", limit, after, got))
        return got

    monkeypatch.setattr("mailings.services.dispatch.handout", handout)
    monkeypatch.setattr("mailings.services.dispatch.publish_on_commit",
                        lambda task, *args: steps.append(("publish", task.name, args[1])))
    ids = ids_of(run)

    assert dispatch.run_kick(run_id=run.pk) == 5

    bulk = "mailings.tasks.batch_send_bulk_task"
    assert steps == [
        ("handout", 2, None, ids[0:2]), ("publish", bulk, ids[0:1]), ("publish", bulk, ids[1:2]),
        ("handout", 2, ids[1], ids[2:4]), ("publish", bulk, ids[2:3]), ("publish", bulk, ids[3:4]),
        ("handout", 2, ids[3], ids[4:5]), ("publish", bulk, ids[4:5]),
    ]
    assert LedgerEntry.objects.filter(run=run, lease_until__isnull=True).count() == 0
    steps.clear()
    assert dispatch.run_kick(run_id=run.pk) == 0  # all leased: nothing twice
    assert steps == [("handout", 2, None, [])]


def test_it_builds_personal_tracked_signed_messages(run, mailing):
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    message = next(m for m in locmem.outbox if m.to == "person0@example.com")
    raw = message.raw.decode()
    assert raw.startswith("DKIM-Signature:")
    assert "Subject: News for P0" in raw
    assert "List-Unsubscribe: <http" in raw and "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    html = html_of(message.raw)
    assert "/t/o/" in html  # the open pixel
    assert "https://shop.example/sale" not in html and "/t/c/" in html  # the link goes through the click route
    row = LedgerEntry.objects.get(run=run, address="person0@example.com")
    assert message.ref == f"L{row.pk}"
    assert message.envelope_from.startswith("b+") or f"L{row.pk}" in message.envelope_from or "@" in message.envelope_from


def test_it_leaves_links_and_pixel_alone_when_tracking_is_off(world):
    mailing = make_mailing(world, track_opens=False, track_clicks=False)
    run = make_run(mailing)
    queue_entries(run)
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    html = html_of(locmem.outbox[0].raw)
    assert "/t/o/" not in html
    assert "/t/c/" not in html and "https://shop.example/sale" in html


def test_it_rechecks_consent_at_claim_time(world, run, mailing):
    subs = {s.address: s for s in Subscription.objects.filter(resource=world.resource, channel="email")}
    Subscription.objects.filter(pk=subs["person0@example.com"].pk).update(status="unsubscribed")
    Suppression.objects.create(account=world.account, kind="email", value="person1@example.com")
    Subscription.objects.filter(pk=subs["person2@example.com"].pk).update(opted_out=["news"])
    from profiles.models import Profile

    Profile.objects.filter(pk=subs["person3@example.com"].profile_id).delete()  # erased after planning
    Mailing.objects.filter(pk=mailing.pk).update(categories=["news"])

    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))

    assert result["skipped"] == 4 and result["sent"] == 1
    assert [m.to for m in locmem.outbox] == ["person4@example.com"]
    reasons = dict(LedgerEntry.objects.filter(run=run).values_list("address", "reason"))
    assert reasons == {"person0@example.com": "unsubscribed", "person1@example.com": "suppressed",
                       "person2@example.com": "opted_out", "person3@example.com": "erased",
                       "person4@example.com": ""}
    assert stats(mailing) == {"sent": 1, "skipped": 4, "skipped:unsubscribed": 1, "skipped:suppressed": 1,
                              "skipped:opted_out": 1, "skipped:erased": 1}


def test_it_skips_a_suppressed_domain(world, run):
    Suppression.objects.create(account=world.account, kind="domain", value="example.com")
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert not locmem.outbox
    assert set(LedgerEntry.objects.filter(run=run).values_list("reason", flat=True)) == {"suppressed"}


def test_it_sends_nothing_twice_when_a_batch_runs_twice(run, mailing):
    ids = ids_of(run)
    first = dispatch.batch_send(run_id=run.pk, ids=ids)
    second = dispatch.batch_send(run_id=run.pk, ids=ids)
    assert first["sent"] == 5 and second == {"claimed": 0}
    assert len(locmem.outbox) == 5
    assert Event.objects.filter(mailing_id=mailing.pk, type_id=1).count() == 5
    assert stats(mailing)["sent"] == 5


def test_it_claims_nothing_while_the_mailing_is_paused(run, mailing):
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.PAUSED)
    Run.objects.filter(pk=run.pk).update(state=Run.State.PAUSED)
    assert dispatch.batch_send(run_id=run.pk, ids=ids_of(run)) == {"claimed": 0}
    assert dispatch.run_kick(run_id=run.pk) == 0
    assert statuses(run) == {"queued": 5}
    assert not locmem.outbox


def test_a_resumed_mailing_sends_the_rows_refused_while_paused_at_once(run, mailing,
                                                                       django_capture_on_commit_callbacks):
    now = timezone.now()
    ids = dispatch.handout(run.pk, now, 100)  # handed out just before the pause
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.PAUSED)
    Run.objects.filter(pk=run.pk).update(state=Run.State.PAUSED)
    assert dispatch.batch_send(run_id=run.pk, ids=ids) == {"claimed": 0}  # the task runs meanwhile
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.SENDING)
    Run.objects.filter(pk=run.pk).update(state=Run.State.SENDING)
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.run_kick(run_id=run.pk) == 5
    assert statuses(run) == {"sent": 5}


def test_it_claims_nothing_for_a_run_of_a_cancelled_mailing(run, mailing):
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.CANCELLED)
    assert dispatch.batch_send(run_id=run.pk, ids=ids_of(run)) == {"claimed": 0}
    assert statuses(run) == {"queued": 5}


def test_it_does_not_claim_rows_that_are_not_due(run):
    later = timezone.now() + timedelta(hours=1)
    LedgerEntry.objects.filter(run=run, address="person0@example.com").update(not_before=later)
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["claimed"] == 4
    assert LedgerEntry.objects.get(run=run, address="person0@example.com").status == Status.QUEUED


def test_it_fails_a_permanent_rejection_as_a_hard_bounce(run, mailing, monkeypatch):
    applied = []
    from mailings.services import feedback

    monkeypatch.setattr(feedback, "sync_failures_apply", lambda *, rows: applied.extend(rows), raising=False)
    locmem.fail("person1@example.com", "550 5.1.1 <person1@example.com>: user unknown", permanent=True)
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["sent"] == 4 and result["failed"] == 1
    row = LedgerEntry.objects.get(run=run, address="person1@example.com")
    assert (row.status, row.reason, row.attempts) == (Status.FAILED, "hard_bounce", 1)
    assert row.detail.startswith("550 5.1.1")
    assert applied == [(row.pk, 550, row.detail, True, False)]
    assert stats(mailing) == {"sent": 4, "failed": 1, "failed:hard_bounce": 1}


def test_it_fails_a_dead_push_token_as_invalid_and_reports_it(run, monkeypatch):
    applied = []
    from mailings.services import feedback

    monkeypatch.setattr(feedback, "sync_failures_apply", lambda *, rows: applied.extend(rows), raising=False)
    locmem.fail("person2@example.com", "410 gone", permanent=True, deactivate=True)
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    row = LedgerEntry.objects.get(run=run, address="person2@example.com")
    assert (row.status, row.reason) == (Status.FAILED, "invalid")
    assert applied == [(row.pk, 410, "410 gone", True, True)]


def test_it_requeues_a_temporary_failure_with_backoff_and_other_domains_go_on(world, mailing, _local_throttle):
    add_subscribers(world.resource, 2, start=100, domain="slow.example")
    run = make_run(mailing)
    queue_entries(run)
    locmem.fail("person100@slow.example", "451 4.7.1 Try again later")
    before = timezone.now()
    first = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    # person100 was tried (an attempt, back-off of its domain); person101 of the same domain went
    # in the same chunk (sent): the block applies to the chunks after it.
    row = LedgerEntry.objects.get(run=run, address="person100@slow.example")
    assert (row.status, row.attempts, row.reason) == (Status.QUEUED, 1, "")
    assert row.not_before >= before + timedelta(seconds=29)
    assert row.detail.startswith("451")
    assert row.lease_until is None and row.wire_at is None
    assert first["queued"] == 1 and first["sent"] == 6
    assert _local_throttle.blocked_for("domain:settings:slow.example") > 0

    # Another row for the blocked domain is deferred without an attempt; others are sent.
    add_subscribers(world.resource, 1, start=200, domain="slow.example")
    add_subscribers(world.resource, 1, start=300, domain="fast.example")
    new = Subscription.objects.filter(resource=world.resource, channel="email",
                                      address__in=["person200@slow.example", "person300@fast.example"])
    queue_entries(run, subscriptions=new)
    second = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    deferred = LedgerEntry.objects.get(run=run, address="person200@slow.example")
    assert (deferred.status, deferred.attempts, deferred.detail) == (Status.QUEUED, 0, "throttled")
    assert deferred.not_before > timezone.now()
    assert LedgerEntry.objects.get(run=run, address="person300@fast.example").status == Status.SENT
    assert second["deferred"] == 1 and second["sent"] == 1
    assert stats(mailing) == {"sent": 7}


def test_it_fails_a_temporary_failure_once_attempts_are_used_up(run, mailing):
    LedgerEntry.objects.filter(run=run, address="person3@example.com").update(attempts=dispatch.MAX_ATTEMPTS - 1)
    locmem.fail("person3@example.com", "452 4.2.2 mailbox full")
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    row = LedgerEntry.objects.get(run=run, address="person3@example.com")
    assert (row.status, row.reason, row.attempts) == (Status.FAILED, "soft_bounce", dispatch.MAX_ATTEMPTS)
    assert stats(mailing)["failed:soft_bounce"] == 1


def test_it_backs_the_provider_off_on_retry_after(run, _local_throttle):
    locmem.fail("person0@example.com", "429 Too Many Requests", retry_after=120)
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    row = LedgerEntry.objects.get(run=run, address="person0@example.com")
    assert row.status == Status.QUEUED
    assert row.not_before >= timezone.now() + timedelta(seconds=110)
    assert _local_throttle.blocked_for("provider:settings:email") > 110


def test_it_marks_a_message_ambiguous_when_the_connection_dropped_after_data(run, mailing):
    locmem.fail("person4@example.com", "Connection lost after the message was sent", ambiguous=True)
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    row = LedgerEntry.objects.get(run=run, address="person4@example.com")
    assert (row.status, row.reason) == (Status.AMBIGUOUS, "connection_lost")
    assert stats(mailing) == {"sent": 4, "ambiguous": 1}


def test_it_fails_rows_whose_template_does_not_render(world):
    template = make_template(world.account, world.database, name="Broken", channels=["email"],
                             email={"subject": "Hi {{ profile.first_name.nope() }}", "html": "<p>x</p>"})
    mailing = make_mailing(world, template=template)
    run = make_run(mailing)
    queue_entries(run)
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["failed"] == 5
    row = LedgerEntry.objects.filter(run=run).first()
    assert (row.status, row.reason) == (Status.FAILED, "render_error")
    assert "subject" in row.detail
    assert not locmem.outbox


def test_it_renders_the_runs_frozen_version(world, run):
    from content.services import template_version_save
    from mailings.tests.factories import SYSTEM

    template_version_save(template=world.template, channel="email", actor=SYSTEM,
                          data={"subject": "Changed mid-run", "html": "<p>new</p>", "preheader": "", "text": ""})
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert all("Subject: News for P" in m.raw.decode() for m in locmem.outbox)


def test_it_gives_trigger_rows_their_data(world):
    template = make_template(world.account, world.database, name="Order", channels=["email"], kind="transactional",
                             email={"subject": "Order {{ data.order.number }}", "html": "<p>{{ data.order.total }}</p>"})
    mailing = make_mailing(world, kind=Mailing.Kind.TRIGGER, transactional=True, template=template,
                           trigger={"on": "api"})
    run = make_run(mailing, slot=f"day:{timezone.now().date().isoformat()}")
    sub = Subscription.objects.filter(resource=world.resource, channel="email").order_by("id")[0]
    LedgerEntry.objects.create(account_id=world.account.pk, mailing_id=mailing.pk, run=run, subscription_id=sub.pk,
                               profile_id=sub.profile_id, channel="email", address=sub.address,
                               trigger_key="api:k1", data={"order": {"number": "A-17", "total": "12.50"}})
    row = LedgerEntry.objects.get(run=run)
    handed = dispatch.entries_send_now(entries=[row.pk], run_id=run.pk, inline=True)
    assert handed == 1
    raw = locmem.outbox[0].raw.decode()
    assert "Subject: Order A-17" in raw
    assert "List-Unsubscribe" not in raw  # transactional
    row.refresh_from_db()
    assert row.status == Status.SENT
    # The trigger's day run stays open for more events.
    run.refresh_from_db()
    assert run.state == Run.State.SENDING


def test_it_publishes_trigger_rows_to_the_trigger_queue(world, monkeypatch):
    from mailings.services.dispatch import __init__ as _  # noqa: F401
    published = []
    monkeypatch.setattr("mailings.services.dispatch.publish_on_commit", lambda task, *args: published.append((task.name, args)))
    mailing = make_mailing(world, kind=Mailing.Kind.TRIGGER, trigger={"on": "api"})
    run = make_run(mailing, slot=f"day:{timezone.now().date().isoformat()}")
    queue_entries(run)
    ids = ids_of(run)
    assert dispatch.entries_send_now(entries=ids[:2], run_id=run.pk) == 2
    assert published == [("mailings.tasks.batch_send_trigger_task", (run.pk, ids[:2]))]
    # Handed out: a kick now leaves them alone and hands out the other three.
    published.clear()
    assert dispatch.run_kick(run_id=run.pk) == 3
    assert published == [("mailings.tasks.batch_send_trigger_task", (run.pk, ids[2:]))]


def test_it_publishes_a_crowd_of_trigger_rows_to_the_bulk_queue(world, monkeypatch):
    """More than URGENT_ROWS rows at once (a scenario step moving a batch of profiles, a bulk API
    call) are bulk work: on the trigger queue they would hold up every single event's message."""
    from mailings.services.dispatch.common import URGENT_ROWS

    published = []
    monkeypatch.setattr("mailings.services.dispatch.publish_on_commit", lambda task, *args: published.append((task.name, args)))
    monkeypatch.setattr("mailings.services.dispatch.common.URGENT_ROWS", 3)
    mailing = make_mailing(world, kind=Mailing.Kind.TRIGGER, trigger={"on": "api"})
    run = make_run(mailing, slot=f"day:{timezone.now().date().isoformat()}")
    queue_entries(run)
    ids = ids_of(run)
    assert dispatch.entries_send_now(entries=ids[:4], run_id=run.pk) == 4
    assert published == [("mailings.tasks.batch_send_bulk_task", (run.pk, ids[:4]))]
    published.clear()
    assert dispatch.run_kick(run_id=run.pk) == 1  # the one left is urgent again
    assert published == [("mailings.tasks.batch_send_trigger_task", (run.pk, ids[4:]))]
    assert URGENT_ROWS == 50


def test_it_sends_a_confirmation_to_an_unconfirmed_address_with_its_link(world):
    template = make_template(world.account, world.database, name="Confirm", channels=["email"], kind="transactional",
                             email={"subject": "Confirm", "html": '<p><a href="{{ links.confirm }}">Yes</a></p>'})
    mailing = make_mailing(world, kind=Mailing.Kind.TRIGGER, transactional=True, template=template,
                           trigger={"on": "confirmation"})
    Subscription.objects.filter(resource=world.resource).update(status="unconfirmed")
    run = make_run(mailing, slot=f"day:{timezone.now().date().isoformat()}")
    queue_entries(run)
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["sent"] == 5
    from resources.tokens import confirmation_url

    sub = Subscription.objects.get(resource=world.resource, channel="email", address=locmem.outbox[0].to)
    link = confirmation_url(sub)
    assert link.rsplit(":", 2)[0] in html_of(locmem.outbox[0].raw)  # the same signed value (the timestamp may differ)


def test_it_skips_unconfirmed_addresses_for_other_mailings(world, run):
    Subscription.objects.filter(resource=world.resource).update(status="unconfirmed")
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert set(LedgerEntry.objects.filter(run=run).values_list("reason", flat=True)) == {"unconfirmed"}


def test_it_sends_sms(world):
    mailing = make_mailing(world, channel="sms")
    run = make_run(mailing)
    queue_entries(run)
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["sent"] == 5
    assert locmem.outbox[0].channel == "sms"
    assert locmem.outbox[0].payload["text"].startswith("Hi P")


def test_it_skips_rows_without_a_usable_sender(world):
    from delivery.models import SendingDomain

    SendingDomain.objects.filter(account=world.account).update(status=SendingDomain.Status.PENDING)
    mailing = make_mailing(world)
    run = make_run(mailing)
    queue_entries(run)
    from django.test import override_settings

    smtp = {"BACKEND": "delivery.backends.smtp.SmtpBackend", "OPTIONS": {"host": "127.0.0.1", "port": 1, "tls": "none"}}
    with override_settings(DELIVERY_BACKENDS={"email": smtp}):
        dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    row = LedgerEntry.objects.filter(run=run).first()
    assert (row.status, row.reason) == (Status.SKIPPED, "no_sender")
    assert "not verified" in row.detail


def test_it_requeues_the_batch_when_the_provider_cannot_be_reached(run, _local_throttle):
    from delivery.backends.base import DeliveryError

    locmem.open_error = DeliveryError("Cannot connect to smtp:25")
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["queued"] == 5
    assert statuses(run) == {"queued": 5}
    assert set(LedgerEntry.objects.filter(run=run).values_list("attempts", flat=True)) == {1}
    assert _local_throttle.blocked_for("provider:settings:email") > 0


def test_it_fails_the_batch_when_the_provider_refuses_for_good(run):
    from delivery.backends.base import DeliveryError

    locmem.open_error = DeliveryError("Login refused", permanent=True)
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert set(LedgerEntry.objects.filter(run=run).values_list("status", "reason")) == {(Status.FAILED, "provider")}


def test_it_releases_unsent_rows_when_the_batch_crashes(run, monkeypatch):
    from mailings.services.dispatch import batch as batch_module

    def boom(self, row):
        raise RuntimeError("bug")

    monkeypatch.setattr(batch_module.Builder, "build", boom)
    with pytest.raises(RuntimeError):
        dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert statuses(run) == {"queued": 5}
    assert set(LedgerEntry.objects.filter(run=run).values_list("attempts", flat=True)) == {0}


def test_it_honours_the_mailings_speed_limit(world, monkeypatch):
    monkeypatch.setattr(dispatch_common, "MAX_SLEEP", 0.0)
    from mailings.services.dispatch import batch as batch_module

    monkeypatch.setattr(batch_module, "MAX_SLEEP", 0.0)
    mailing = make_mailing(world, speed_limit=120)  # 2 a second, 2 saved up
    run = make_run(mailing)
    queue_entries(run)
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["sent"] == 2 and result["deferred"] == 3
    deferred = LedgerEntry.objects.filter(run=run, status=Status.QUEUED)
    assert {r.attempts for r in deferred} == {0}
    assert all(r.not_before > timezone.now() for r in deferred)


def test_it_keeps_stats_equal_to_ledger_counts(world, mailing, monkeypatch):
    from mailings.services import feedback

    monkeypatch.setattr(feedback, "sync_failures_apply", lambda *, rows: None, raising=False)
    add_subscribers(world.resource, 20, start=10)
    run = make_run(mailing)
    queue_entries(run)
    Subscription.objects.filter(address="person11@example.com").update(status="unsubscribed")
    locmem.fail("person12@example.com", "550 no such user", permanent=True)
    locmem.fail("person13@example.com", "lost", ambiguous=True)
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    figures = stats(mailing)
    counts = statuses(run)
    for status in ("sent", "failed", "skipped", "ambiguous"):
        assert figures.get(status, 0) == counts.get(status, 0)
    assert sum(counts.values()) == run.planned == 25


def test_it_needs_the_same_number_of_queries_for_a_bigger_batch(world, mailing):
    add_subscribers(world.resource, 45, start=10)
    small_run = make_run(mailing, slot="small")
    big_run = make_run(mailing, slot="big")
    make_run(mailing, slot="other")  # still sending: both runs finish the same way (the mailing stays)
    subs = list(Subscription.objects.filter(resource=world.resource, channel="email").order_by("id"))
    queue_entries(small_run, subscriptions=subs[:3])
    queue_entries(big_run, subscriptions=subs)
    small_ids, big_ids = ids_of(small_run), ids_of(big_run)
    dispatch.batch_send(run_id=small_run.pk, ids=small_ids[:1])  # warm the per-worker caches
    with CaptureQueriesContext(connection) as small:
        dispatch.batch_send(run_id=small_run.pk, ids=small_ids[1:])
    with CaptureQueriesContext(connection) as big:
        result = dispatch.batch_send(run_id=big_run.pk, ids=big_ids)
    assert result["sent"] == 50
    assert len(big) == len(small), [q["sql"][:80] for q in big.captured_queries]


def test_it_finishes_a_regular_mailing_run_back_to_scheduled(world):
    mailing = make_mailing(world, kind=Mailing.Kind.REGULAR, schedule={"every": "day", "time": "10:00"},
                           next_run_at=timezone.now() + timedelta(days=1))
    run = make_run(mailing, slot="2026-01-01T09:00:00Z")
    queue_entries(run)
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    run.refresh_from_db()
    mailing.refresh_from_db()
    assert run.state == Run.State.DONE
    assert mailing.state == Mailing.State.SCHEDULED


def test_the_tick_hands_out_rows_once_they_are_due_and_finishes_the_run(run, mailing,
                                                                          django_capture_on_commit_callbacks):
    soon = timezone.now() + timedelta(minutes=5)
    LedgerEntry.objects.filter(run=run).update(not_before=soon)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch_tick()
    assert statuses(run) == {"queued": 5}
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch_tick(now=soon + timedelta(seconds=1))
    # The batch task claims with the real clock: the rows are not due yet for it.
    assert statuses(run) == {"queued": 5}
    LedgerEntry.objects.filter(run=run).update(not_before=timezone.now() - timedelta(seconds=1), lease_until=None)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.dispatch_tick()
    assert statuses(run) == {"sent": 5}
    run.refresh_from_db()
    assert run.state == Run.State.DONE


def test_the_tick_finishes_an_empty_run_and_a_past_trigger_day(world):
    broadcast = make_mailing(world)
    empty = make_run(broadcast)
    trigger = make_mailing(world, kind=Mailing.Kind.TRIGGER, trigger={"on": "api"})
    # Noon: a trigger day's run stays open until ten minutes past its midnight (late rows), so a
    # tick in the first ten minutes of a day would rightly keep yesterday's open.
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = make_run(trigger, slot=f"day:{(noon - timedelta(days=1)).date().isoformat()}")
    today = make_run(trigger, slot=f"day:{noon.date().isoformat()}")
    dispatch.dispatch_tick(now=noon)
    for run, state in ((empty, Run.State.DONE), (yesterday, Run.State.DONE), (today, Run.State.SENDING)):
        run.refresh_from_db()
        assert run.state == state
    broadcast.refresh_from_db()
    trigger.refresh_from_db()
    assert broadcast.state == Mailing.State.DONE
    assert trigger.state == Mailing.State.SENDING


def test_it_sends_over_real_smtp_with_dkim(world, smtp_server, settings):
    settings.DELIVERY_BACKENDS = {"email": {"BACKEND": "delivery.backends.smtp.SmtpBackend", "OPTIONS": {
        "host": smtp_server.host, "port": smtp_server.port, "tls": "none", "timeout": 10}}}
    mailing = make_mailing(world)
    run = make_run(mailing)
    queue_entries(run)
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["sent"] == 5
    messages = smtp_server.wait_for(5)
    assert sorted(m["To"] for m in messages) == [f"person{i}@example.com" for i in range(5)]
    assert all(m["DKIM-Signature"] and "d=shop.example" in m["DKIM-Signature"] for m in messages)
    rows = {r.address: r for r in LedgerEntry.objects.filter(run=run)}
    for m in messages:
        assert m["Message-ID"] == rows[m["To"]].message_id
    envelope_from, rcpts = smtp_server.envelopes[0]
    assert envelope_from.endswith("shop.example") and len(rcpts) == 1


def test_it_honours_the_providers_rate_across_workers(run, settings, monkeypatch):
    from mailings.services.dispatch import batch as batch_module

    monkeypatch.setattr(batch_module, "MAX_SLEEP", 0.0)
    settings.DELIVERY_BACKENDS = {"email": {"BACKEND": "delivery.backends.locmem.LocmemBackend",
                                            "OPTIONS": {"rate_per_second": 1}}}
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["sent"] == 2 and result["deferred"] == 3  # burst: two seconds' worth


def test_it_does_not_send_a_row_the_sweeper_took_meanwhile(run, monkeypatch):
    from mailings.services.dispatch import batch as batch_module

    real = batch_module.stamp

    def sweeper_first(chunk, remaining, now, **kw):
        LedgerEntry.objects.filter(pk=chunk[0].id).update(status=Status.AMBIGUOUS, reason="connection_lost")
        return real(chunk, remaining, now, **kw)

    monkeypatch.setattr(batch_module, "stamp", sweeper_first)
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["sent"] == 4
    assert len(locmem.outbox) == 4


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")
def test_it_shares_a_domains_backoff_with_other_workers_through_redis(run, monkeypatch, settings):
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)  # this xdist worker's db, not the environment's
    prefix = f"test-dispatch-{uuid.uuid4().hex}:"
    monkeypatch.setattr(dispatch_common, "get_throttle", lambda: Throttle(client, prefix=prefix))
    locmem.fail("person0@example.com", "421 4.7.0 Too many connections, slow down")
    try:
        dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
        other_worker = Throttle(client, prefix=prefix)
        assert other_worker.blocked_for("domain:settings:example.com") > 25
        assert LedgerEntry.objects.get(run=run, address="person0@example.com").status == Status.QUEUED
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def test_it_leaves_a_row_another_worker_claimed_meanwhile_alone(run, monkeypatch):
    from mailings.services.dispatch import batch as batch_module

    real = batch_module.stamp
    taken = {}

    def another_worker_first(chunk, remaining, now, **kw):
        # The sweeper took the row back and another worker claimed it: same status, its own lease.
        other = timezone.now() + timedelta(minutes=7)
        LedgerEntry.objects.filter(pk=chunk[0].id).update(lease_until=other, attempts=2)
        taken["id"] = chunk[0].id
        return real(chunk, remaining, now, **kw)

    monkeypatch.setattr(batch_module, "stamp", another_worker_first)
    result = dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    assert result["sent"] == 4
    row = LedgerEntry.objects.get(pk=taken["id"])
    assert (row.status, row.attempts, row.wire_at) == (Status.SENDING, 2, None)
    assert f"L{row.pk}" not in {m.ref for m in locmem.outbox}


def _ledger_rows_read(call) -> tuple[int, list[str]]:
    """Run `call` (one ledger statement) and undo it, then EXPLAIN ANALYZE the statement it ran
    (undone too): the ledger rows its scans read (returned and filtered out) and the indexes used."""
    captured: list[tuple[str, object]] = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with transaction.atomic():
        with connection.execute_wrapper(capture):
            call()
        transaction.set_rollback(True)
    sql, params = captured[-1]
    with transaction.atomic(), connection.cursor() as cur:
        # A test's ledger is small enough for a table scan, or a merge or hash join over the
        # whole primary key, to win; on a real one they never do for a batch. The choice under
        # test, which index finds the batch's rows, is left to the planner.
        cur.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_hashjoin = off")
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
        transaction.set_rollback(True)
    plan = json.loads(plan) if isinstance(plan, str) else plan
    read, indexes = 0, []

    def walk(node: dict) -> None:
        nonlocal read
        if node.get("Relation Name") == "mailings_ledgerentry" and "Scan" in node["Node Type"]:
            loops = node.get("Actual Loops", 1)
            read += (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops
            indexes.append(node.get("Index Name", node["Node Type"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return read, indexes


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner and its statistics")
def test_a_batch_reads_its_own_rows_even_when_the_statistics_have_not_seen_its_run(world):
    """A trigger day run grows between two ANALYZEs: the statistics know only an older run, so the
    planner expects the new run to hold about one row. The batch's hand-out and claim must still
    read the batch's rows (by primary key), not every row of the run (measured before: 100k rows
    read for each 500-row claim of a 100k-trip scenario)."""
    add_subscribers(world.resource, 3000, prefix="reader")
    mailing = make_mailing(world, kind=Mailing.Kind.TRIGGER)
    old = make_run(mailing, slot="2026-01-01")
    queue_entries(old, status=Status.SENT)
    with connection.cursor() as cur:
        cur.execute("ANALYZE mailings_ledgerentry")
    run = make_run(mailing, slot="2026-01-02")
    queue_entries(run)
    batch = ids_of(run)[1500:1600]
    now = timezone.now()

    read, indexes = _ledger_rows_read(lambda: dispatch_common.handout(run.pk, now, 500, ids=batch))
    assert read <= 3 * len(batch), (read, indexes)
    read, indexes = _ledger_rows_read(lambda: dispatch_common.claim(run.pk, batch, now))
    assert read <= 3 * len(batch), (read, indexes)
    # and they still do their work
    assert dispatch_common.handout(run.pk, now, 500, ids=batch) == batch
    assert dispatch_common.claim(run.pk, batch, now) == batch
    assert dispatch_common.claim(run.pk, batch, now) == []  # claimed once


def test_the_ledger_has_no_index_on_the_run_alone(db):
    """Every index that starts with the run serves the run's lookups; an index on the run alone
    is the one a planner without statistics of a new run picks, to read the whole run."""
    with connection.cursor() as cur:
        constraints = connection.introspection.get_constraints(cur, LedgerEntry._meta.db_table)
    assert not [name for name, c in constraints.items() if c["index"] and c["columns"] == ["run_id"]]
    assert any(c["index"] and c["columns"][:1] == ["run_id"] for c in constraints.values())
