"""Fixed-window rate limits on the shared cache, for public endpoints (the subscribe endpoint,
the website snippet's collector)."""

from __future__ import annotations

import logging
import time

from django.core.cache import cache

log = logging.getLogger(__name__)


def over_limit(bucket: str, limit: int, window: int = 60) -> int:
    """Count one request in `bucket`'s current window; the seconds to wait when it is over
    `limit`, else 0. If the cache is down the request passes (and a warning is logged): a rate
    limit must not take a public endpoint down with it."""
    now = int(time.time())
    key = f"ratelimit:{bucket}:{now // window}"
    try:
        cache.add(key, 0, timeout=window + 5)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window + 5)
            count = 1
    except Exception:
        log.warning("rate limit %s unavailable", bucket, exc_info=True)
        return 0
    return ((window - now % window) or 1) if count > limit else 0
