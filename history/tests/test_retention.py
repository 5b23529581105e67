"""Retention: the period's bounds, the cleanup (only the account's events older than the cutoff,
in batches, recorded), and the hourly task that runs it for every account with a period."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone as tz

from accounts.access import Actor
from accounts.models import AuditEvent
from accounts.tests.factories import AccountFactory
from history.models import Event, HistorySettings
from history.services import (
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    EventIn,
    RetentionError,
    events_ingest,
    retention_accounts_due,
    retention_cleanup,
    retention_set,
)
from profiles.services import database_create, profile_create

SYSTEM = Actor.system()
pytestmark = pytest.mark.django_db


def _store(account, profile, *days_ago: float, key: str = "") -> list[int]:
    """Events of `profile` that happened `days_ago` days ago each (stored before any retention is set)."""
    now = tz.now()
    results = events_ingest(account=account, events=[
        EventIn("page.viewed", profile.pk, now - timedelta(days=d), {"url": f"/{i}"}, key=f"{key}{i}" if key else None)
        for i, d in enumerate(days_ago)
    ])
    assert all(r.status == "stored" for r in results), results
    return [r.id for r in results]


def _left(account) -> set[int]:
    return set(Event.objects.filter(account_id=account.pk).values_list("id", flat=True))


# --- the period ------------------------------------------------------------------------------------


def test_the_period_has_bounds(acme):
    for days in (MIN_RETENTION_DAYS - 1, 0, -5, MAX_RETENTION_DAYS + 1):
        with pytest.raises(RetentionError) as e:
            retention_set(account=acme, days=days, actor=SYSTEM)
        assert f"between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS:,} days" in str(e.value)
    assert not HistorySettings.objects.filter(account=acme).exists()
    assert retention_set(account=acme, days=MIN_RETENTION_DAYS, actor=SYSTEM).retention_days == MIN_RETENTION_DAYS
    assert retention_set(account=acme, days=MAX_RETENTION_DAYS, actor=SYSTEM).retention_days == MAX_RETENTION_DAYS
    assert retention_set(account=acme, days=None, actor=SYSTEM).retention_days is None
    assert HistorySettings.objects.filter(account=acme).count() == 1


def test_a_change_is_audited_once(acme, adam):
    retention_set(account=acme, days=90, actor=Actor(user=adam))
    retention_set(account=acme, days=90, actor=Actor(user=adam))  # unchanged: nothing to record
    retention_set(account=acme, days=None, actor=Actor(user=adam))
    changes = list(AuditEvent.objects.filter(account=acme, verb="history.retention_changed").order_by("id")
                   .values_list("data", flat=True))
    assert changes == [{"old": None, "new": 90}, {"old": 90, "new": None}]


# --- the cleanup -----------------------------------------------------------------------------------


def test_cleanup_deletes_only_the_accounts_events_older_than_the_cutoff(acme, globex, anna, gina):
    old = _store(acme, anna, 400, 95, 31)
    young = _store(acme, anna, 29, 1, 0)
    globex_old = _store(globex, gina, 400, 95)
    retention_set(account=acme, days=30, actor=SYSTEM)
    assert retention_cleanup(account_id=acme.pk) == len(old)
    assert _left(acme) == set(young)
    assert _left(globex) == set(globex_old)  # globex has no retention; and it is another account
    settings = HistorySettings.objects.get(account=acme)
    assert settings.last_cleanup_deleted == 3
    assert tz.now() - settings.last_cleanup_at < timedelta(seconds=30)


def test_cleanup_deletes_in_batches(acme, anna):
    old = _store(acme, anna, *[40 + i for i in range(7)])
    young = _store(acme, anna, 2)
    retention_set(account=acme, days=30, actor=SYSTEM)
    progress: list[int] = []
    assert retention_cleanup(account_id=acme.pk, batch=3, progress=progress.append) == 7
    assert progress == [3, 6, 7]  # three transactions of at most 3 rows
    assert _left(acme) == set(young)
    assert set(old).isdisjoint(_left(acme))


def test_cleanup_can_stop_after_some_batches_and_go_on_later(acme, anna):
    _store(acme, anna, *[40 + i for i in range(5)])
    retention_set(account=acme, days=30, actor=SYSTEM)
    assert retention_cleanup(account_id=acme.pk, batch=2, max_batches=1) == 2
    assert len(_left(acme)) == 3
    assert HistorySettings.objects.get(account=acme).last_cleanup_deleted == 2
    assert retention_cleanup(account_id=acme.pk, batch=2) == 3
    assert _left(acme) == set()


def test_without_a_period_nothing_is_deleted_or_recorded(acme, anna):
    kept = _store(acme, anna, 3000, 400)
    assert retention_cleanup(account_id=acme.pk) == 0
    retention_set(account=acme, days=None, actor=SYSTEM)
    assert retention_cleanup(account_id=acme.pk) == 0
    assert _left(acme) == set(kept)
    assert HistorySettings.objects.get(account=acme).last_cleanup_at is None


def test_a_cleanup_with_nothing_to_delete_is_recorded_as_zero(acme, anna):
    _store(acme, anna, 1)
    retention_set(account=acme, days=30, actor=SYSTEM)
    assert retention_cleanup(account_id=acme.pk) == 0
    settings = HistorySettings.objects.get(account=acme)
    assert settings.last_cleanup_at is not None and settings.last_cleanup_deleted == 0


def test_a_deleted_events_key_may_be_sent_again(acme, anna):
    """Retention frees the idempotency key with the row: an id from the far past is a new event
    (the API refuses times older than the period anyway)."""
    _store(acme, anna, 40, key="ev-")
    retention_set(account=acme, days=30, actor=SYSTEM)
    retention_cleanup(account_id=acme.pk)
    [again] = events_ingest(account=acme, events=[EventIn("page.viewed", anna.pk, None, {}, key="ev-0")])
    assert again.status == "stored"


# --- the hourly task -------------------------------------------------------------------------------


def test_the_task_cleans_every_account_with_a_period(acme, globex, anna, gina):
    initech = AccountFactory(name="Initech", slug="initech")
    db = database_create(account=initech, name="People", actor=SYSTEM)
    ivan = profile_create(database=db, values={"email": "ivan@initech.example.com"}, actor=SYSTEM)
    _store(acme, anna, 100, 50)
    acme_young = _store(acme, anna, 10)
    _store(globex, gina, 100)
    globex_young = _store(globex, gina, 50, 10)
    initech_all = _store(initech, ivan, 3000, 100, 1)
    retention_set(account=acme, days=30, actor=SYSTEM)
    retention_set(account=globex, days=60, actor=SYSTEM)
    assert set(retention_accounts_due()) == {acme.pk, globex.pk}

    from history.tasks import retention_cleanup_bulk_task

    assert retention_cleanup_bulk_task.apply().get() == 3
    assert _left(acme) == set(acme_young)
    assert _left(globex) == set(globex_young)
    assert _left(initech) == set(initech_all)
    assert HistorySettings.objects.get(account=acme).last_cleanup_deleted == 2
    assert HistorySettings.objects.get(account=globex).last_cleanup_deleted == 1
    assert not HistorySettings.objects.filter(account=initech).exists()
    # Run again: nothing more to do.
    assert retention_cleanup_bulk_task.apply().get() == 0


def test_the_task_is_on_the_beat_schedule():
    from cdp.celery import app

    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule["history.tasks.retention_cleanup_bulk_task"] <= timedelta(hours=1)


@pytest.mark.django_db(transaction=True)
def test_a_big_cleanup_rebuilds_the_time_index(acme, anna, monkeypatch):
    from django.db import connection

    from history.services import lifecycle

    if connection.vendor != "postgresql":
        pytest.skip("the BRIN on occurred_at is PostgreSQL's")
    monkeypatch.setattr(lifecycle, "BRIN_REBUILD_AFTER", 2)
    _store(acme, anna, 40, 50, 60)
    retention_set(account=acme, days=30, actor=SYSTEM)
    statements: list[str] = []

    def spy(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        assert lifecycle.retention_cleanup(account_id=acme.pk) == 3
    assert "REINDEX INDEX CONCURRENTLY event_occurred_brin" in statements
