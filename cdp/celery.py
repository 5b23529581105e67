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
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")

app = Celery("cdp")
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
