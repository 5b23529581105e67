"""Between tasks a worker keeps its database connection the way Django keeps one between requests
(cdp.celery._WorkerFixup.close_database): a healthy connection younger than CONN_MAX_AGE is
reused; a broken one, one left with autocommit changed or an obsolete one is closed. Celery's own
fixup closed every connection before and after each task, so every task opened a new PostgreSQL
session (926 in one scenario benchmark run, with cold catalog caches)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from django.db import connection

from cdp.celery import _WorkerFixup, app

TASK = SimpleNamespace(request=SimpleNamespace(is_eager=False))


@pytest.fixture
def fixup():
    return _WorkerFixup(app)


@pytest.fixture
def fresh():
    """An open connection, outside the test's transaction, that CONN_MAX_AGE would keep."""
    connection.ensure_connection()
    connection.close_at = None
    yield connection.connection
    connection.close()


def test_the_workers_use_this_fixup():
    from cdp.celery import _DjangoFixup

    assert isinstance(_DjangoFixup(app).worker_fixup, _WorkerFixup)


@pytest.mark.django_db(transaction=True)
def test_a_healthy_connection_is_kept_across_tasks(fixup, fresh):
    fixup.on_task_prerun(sender=TASK)
    fixup.on_task_postrun(sender=TASK)
    fixup.on_task_prerun(sender=TASK)
    assert connection.connection is fresh
    with connection.cursor() as cur:  # and it works (the health check passes)
        cur.execute("SELECT 1")
        assert cur.fetchone()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_a_connection_older_than_conn_max_age_is_closed(fixup, fresh):
    connection.close_at = time.monotonic() - 1
    fixup.on_task_postrun(sender=TASK)
    assert connection.connection is None


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="a file database's connection does not break; Django's SQLite is_usable() is always true")
@pytest.mark.django_db(transaction=True)
def test_a_broken_connection_is_closed_and_the_next_task_gets_a_new_one(fixup, fresh):
    fresh.close()  # what a server restart or a cut proxy looks like from here
    connection.errors_occurred = True  # Django's wrapper sets this when a query fails on it
    fixup.on_task_postrun(sender=TASK)
    assert connection.connection is None
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone()[0] == 1
    assert connection.connection is not fresh


@pytest.mark.django_db(transaction=True)
def test_a_connection_left_without_autocommit_is_closed(fixup, fresh):
    connection.set_autocommit(False)
    fixup.on_task_postrun(sender=TASK)
    assert connection.connection is None
    connection.set_autocommit(True)


def test_an_eager_task_leaves_the_connection_alone(fixup):
    eager = SimpleNamespace(request=SimpleNamespace(is_eager=True))
    called = []
    fixup.close_database = lambda **_: called.append(1)
    fixup.on_task_prerun(sender=eager)
    fixup.on_task_postrun(sender=eager)
    assert called == []
