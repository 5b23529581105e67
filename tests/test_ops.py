"""The operations endpoints: /healthz, /readyz, /metrics and the staff status page (cdp/ops).

Beacons (worker heartbeats, ticks) are written through the real store: Redis when REDIS_URL is
set, files under a temporary OPS_BEACON_DIR otherwise.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.models import Job
from cdp.celery import app as celery_app
from cdp.ops import beacons, queues, status
from mailings.models import LedgerEntry, MailingStat
from mailings.tests.factories import make_mailing, make_run, make_world, queue_entries

SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"\\\n]*",?)*\})? (-?[0-9.e+]+|NaN)$')
ALL_QUEUES = ["bulk", "default", "scenarios", "trigger"]


@pytest.fixture
def beacon_store(settings, tmp_path) -> Iterator[None]:
    settings.OPS_BEACON_DIR = str(tmp_path / "ops")
    for kind in ("worker", "tick"):
        beacons.clear(kind)
    yield
    for kind in ("worker", "tick"):
        beacons.clear(kind)


@pytest.fixture
def everything_seen(beacon_store) -> None:
    """A worker on every queue and both readiness ticks just now."""
    beacons.worker_record(hostname="bulk@ops-test", queues=["default", "bulk"], concurrency=2)
    beacons.worker_record(hostname="rt@ops-test", queues=["trigger", "scenarios"], concurrency=1)
    beacons.tick_record(name="mailings-tick", task="mailings.tasks.mailings_tick_task", seconds=0.01)
    beacons.tick_record(name="scenarios-tick", task="scenarios.tasks.scenarios_tick_task", seconds=0.01)


@pytest.fixture
def staff(olivia):
    olivia.is_staff = True
    olivia.save(update_fields=["is_staff"])
    return olivia


# --- /healthz, /readyz ------------------------------------------------------------------------------


def test_it_answers_healthz_without_touching_the_database(client):
    # No `db` fixture: pytest-django makes any query here raise.
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")


def test_it_is_ready_when_database_broker_workers_and_ticks_are(client, db, everything_seen):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "redis", "workers", "ticks"}
    assert body["checks"]["workers"]["seen"] == 2
    assert body["checks"]["workers"]["queues_without_worker"] == []


def test_it_answers_503_naming_a_queue_without_worker_and_late_ticks(client, db, beacon_store, settings):
    beacons.worker_record(hostname="bulk@ops-test", queues=["default", "bulk"], concurrency=2)
    beacons.tick_record(name="mailings-tick", task="mailings.tasks.mailings_tick_task", seconds=0.01)
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "fail" and body["failing"] == ["workers", "ticks"]
    assert body["checks"]["workers"]["queues_without_worker"] == ["trigger", "scenarios"]
    assert body["checks"]["ticks"]["late"] == ["scenarios-tick"]
    assert body["checks"]["database"]["ok"] is True
    # Nothing an anonymous caller should learn: no connection strings, hosts or passwords.
    text = response.content.decode()
    for secret in (settings.SECRET_KEY, settings.DATABASES["default"]["NAME"], "redis://", "postgres"):
        assert secret not in text


def test_it_counts_a_tick_late_after_the_max_lag(client, db, everything_seen, settings):
    settings.OPS_TICK_MAX_LAG_SECONDS = 0.05
    time.sleep(0.1)
    body = client.get("/readyz").json()
    assert body["failing"] == ["ticks"]
    assert sorted(body["checks"]["ticks"]["late"]) == ["mailings-tick", "scenarios-tick"]


def test_it_forgets_a_worker_after_three_missed_heartbeats(db, beacon_store, settings):
    settings.OPS_HEARTBEAT_SECONDS = 0.05
    beacons.worker_record(hostname="gone@ops-test", queues=["bulk"], concurrency=1)
    assert list(beacons.workers()) == ["gone@ops-test"]
    time.sleep(1.1 if settings.REDIS_URL else 0.2)  # Redis TTLs are whole seconds (at least 1)
    assert beacons.workers() == {}


def _age_tick(name: str, *, seconds: float) -> None:
    """Move a tick record's time back by `seconds` (as if written then), in whichever store."""
    record = beacons.ticks()[name]
    record["at"] -= seconds
    client = beacons.redis_client()
    if client is not None:
        client.set(f"{beacons.PREFIX}tick:{name}", json.dumps(record), ex=600)
    else:
        (Path(beacons._dir("tick")) / f"{name}.json").write_text(json.dumps(record))


def test_it_records_a_tick_when_a_periodic_task_succeeds(db, beacon_store, settings):
    from accounts.tasks import jobs_sweep_task

    before = time.time()
    jobs_sweep_task.delay()  # eager: the same signals as in a worker
    ticks = {t.name: t for t in status.ticks()}
    assert ticks["jobs-sweep"].last is not None and ticks["jobs-sweep"].last >= before
    assert ticks["jobs-sweep"].every == 60 and not ticks["jobs-sweep"].late
    assert ticks["mailings-tick"].last is None and not ticks["mailings-tick"].late  # not seen yet
    beacons.write("tick", "segments-tick", {"name": "segments-tick", "task": "x", "seconds": 0.1}, ttl=600)
    assert not next(t for t in status.ticks() if t.name == "segments-tick").late
    _age_tick("segments-tick", seconds=181)  # 3 periods of 60 s and one more second
    assert next(t for t in status.ticks() if t.name == "segments-tick").late


# --- queues -----------------------------------------------------------------------------------------


def _purge(names: list[str]) -> None:
    with celery_app.connection_for_write() as conn:
        for name in names:
            with contextlib.suppress(Exception):  # a queue never declared has nothing to purge
                conn.default_channel.queue_purge(name)


@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_it_counts_waiting_messages_and_the_age_of_the_oldest(db):
    _purge(ALL_QUEUES)
    try:
        for _ in range(3):
            celery_app.send_task("ops.tests.nothing", queue="bulk", routing_key="bulk")
        time.sleep(0.3)
        celery_app.send_task("ops.tests.nothing", queue="trigger", routing_key="trigger")
        states = {s.name: s for s in queues.queue_states()}
        assert [s.name for s in queues.queue_states()] == ["trigger", "scenarios", "default", "bulk"]
        assert states["bulk"].length == 3 and states["trigger"].length == 1
        assert states["default"].length == 0 and states["default"].oldest_age is None
        # The oldest bulk message is the first one, sent at least 0.3 s before the trigger one.
        assert states["bulk"].oldest_age is not None and states["trigger"].oldest_age is not None
        assert 0.25 <= states["bulk"].oldest_age - states["trigger"].oldest_age < 5
    finally:
        _purge(ALL_QUEUES)


# --- /metrics ---------------------------------------------------------------------------------------


def test_it_hides_metrics_without_the_token_or_a_staff_session(client, login, olivia, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert login(olivia).get("/metrics").status_code == 404  # an account owner is not staff
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"}).status_code == 200
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert SAMPLE.match(line), line
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def test_it_exposes_sends_ledger_jobs_and_ticks_in_prometheus_format(
        client, login, staff, acme, everything_seen, django_assert_max_num_queries):
    world = make_world(acme, n=4, sms=False)
    mailing = make_mailing(world)
    run = make_run(mailing)
    entries = queue_entries(run)
    LedgerEntry.objects.filter(pk=entries[0].pk).update(status="sending", lease_until=timezone.now())
    # What the dispatch writes as it settles rows: counters, not ledger scans.
    now = timezone.now()
    MailingStat.objects.bulk_create([
        MailingStat(account_id=acme.pk, mailing_id=mailing.pk, run_id=run.pk, metric=m, bucket=now, delta=d)
        for m, d in (("sent", 1200), ("sent", 34), ("failed", 5), ("skipped", 7), ("opened", 99))])
    Job.objects.create(account=acme, kind="profile_import", title="Import", state=Job.State.SUCCEEDED,
                       started_at=now - timedelta(seconds=42), finished_at=now, heartbeat_at=now)
    Job.objects.create(account=acme, kind="segment_rebuild", title="Stuck", state=Job.State.RUNNING,
                       started_at=now - timedelta(hours=1), heartbeat_at=now - timedelta(minutes=30))

    staff_client = login(staff, acme)
    with django_assert_max_num_queries(20):
        response = staff_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.content.decode())
    assert samples['cdp_sends_total{channel="email",outcome="sent"}'] == 1234
    assert samples['cdp_sends_total{channel="email",outcome="failed"}'] == 5
    assert samples['cdp_ledger_rows{status="queued"}'] == 3
    assert samples['cdp_ledger_rows{status="sending"}'] == 1
    assert samples['cdp_ledger_rows{status="skipped"}'] == 7
    assert samples['cdp_mailing_runs{state="sending"}'] == 1
    assert samples['cdp_jobs_finished_last_hour{kind="profile_import",state="succeeded"}'] == 1
    assert samples['cdp_job_duration_seconds{kind="profile_import",state="succeeded",quantile="0.95"}'] == 42
    assert samples["cdp_jobs_stuck"] == 1
    assert samples["cdp_workers_seen"] == 2
    assert samples['cdp_queue_workers{queue="trigger"}'] == 1
    assert samples['cdp_tick_lag_seconds{tick="mailings-tick"}'] < 5
    assert samples['cdp_tick_interval_seconds{tick="scenarios-tick"}'] == 2
    assert 'cdp_queue_length{queue="bulk"}' in samples
    assert samples['cdp_participations{state="active"}'] == 0
    assert all(v == 0 for k, v in samples.items() if k.startswith("cdp_scrape_error"))


# --- the status page --------------------------------------------------------------------------------


def test_it_shows_the_status_page_to_staff_only(client, login, olivia, adam, bob, charlie, acme, globex, beacon_store):
    assert client.get("/ops/status").status_code == 404
    for user, account in ((olivia, acme), (adam, acme), (bob, acme), (charlie, globex)):
        assert login(user, account).get("/ops/status").status_code == 404, user
    assert 'data-testid="nav-ops-status"' not in login(olivia, acme).get("/").content.decode()


def test_it_shows_workers_queues_ticks_stuck_jobs_and_stalled_runs(login, staff, acme, globex, everything_seen):
    world = make_world(globex, n=3, sms=False)
    mailing = make_mailing(world, name="Frozen broadcast")
    run = make_run(mailing)
    queue_entries(run)
    stale = timezone.now() - timedelta(hours=1)
    from mailings.models import Run

    Run.objects.filter(pk=run.pk).update(planned_at=stale, created_at=stale)
    Job.objects.create(account=globex, kind="profile_export", title="Export of everyone", state=Job.State.RUNNING,
                       started_at=stale, heartbeat_at=stale)
    Job.objects.create(account=acme, kind="profile_export", title="Healthy export", state=Job.State.RUNNING,
                       started_at=timezone.now(), heartbeat_at=timezone.now())

    response = login(staff, acme).get("/ops/status")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="nav-ops-status"' in page
    assert "bulk@ops-test" in page and "rt@ops-test" in page
    assert "Export of everyone" in page and "Healthy export" not in page
    assert "Frozen broadcast" in page and f"run #{run.pk}" in page
    assert "mailings-tick" in page and "events-retention" in page
    # The htmx refresh gets the panels only.
    partial = login(staff, acme).get("/ops/status", headers={"HX-Request": "true"}).content.decode()
    assert "Frozen broadcast" in partial and "<html" not in partial


def test_it_does_not_count_a_run_that_keeps_settling_as_stalled(db, acme):
    world = make_world(acme, n=3, sms=False)
    run = make_run(make_mailing(world))
    rows = queue_entries(run)
    stale = timezone.now() - timedelta(hours=1)
    from mailings.models import Run

    Run.objects.filter(pk=run.pk).update(planned_at=stale)
    assert [r.run_id for r in status.runs_stalled()] == [run.pk]
    LedgerEntry.objects.filter(pk=rows[0].pk).update(status="sent", updated_at=timezone.now())
    assert status.runs_stalled() == []


def test_it_reports_redis_down_without_its_address_and_keeps_the_other_metrics(client, login, staff, acme, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["redis"] == {"ok": False, "error": "ConnectionError"}
    assert "redis" in body["failing"] and "workers" in body["failing"] and body["checks"]["database"]["ok"]
    assert "127.0.0.1:1" not in response.content.decode()
    samples = _samples(login(staff, acme).get("/metrics").content.decode())
    assert samples['cdp_scrape_error{source="broker"}'] == 1
    assert samples['cdp_scrape_error{source="workers"}'] == 1
    assert samples['cdp_scrape_error{source="mailings"}'] == 0 and 'cdp_ledger_rows{status="queued"}' in samples
    page = login(staff, acme).get("/ops/status")
    assert page.status_code == 200 and "Unavailable: workers (ConnectionError)" in page.content.decode()


@pytest.mark.parametrize(("seconds", "label"), [(0, "0 s"), (119, "119 s"), (600, "10 min"), (3600, "60 min"),
                                                 (9000, "2.5 h"), (86400, "24 h"), (3 * 86400 + 7200, "3 d 2 h")])
def test_it_labels_durations_for_people(seconds, label):
    assert status.duration_label(seconds) == label
