"""Fixed-window rate limits on the shared cache, for public endpoints (the subscribe endpoint,
the website snippet's collector)."""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

log = logging.getLogger(__name__)


def count_in(key: str, *, timeout: int) -> int:
    """Add one to the counter `key` in the shared cache (made with `timeout` seconds to live) and
    return it. Raises when the cache is unreachable: the caller decides what that means."""
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=timeout)
        return 1


def over_limit(bucket: str, limit: int, window: int = 60) -> int:
    """Count one request in `bucket`'s current window; the seconds to wait when it is over
    `limit`, else 0. If the cache is down the request passes (and a warning is logged): a rate
    limit must not take a public endpoint down with it."""
    now = int(time.time())
    try:
        count = count_in(f"ratelimit:{bucket}:{now // window}", timeout=window + 5)
    except Exception:
        log.warning("rate limit %s unavailable", bucket, exc_info=True)
        return 0
    return ((window - now % window) or 1) if count > limit else 0
