"""Beacons: small timestamped records that processes leave for the probes and the status page.

Two kinds:
- "worker": each Celery worker writes `{hostname, queues, pid, concurrency, at}` every
  OPS_HEARTBEAT_SECONDS with a time-to-live of 3 beats; a worker not seen for that long is gone.
- "tick": each periodic task of the beat schedule writes `{name, task, at, seconds}` when it
  succeeds (the last successful run; its age is the tick's lag).

Where: Redis (`cdp:ops:<kind>:<name>` with a TTL, found with SCAN) when REDIS_URL is set, so any
web process sees every worker; else one JSON file a beacon under OPS_BEACON_DIR (VAR_DIR/ops):
the embedded default runs web, workers and beat on one machine, and a file write takes no SQLite
write lock (a database row every 15 s a worker would queue behind imports and sends).

Beacons are evidence, never state: losing them all (Redis flushed) makes /readyz fail until the
next heartbeat and tick (seconds), and loses nothing else.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

PREFIX = "cdp:ops:"
TICK_TTL = 7 * 24 * 3600  # a tick that has not run for a week is still worth showing as late
_SAFE = re.compile(r"[^A-Za-z0-9@._-]")


def heartbeat_seconds() -> float:
    return float(getattr(settings, "OPS_HEARTBEAT_SECONDS", 15))


def worker_ttl() -> float:
    """How long a worker counts as seen after its last heartbeat: three beats."""
    return 3 * heartbeat_seconds()


@cache
def _redis_for(url: str) -> Any:
    import redis

    # Short timeouts: the probes must answer quickly when Redis is down, not hang a web thread.
    return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


def redis_client() -> Any | None:
    """A Redis client for REDIS_URL (one a process), or None in the embedded default."""
    url = getattr(settings, "REDIS_URL", "")
    return _redis_for(url) if url else None


def _dir(kind: str) -> Path:
    base = Path(getattr(settings, "OPS_BEACON_DIR", "") or Path(settings.VAR_DIR) / "ops")
    return base / kind


def write(kind: str, name: str, payload: dict[str, Any], *, ttl: float) -> None:
    """Record `payload` (plus `at`, the time now) as the beacon `kind`/`name`, replacing the last
    one. Raises the storage's error (redis.RedisError, OSError): callers decide if that matters."""
    record = {**payload, "at": time.time()}
    data = json.dumps(record)
    client = redis_client()
    if client is not None:
        client.set(f"{PREFIX}{kind}:{name}", data, ex=max(1, math.ceil(ttl)))  # never shorter than asked
        return
    folder = _dir(kind)
    folder.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed: a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        fh.write(data)
    os.replace(tmp, folder / f"{_SAFE.sub('_', name)}.json")


def read_all(kind: str, *, ttl: float) -> dict[str, dict[str, Any]]:
    """Every live beacon of `kind` ({name: payload with `at`}); files older than `ttl` are
    skipped (Redis expires its keys itself). Raises the storage's error."""
    out: dict[str, dict[str, Any]] = {}
    client = redis_client()
    if client is not None:
        keys = sorted(client.scan_iter(match=f"{PREFIX}{kind}:*", count=500))
        for key, raw in zip(keys, client.mget(keys) if keys else [], strict=True):
            if raw is not None:
                name = key.decode()[len(PREFIX) + len(kind) + 1:]
                out[name] = json.loads(raw)
        return out
    folder = _dir(kind)
    if not folder.is_dir():
        return out
    now = time.time()
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):  # removed or replaced while we looked
            continue
        if now - float(record.get("at", 0)) <= ttl:
            out[record.get("name") or record.get("hostname") or path.stem] = record
    return out


def delete(kind: str, name: str) -> None:
    """Forget one beacon (a worker that shut down cleanly). Raises the storage's error."""
    client = redis_client()
    if client is not None:
        client.delete(f"{PREFIX}{kind}:{name}")
        return
    (_dir(kind) / f"{_SAFE.sub('_', name)}.json").unlink(missing_ok=True)


def clear(kind: str) -> None:
    """Forget every beacon of `kind` (tests, and `manage.py` after a host rename)."""
    client = redis_client()
    if client is not None:
        keys = list(client.scan_iter(match=f"{PREFIX}{kind}:*", count=500))
        if keys:
            client.delete(*keys)
        return
    folder = _dir(kind)
    if folder.is_dir():
        for path in folder.glob("*.json"):
            path.unlink(missing_ok=True)


def workers() -> dict[str, dict[str, Any]]:
    """Workers seen within the last three heartbeats: {hostname: {queues, pid, concurrency, at}}."""
    return read_all("worker", ttl=worker_ttl())


def ticks() -> dict[str, dict[str, Any]]:
    """The last successful run of each periodic task: {schedule name: {task, at, seconds}}."""
    return read_all("tick", ttl=TICK_TTL)


def tick_record(*, name: str, task: str, seconds: float) -> None:
    """Record that the periodic task `name` (a key of the beat schedule) has just succeeded."""
    write("tick", name, {"name": name, "task": task, "seconds": seconds}, ttl=TICK_TTL)


def worker_record(*, hostname: str, queues: list[str], concurrency: int | None) -> None:
    """A worker's heartbeat."""
    write("worker", hostname, {"hostname": hostname, "queues": sorted(queues), "pid": os.getpid(),
                               "concurrency": concurrency}, ttl=worker_ttl())
