"""The history settings page: the retention period, the cutoff in the account's timezone, the last
cleanup, "Clean up now", and who may see and change it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.urls import reverse
from django.utils import timezone as tz

from accounts.access import Actor
from history.models import Event, HistorySettings
from history.services import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, EventIn, events_ingest, retention_set
from history.views.settings import cleanup_requested_at, estimate_events_before

SYSTEM = Actor.system()
pytestmark = pytest.mark.django_db
URL = "/history/settings/"


def _html(response) -> str:
    return response.content.decode()


def _card(html: str) -> str:
    return re.search(r'<div class="card" id="cleanup-status".*?</dl>', html, re.S).group(0)


def _old_events(account, profile, *days_ago: int) -> None:
    now = tz.now()
    events_ingest(account=account, events=[EventIn("page.viewed", profile.pk, now - timedelta(days=d)) for d in days_ago])


def test_the_routes_are_where_the_other_pages_link():
    assert reverse("history:settings") == URL
    assert reverse("history:settings_cleanup") == URL + "cleanup/"


def test_it_shows_that_events_are_kept_forever_at_first(login, adam):
    response = login(adam).get(URL)
    assert response.status_code == 200
    html = _html(response)
    assert 'name="retention_days"' in html and 'placeholder="Forever"' in html
    card = _card(html)
    assert "Keep every event" in card and "Never" in card and "Deletes events before" not in card
    assert "Clean up now" not in html


def test_an_admin_sets_the_period_and_sees_the_cutoff_in_the_accounts_timezone(login, adam, acme):
    acme.timezone = "America/Los_Angeles"
    acme.save()
    client = login(adam)
    response = client.post(URL, {"retention_days": "30"})
    assert response.status_code == 302 and response["Location"] == URL
    assert HistorySettings.objects.get(account=acme).retention_days == 30
    before = tz.localtime(tz.now() - timedelta(days=30), acme.tzinfo)
    html = _html(client.get(URL))
    after = tz.localtime(tz.now() - timedelta(days=30), acme.tzinfo)
    cutoff = re.search(r'data-testid="cutoff">(.*?) <span', html).group(1)
    assert cutoff in {f"{t:%b} {t.day}, {t:%Y %H:%M}" for t in (before, after)}
    assert "America/Los_Angeles" in _card(html) and "Keep 30 days" in _card(html)
    assert 'value="30"' in html
    assert "Clean up now" in html
    assert "Older ones (before" in html  # the message says what goes
    # Emptying the field keeps everything again.
    assert client.post(URL, {"retention_days": ""}).status_code == 302
    assert HistorySettings.objects.get(account=acme).retention_days is None


@pytest.mark.parametrize("value", [str(MIN_RETENTION_DAYS - 1), str(MAX_RETENTION_DAYS + 1), "-3", "ninety"])
def test_it_refuses_a_period_out_of_bounds_at_the_field(login, adam, acme, value):
    retention_set(account=acme, days=90, actor=SYSTEM)
    response = login(adam).post(URL, {"retention_days": value})
    assert response.status_code == 400
    html = _html(response)
    assert re.search(r'name="retention_days"[^>]*is-invalid|is-invalid[^>]*name="retention_days"', html)
    assert re.search(r'class="invalid-feedback d-block">[^<]+<', html)
    assert HistorySettings.objects.get(account=acme).retention_days == 90


def test_marketers_and_analysts_cannot_see_or_change_it(login, alice, bob, acme):
    for user in (alice, bob):
        client = login(user)
        assert client.get(URL).status_code == 403
        assert client.post(URL, {"retention_days": "7"}).status_code == 403
        assert client.post(URL + "cleanup/").status_code == 403
    assert not HistorySettings.objects.filter(account=acme).exists()


def test_each_account_sees_its_own_settings(login, charlie, acme, globex):
    retention_set(account=acme, days=30, actor=SYSTEM)
    client = login(charlie)
    assert "Keep every event" in _card(_html(client.get(URL)))
    client.post(URL, {"retention_days": "365"})
    assert HistorySettings.objects.get(account=globex).retention_days == 365
    assert HistorySettings.objects.get(account=acme).retention_days == 30


def test_clean_up_now_deletes_old_events_in_the_background_and_reports(login, adam, acme, globex, anna, gina,
                                                                      django_capture_on_commit_callbacks):
    _old_events(acme, anna, 100, 60, 1)
    _old_events(globex, gina, 100)
    retention_set(account=acme, days=30, actor=SYSTEM)
    retention_set(account=globex, days=30, actor=SYSTEM)  # only the asking account is cleaned up
    client = login(adam)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(URL + "cleanup/")
    assert response.status_code == 302 and len(callbacks) == 1
    assert Event.objects.filter(account_id=acme.pk).count() == 1
    assert Event.objects.filter(account_id=globex.pk).count() == 1
    html = _html(client.get(URL))
    card = _card(html)
    assert "2 events deleted" in card and "Never" not in card
    assert 'data-testid="cleanup-running"' not in html  # it has ended: no polling
    assert 'hx-trigger="every 2s"' not in html


def test_clean_up_now_needs_a_period(login, adam, acme, anna, django_capture_on_commit_callbacks):
    _old_events(acme, anna, 100)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = login(adam).post(URL + "cleanup/", follow=True)
    assert callbacks == []
    assert "Set how long to keep events first" in _html(response)
    assert Event.objects.filter(account_id=acme.pk).count() == 1


def test_a_second_press_while_a_cleanup_runs_is_refused_and_the_card_polls(login, adam, acme, anna,
                                                                         django_capture_on_commit_callbacks):
    _old_events(acme, anna, 100)
    retention_set(account=acme, days=30, actor=SYSTEM)
    client = login(adam)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:  # the worker has not got to it yet
        client.post(URL + "cleanup/")
    assert len(callbacks) == 1
    settings = HistorySettings.objects.get(account=acme)
    assert cleanup_requested_at(settings) is not None
    with django_capture_on_commit_callbacks(execute=False) as again:
        response = client.post(URL + "cleanup/", follow=True)
    assert again == []
    assert "A cleanup is already running" in _html(response)
    html = _html(client.get(URL))
    assert 'data-testid="cleanup-running"' in html and 'hx-trigger="every 2s"' in html and "Clean up now" not in html
    # The card polls itself: an htmx request gets the card alone.
    partial = _html(client.get(URL, headers={"HX-Request": "true", "HX-Target": "cleanup-status"}))
    assert partial.lstrip().startswith('<div class="card" id="cleanup-status"') and "<html" not in partial
    # The worker runs it: the card stops polling and shows the result.
    callbacks[0]()
    partial = _html(client.get(URL, headers={"HX-Request": "true", "HX-Target": "cleanup-status"}))
    assert "every 2s" not in partial and "1 event deleted" in partial
    # And a new press is accepted again.
    with django_capture_on_commit_callbacks(execute=False) as third:
        client.post(URL + "cleanup/")
    assert len(third) == 1


def test_a_lost_request_stops_showing_as_running(acme):
    settings = retention_set(account=acme, days=30, actor=SYSTEM)
    cache.set(f"history:cleanup-requested:{acme.pk}", (tz.now() - timedelta(minutes=1)).isoformat())
    assert cleanup_requested_at(settings) is not None
    settings.last_cleanup_at = tz.now()
    assert cleanup_requested_at(settings) is None
    cache.delete(f"history:cleanup-requested:{acme.pk}")  # expired with its timeout
    settings.last_cleanup_at = None
    assert cleanup_requested_at(settings) is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="an estimate from PostgreSQL's planner")
def test_the_page_shows_an_estimate_not_a_count(login, adam, acme, anna, django_assert_max_num_queries):
    _old_events(acme, anna, 100, 90)
    retention_set(account=acme, days=30, actor=SYSTEM)
    assert isinstance(estimate_events_before(acme.pk, tz.now() - timedelta(days=30)), int)
    client = login(adam)
    client.get(URL)
    with django_assert_max_num_queries(8) as queries:
        html = _html(client.get(URL))
    assert 'data-testid="estimate"' in html
    sql = " ".join(q["sql"] for q in queries.captured_queries).lower()
    assert "explain" in sql and "count(" not in sql


def test_without_postgresql_there_is_no_estimate(acme):
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL estimates")
    assert estimate_events_before(acme.pk, tz.now()) is None
