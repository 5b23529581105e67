"""Sending speed: token buckets shared by every worker process, per-recipient-domain limits and a
back-off registry for providers that say "slow down".

    throttle = default_throttle()
    grant = throttle.take("provider:12", 500, rate_per_second=200, burst=400)
    # send grant.granted messages now; defer the rest by grant.wait_s

- Buckets live in Redis (REDIS_URL): one Lua script refills by the time elapsed since the last
  take (Redis' own clock, so workers on different machines agree), takes up to N whole tokens
  and answers how many it granted and, when short, the seconds until the next token. Batches ask
  once: a batch of 500 gets what there is (at most `burst`) and sends that many.
- A key that is backed off (`backoff`) grants nothing until the back-off ends, in the same round
  trip: callers need not ask `blocked_for` before every take.
- Keys are the caller's: "provider:<id>" for a provider account, `domain_key(address,
  provider=...)` -> "domain:<provider>:<domain>" for a big mailbox provider behind it.
- Without REDIS_URL (the embedded mode: one worker) the buckets are per process.
- Redis configured but unreachable: warned about once per outage, then FAIL CLOSED for
  MAILINGS_THROTTLE_OUTAGE_WAIT seconds (default 5): takes grant nothing and say how long to wait.
  Most outages are a restart or a fail-over and end within that; sending at full speed in
  every worker at once would multiply the provider's limit by the number of workers, which gets
  a marketing sender's IPs throttled or blocked for hours. After that wait each process goes on at
  the full rate on its own in-process bucket (the mailing must not stall for a long outage;
  providers' 421s still back it off, locally), and tries Redis again every
  MAILINGS_THROTTLE_REDIS_RETRY seconds (default 5); the first success ends the outage.
- Back-off (SMTP 421/451, HTTP 429): `backoff(key, retry_after)` blocks the key for
  base * 2**strikes seconds (MAILINGS_BACKOFF_BASE, default 30), capped at MAILINGS_BACKOFF_CAP
  (default 900), or the provider's Retry-After if longer (up to MAILINGS_BACKOFF_MAX_RETRY_AFTER,
  default 3600). A back-off reported while the key is already blocked (the other messages of the
  same batch, other workers' sends in flight) is not another strike and does not extend the block,
  except to honour a longer Retry-After. `succeeded(key)` after
  a successful send forgets the strikes once the block is over; strikes are also forgotten
  MAILINGS_BACKOFF_CAP seconds after the last block ended.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Limits per canonical recipient domain, per provider account (its sending IPs). Conservative
# starting points for a warmed-up IP, to be tuned per installation; a "*" entry limits every other
# domain (each domain its own bucket). Override with settings.MAILINGS_DOMAIN_LIMITS.
DEFAULT_DOMAIN_LIMITS: dict[str, dict[str, float]] = {
    "gmail.com": {"rate": 100, "burst": 200},
    "yahoo.com": {"rate": 40, "burst": 80},
    "outlook.com": {"rate": 40, "burst": 80},
    "aol.com": {"rate": 20, "burst": 40},
    "icloud.com": {"rate": 40, "burst": 80},
    "mail.ru": {"rate": 40, "burst": 80},
    "yandex.ru": {"rate": 40, "burst": 80},
}

# Domains served by the same mailbox provider share its limit. Extend with
# settings.MAILINGS_DOMAIN_ALIASES (merged over these).
DEFAULT_DOMAIN_ALIASES: dict[str, str] = {
    "googlemail.com": "gmail.com",
    "hotmail.com": "outlook.com",
    "live.com": "outlook.com",
    "msn.com": "outlook.com",
    "hotmail.co.uk": "outlook.com",
    "hotmail.fr": "outlook.com",
    "hotmail.de": "outlook.com",
    "live.co.uk": "outlook.com",
    "outlook.de": "outlook.com",
    "ymail.com": "yahoo.com",
    "rocketmail.com": "yahoo.com",
    "yahoo.co.uk": "yahoo.com",
    "yahoo.fr": "yahoo.com",
    "yahoo.de": "yahoo.com",
    "aim.com": "aol.com",
    "me.com": "icloud.com",
    "mac.com": "icloud.com",
    "inbox.ru": "mail.ru",
    "list.ru": "mail.ru",
    "bk.ru": "mail.ru",
    "ya.ru": "yandex.ru",
    "yandex.com": "yandex.ru",
}


@dataclass(frozen=True)
class Grant:
    """`granted` tokens taken (0..n); `wait_s` is 0 when all n were granted, else the seconds until
    the next token (or until the key's back-off ends, or the Redis outage wait)."""

    granted: int
    wait_s: float


@dataclass(frozen=True)
class DomainLimit:
    rate: float
    burst: float


# --- domains ------------------------------------------------------------------------------------


def canonical_domain(domain: str) -> str:
    """Lower-cased, without a trailing dot, IDNA-encoded, aliases resolved (googlemail.com ->
    gmail.com)."""
    d = domain.strip().rstrip(".").lower()
    if not d.isascii():
        with contextlib.suppress(UnicodeError):  # not a valid IDN: as written, it only names a bucket
            d = d.encode("idna").decode("ascii")
    aliases = {**DEFAULT_DOMAIN_ALIASES, **getattr(settings, "MAILINGS_DOMAIN_ALIASES", {})}
    return aliases.get(d, d)


def address_domain(address: str) -> str:
    """The canonical domain of an address ("" when it has none)."""
    _, at, domain = address.rpartition("@")
    return canonical_domain(domain) if at and domain.strip() else ""


def domain_limit(domain: str) -> DomainLimit | None:
    """The limit for a (canonical) domain: its entry in MAILINGS_DOMAIN_LIMITS, else the "*"
    entry, else None (only the provider's own bucket applies)."""
    limits = getattr(settings, "MAILINGS_DOMAIN_LIMITS", DEFAULT_DOMAIN_LIMITS)
    entry = limits.get(domain) or limits.get("*")
    if not entry:
        return None
    return DomainLimit(rate=float(entry["rate"]), burst=float(entry.get("burst", entry["rate"])))


def domain_key(address: str, *, provider: str | int) -> str:
    """The bucket/back-off key of an address's domain at a provider account:
    "domain:<provider>:<canonical domain>"."""
    return f"domain:{provider}:{address_domain(address)}"


def split_by_domain(items: Iterable[T], address: Callable[[T], str] = str) -> dict[str, list[T]]:
    """Items grouped by canonical recipient domain (aliases merged), each group in input order,
    groups in order of first appearance; items without a domain under "". The caller takes tokens
    per group and defers only the groups that are short, so a slow domain never stalls others."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(address_domain(address(item)), []).append(item)
    return groups


# --- the Redis scripts --------------------------------------------------------------------------

# KEYS[1] bucket {t: tokens, ts: last refill}, KEYS[2] back-off {until, strikes}.
# ARGV: n, rate (tokens/s), burst, now ("" = Redis' clock). Returns {granted, "wait_s"}.
TAKE_LUA = """
local n, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now
if ARGV[4] ~= '' then now = tonumber(ARGV[4]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local blocked = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
if blocked > now then return {0, string.format('%.6f', blocked - now)} end
local s = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens, ts = tonumber(s[1]), tonumber(s[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
if now > ts then tokens = tokens + (now - ts) * rate; ts = now end
tokens = math.min(burst, tokens)
local granted = math.max(0, math.min(n, math.floor(tokens + 1e-6)))  -- 0.9999999 is a token (float sums)
tokens = tokens - granted
local wait = 0
if granted < n then wait = math.max((1 - tokens) / rate, 0.001) end  -- never "wait 0" for nothing
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'ts', string.format('%.6f', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate + 60) * 1000))
return {granted, string.format('%.6f', wait)}
"""

# KEYS[1] back-off. ARGV: retry_after ("" = none), base, cap, max_retry_after, now. Returns "seconds".
BACKOFF_LUA = """
local base, cap, max_ra = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now
if ARGV[5] ~= '' then now = tonumber(ARGV[5]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local s = redis.call('HMGET', KEYS[1], 'until', 'strikes')
local blocked, strikes = tonumber(s[1] or '0'), tonumber(s[2] or '0')
if blocked + cap <= now then blocked, strikes = 0, 0 end  -- forgotten (as the expiry would, by Redis' clock)
if blocked > now then
  if ARGV[1] ~= '' then blocked = math.max(blocked, now + math.min(tonumber(ARGV[1]), max_ra)) end
else
  local delay = math.min(cap, base * 2 ^ math.min(strikes, 30))
  if ARGV[1] ~= '' then delay = math.max(delay, math.min(tonumber(ARGV[1]), max_ra)) end
  strikes = strikes + 1
  blocked = now + delay
end
redis.call('HSET', KEYS[1], 'until', string.format('%.6f', blocked), 'strikes', strikes)
redis.call('PEXPIRE', KEYS[1], math.ceil((blocked - now + cap) * 1000))
return string.format('%.6f', blocked - now)
"""

# KEYS[1] back-off. ARGV: now, forget ("1": delete the record if the block is over). Returns "seconds".
BLOCKED_LUA = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) + tonumber(t[2]) / 1000000 end
local blocked = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if blocked > now then return string.format('%.6f', blocked - now) end
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
return '0'
"""


# --- the in-process twin ------------------------------------------------------------------------


class LocalBuckets:
    """The same buckets and back-offs in this process (embedded mode, Redis outages). Same
    semantics as the scripts above; thread-safe."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, ts)
        self.backoffs: dict[str, tuple[float, int]] = {}  # key -> (until, strikes)

    def _blocked(self, key: str, now: float) -> float:
        until, _ = self.backoffs.get(key, (0.0, 0))
        return until - now if until > now else 0.0

    def take(self, key: str, n: int, rate: float, burst: float) -> Grant:
        with self.lock:
            now = self.clock()
            if blocked := self._blocked(key, now):
                return Grant(0, blocked)
            tokens, ts = self.buckets.get(key, (burst, now))
            if now > ts:
                tokens, ts = tokens + (now - ts) * rate, now
            tokens = min(burst, tokens)
            granted = max(0, min(n, math.floor(tokens + 1e-6)))
            tokens -= granted
            self.buckets[key] = (tokens, ts)
            return Grant(granted, max((1 - tokens) / rate, 0.001) if granted < n else 0.0)

    def backoff(self, key: str, retry_after: float | None, base: float, cap: float, max_ra: float) -> float:
        with self.lock:
            now = self.clock()
            until, strikes = self.backoffs.get(key, (0.0, 0))
            if until + cap <= now:  # forgotten, as the Redis record expires
                until, strikes = 0.0, 0
            if until > now:
                if retry_after is not None:
                    until = max(until, now + min(retry_after, max_ra))
            else:
                delay = min(cap, base * 2 ** min(strikes, 30))
                if retry_after is not None:
                    delay = max(delay, min(retry_after, max_ra))
                strikes, until = strikes + 1, now + delay
            self.backoffs[key] = (until, strikes)
            return until - now

    def blocked_for(self, key: str, *, forget: bool = False) -> float:
        with self.lock:
            now = self.clock()
            blocked = self._blocked(key, now)
            if not blocked and forget:
                self.backoffs.pop(key, None)
            return blocked


# --- the throttle -------------------------------------------------------------------------------


class Throttle:
    """Token buckets and back-offs, in Redis when `client` is given, else in this process.

    `clock` (seconds, tests) replaces both Redis' clock and the local one; by default Redis uses
    its own and the local twin time.monotonic. `prefix` namespaces the Redis keys."""

    def __init__(self, client: Any = None, *, clock: Callable[[], float] | None = None,
                 prefix: str = "mailings:") -> None:
        self.client = client
        self.clock = clock
        self.prefix = prefix
        self.local = LocalBuckets(clock or time.monotonic)
        self._down_since: float | None = None  # monotonic start of the current Redis outage
        self._retry_at = 0.0
        self._state = threading.Lock()
        if client is not None:
            self._take = client.register_script(TAKE_LUA)
            self._backoff = client.register_script(BACKOFF_LUA)
            self._blocked = client.register_script(BLOCKED_LUA)

    # Both keys of one name share a Redis Cluster hash slot ({...}), so one script may touch both.
    def _bucket_key(self, key: str) -> str:
        return f"{self.prefix}tb:{{{key}}}"

    def _backoff_key(self, key: str) -> str:
        return f"{self.prefix}bo:{{{key}}}"

    def _now_arg(self) -> str:
        return "" if self.clock is None else f"{self.clock():.6f}"

    def _call(self, fn: Callable[[], T]) -> tuple[bool, T | None]:
        """(True, result) from Redis; (False, None) when there is none or it is unreachable."""
        if self.client is None:
            return False, None
        import redis

        mono = time.monotonic()
        if self._down_since is not None and mono < self._retry_at:
            return False, None
        try:
            result = fn()
        except (redis.RedisError, OSError):
            with self._state:
                if self._down_since is None:
                    log.warning("throttle: Redis unreachable, failing closed for %ss, then per-process limits",
                                _setting("MAILINGS_THROTTLE_OUTAGE_WAIT", 5.0), exc_info=True)
                    self._down_since = mono
                self._retry_at = mono + _setting("MAILINGS_THROTTLE_REDIS_RETRY", 5.0)
            return False, None
        if self._down_since is not None:
            with self._state:
                if self._down_since is not None:
                    log.warning("throttle: Redis reachable again, shared limits restored")
                    self._down_since = None
        return True, result

    def _outage_wait(self) -> float:
        """Seconds left of the fail-closed wait of the current Redis outage (0 when none)."""
        since = self._down_since
        if since is None:
            return 0.0
        return max(0.0, since + _setting("MAILINGS_THROTTLE_OUTAGE_WAIT", 5.0) - time.monotonic())

    def take(self, key: str, n: int, rate_per_second: float, burst: float | None = None) -> Grant:
        """Take up to `n` tokens from `key`'s bucket (`rate_per_second` tokens a second, at most
        `burst` saved up; default max(rate, 1)). Never blocks. A rate <= 0 is unlimited (as in
        delivery's backends) but a back-off still applies."""
        if n <= 0:
            return Grant(0, 0.0)
        cap = max(float(burst if burst is not None else rate_per_second), 1.0)
        if rate_per_second <= 0:
            blocked = self.blocked_for(key)
            return Grant(0, blocked) if blocked else Grant(n, 0.0)
        ok, result = self._call(lambda: self._take(
            keys=[self._bucket_key(key), self._backoff_key(key)],
            args=[int(n), repr(float(rate_per_second)), repr(cap), self._now_arg()]))
        if ok:
            granted, wait = result  # type: ignore[misc]
            return Grant(int(granted), float(wait))
        if self.client is not None and (wait := self._outage_wait()):
            return Grant(0, wait)
        return self.local.take(key, int(n), float(rate_per_second), cap)

    def backoff(self, key: str, retry_after: float | None = None) -> float:
        """Block `key` after a "slow down" (SMTP 421/451, HTTP 429 with its Retry-After seconds).
        Returns the seconds it is now blocked for."""
        base = _setting("MAILINGS_BACKOFF_BASE", 30.0)
        cap = _setting("MAILINGS_BACKOFF_CAP", 900.0)
        max_ra = _setting("MAILINGS_BACKOFF_MAX_RETRY_AFTER", 3600.0)
        if retry_after is not None:
            retry_after = max(0.0, float(retry_after))
        ok, result = self._call(lambda: self._backoff(
            keys=[self._backoff_key(key)],
            args=["" if retry_after is None else repr(retry_after), repr(base), repr(cap), repr(max_ra),
                  self._now_arg()]))
        if ok:
            return float(result)  # type: ignore[arg-type]
        return self.local.backoff(key, retry_after, base, cap, max_ra)

    def blocked_for(self, key: str) -> float:
        """Seconds until `key` may send again (0 when it is not backed off)."""
        return self._blocked_for(key, forget=False)

    def succeeded(self, key: str) -> None:
        """A send through `key` worked: forget its strikes, unless it is still blocked (another
        worker's fresh back-off stands)."""
        self._blocked_for(key, forget=True)

    def _blocked_for(self, key: str, *, forget: bool) -> float:
        ok, result = self._call(lambda: self._blocked(keys=[self._backoff_key(key)],
                                                      args=[self._now_arg(), "1" if forget else "0"]))
        if ok:
            return float(result)  # type: ignore[arg-type]
        return self.local.blocked_for(key, forget=forget)


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


_default: tuple[str, Throttle] | None = None
_default_lock = threading.Lock()


def default_throttle() -> Throttle:
    """The process's throttle: on REDIS_URL when set, else in-process. Rebuilt when REDIS_URL
    changes (tests)."""
    global _default
    url = getattr(settings, "REDIS_URL", "") or ""
    with _default_lock:
        if _default is None or _default[0] != url:
            client = None
            if url:
                import redis

                client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            _default = (url, Throttle(client))
        return _default[1]

