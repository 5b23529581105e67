"""A real Celery worker on the configured broker (Redis when REDIS_URL is set, else the
filesystem transport of the embedded default) runs work enqueued on commit."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker

from accounts.access import Actor
from accounts.models import Job
from accounts.services import audit_export_start
from cdp.celery import app


@pytest.fixture
def real_worker(transactional_db):
    app.conf.task_always_eager = False
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False,
                      queues=["trigger", "default", "bulk"], shutdown_timeout=10):
        yield
    app.conf.task_always_eager = True


@pytest.mark.celery_worker
def test_a_job_enqueued_on_commit_runs_on_a_real_worker(real_worker, acme, olivia):
    job = audit_export_start(account=acme, actor=Actor(user=olivia), filters={})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_finished:
            break
        time.sleep(0.2)
    assert job.state == Job.State.SUCCEEDED, (job.state, job.error)
    assert job.result["rows"] >= 1 and job.result_file


@pytest.mark.celery_worker
def test_tasks_route_to_their_queues():
    from celery import current_app

    router = current_app.amqp.router
    assert router.route({}, "accounts.tasks.invitation_send_task")["queue"].name == "trigger"
    assert router.route({}, "accounts.tasks.audit_export_task")["queue"].name == "default"
    assert router.route({}, "profiles.tasks.import_bulk_task")["queue"].name == "bulk"
