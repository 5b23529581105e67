"""The mailing pages: list, wizard, audience preview, detail with live progress, report, recipient
log and explanations, exports, calendar and sending policies. alice (marketer) writes, bob
(analyst) reads but cannot write, charlie (another account) gets 404 on every object."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from delivery.backends import locmem
from mailings.models import FrequencyCap, LedgerEntry, Mailing, Run
from mailings.services.stats import stats_add
from mailings.tests.factories import make_mailing, make_run, queue_entries
from resources.models import Subscription

HTMX = {"HX-Request": "true"}


def _url(name: str, *args) -> str:
    return reverse(f"mailings:{name}", args=args)


@pytest.fixture
def sent_run(world, mailing) -> Run:
    """The world's broadcast as if sent: 3 sent (one opened and clicked), 1 skipped unsubscribed,
    1 failed hard bounce; counters to match."""
    run = make_run(mailing, state=Run.State.DONE)
    rows = queue_entries(run)
    now = timezone.now()
    statuses = [("sent", ""), ("sent", ""), ("sent", ""), ("skipped", "unsubscribed"), ("failed", "hard_bounce")]
    for row, (status, reason) in zip(rows, statuses, strict=True):
        LedgerEntry.objects.filter(pk=row.pk).update(status=status, reason=reason,
                                                     sent_at=now if status == "sent" else None)
    LedgerEntry.objects.filter(pk=rows[0].pk).update(opened_at=now, clicked_at=now)
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.DONE, launched_at=now, finished_at=now)
    Run.objects.filter(pk=run.pk).update(finished_at=now, planned_at=now - timedelta(minutes=2))
    a, m, r = world.account.pk, mailing.pk, run.pk
    stats_add(Counter({(a, m, r, "planned", None): 5, (a, m, r, "sent", None): 3, (a, m, r, "skipped", None): 1,
                       (a, m, r, "skipped:unsubscribed", None): 1, (a, m, r, "failed", None): 1,
                       (a, m, r, "failed:hard_bounce", None): 1, (a, m, r, "bounced_hard", None): 1,
                       (a, m, r, "opened", None): 2, (a, m, r, "opened_unique", None): 1,
                       (a, m, r, "clicked", None): 1, (a, m, r, "clicked_unique", None): 1}))
    run.refresh_from_db()
    mailing.refresh_from_db()
    return run


# --- the list ------------------------------------------------------------------------------------


def test_it_shows_the_empty_state_with_a_new_mailing_action(login, alice, world):
    response = login(alice).get(_url("list"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "No mailings yet" in body
    assert _url("create") in body


def test_it_lists_mailings_with_state_and_key_figures(login, alice, world, sent_run):
    response = login(alice).get(_url("list"))
    body = response.content.decode()
    assert "Spring sale" in body
    assert 'data-testid="state"' in body and "Done" in body
    # Sent 3, one unique open of 2 received (3 sent less 1 hard bounce): 50%.
    assert '<td class="text-end text-nowrap" data-testid="sent">3</td>' in body
    assert ">50.0%<" in body


def test_it_filters_the_list_by_state_and_search(login, alice, world):
    make_mailing(world, name="Autumn draft")
    make_mailing(world, name="Winter live", state=Mailing.State.SCHEDULED)
    client = login(alice)
    body = client.get(_url("list"), {"state": "scheduled"}).content.decode()
    assert "Winter live" in body and "Autumn draft" not in body
    body = client.get(_url("list"), {"q": "autumn"}, headers={**HTMX, "HX-Target": "mailings"}).content.decode()
    assert "Autumn draft" in body and "Winter live" not in body
    assert "<html" not in body  # the table partial only


def test_it_pins_the_list_queries(login, alice, world, django_assert_max_num_queries):
    for n in range(30):
        make_mailing(world, name=f"Mailing {n}")
    client = login(alice)
    client.get(_url("list"))  # warm the session and caches
    # session, user, memberships with their accounts, the page, its figures, the bounded count
    with django_assert_max_num_queries(6):
        response = client.get(_url("list"))
    assert response.content.decode().count("data-mailing=") == 25


# --- the wizard ------------------------------------------------------------------------------------


def test_it_creates_a_mailing_through_the_first_two_steps(login, alice, world):
    client = login(alice)
    assert client.get(_url("create")).status_code == 200
    basics = {"_step": "basics", "kind": "broadcast", "name": "Summer news", "description": ""}
    response = client.post(_url("create"), basics)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="resource"' in body and 'type="hidden" name="name" value="Summer news"' in body
    response = client.post(_url("create"), {**basics, "_step": "channel", "channel": "email",
                                            "resource": world.resource.pk, "sender": world.sender.pk})
    mailing = Mailing.objects.get(name="Summer news")
    assert response.status_code == 302
    assert response["Location"] == _url("edit", mailing.pk, "audience")
    assert mailing.state == Mailing.State.DRAFT and mailing.resource == world.resource
    assert mailing.database == world.database


def test_it_shows_errors_next_to_their_fields(login, alice, world, mailing):
    client = login(alice)
    response = client.post(_url("create"), {"_step": "basics", "kind": "broadcast", "name": ""})
    assert response.status_code == 400
    assert 'invalid-feedback d-block">This field is required.' in response.content.decode()
    response = client.post(_url("edit", mailing.pk, "when"), {"mode": "at", "at": ""})
    assert response.status_code == 400
    body = response.content.decode()
    at_field = body.index('name="at"')
    assert body.index("Give the date and time to send.") > at_field
    response = client.post(_url("edit", mailing.pk, "policy"), {"cap_mode": "custom", "days": "30"})
    body = response.content.decode()
    assert response.status_code == 400
    assert "Give 1 to 15." in body
    assert "Ensure this value is less than or equal to 16." in body


def test_it_puts_the_services_refusals_on_their_field(login, alice, world, mailing):
    other = make_mailing(world, name="Other")
    Mailing.objects.filter(pk=other.pk).update(kind=Mailing.Kind.TRIGGER)
    response = login(alice).post(_url("edit", other.pk, "when"), {"on": "event", "event": "no_such_type"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()


def test_it_saves_a_step_and_moves_to_the_next_with_htmx(login, alice, world, mailing):
    response = login(alice).post(_url("edit", mailing.pk, "when"),
                                 {"mode": "local", "local_date": "2031-05-04", "local_time": "09:30",
                                  "window": "on", "window_days": ["0", "1", "2"], "window_start": "08:00",
                                  "window_end": "20:00", "window_tz": "recipient", "speed_limit": "600"},
                                 headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Push-Url"] == _url("edit", mailing.pk, "policy")
    body = response.content.decode()
    assert 'id="wizard"' in body and "<html" not in body
    mailing.refresh_from_db()
    assert mailing.schedule == {"mode": "local", "date": "2031-05-04", "time": "09:30"}
    assert mailing.send_window == {"days": [0, 1, 2], "start": "08:00", "end": "20:00", "tz": "recipient"}
    assert mailing.speed_limit == 600


def test_it_writes_a_weekly_schedule_as_cron_and_reads_it_back(login, alice, world):
    mailing = make_mailing(world, kind=Mailing.Kind.REGULAR, schedule={"daily_at": "10:00"})
    client = login(alice)
    response = client.post(_url("edit", mailing.pk, "when"),
                            {"repeat": "weekly", "repeat_time": "07:15", "repeat_days": ["0", "4"]})
    assert response.status_code == 302
    mailing.refresh_from_db()
    assert mailing.schedule == {"cron": "15 7 * * 1,5"}
    body = client.get(_url("edit", mailing.pk, "when")).content.decode()
    assert 'value="weekly" selected' in body
    assert "Every Mon, Fri at 07:15" in client.get(_url("detail", mailing.pk)).content.decode()


def test_it_saves_more_than_three_trigger_filters_and_a_list_of_values(login, alice, world):
    mailing = make_mailing(world, kind=Mailing.Kind.TRIGGER, trigger={"on": "event", "event": "order.placed"})
    client = login(alice)
    rows = {"f0": ("total", "gte", "50"), "f1": ("currency", "in", "EUR, USD ,, GBP"), "f2": ("paid", "eq", "true"),
            "f3": ("coupon", "exists", ""), "f4": ("channel", "ne", "pos")}
    data = {"on": "event", "event": "order.placed", "delay": "0", "delay_unit": "60"}
    for key, (prop, op, value) in rows.items():
        data.update({f"{key}_property": prop, f"{key}_op": op, f"{key}_value": value})
    response = client.post(_url("edit", mailing.pk, "when"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    mailing.refresh_from_db()
    assert mailing.trigger["filters"] == [
        {"property": "total", "op": "gte", "value": 50},
        {"property": "currency", "op": "in", "value": ["EUR", "USD", "GBP"]},
        {"property": "paid", "op": "eq", "value": True},
        {"property": "coupon", "op": "exists", "value": True},
        {"property": "channel", "op": "ne", "value": "pos"},
    ]
    # Read back: the five rows as saved, and two empty ones to add more.
    body = client.get(_url("edit", mailing.pk, "when")).content.decode()
    assert 'name="f6_property"' in body and 'name="f7_property"' not in body
    assert 'value="EUR, USD, GBP"' in body and body.count('value="true"') == 2
    # "is one of" without values says so on its field.
    data.update({"f1_value": " , "})
    response = client.post(_url("edit", mailing.pk, "when"), data)
    assert response.status_code == 400
    body = response.content.decode()
    assert body.index("Give the values it may be, separated by commas.") > body.index('name="f1_value"')


def test_it_sets_a_mailing_cap_and_tracking_in_the_policy_step(login, alice, world, mailing):
    response = login(alice).post(_url("edit", mailing.pk, "policy"),
                                 {"cap_mode": "custom", "max_messages": "2", "days": "7", "scope": "profile",
                                  "track_clicks": "on"})
    assert response.status_code == 302
    cap = FrequencyCap.objects.get(mailing=mailing)
    assert (cap.max_messages, cap.days) == (2, 7)
    mailing.refresh_from_db()
    assert not mailing.track_opens and mailing.track_clicks


def test_it_lists_what_stops_a_launch_with_links_to_the_step(login, alice, world):
    mailing = make_mailing(world, template=None)
    body = login(alice).get(_url("edit", mailing.pk, "review")).content.decode()
    assert 'data-testid="problems"' in body
    assert _url("edit", mailing.pk, "content") in body
    assert 'data-testid="launch" disabled' in body


def test_it_previews_the_audience_with_exclusions_by_reason(login, alice, world, mailing):
    Subscription.objects.filter(resource=world.resource, channel="email", profile_id=world.profile_ids[0]).update(
        status="unsubscribed")
    client = login(alice)
    body = client.get(_url("audience_preview", mailing.pk), headers=HTMX).content.decode()
    assert 'data-testid="sendable">4<' in body
    assert "Unsubscribed" in body
    # Live, from the step's form: a draft takes the audience as it changes.
    response = client.post(_url("audience_preview", mailing.pk), {"audience": "database", "categories": ["news"]},
                           headers=HTMX)
    assert response.status_code == 200
    mailing.refresh_from_db()
    assert mailing.categories == ["news"]


def test_it_sends_a_test_to_a_list_of_addresses(login, alice, world, mailing):
    response = login(alice).post(_url("test_send", mailing.pk), {"addresses": "a@example.com, b@example.com"},
                                 headers=HTMX)
    assert response.status_code == 200
    assert [m.to for m in locmem.outbox] == ["a@example.com", "b@example.com"]
    assert response.content.decode().count("text-success") == 2


def test_it_refuses_more_than_ten_test_addresses(login, alice, world, mailing):
    addresses = ",".join(f"p{n}@example.com" for n in range(11))
    response = login(alice).post(_url("test_send", mailing.pk), {"addresses": addresses}, headers=HTMX)
    assert "At most 10 addresses" in response.content.decode()
    assert locmem.outbox == []


# --- one mailing -------------------------------------------------------------------------------------


def test_it_launches_and_the_progress_stops_polling_when_done(login, alice, world, mailing,
                                                           django_capture_on_commit_callbacks):
    client = login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("launch", mailing.pk))
    assert response.status_code == 302
    run = Run.objects.get(mailing=mailing)
    if run.state != Run.State.DONE:  # the eager tasks planned and sent; the tick finishes the run
        from mailings.services.dispatch import dispatch_tick

        with django_capture_on_commit_callbacks(execute=True):
            dispatch_tick()
    run.refresh_from_db()
    assert run.state == Run.State.DONE
    response = client.get(_url("progress", mailing.pk), headers=HTMX)
    body = response.content.decode()
    assert 'data-testid="sent">5<' in body
    assert "every 2s" not in body
    assert response["HX-Trigger"] == "mailing-finished"


def test_it_polls_the_progress_while_sending(login, bob, world, mailing):
    run = make_run(mailing)
    queue_entries(run)
    body = login(bob).get(_url("detail", mailing.pk)).content.decode()
    assert 'hx-trigger="every 2s"' in body
    assert _url("progress", mailing.pk) in body
    assert 'data-testid="pause"' not in body  # bob reads only


def test_it_pauses_resumes_and_cancels_with_a_confirmation(login, alice, world, mailing):
    make_run(mailing)
    client = login(alice)
    assert client.post(_url("pause", mailing.pk)).status_code == 302
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.PAUSED
    assert client.post(_url("resume", mailing.pk)).status_code == 302
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.SENDING
    assert "Cancel the mailing" in client.get(_url("cancel", mailing.pk)).content.decode()
    client.post(_url("cancel", mailing.pk))
    mailing.refresh_from_db()
    assert mailing.state == Mailing.State.CANCELLED


def test_it_duplicates_and_deletes(login, alice, world, mailing):
    client = login(alice)
    response = client.post(_url("duplicate", mailing.pk))
    copy = Mailing.objects.exclude(pk=mailing.pk).get()
    assert response["Location"] == _url("edit", copy.pk, "basics")
    assert client.post(_url("delete", copy.pk), {"confirm": "wrong"}).status_code == 400
    assert client.post(_url("delete", copy.pk), {"confirm": copy.name}).status_code == 302
    assert not Mailing.objects.filter(pk=copy.pk).exists()


# --- report, recipients, exports -----------------------------------------------------------------------


def test_it_reports_figures_skips_and_the_chart(login, bob, world, mailing, sent_run, django_assert_max_num_queries):
    client = login(bob)
    client.get(_url("report", mailing.pk))
    # session, user, memberships, the mailing, the counters' sums (one statement), the runs'
    # exclusions, the clicked links' URLs
    with django_assert_max_num_queries(7):
        response = client.get(_url("report", mailing.pk))
    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="skip-unsubscribed"' in body
    assert 'id="mailing-report-data"' in body
    assert "50.0%" in body  # open rate: 1 of 2 received


def test_it_lists_recipients_with_filters_and_explanations(login, bob, world, mailing, sent_run):
    client = login(bob)
    body = client.get(_url("recipients", mailing.pk)).content.decode()
    assert body.count("data-entry=") == 5
    body = client.get(_url("recipients", mailing.pk), {"status": "skipped"},
                      headers={**HTMX, "HX-Target": "recipients"}).content.decode()
    assert body.count("data-entry=") == 1 and "Skipped: unsubscribed" in body and "<html" not in body


def test_it_pages_the_recipient_log_by_keyset(login, alice, world, mailing, sent_run, monkeypatch):
    from mailings.views import reports

    monkeypatch.setattr(reports, "LOG_PAGE", 2)
    client = login(alice)
    first = client.get(_url("recipients", mailing.pk)).context
    assert len(first["page"].rows) == 2 and first["next_url"]
    second = client.get(first["next_url"]).context
    assert second["page"].rows[0].pk > first["page"].rows[-1].pk


def test_it_explains_why_a_person_did_or_did_not_get_it(login, bob, world, mailing, sent_run):
    client = login(bob)
    body = client.get(_url("explain", mailing.pk), {"profile": "person3@example.com"}, headers=HTMX).content.decode()
    assert "Skipped: unsubscribed" in body
    body = client.get(_url("explain", mailing.pk), {"profile": "nobody@example.com"}).content.decode()
    assert "No profile" in body


def test_it_exports_csv_and_keeps_addresses_to_data_editors(login, alice, bob, world, mailing, sent_run):
    response = login(bob).get(_url("export", mailing.pk, "report"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert b"sent" in b"".join(response.streaming_content)
    assert login(bob).get(_url("export", mailing.pk, "recipients")).status_code == 403
    response = login(alice).get(_url("export", mailing.pk, "recipients"), {"status": "sent"})
    rows = b"".join(response.streaming_content).decode().strip().splitlines()
    assert len(rows) == 4  # header and 3 sent


# --- calendar and policies -------------------------------------------------------------------------------


def test_it_shows_the_calendar_month_with_scheduled_and_sent_mailings(login, bob, world, mailing, sent_run):
    when = timezone.now() + timedelta(days=40)
    make_mailing(world, name="Next month", state=Mailing.State.SCHEDULED, next_run_at=when,
                 schedule={"mode": "at", "at": when.isoformat()})
    client = login(bob)
    body = client.get(_url("calendar")).content.decode()
    assert "Spring sale" in body and "cal-run" in body
    month = when.astimezone(world.account.tzinfo).strftime("%Y-%m")
    body = client.get(_url("calendar"), {"month": month}, headers=HTMX).content.decode()
    assert "Next month" in body and "cal-scheduled" in body and "<html" not in body


def test_it_sets_and_clears_sending_policies_for_admins_only(login, adam, alice, world):
    client = login(adam)
    response = client.post(_url("policies"), {"prefix": "r0", "r0-max_messages": "3", "r0-days": "7",
                                              "r0-scope": "profile"})
    assert response.status_code == 302
    assert FrequencyCap.objects.get(resource=None, mailing=None).max_messages == 3
    prefix = f"r{world.resource.pk}"
    client.post(_url("policies"), {"prefix": prefix, f"{prefix}-max_messages": "20", f"{prefix}-days": "7",
                                   f"{prefix}-scope": "profile"})
    assert not FrequencyCap.objects.filter(resource=world.resource).exists()
    assert client.post(_url("policy_clear"), {}).status_code == 302
    assert not FrequencyCap.objects.exists()
    assert login(alice).post(_url("policies"), {"prefix": "r0", "r0-max_messages": "3", "r0-days": "7",
                                                "r0-scope": "profile"}).status_code == 403
    assert "Changing sending policies needs the admin role" in login(alice).get(_url("policies")).content.decode()


# --- access ------------------------------------------------------------------------------------------------


def test_it_renders_every_page_for_alice(login, alice, world, mailing, sent_run):
    client = login(alice)
    urls = [_url("list"), _url("create"), _url("calendar"), _url("policies"), _url("detail", mailing.pk),
            _url("progress", mailing.pk), _url("audience_preview", mailing.pk), _url("report", mailing.pk),
            _url("recipients", mailing.pk), _url("explain", mailing.pk), _url("cancel", mailing.pk),
            _url("delete", mailing.pk)]
    urls += [_url("edit", mailing.pk, step) for step in ("basics", "channel", "audience", "content", "when", "policy",
                                                         "review")]
    for url in urls:
        assert client.get(url).status_code == 200, url


def test_it_lets_bob_read_but_not_write(login, bob, world, mailing):
    client = login(bob)
    for url in (_url("list"), _url("detail", mailing.pk), _url("edit", mailing.pk, "audience"),
                _url("report", mailing.pk), _url("recipients", mailing.pk), _url("policies")):
        assert client.get(url).status_code == 200, url
    assert client.get(_url("create")).status_code == 403
    assert client.post(_url("edit", mailing.pk, "basics"), {"kind": "broadcast", "name": "X"}).status_code == 403
    for name in ("launch", "pause", "resume", "duplicate", "test_send"):
        assert client.post(_url(name, mailing.pk)).status_code == 403, name
    assert client.post(_url("audience_preview", mailing.pk), {"audience": "database"}).status_code == 403
    mailing.refresh_from_db()
    assert mailing.name == "Spring sale" and mailing.state == Mailing.State.DRAFT


def test_it_is_404_for_another_account(login, charlie, world, mailing, sent_run):
    client = login(charlie)
    for name, args in (("detail", [mailing.pk]), ("progress", [mailing.pk]), ("edit", [mailing.pk, "basics"]),
                       ("audience_preview", [mailing.pk]), ("report", [mailing.pk]), ("recipients", [mailing.pk]),
                       ("explain", [mailing.pk]), ("export", [mailing.pk, "report"]), ("cancel", [mailing.pk]),
                       ("delete", [mailing.pk])):
        assert client.get(_url(name, *args)).status_code == 404, name
    for name in ("launch", "pause", "resume", "duplicate", "test_send", "cancel"):
        assert client.post(_url(name, mailing.pk)).status_code == 404, name
    assert client.get(_url("report", mailing.pk) + f"?run={sent_run.pk}").status_code == 404
    assert client.post(_url("policy_clear"), {"resource": world.resource.pk}).status_code == 404
