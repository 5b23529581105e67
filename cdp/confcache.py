"""Per-process caches of the configuration hot paths read on every request (API tokens, profile
databases, event types), which every process drops at once when any of it changes.

One shared generation lives in the cache (Redis in production): `changed()` bumps it, now and
again after the changing transaction commits (a process that refilled its caches in between,
still seeing the old rows, drops them once more). A process compares the generation with the
one its caches were filled under at most once per request: the API reads it in the same Redis
round trip as the rate limit (`pipeline_get`, then `sync`); other callers use `check()`. When
the generation moved, or the caches are older than MAX_AGE (a bump lost while Redis was down),
every registered cache is emptied. With the cache unreachable nothing is cached: each request
reads the database, never a stale row.

A cache is a plain dict registered here once (`register`); what it holds is its owner's business.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from django.core.cache import cache
from django.db import transaction

log = logging.getLogger(__name__)

KEY = "config:generation"
MAX_AGE = 60.0  # seconds a process trusts its caches without seeing the generation move

_CACHES: list[dict[Any, Any]] = []
_clock = time.monotonic  # tests move it
_state: dict[str, Any] = {"gen": None, "since": 0.0, "checked": 0.0}


def register(store: dict[Any, Any]) -> dict[Any, Any]:
    """Make `store` one of the caches emptied when the configuration changes; returns it."""
    _CACHES.append(store)
    return store


def clear() -> None:
    for store in _CACHES:
        store.clear()
    _state.update(gen=None, since=0.0, checked=0.0)


def sync(gen: bytes | None) -> bool:
    """The generation just read from the cache: empty the caches if it moved (or they are old).
    Returns whether the caches may be used (False when the generation is unknown)."""
    now = _clock()
    if gen is None:
        clear()
        return False
    if gen != _state["gen"] or now - _state["since"] > MAX_AGE:
        for store in _CACHES:
            store.clear()
        _state.update(gen=gen, since=now)
    _state["checked"] = now
    return True


def check(fresh_within: float = 0.0) -> bool:
    """Read the generation (unless this process did less than `fresh_within` seconds ago) and
    sync; whether the caches may be used."""
    if fresh_within and _state["gen"] is not None and _clock() - _state["checked"] < fresh_within:
        return True
    return sync(read())


_CLIENT: list[Any] = []  # [(pool, client)]: one Redis client object per connection pool, not one per call


def raw_client() -> Any | None:
    """The Redis client behind Django's Redis cache backend, one per process (None for other
    backends). Keys are the caller's to make: `cache.make_and_validate_key(key)`."""
    inner = getattr(cache, "_cache", None)
    pool_of = getattr(inner, "_get_connection_pool", None)
    if pool_of is None:
        return None
    pool = pool_of(True)
    if not _CLIENT or _CLIENT[0][0] is not pool:
        _CLIENT[:] = [(pool, inner._client(connection_pool=pool))]
    return _CLIENT[0][1]


def read() -> bytes | None:
    """The current generation (set up if missing), or None when the cache is unreachable."""
    try:
        client = raw_client()
        if client is not None:
            key = cache.make_and_validate_key(KEY)
            gen = client.get(key)
            if gen is None:
                client.set(key, uuid.uuid4().hex, nx=True)
                gen = client.get(key)
            return gen
        gen = cache.get(KEY)
        if gen is None:
            cache.add(KEY, uuid.uuid4().hex, timeout=None)
            gen = cache.get(KEY)
        return gen.encode() if isinstance(gen, str) else gen
    except Exception:
        log.warning("configuration cache unavailable: reading from the database", exc_info=True)
        return None


def pipeline_get(commands: list[tuple[str, tuple[Any, ...]]]) -> tuple[list[Any], bytes | None] | None:
    """Run Redis `commands` (name, args; keys already made) and read the generation in ONE round
    trip; (their results, the generation). None when the backend is not Redis (the caller falls
    back to separate calls); raises when Redis is unreachable."""
    client = raw_client()
    if client is None:
        return None
    pipe = client.pipeline(transaction=False)
    for name, args in commands:
        getattr(pipe, name)(*args)
    pipe.get(cache.make_and_validate_key(KEY))
    *results, gen = pipe.execute()
    if gen is None:
        gen = read()
    return results, gen


def watch(*models: Any) -> None:
    """Saving or deleting a row of these models is a configuration change (call from ready())."""
    from django.db.models.signals import post_delete, post_save

    for model in models:
        post_save.connect(_on_change, sender=model, dispatch_uid=f"confcache:save:{model._meta.label}")
        post_delete.connect(_on_change, sender=model, dispatch_uid=f"confcache:delete:{model._meta.label}")


def _on_change(**_: Any) -> None:
    changed()


def changed() -> None:
    """Configuration the caches may hold changed: every process drops them. Call it in the
    changing transaction (`watch` makes the models' signals do it; a bulk `update()` must call
    it itself)."""
    _bump()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(_bump)


def _bump() -> None:
    clear()
    try:
        client = raw_client()
        if client is not None:
            client.set(cache.make_and_validate_key(KEY), uuid.uuid4().hex)
        else:
            cache.set(KEY, uuid.uuid4().hex, timeout=None)
    except Exception:
        log.warning("configuration cache unavailable: other processes see the change within %.0f s", MAX_AGE,
                    exc_info=True)
