"""The Celery app. Configuration comes from Django settings (CELERY_* names).

Queues are split by kind so a broadcast never delays a trigger:
- trigger: real-time work (trigger sends, transactional e-mail such as invitations);
- default: everyday background work (exports, system ticks);
- bulk: big batch work (imports, broadcast batches, segment rebuilds).

Tasks pick their queue by name through `task_routes`; a module declares `QUEUE = "bulk"`
nowhere else. Due work lives in the database, never in long ETA/countdown.
"""

from __future__ import annotations

import os
from datetime import timedelta

from celery import Celery
from celery.fixups.django import DjangoFixup, DjangoWorkerFixup
from celery.signals import celeryd_init, worker_init
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")


# What a worker reverses with (links in messages, invitations, exports): every route but the API's.
WORKER_URLCONF = "cdp.urls_pages"


class _WorkerFixup(DjangoWorkerFixup):
    """Celery's Django worker fixup, whose start-up system checks skip the "urls" tag: they would
    import cdp.urls, every view and form and the API's routers and schemas, before the first task
    (issue 8: a worker's peak RSS <= 150 MB). Celery ignores what the checks report anyway;
    `manage.py check`, migrate and the web run them all. CELERY_SKIP_CHECKS still skips every check."""

    def validate_models(self) -> None:
        from django.core.checks.registry import registry

        self.django_setup()
        if not os.environ.get("CELERY_SKIP_CHECKS"):
            for check in registry.get_checks():  # what run_checks() runs (untagged ones too), but "urls"
                if "urls" not in check.tags:
                    check(app_configs=None, databases=None)

    def close_database(self, **kwargs: object) -> None:
        """Before and after each task: what Django does around each request. A connection is
        closed only when it is unusable (an error, and its health check fails), its autocommit was
        left changed, or it is older than CONN_MAX_AGE; CONN_HEALTH_CHECKS checks it before its
        next use. Celery's own closes every connection twice a task unless CELERY_DB_REUSE_MAX is
        set: each task then opened a new PostgreSQL session (a backend forked, its catalog caches
        cold, so its first queries planned slowly): 926 sessions in one 10,000-profile scenario
        benchmark, 13 with this. The worker's process start still closes everything it inherited
        (`_close_database`, called directly)."""
        for conn in self._db.connections.all(initialized_only=True):
            try:
                conn.close_if_unusable_or_obsolete()
            except self.interface_errors:
                pass
            except self.DatabaseError as exc:
                if "closed" not in str(exc) and "not connected" not in str(exc):
                    raise


class _DjangoFixup(DjangoFixup):
    @property
    def worker_fixup(self) -> DjangoWorkerFixup:
        if self._worker_fixup is None:
            self._worker_fixup = _WorkerFixup(self.app)
        return self._worker_fixup

    @worker_fixup.setter
    def worker_fixup(self, value: DjangoWorkerFixup) -> None:
        self._worker_fixup = value


def django_fixup(app: Celery) -> DjangoFixup | None:
    """Celery's own `celery.fixups.django:fixup`, with the worker fixup above."""
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return _DjangoFixup(app).install()
    return None


@celeryd_init.connect
def worker_urlconf(**_: object) -> None:
    """A worker process (`celery worker`, after Django is set up, before any task) reverses with
    WORKER_URLCONF: the same paths and names as cdp.urls without importing the API (~15 MB a
    process), which a worker never serves or reverses. Not in tests' in-process workers: they
    share the test process's URLconf."""
    from django.conf import settings
    from django.urls import clear_url_caches

    settings.ROOT_URLCONF = WORKER_URLCONF
    clear_url_caches()


@worker_init.connect
def worker_warm(**_: object) -> None:
    """Import WORKER_URLCONF (the page views it names) and build its reverse map once Django is
    set up, before the pool starts: every batch with links reverses (tracking, unsubscribe), and
    otherwise the first one of each process paid for the import (seconds of CPU where no bytecode
    cache is written), which a trigger mail's first recipient waited for. Same memory as after a
    first batch; with prefork the children fork warm."""
    from django.urls import get_resolver

    get_resolver().reverse_dict  # noqa: B018 (imports the URLconf and builds the map)


app = Celery("cdp", fixups=["cdp.celery:django_fixup"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name, routing_key=name) for name in ("trigger", "scenarios", "default", "bulk")]
app.conf.task_routes = {
    # The scenario engine has its own queue: 100k profiles moving through a flow never delay a
    # trigger mailing, and a broadcast never delays a scenario step.
    # ... except its event-driven advances (event/API entries, released waits: small batches),
    # which must not wait behind an activation's bulk batches (before the glob: first match wins).
    "scenarios.tasks.participations_advance_trigger_task": {"queue": "trigger"},
    "scenarios.tasks.*": {"queue": "scenarios"},
    "accounts.tasks.invitation_send_task": {"queue": "trigger"},
    "accounts.tasks.password_reset_send_task": {"queue": "trigger"},
    "*.tasks.*_bulk_task": {"queue": "bulk"},
    "*.tasks_*.*_bulk_task": {"queue": "bulk"},  # task modules split by kind (profiles.tasks_import)
    "*.tasks.*_trigger_task": {"queue": "trigger"},
}
# System ticks. Each tick is idempotent, so two beats (or a missed one) do no harm.
app.conf.beat_schedule = {
    "jobs-sweep": {"task": "accounts.tasks.jobs_sweep_task", "schedule": timedelta(minutes=1)},
    "housekeeping": {"task": "accounts.tasks.housekeeping_task", "schedule": timedelta(minutes=15)},
    "subscriptions-resume": {"task": "resources.tasks.subscriptions_resume_task", "schedule": timedelta(minutes=5)},
    "subscription-counts-compact": {"task": "resources.tasks.subscription_counts_compact_task", "schedule": timedelta(minutes=10)},
    "subscription-counts-rebuild": {"task": "resources.tasks.subscription_counts_rebuild_bulk_task", "schedule": timedelta(hours=24)},
    "events-dispatch": {"task": "history.tasks.events_drain_trigger_task", "schedule": timedelta(seconds=10)},
    "tracking-drain": {"task": "history.tasks.tracking_drain_trigger_task", "schedule": timedelta(seconds=30)},
    "events-retention": {"task": "history.tasks.retention_cleanup_bulk_task", "schedule": timedelta(hours=1)},
    "segments-tick": {"task": "segments.tasks.segments_tick_task", "schedule": timedelta(minutes=1)},
    "mailings-tick": {"task": "mailings.tasks.mailings_tick_task", "schedule": timedelta(seconds=5)},
    "mailings-housekeeping": {"task": "mailings.tasks.housekeeping_task", "schedule": timedelta(minutes=10)},
    "scenarios-tick": {"task": "scenarios.tasks.scenarios_tick_task", "schedule": timedelta(seconds=2)},
    "scenarios-housekeeping": {"task": "scenarios.tasks.housekeeping_task", "schedule": timedelta(minutes=10)},
}
app.autodiscover_tasks()
