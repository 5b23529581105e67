"""Feedback: bounces, complaints and mailto unsubscribes applied once; tracking events counted once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Account
from delivery.mime import make_message_id, unsubscribe_address, verp_address
from history.catalogue import type_id
from history.models import Event, Link
from history.services.ingest import EventIn, events_ingest
from mailings.bounces import InboundReport, parse_message
from mailings.models import HandledEvent, LedgerEntry, MailingStat
from mailings.services.feedback import inbound_apply, on_tracking_events, sync_failures_apply
from mailings.tests.factories import make_mailing, make_run, queue_entries
from resources.models import ConsentRecord, Subscription, Suppression

SAMPLES = Path(__file__).parent / "bounce_samples"


def sample(name: str, ref: str) -> bytes:
    raw = (SAMPLES / name).read_bytes()
    return (raw.replace(b"{{VERP}}", verp_address(ref, "bounces.shop.example").encode())
            .replace(b"{{UNSUB}}", unsubscribe_address(ref, "bounces.shop.example").encode())
            .replace(b"{{MSGID}}", make_message_id(ref, "shop.example").encode()))


def report_of(name: str, entry: LedgerEntry) -> InboundReport:
    report = parse_message(sample(name, entry.ref))
    assert report is not None
    return report


def stat(metric: str, **filters) -> int:
    return MailingStat.objects.filter(metric=metric, **filters).aggregate(n=Sum("delta"))["n"] or 0


@pytest.fixture
def run(world, mailing):
    return make_run(mailing)


@pytest.fixture
def entries(run):
    """The run's five e-mail rows, sent an hour ago."""
    queue_entries(run, status="sent")
    LedgerEntry.objects.filter(run=run).update(sent_at=timezone.now() - timedelta(hours=1))
    return list(LedgerEntry.objects.filter(run=run).order_by("id"))


def subscription(entry: LedgerEntry) -> Subscription:
    return Subscription.objects.get(pk=entry.subscription_id)


# --- inbound reports --------------------------------------------------------------------------------


def test_it_applies_a_hard_bounce_once(entries):
    entry = entries[0]
    report = report_of("postfix_5_1_1.eml", entry)
    assert inbound_apply(report=report, source="maildir") == "hard_bounce applied"
    assert inbound_apply(report=report, source="maildir") == "duplicate"
    entry.refresh_from_db()
    assert entry.bounced_at is not None
    assert subscription(entry).status == "bounced"
    supp = Suppression.objects.get(account_id=entry.account_id, value=entry.address)
    assert supp.reason == "bounce"
    events = Event.objects.filter(ledger_id=entry.pk, type_id=type_id("message.hard_bounced"))
    assert events.count() == 1
    assert events.get().properties["code"] == "5.1.1"
    assert (events.get().mailing_id, events.get().run_id) == (entry.mailing_id, entry.run_id)
    assert stat("bounced_hard", mailing_id=entry.mailing_id) == 1
    assert ConsentRecord.objects.filter(subscription_id=entry.subscription_id, new_status="bounced", source="bounce").count() == 1
    # Another DSN for the same message (another reporting server) is the same hard bounce.
    other = replace(report, fingerprint="f" * 32, diagnostic="550 5.1.1 user unknown")
    assert inbound_apply(report=other, source="mbox") == "duplicate"
    assert stat("bounced_hard") == 1


def test_it_does_not_bounce_an_address_again_that_was_resubscribed_after_a_replayed_report(entries):
    entry = entries[0]
    report = report_of("postfix_5_1_1.eml", entry)
    inbound_apply(report=report, source="maildir")
    Subscription.objects.filter(pk=entry.subscription_id).update(status="subscribed")
    assert inbound_apply(report=report, source="maildir") == "duplicate"
    assert subscription(entry).status == "subscribed"


def test_it_counts_soft_bounces_and_suspends_after_the_limit(entries, settings):
    settings.MAILINGS_SOFT_BOUNCE_LIMIT = 3
    settings.MAILINGS_SOFT_BOUNCE_DAYS = 7
    entry = entries[1]
    report = report_of("postfix_4_2_2_final.eml", entry)
    assert report.kind == "soft_bounce"
    assert inbound_apply(report=report, source="maildir") == "soft_bounce applied"
    assert inbound_apply(report=report, source="maildir") == "duplicate"
    assert inbound_apply(report=replace(report, fingerprint="2" * 32), source="maildir") == "soft_bounce applied"
    assert subscription(entry).status == "subscribed"
    assert inbound_apply(report=replace(report, fingerprint="3" * 32), source="maildir") == (
        "soft_bounce applied, subscription suspended")
    sub = subscription(entry)
    assert sub.status == "suspended"
    assert sub.suspended_until > timezone.now() + timedelta(days=1)
    assert "3 soft bounces" in sub.reason
    assert stat("bounced_soft", run_id=entry.run_id) == 3
    assert not Suppression.objects.exists()
    assert Event.objects.filter(ledger_id=entry.pk, type_id=type_id("message.soft_bounced")).count() == 3


def test_it_applies_a_complaint_once(entries):
    entry = entries[2]
    report = report_of("yahoo_arf.eml", entry)
    assert report.ref_source == "verp"
    assert inbound_apply(report=report, source="maildir") == "complaint applied"
    assert inbound_apply(report=report, source="maildir") == "duplicate"
    assert subscription(entry).status == "complained"
    assert Suppression.objects.get(value=entry.address).reason == "complaint"
    assert stat("complained", mailing_id=entry.mailing_id) == 1
    assert Event.objects.filter(ledger_id=entry.pk, type_id=type_id("message.complained")).count() == 1


def test_it_ignores_an_unsigned_complaint_whose_recipient_is_not_the_rows_address(entries):
    entry = entries[0]
    report = report_of("arf_message_id_only.eml", entry)
    assert (report.kind, report.ref_source, report.ref) == ("complaint", "message_id", entry.ref)
    assert inbound_apply(report=report, source="maildir") == "unverified ref"
    forged = replace(report, recipient="someone.else@example.com")
    assert inbound_apply(report=forged, source="maildir") == "unverified ref"
    assert subscription(entry).status == "subscribed"
    assert not Suppression.objects.exists()
    genuine = replace(report, recipient=entry.address.upper())
    assert inbound_apply(report=genuine, source="maildir") == "complaint applied"
    assert subscription(entry).status == "complained"


def test_it_unsubscribes_by_mail_to_the_list_unsubscribe_address_once(entries):
    entry = entries[3]
    report = report_of("unsubscribe.eml", entry)
    assert inbound_apply(report=report, source="smtp") == "unsubscribe applied"
    assert inbound_apply(report=report, source="smtp") == "duplicate"
    assert subscription(entry).status == "unsubscribed"
    assert ConsentRecord.objects.filter(subscription_id=entry.subscription_id, source="mailto").count() == 1
    assert stat("unsubscribed", mailing_id=entry.mailing_id) == 1
    assert not Suppression.objects.exists()


def test_it_ignores_auto_replies_delay_notices_unknown_and_forged_refs(entries):
    entry = entries[0]
    assert inbound_apply(report=report_of("vacation.eml", entry), source="maildir") == "ignored: auto_reply"
    assert inbound_apply(report=report_of("postfix_4_2_2_delayed.eml", entry), source="maildir") == "ignored: delayed"
    assert inbound_apply(report=report_of("forged_verp.eml", entry), source="maildir") == "unknown ref"
    bounce = report_of("postfix_5_1_1.eml", entry)
    assert inbound_apply(report=replace(bounce, ref="L987654321"), source="maildir") == "unknown ref"
    assert inbound_apply(report=replace(bounce, ref="X12"), source="maildir") == "unknown ref"
    assert not Event.objects.filter(type_id__in=[3, 4, 7, 8]).exists()
    assert not MailingStat.objects.exists()


def test_it_leaves_an_erased_address_alone(entries):
    entry = entries[0]
    LedgerEntry.objects.filter(pk=entry.pk).update(address="")
    assert inbound_apply(report=report_of("postfix_5_1_1.eml", entry), source="maildir") == "address erased"
    assert subscription(entry).status == "subscribed"


# --- synchronous failures ----------------------------------------------------------------------------


def test_it_applies_synchronous_failures_in_bulk(world, mailing, run, entries):
    sms = make_mailing(world, channel="sms", name="SMS")
    sms_run = make_run(sms)
    sms_rows = queue_entries(sms_run, status="failed")
    user_unknown, spam_block = entries[0], entries[1]
    result = sync_failures_apply(rows=[
        (user_unknown.pk, 550, "5.1.1 <x>: Recipient address rejected: User unknown", True, False),
        (spam_block.pk, 550, "5.7.1 Message rejected as spam", True, False),
        (sms_rows[0].pk, 0, "number no longer in service", True, True),
        (987654321, 550, "unknown row", True, False),
    ])
    assert result == {"hard": 1, "soft": 1, "deactivated": 1, "ignored": 1}
    assert subscription(user_unknown).status == "bounced"
    assert Suppression.objects.filter(value=user_unknown.address, reason="bounce").exists()
    assert subscription(spam_block).status == "subscribed"
    assert not Suppression.objects.filter(value=spam_block.address).exists()
    assert Subscription.objects.get(pk=sms_rows[0].subscription_id).status == "bounced"
    assert Suppression.objects.count() == 1
    assert stat("bounced_hard", mailing_id=mailing.pk) == 1
    assert stat("bounced_soft", mailing_id=mailing.pk) == 1
    assert stat("bounced_hard", mailing_id=sms.pk) == 1
    # The same answers again (a batch retried): nothing changes twice.
    again = sync_failures_apply(rows=[(user_unknown.pk, 550, "5.1.1 User unknown", True, False)])
    assert again["hard"] == 1
    assert stat("bounced_hard", mailing_id=mailing.pk) == 1
    assert Event.objects.filter(ledger_id=user_unknown.pk, type_id=type_id("message.hard_bounced")).count() == 1


def test_synchronous_failures_cost_the_same_queries_for_one_row_or_many(world, run, entries):
    def queries(rows):
        with CaptureQueriesContext(connection) as ctx:
            sync_failures_apply(rows=[(e.pk, 550, "5.1.1 user unknown", True, False) for e in rows])
        return len(ctx.captured_queries)

    one = queries(entries[:1])
    many = queries(entries[1:])
    assert many <= one
    assert Subscription.objects.filter(status="bounced").count() == 5


# --- tracking events -------------------------------------------------------------------------------------


def ingest(account: Account, *events: EventIn) -> list[Event]:
    results = events_ingest(account=account, events=list(events), source="tracking")
    assert all(r.status == "stored" for r in results), results
    return list(Event.objects.filter(pk__in=[r.id for r in results]).order_by("id"))


def hit(kind: str, entry: LedgerEntry, key: str, *, machine: bool = False, link_id: int | None = None,
        when=None) -> EventIn:
    return EventIn(type=f"message.{kind}", profile_id=entry.profile_id, key=key, channel="email", machine=machine,
                   mailing_id=entry.mailing_id, run_id=entry.run_id, ledger_id=entry.pk, link_id=link_id,
                   occurred_at=when or timezone.now())


def test_tracking_events_stamp_once_and_count_human_and_machine_separately(acme, entries):
    a, b, c = entries[:3]
    link = Link.objects.create(account=acme, url="https://shop.example/sale", url_hash="h1")
    events = ingest(
        acme,
        hit("opened", a, "o1"), hit("opened", a, "o2"), hit("opened", a, "o3", machine=True),
        hit("opened", b, "o4", machine=True),  # a privacy proxy: not a person's open
        hit("clicked", c, "c1", link_id=link.pk),  # images off: the click is the open
        hit("clicked", c, "c2", link_id=link.pk, machine=True),
        hit("delivered", a, "d1"), hit("delivered", a, "d2"),
    )
    on_tracking_events(events)
    on_tracking_events(events)  # the drain delivered them again
    for e in (a, b, c):
        e.refresh_from_db()
    assert a.opened_at is not None and b.opened_at is None and c.opened_at is not None
    assert c.clicked_at is not None and a.clicked_at is None
    assert a.delivered_at is not None
    assert stat("opened") == 4 + 1  # four pixel hits and the open implied by the click
    assert stat("opened_machine") == 2
    assert stat("opened_unique") == 2  # a, and c by its click
    assert stat("clicked") == 2
    assert stat("clicked_machine") == 1
    assert stat("clicked_unique") == 1
    assert stat("link_clicked", link_id=link.pk) == 1
    assert stat("delivered") == 1
    assert HandledEvent.objects.count() == len(events)
    opened_unique = LedgerEntry.objects.filter(run=a.run, opened_at__isnull=False).count()
    assert stat("opened_unique") == opened_unique


def test_a_later_open_does_not_count_again_across_handler_calls(acme, entries):
    a = entries[0]
    on_tracking_events(ingest(acme, hit("opened", a, "o1")))
    on_tracking_events(ingest(acme, hit("opened", a, "o2")))
    assert stat("opened") == 2
    assert stat("opened_unique") == 1


def test_tracking_events_reach_the_handler_through_the_history_drain(acme, entries, django_capture_on_commit_callbacks):
    a = entries[0]
    with django_capture_on_commit_callbacks(execute=True):
        ingest(acme, hit("opened", a, "drained"))
    a.refresh_from_db()
    assert a.opened_at is not None
    assert stat("opened_unique", mailing_id=a.mailing_id) == 1


def test_events_of_another_account_are_not_counted_against_a_row(acme, globex, entries, other_world):
    a = entries[0]
    theirs = other_world.profile_ids[0]
    events = ingest(globex, EventIn(type="message.opened", profile_id=theirs, key="x", ledger_id=a.pk,
                                    mailing_id=a.mailing_id, run_id=a.run_id))
    on_tracking_events(events)
    a.refresh_from_db()
    assert a.opened_at is None
    assert not MailingStat.objects.exists()


def test_a_link_unsubscribe_is_attributed_to_the_latest_message(acme, world, entries):
    a = entries[0]
    events = ingest(acme, EventIn(type="message.unsubscribed", profile_id=a.profile_id, key="consent:1", channel="email",
                                  resource_id=world.resource.pk, source="consent:link"),
                    EventIn(type="message.unsubscribed", profile_id=entries[1].profile_id, key="consent:2",
                            channel="email", resource_id=world.resource.pk, source="consent:import:7"))
    on_tracking_events(events)
    assert stat("unsubscribed", mailing_id=a.mailing_id, run_id=a.run_id) == 1


def test_without_returning_support_events_are_counted_the_same(acme, entries, monkeypatch):
    """The path for an SQLite older than 3.35 (no RETURNING): check first, then write."""
    monkeypatch.setattr("mailings.services.feedback._returning", lambda: False)
    a, b = entries[:2]
    events = ingest(acme, hit("opened", a, "o1"), hit("opened", a, "o2"), hit("clicked", b, "c1"))
    on_tracking_events(events)
    on_tracking_events(events)
    assert (stat("opened"), stat("opened_unique"), stat("clicked_unique")) == (3, 2, 1)
    assert HandledEvent.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_same_report_and_events_applied_concurrently_change_state_once(acme, alice):
    """RELIABILITY F9: two workers with the same bounce, two drains with the same events."""
    import threading

    from django.db import close_old_connections

    from mailings.tests.factories import make_world

    world = make_world(acme, user=alice, n=2)
    run = make_run(make_mailing(world))
    queue_entries(run, status="sent")
    entry = LedgerEntry.objects.filter(run=run).order_by("id").first()
    report = report_of("postfix_5_1_1.eml", entry)
    events = ingest(acme, hit("opened", entry, "o1"), hit("clicked", entry, "c1"))
    outcomes: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(inbound_apply(report=report, source="maildir"))
            on_tracking_events(events)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert sorted(outcomes) == ["duplicate", "hard_bounce applied"]
    assert stat("bounced_hard") == 1
    assert (stat("opened_unique"), stat("clicked_unique"), stat("clicked")) == (1, 1, 1)
    assert ConsentRecord.objects.filter(subscription_id=entry.subscription_id, new_status="bounced").count() == 1
    assert Suppression.objects.filter(value=entry.address).count() == 1
