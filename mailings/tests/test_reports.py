"""The report, progress, recipient log and explanations, the calendar, the CSV exports and
`manage.py mailing_report`."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.utils import timezone

from accounts.access import Actor
from history.models import Event, Link
from history.services.ingest import EventIn, events_ingest
from mailings.exports import links_csv, recipient_log_csv, report_csv
from mailings.models import LedgerEntry, Mailing, MailingStat, Run
from mailings.selectors import (
    list_figures,
    mailing_calendar,
    mailing_list,
    mailing_report,
    recipient_explain,
    recipient_log,
    run_progress,
)
from mailings.services.feedback import on_tracking_events
from mailings.services.stats import stats_add
from mailings.tests.factories import (
    add_profiles_without_subscription,
    add_subscribers,
    launch_now,
    make_mailing,
    make_run,
    queue_entries,
)
from resources.models import Subscription
from resources.services import Via, subscription_set_status


def track(account, entry: LedgerEntry, kind: str, key: str, *, link_id: int | None = None, machine: bool = False) -> None:
    results = events_ingest(account=account, source="tracking", events=[EventIn(
        type=f"message.{kind}", profile_id=entry.profile_id, key=key, channel=entry.channel, ledger_id=entry.pk,
        mailing_id=entry.mailing_id, run_id=entry.run_id, link_id=link_id, machine=machine)])
    on_tracking_events(list(Event.objects.filter(pk__in=[r.id for r in results])))


@pytest.fixture
def sent_broadcast(world, mailing, django_capture_on_commit_callbacks):
    """A broadcast launched through the real lifecycle, planner and dispatch (locmem backend):
    one subscriber unsubscribed before the launch, one with only an SMS subscription (no address
    on the channel)."""
    first = Subscription.objects.get(profile_id=world.profile_ids[0], channel="email")
    subscription_set_status(subscription=first, status="unsubscribed", actor=Actor(subscriber=True),
                            via=Via(source="link"))
    add_subscribers(world.resource, 1, start=500, email=False, sms=True)
    with django_capture_on_commit_callbacks(execute=True):
        run = launch_now(mailing, world.actor)
    with django_capture_on_commit_callbacks(execute=True):
        from mailings.services.dispatch import dispatch_tick

        dispatch_tick()
    run.refresh_from_db()
    return run


def test_the_report_equals_the_ledger_after_a_send(acme, world, mailing, sent_broadcast, django_assert_max_num_queries):
    run = sent_broadcast
    rows = LedgerEntry.objects.filter(run=run)
    by_status = dict(rows.values_list("status").annotate(n=Count("id")).order_by())
    assert by_status.get("sent", 0) == 4
    sent = list(rows.filter(status="sent").order_by("id"))
    link = Link.objects.create(account=acme, url="https://shop.example/sale", url_hash="sale")
    track(acme, sent[0], "opened", "o1")
    track(acme, sent[0], "clicked", "c1", link_id=link.pk)
    track(acme, sent[1], "opened", "o2", machine=True)
    track(acme, sent[2], "clicked", "c2", link_id=link.pk)
    with django_assert_max_num_queries(3):  # the counters' sums in one statement, exclusions, link URLs
        report = mailing_report(mailing=mailing)
    f = report.figures
    assert f["planned"] == rows.count() == run.planned
    for status in ("sent", "failed", "skipped", "ambiguous"):
        assert f[status] == by_status.get(status, 0), status
    assert f["queued"] == 0
    assert f["no_address"] == 1
    assert [(r.reason, r.count) for r in report.skipped] == [("unsubscribed", 1)]
    assert report.skipped[0].label == "Unsubscribed"
    assert f["opened_unique"] == rows.filter(opened_at__isnull=False).count() == 2
    assert f["clicked_unique"] == rows.filter(clicked_at__isnull=False).count() == 2
    assert (f["opened"], f["opened_machine"], f["opened_human"]) == (3, 1, 2)
    assert [(r.url, r.clicks) for r in report.links] == [("https://shop.example/sale", 2)]
    assert report.rates["open"] == 50.0
    assert report.rates["click_to_open"] == 100.0
    assert report.rates["delivery"] == 100.0
    assert sum(p["sent"] for p in report.series) == 4
    # The chart counts people's opens and clicks, as the rates do: the machine open is left out.
    assert (sum(p["opened"] for p in report.series), sum(p["clicked"] for p in report.series)) == (2, 2)
    assert report.as_dict()["figures"]["sent"] == 4
    progress = run_progress(run=run)
    assert (progress["planned"], progress["done"], progress["queued"], progress["percent"]) == (5, 5, 0, 100.0)
    assert list_figures([mailing.pk])[mailing.pk]["sent"] == 4
    assert mailing_report(mailing=mailing, run=run).figures == f


def test_the_report_of_a_mailing_that_never_ran_is_zeros_without_rates(mailing):
    report = mailing_report(mailing=mailing)
    assert set(report.figures.values()) == {0}
    assert set(report.rates.values()) == {None}
    assert report.links == [] and report.series == []


def test_mailing_list_filters_by_state_kind_and_name(world, mailing, other_world, acme):
    make_mailing(world, name="Birthday", kind=Mailing.Kind.REGULAR, state=Mailing.State.SCHEDULED)
    make_mailing(other_world, name="Theirs")
    assert {m.name for m in mailing_list(account=acme)} == {"Spring sale", "Birthday"}
    assert [m.name for m in mailing_list(account=acme, kind="regular")] == ["Birthday"]
    assert [m.name for m in mailing_list(account=acme, state="draft")] == ["Spring sale"]
    assert [m.name for m in mailing_list(account=acme, q="birth")] == ["Birthday"]


# --- the recipient log --------------------------------------------------------------------------------


@pytest.fixture
def logged(world, mailing):
    run = make_run(mailing)
    rows = queue_entries(run, status="sent")
    LedgerEntry.objects.filter(run=run).update(sent_at=timezone.now())
    ids = [r.pk for r in LedgerEntry.objects.filter(run=run).order_by("id")]
    LedgerEntry.objects.filter(pk=ids[3]).update(status="skipped", reason="capped", sent_at=None,
                                                 detail="at most 3 in 7 days per recipient (account policy)")
    LedgerEntry.objects.filter(pk=ids[4]).update(status="skipped", reason="unsubscribed", sent_at=None)
    sub = Subscription.objects.get(pk=rows[4].subscription_id)
    subscription_set_status(subscription=sub, status="unsubscribed", actor=Actor(subscriber=True), via=Via(source="link"))
    LedgerEntry.objects.filter(pk=ids[4]).update(updated_at=timezone.now() + timedelta(seconds=1))
    return run, list(LedgerEntry.objects.filter(run=run).order_by("id"))


def test_the_recipient_log_pages_by_keyset_and_filters(mailing, logged):
    run, rows = logged
    first = recipient_log(mailing=mailing, limit=2)
    assert [r.pk for r in first.rows] == [rows[0].pk, rows[1].pk]
    second = recipient_log(mailing=mailing, limit=2, after=first.next_after)
    third = recipient_log(mailing=mailing, limit=2, after=second.next_after)
    assert [r.pk for r in second.rows + third.rows] == [r.pk for r in rows[2:]]
    assert third.next_after is None
    assert [r.pk for r in recipient_log(mailing=mailing, status="skipped").rows] == [rows[3].pk, rows[4].pk]
    assert [r.pk for r in recipient_log(mailing=mailing, reason="capped").rows] == [rows[3].pk]
    assert [r.pk for r in recipient_log(mailing=mailing, q=rows[2].address.upper()).rows] == [rows[2].pk]
    assert [r.pk for r in recipient_log(mailing=mailing, q="person1").rows] == [rows[1].pk]
    assert [r.pk for r in recipient_log(mailing=mailing, q=f"#{rows[0].profile_id}").rows] == [rows[0].pk]
    assert recipient_log(mailing=mailing, run=run, q="nobody@").rows == []


def test_each_log_row_explains_itself(acme, mailing, logged):
    _run, rows = logged
    link = Link.objects.create(account=acme, url="https://shop.example/sale", url_hash="sale")
    track(acme, rows[0], "opened", "o")
    track(acme, rows[0], "clicked", "c", link_id=link.pk)
    page = recipient_log(mailing=mailing)
    text = {r.pk: r.explanation for r in page.rows}
    assert text[rows[3].pk] == "Capped: at most 3 in 7 days per recipient (account policy)"
    assert text[rows[4].pk].startswith("Skipped: unsubscribed on ")
    assert text[rows[4].pk].endswith("(from a message's link)")
    assert text[rows[1].pk].startswith("Sent ")
    assert "opened" in text[rows[0].pk]
    why = recipient_explain(mailing=mailing, profile_id=rows[0].profile_id)
    assert len(why) == 1 and why[0].entry.pk == rows[0].pk
    assert "clicked 'https://shop.example/sale'" in why[0].sentence


def test_explanations_for_profiles_without_a_row(world, mailing, logged):
    bare = add_profiles_without_subscription(world.database, 1)[0]
    assert "No address on the channel" in recipient_explain(mailing=mailing, profile_id=bare)[0].sentence
    assert "No such profile" in recipient_explain(mailing=mailing, profile_id=987654321)[0].sentence
    fresh = make_mailing(world, name="Not yet")
    assert "not been sent yet" in recipient_explain(mailing=fresh, profile_id=bare)[0].sentence


# --- exports ---------------------------------------------------------------------------------------------


def read_csv(lines) -> list[list[str]]:
    text = "".join(lines)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def test_the_recipient_log_export_is_complete_and_formula_safe(mailing, logged, monkeypatch):
    _run, rows = logged
    LedgerEntry.objects.filter(pk=rows[0].pk).update(address="=HYPERLINK(\"http://evil\")@example.com",
                                                     detail="+cmd|' /C calc'!A0")
    monkeypatch.setattr("mailings.exports.PAGE", 2)  # several keyset pages
    table = read_csv(recipient_log_csv(mailing=mailing))
    assert table[0][:3] == ["ledger_id", "run", "profile_id"]
    assert [int(r[0]) for r in table[1:]] == [r.pk for r in rows]
    first = dict(zip(table[0], table[1], strict=True))
    assert first["address"].startswith("'=")
    assert first["detail"].startswith("'+")
    assert first["run"] == "once"
    skipped = read_csv(recipient_log_csv(mailing=mailing, status="skipped"))
    assert len(skipped) == 3
    assert skipped[1][-1].startswith("Capped:")


def test_the_report_and_links_exports(acme, mailing, logged):
    run, _rows = logged
    link = Link.objects.create(account=acme, url="=cmd@evil", url_hash="x")
    stats_add({(acme.pk, mailing.pk, run.pk, "sent", None): 3, (acme.pk, mailing.pk, run.pk, "link_clicked", link.pk): 2})
    table = read_csv(report_csv(mailing=mailing))
    assert ["figure", "sent", "3"] in table
    assert ["rate", "open", "0.0"] in table
    assert any(r[0] == "hourly sent" and r[2] == "3" for r in table)
    links = read_csv(links_csv(mailing=mailing))
    assert links[1] == [str(link.pk), "'=cmd@evil", "2"]


# --- the calendar ----------------------------------------------------------------------------------------


def test_the_calendar_shows_runs_scheduled_broadcasts_and_regular_slots(acme, world, mailing):
    now = timezone.now()
    start, end = now - timedelta(days=2), now + timedelta(days=5)
    make_run(mailing, scheduled_for=now - timedelta(days=1))
    later = make_mailing(world, name="Later", state=Mailing.State.SCHEDULED, next_run_at=now + timedelta(days=2))
    make_mailing(world, name="Too late", state=Mailing.State.SCHEDULED, next_run_at=now + timedelta(days=9))
    daily = make_mailing(world, name="Daily", kind=Mailing.Kind.REGULAR, state=Mailing.State.SCHEDULED,
                         schedule={"daily_at": "10:00"})
    make_mailing(world, name="Draft")
    entries = mailing_calendar(account=acme, start=start, end=end)
    names = [(e.mailing.name, e.kind) for e in entries]
    assert ("Spring sale", "run") in names
    assert ("Later", "scheduled") in names
    assert "Too late" not in {n for n, _ in names}
    assert "Draft" not in {n for n, _ in names}
    assert 4 <= sum(1 for e in entries if e.mailing.pk == daily.pk) <= 6
    assert [e.when for e in entries] == sorted(e.when for e in entries)
    assert next(e for e in entries if e.mailing.pk == later.pk).when == later.next_run_at


# --- the command -----------------------------------------------------------------------------------------


def test_mailing_report_command_prints_figures_and_csv(acme, mailing, logged):
    run, _rows = logged
    stats_add({(acme.pk, mailing.pk, run.pk, "planned", None): 5, (acme.pk, mailing.pk, run.pk, "sent", None): 3,
               (acme.pk, mailing.pk, run.pk, "skipped", None): 2,
               (acme.pk, mailing.pk, run.pk, "skipped:capped", None): 1,
               (acme.pk, mailing.pk, run.pk, "skipped:unsubscribed", None): 1,
               (acme.pk, mailing.pk, run.pk, "bounced_hard", None): 1})
    out = io.StringIO()
    call_command("mailing_report", str(mailing.pk), stdout=out)
    text = out.getvalue()
    lines = [line.split() for line in text.splitlines()]
    assert "Spring sale" in text
    assert ["Sent", "3"] in lines
    # As on the report page: an SMTP relay reports no deliveries, so delivered is sent less hard
    # bounces, and the delivery rate is taken from it; the provider's own reports have their line.
    assert ["Delivered", "2"] in lines
    assert ["reported", "by", "the", "provider", "0"] in lines
    assert ["Delivery", "66.67", "%"] in lines
    assert "Frequency cap reached" in text
    out = io.StringIO()
    call_command("mailing_report", str(mailing.pk), "--csv", "--run", str(run.pk), stdout=out)
    assert "figure,planned,5" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("mailing_report", "987654321")
    with pytest.raises(CommandError):
        call_command("mailing_report", str(mailing.pk), "--run", "987654321")
    assert MailingStat.objects.filter(mailing_id=mailing.pk).exists()
    assert Run.objects.filter(mailing=mailing).count() == 1


def test_it_tells_times_in_the_accounts_timezone(world, mailing):
    from datetime import UTC, datetime

    world.account.timezone = "Asia/Tokyo"
    world.account.save(update_fields=["timezone"])
    mailing.refresh_from_db()
    run = make_run(mailing)
    row = queue_entries(run)[0]
    sent = datetime(2026, 3, 2, 3, 34, tzinfo=UTC)  # 12:34 in Tokyo
    LedgerEntry.objects.filter(pk=row.pk).update(status="sent", sent_at=sent)
    page = recipient_log(mailing=mailing, status="sent")
    assert page.rows[0].explanation == "Sent 2 Mar 12:34"
    [line] = recipient_explain(mailing=mailing, profile_id=row.profile_id)
    assert "12:34" in line.sentence
