"""Celery queue lengths and the age of each queue's oldest waiting message, read from the broker
directly (no `celery inspect`, which waits for every worker to answer).

- Redis (REDIS_URL): kombu keeps a queue as a list per priority step (`name`, `name\\x06\\x163`, ...),
  pushed on the left and popped on the right, so LLEN is the length and the right-most element
  the oldest message; its `cdp_sent_at` header (signals.py) gives its age. A few round trips a
  queue in one pipeline, whatever the length.
- Filesystem broker (embedded default): one file a message, `<ms>_<uuid>.<queue>.msg`, in the
  queue folder; the count of files is the length, and the oldest file's header (or, for a
  message published before the header existed, its mtime) gives the age. One directory listing.

Messages a worker has prefetched or is running (acks_late) are not waiting and not counted.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from cdp.ops.beacons import redis_client
from cdp.ops.signals import SENT_AT_HEADER

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu.transport.redis.PRIORITY_STEPS


@dataclass(frozen=True)
class QueueState:
    name: str
    length: int
    oldest_age: float | None  # seconds; None when empty or the age cannot be told


def queue_names() -> list[str]:
    return list(getattr(settings, "CELERY_TASK_QUEUES_NAMES", ("default",)))


def _age(raw: bytes | str | None, now: float, fallback: float | None = None) -> float | None:
    if raw is None:
        return None
    try:
        sent_at = json.loads(raw).get("headers", {}).get(SENT_AT_HEADER)
    except (ValueError, AttributeError):
        sent_at = None
    when = float(sent_at) if sent_at is not None else fallback
    return None if when is None else max(0.0, round(now - when, 3))


def _redis_states(client: Any, names: list[str]) -> list[QueueState]:
    keys = {name: [name if p == 0 else f"{name}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS] for name in names}
    pipe = client.pipeline(transaction=False)
    for name in names:
        for key in keys[name]:
            pipe.llen(key)
            pipe.lindex(key, -1)
    answers = pipe.execute()
    now = time.time()
    out = []
    for i, name in enumerate(names):
        chunk = answers[i * 2 * len(PRIORITY_STEPS):(i + 1) * 2 * len(PRIORITY_STEPS)]
        lengths, oldest = chunk[0::2], chunk[1::2]
        ages = [a for a in (_age(raw, now) for raw in oldest) if a is not None]
        out.append(QueueState(name, int(sum(lengths)), max(ages) if ages else None))
    return out


def _file_states(folder: Path, names: list[str]) -> list[QueueState]:
    oldest: dict[str, tuple[int, str]] = {}
    counts = dict.fromkeys(names, 0)
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        entries = []
    for filename in entries:
        stamp, _, rest = filename.partition("_")
        queue = rest.partition(".")[2].removesuffix(".msg")
        if queue not in counts or not stamp.isdigit():
            continue
        counts[queue] += 1
        if queue not in oldest or int(stamp) < oldest[queue][0]:
            oldest[queue] = (int(stamp), filename)
    now = time.time()
    out = []
    for name in names:
        age = None
        if name in oldest:
            path = folder / oldest[name][1]
            try:
                age = _age(path.read_bytes(), now, fallback=path.stat().st_mtime)
            except OSError:  # taken by a worker while we looked
                age = None
        out.append(QueueState(name, counts[name], age))
    return out


def queue_states() -> list[QueueState]:
    """Length and oldest age of every queue of CELERY_TASK_QUEUES_NAMES, in that order.
    Raises the broker's error (redis.RedisError) when it cannot be asked."""
    names = queue_names()
    client = redis_client()
    if client is not None:
        return _redis_states(client, names)
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    folder = options.get("data_folder_in")
    if not folder:
        return [QueueState(name, 0, None) for name in names]
    return _file_states(Path(folder), names)
