"""Celery hooks (connected once by OpsConfig.ready(), in every process that loads Django):

- before_task_publish: stamps `cdp_sent_at` (epoch seconds) in the message headers, so the age
  of the oldest message of a queue can be read from the message itself (queues.py);
- task_prerun / task_postrun: the task's id and name in the log context (logs.py);
- task_success of a periodic task of the beat schedule: its tick beacon (beacons.py);
- worker_ready / worker_shutdown: a daemon thread in the worker's main process that writes the
  worker's heartbeat every OPS_HEARTBEAT_SECONDS, removed again at a clean shutdown.

The heartbeat says the worker process is up and connected; it does not prove that a task slot
is free (a worker busy with a long batch still beats): queue ages show that.

No hook raises: a beacon that cannot be written (Redis down) is logged at most once a minute and
the task or publish goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache
from typing import Any

from celery import signals

from cdp.ops import beacons
from cdp.ops.logs import job_id_var, job_name_var

log = logging.getLogger(__name__)
SENT_AT_HEADER = "cdp_sent_at"

_task_tokens: dict[str, tuple[Any, Any, float]] = {}
_warned_at = 0.0


def _warn(what: str) -> None:
    global _warned_at
    now = time.monotonic()
    if now - _warned_at > 60:
        _warned_at = now
        log.warning("ops: could not write the %s beacon", what, exc_info=True)


@cache
def periodic_tasks() -> dict[str, str]:
    """{task name: beat schedule key} of the project's Celery app."""
    from cdp.celery import app

    return {entry["task"]: key for key, entry in (app.conf.beat_schedule or {}).items()}


def on_before_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and SENT_AT_HEADER not in headers:
        headers[SENT_AT_HEADER] = round(time.time(), 3)


def on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if not task_id:
        return
    name = getattr(task, "name", "") or ""
    _task_tokens[task_id] = (job_id_var.set(task_id), job_name_var.set(name), time.monotonic())


def on_postrun(task_id: str | None = None, **_: Any) -> None:
    tokens = _task_tokens.pop(task_id or "", None)
    if tokens is not None:
        job_name_var.reset(tokens[1])
        job_id_var.reset(tokens[0])


def on_success(sender: Any = None, **_: Any) -> None:
    name = getattr(sender, "name", "")
    key = periodic_tasks().get(name)
    if key is None:
        return
    request_id = getattr(getattr(sender, "request", None), "id", None) or ""
    started = _task_tokens.get(request_id, (None, None, time.monotonic()))[2]
    try:
        beacons.tick_record(name=key, task=name, seconds=round(time.monotonic() - started, 4))
    except Exception:  # the tick did its work; a missing record only shows as lag
        _warn("tick")


class Heartbeat(threading.Thread):
    """Writes one worker's heartbeat until stopped."""

    def __init__(self, *, hostname: str, queues: list[str], concurrency: int | None) -> None:
        super().__init__(name="cdp-ops-heartbeat", daemon=True)
        self.hostname, self.queues, self.concurrency = hostname, queues, concurrency
        self.stopped = threading.Event()

    def beat(self) -> None:
        try:
            beacons.worker_record(hostname=self.hostname, queues=self.queues, concurrency=self.concurrency)
        except Exception:  # Redis down: the probes say so; the worker keeps working
            _warn("worker")

    def run(self) -> None:
        while not self.stopped.is_set():
            self.beat()
            self.stopped.wait(beacons.heartbeat_seconds())


_heartbeat: Heartbeat | None = None


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    global _heartbeat
    hostname = getattr(sender, "hostname", "") or "worker"
    try:
        queues = [q.name for q in sender.task_consumer.queues]
    except AttributeError:
        queues = list(sender.app.amqp.queues.consume_from) if sender is not None else []
    concurrency = getattr(getattr(sender, "controller", None), "concurrency", None)
    _heartbeat = Heartbeat(hostname=hostname, queues=queues, concurrency=concurrency)
    _heartbeat.start()


def on_worker_shutdown(**_: Any) -> None:
    if _heartbeat is None:
        return
    _heartbeat.stopped.set()
    try:
        beacons.delete("worker", _heartbeat.hostname)
    except Exception:  # it expires by itself within three beats
        _warn("worker")


def connect() -> None:
    """Connect the hooks (idempotent: Celery's signals keep one receiver per dispatch_uid)."""
    signals.before_task_publish.connect(on_before_publish, dispatch_uid="cdp.ops.publish", weak=False)
    signals.task_prerun.connect(on_prerun, dispatch_uid="cdp.ops.prerun", weak=False)
    signals.task_postrun.connect(on_postrun, dispatch_uid="cdp.ops.postrun", weak=False)
    signals.task_success.connect(on_success, dispatch_uid="cdp.ops.success", weak=False)
    signals.worker_ready.connect(on_worker_ready, dispatch_uid="cdp.ops.worker_ready", weak=False)
    signals.worker_shutdown.connect(on_worker_shutdown, dispatch_uid="cdp.ops.worker_shutdown", weak=False)
