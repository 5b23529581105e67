"""The checks behind /readyz. Each returns a `Check`; none raises, none says more than an
operator needs (no URLs, hosts, passwords or exception texts that could carry them: only the
exception's class name).

- database: SELECT 1 on the default connection;
- redis: PING, when REDIS_URL is set (else "skipped");
- workers: every queue of CELERY_TASK_QUEUES_NAMES has a worker seen within three heartbeats;
- ticks: the mailings and scenarios ticks (OPS_READY_TICKS) succeeded within OPS_TICK_MAX_LAG_SECONDS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection

from cdp.ops import beacons
from cdp.ops.queues import queue_names


@dataclass
class Check:
    name: str
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.detail}


def _error(exc: BaseException) -> str:
    return type(exc).__name__


def check_database() -> Check:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure to reach the database means "not ready"
        return Check("database", False, {"error": _error(exc)})
    return Check("database", True, {"ms": round((time.monotonic() - started) * 1000, 1)})


def check_redis() -> Check:
    client = beacons.redis_client()
    if client is None:
        return Check("redis", True, {"skipped": "REDIS_URL is not set (embedded broker)"})
    started = time.monotonic()
    try:
        client.ping()
    except Exception as exc:  # redis.RedisError, OSError: not reachable
        return Check("redis", False, {"error": _error(exc)})
    return Check("redis", True, {"ms": round((time.monotonic() - started) * 1000, 1)})


def check_workers() -> Check:
    try:
        seen = beacons.workers()
    except Exception as exc:  # the beacon store (Redis) is down: the redis check says why
        return Check("workers", False, {"error": _error(exc)})
    consumed = {q for record in seen.values() for q in record.get("queues", [])}
    missing = [q for q in queue_names() if q not in consumed]
    return Check("workers", not missing, {"seen": len(seen), "queues_without_worker": missing})


def ready_ticks() -> list[str]:
    return list(getattr(settings, "OPS_READY_TICKS", ["mailings-tick", "scenarios-tick"]))


def check_ticks() -> Check:
    try:
        last = beacons.ticks()
    except Exception as exc:
        return Check("ticks", False, {"error": _error(exc)})
    limit = float(getattr(settings, "OPS_TICK_MAX_LAG_SECONDS", 60))
    now = time.time()
    lags = {name: (round(now - last[name]["at"], 1) if name in last else None) for name in ready_ticks()}
    late = [name for name, lag in lags.items() if lag is None or lag > limit]
    return Check("ticks", not late, {"lag_seconds": lags, "late": late, "max_lag_seconds": limit})


def readiness() -> list[Check]:
    """Every check, in a fixed order."""
    return [check_database(), check_redis(), check_workers(), check_ticks()]


def summary(checks: list[Check]) -> dict[str, Any]:
    """The /readyz body: {"status": "ok"|"fail", "checks": {name: {...}}, "failing": [names]}."""
    failing = [c.name for c in checks if not c.ok]
    return {"status": "fail" if failing else "ok", "failing": failing,
            "checks": {c.name: c.as_dict() for c in checks}}

