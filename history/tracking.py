"""Open and click tracking: signed tokens, machine-event flags, and a buffer that keeps the
request path free of database writes.

Token: the claims (account, profile, ledger row, mailing, run, resource, link id, channel, time
of sending) packed as unsigned varints, plus the first 12 bytes of an HMAC-SHA256 under a key
derived from SECRET_KEY; base64url. Nothing in a token is trusted before its MAC checks
(`hmac.compare_digest`), and the click redirect goes to the stored Link of the token's account,
never to a URL from the request.

URLs: a message carries a click URL per link, so making them is on the sending hot path.
`ClickLinks` (built once per batch) holds what does not change between messages: the routes'
prefixes (SITE_URL + the reversed path up to the token, for the current script prefix and
urlconf) and the HMAC's keyed inner and outer SHA-256 states; `for_message(claims)` packs the
claims a message shares once, so a link costs a varint, two hash copies and base64 (~2 us,
against ~50 us for reverse() and a fresh HMAC). `click_url` and `open_url` take the same path:
the bytes are the same either way. The caches are keyed by the values they depend on (SECRET_KEY,
SITE_URL, ROOT_URLCONF, the script prefix, the request's urlconf), so a changed setting is never
served a stale prefix or key.

Recording: the request verifies the token, decides whether the hit looks like a machine, drops
a concurrent replay of the same hit (a 10-second cache key), and then:
- with Redis: RPUSHes the hit to a list and, at most once a second, enqueues the drain task
  (trigger queue) that stores the list's hits in batches through `events_ingest`, so a slow
  database never slows the pixel or the redirect;
- embedded (no Redis): stores the hit directly (SQLite is local);
- if Redis fails, it falls back to storing directly; if that fails too, the hit is logged and
  the answer still goes out.
Every hit carries an idempotency key made of its claims and its 10-second slot, so a drain that
is interrupted and runs again, or a concurrent copy that got past the replay check, stores it once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone as tz

from cdp.hmacs import keyed_sha256

log = logging.getLogger(__name__)

VERSION = 1
MAC_BYTES = 12
CHANNELS = ("", "email", "sms", "webpush", "mobilepush", "telegram")
HITS_KEY = "cdp:history:hits"
DRAIN_FLAG = "cdp:history:drain-pending"
DRAIN_LOCK = "cdp:history:drain-lock"
REPLAY_WINDOW = 10  # seconds: the same hit again within this window is the same hit
FAST_HIT = 1.0  # seconds after sending: no person opens or clicks that fast


class BadToken(ValueError):
    pass


@dataclass(frozen=True)
class Claims:
    account_id: int
    profile_id: int
    ledger_id: int = 0
    mailing_id: int = 0
    run_id: int = 0
    resource_id: int = 0
    link_id: int = 0
    channel: str = "email"
    sent_at: int = 0  # epoch seconds when the message was built

    def with_link(self, link_id: int) -> Claims:
        return Claims(**{**asdict(self), "link_id": link_id})


def _key() -> bytes:
    return _derived_key(settings.SECRET_KEY)


@lru_cache(maxsize=4)
def _derived_key(secret: str) -> bytes:
    return hashlib.sha256(f"cdp.history.tracking:{secret}".encode()).digest()


Mac = Callable[[bytes], bytes]


@lru_cache(maxsize=4)
def _keyed_mac(secret: str) -> Mac:
    return keyed_sha256(_derived_key(secret), length=MAC_BYTES)


def _mac() -> Mac:
    return _keyed_mac(settings.SECRET_KEY)


def _varints(values: list[int]) -> bytes:
    out = bytearray()
    for v in values:
        if v < 0:
            raise ValueError("claims are non-negative integers")
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _varint(v: int) -> bytes:
    """One value as _varints packs it (a link id: usually small)."""
    return _SMALL[v] if 0 <= v < 0x80 else _varints([v])


def _unvarints(data: bytes) -> list[int]:
    out, v, shift = [], 0, 0
    for b in data:
        v |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
            if shift > 63:
                raise BadToken("malformed")
        else:
            out.append(v)
            v, shift = 0, 0
    if shift:
        raise BadToken("malformed")
    return out


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _around_link(c: Claims) -> tuple[bytes, bytes]:
    """The packed claims before and after the link id: what the links of one message share."""
    return (_varints([VERSION, c.account_id, c.profile_id, c.ledger_id, c.mailing_id, c.run_id, c.resource_id]),
            _varints([CHANNELS.index(c.channel), c.sent_at]))


def _payload(c: Claims) -> bytes:
    return _varints([VERSION, c.account_id, c.profile_id, c.ledger_id, c.mailing_id, c.run_id, c.resource_id,
                     c.link_id, CHANNELS.index(c.channel), c.sent_at])


def make_token(c: Claims) -> str:
    payload = _payload(c)
    return _b64(payload + _mac()(payload))


def read_token(token: str) -> Claims:
    """The token's claims; BadToken if it was not made here (or was altered)."""
    if not token or len(token) > 200:
        raise BadToken("malformed")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raise BadToken("malformed") from None
    if len(raw) <= MAC_BYTES:
        raise BadToken("malformed")
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac()(payload)):
        raise BadToken("forged")
    values = _unvarints(payload)
    if len(values) != 10 or values[0] != VERSION or values[8] >= len(CHANNELS):
        raise BadToken("malformed")
    _, account, profile, ledger, mailing, run, resource, link, channel, sent_at = values
    return Claims(account, profile, ledger, mailing, run, resource, link, CHANNELS[channel], sent_at)


# --- URLs -----------------------------------------------------------------------------------------

_MARKER = "TOKEN"  # stands for the token in a reversed route: base64url, so reverse() leaves it as it is


@lru_cache(maxsize=64)
def _route(name: str, site_url: str, script_prefix: str, urlconf: str | None) -> tuple[str, str]:
    """(what comes before the token, what comes after it) in the absolute URL of route `name`:
    `site_url + reverse(name, args=[token])` is `head + token + tail` for every base64url token
    (the route's <str:token> takes it, and quoting leaves its characters alone). Called in the
    thread whose script prefix and urlconf are the arguments (they are the cache's key)."""
    path = reverse(name, args=[_MARKER], urlconf=urlconf)
    head, found, tail = path.rpartition(_MARKER)
    if not found:
        raise RuntimeError(f"the route {name} no longer takes the token as it is: {path}")
    return site_url + head, tail


def _routes(*names: str) -> list[tuple[str, str]]:
    site_url, prefix, urlconf = settings.SITE_URL, get_script_prefix(), get_urlconf()
    key = urlconf or settings.ROOT_URLCONF  # reverse()'s urlconf, by value: a changed setting is another key
    return [_route(name, site_url, prefix, key) for name in names]


class ClickLinks:
    """Click and open URLs for many messages, byte-identical to `click_url` and `open_url` (the
    same tokens, readable by `read_token`). Build one per batch (or worker): it reverses the routes
    for the current SITE_URL, script prefix and urlconf, and keys the MAC, once; build a new one
    after changing those."""

    def __init__(self) -> None:
        (self._click, self._click_end), (self._open, self._open_end) = _routes("tracking:click", "tracking:open")
        self._mac = _mac()

    def for_message(self, c: Claims) -> Callable[[int, str], str]:
        """The `link` callable of one message (content.rendering's `link=` contract: link(link_id,
        url) -> the URL that stands for it): click_url(c, link_id). `c.link_id` is not used, and
        neither is `url`: the redirect goes to the account's stored Link, never to a URL in a token."""
        head, tail = _around_link(c)
        base, end, mac = self._click, self._click_end, self._mac

        def link(link_id: int, url: str = "") -> str:
            payload = head + _varint(link_id) + tail
            return base + _b64(payload + mac(payload)) + end

        return link

    def open_url(self, c: Claims) -> str:
        payload = _payload(c)
        return self._open + _b64(payload + self._mac(payload)) + self._open_end


def click_url_maker(c: Claims) -> Callable[[int, str], str]:
    """`ClickLinks().for_message(c)`: one message's link callable (a batch should share a ClickLinks)."""
    return ClickLinks().for_message(c)


def open_url(c: Claims) -> str:
    (head, tail), = _routes("tracking:open")
    return head + make_token(c) + tail


def click_url(c: Claims, link_id: int) -> str:
    """The URL of `c.with_link(link_id)`'s token on the click route (`ClickLinks` for many)."""
    (base, end), = _routes("tracking:click")
    head, tail = _around_link(c)
    payload = head + _varint(link_id) + tail
    return base + _b64(payload + _mac()(payload)) + end


# --- machine events -------------------------------------------------------------------------------

# Link scanners and security gateways follow every link in a message before the person sees it;
# mail privacy proxies fetch every image. Substrings of their user agents (lowercase).
SCANNER_AGENTS = (
    "barracuda", "mimecast", "proofpoint", "symantec", "messagelabs", "forcepoint", "trendmicro", "fortinet",
    "sophos", "cisco", "ironport", "safelinks", "microsoft office protocol discovery", "bingpreview",
    "bot", "spider", "crawler", "python-requests", "python-urllib", "curl/", "wget/", "go-http-client",
    "java/", "okhttp", "headlesschrome", "phantomjs", "libwww-perl", "scrapy", "httpclient",
)
PROXY_AGENTS = ("yahoomailproxy", "ymailproxy")
# Apple Mail Privacy Protection fetches images from Apple's network (17.0.0.0/8).
PROXY_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)


def machine_reason(*, method: str, user_agent: str, ip: str | None, sent_at: int, now: float, kind: str) -> str:
    """Why this hit is likely not a person ("" if it looks human)."""
    if method == "HEAD":
        return "HEAD request (link scanner)"
    if sent_at and 0 <= now - sent_at < FAST_HIT:
        return "within a second of sending"
    ua = (user_agent or "").lower()
    if not ua:
        return "no user agent"
    if any(s in ua for s in SCANNER_AGENTS):
        return "link scanner or bot user agent"
    if kind == "open":
        if any(s in ua for s in PROXY_AGENTS):
            return "mail privacy proxy"
        if ip:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            if addr is not None and any(addr in net for net in PROXY_NETWORKS):
                return "Apple Mail Privacy Protection"
    return ""


# --- recording --------------------------------------------------------------------------------------


def hit_payload(kind: str, c: Claims, *, reason: str, user_agent: str, when: datetime | None = None) -> dict[str, Any]:
    when = when or tz.now()
    return {
        "k": kind, "a": c.account_id, "p": c.profile_id, "l": c.ledger_id, "m": c.mailing_id, "r": c.run_id,
        "res": c.resource_id, "link": c.link_id, "ch": c.channel, "mr": reason, "ua": (user_agent or "")[:300],
        "t": when.astimezone(UTC).isoformat(), "id": hit_id(kind, c, when),
    }


def hit_id(kind: str, c: Claims, when: datetime) -> str:
    """The same hit (kind and claims) in the same REPLAY_WINDOW-second slot gets the same id, so its
    idempotency key stores it once even when `is_replay` let a concurrent copy through: the cache's
    add is not atomic everywhere (the embedded default's file cache checks, then writes), and a
    cache that is down lets every copy through."""
    digest = hashlib.sha256(f"{kind}:{astuple(c)}".encode()).hexdigest()[:24]
    return f"{digest}-{int(when.timestamp()) // REPLAY_WINDOW}"


def _replay_key(kind: str, token: str) -> str:
    return "hit:" + hashlib.sha256(f"{kind}:{token}".encode()).hexdigest()[:32]


def is_replay(kind: str, token: str) -> bool:
    """The same hit (token and kind) seen in the last few seconds: a concurrent or quick replay."""
    key = _replay_key(kind, token)
    try:
        return not cache.add(key, 1, timeout=REPLAY_WINDOW)
    except Exception:  # the cache being down must not stop tracking
        log.warning("tracking: replay check unavailable", exc_info=True)
        return False


def record_hit(hit: dict[str, Any]) -> str:
    """Buffer (Redis) or store one hit. Returns how: "buffered", "stored" or "lost" (logged)."""
    if settings.REDIS_URL:
        try:
            r = _redis()
            pipe = r.pipeline(transaction=False)
            pipe.rpush(HITS_KEY, json.dumps(hit, separators=(",", ":")))
            pipe.set(DRAIN_FLAG, 1, nx=True, ex=1)
            _, schedule = pipe.execute()
            if schedule:
                _enqueue_drain()
            return "buffered"
        except Exception:
            log.warning("tracking: Redis unavailable, storing the hit directly", exc_info=True)
    try:
        store_hits([hit])
        return "stored"
    except DatabaseError:
        log.exception("tracking: hit lost (Redis and the database are unavailable): %s", hit)
        return "lost"


# is_replay's mark, record_hit's RPUSH and drain flag in one Redis round trip: the hit is pushed
# only when its mark was not there (SET NX). 0: a replay; 1: buffered; 2: buffered, drain to enqueue.
_RECORD_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', 1) then return 2 end
return 1
"""
_script: list[Any] = []  # [(client, registered script)]


def _buffer_once(replay_key: str, payload: str) -> int:
    """Run _RECORD_ONCE (EVALSHA, loaded once per client): 0 replay, 1 buffered, 2 and drain."""
    client = _redis()
    if not _script or _script[0][0] is not client:
        _script[:] = [(client, client.register_script(_RECORD_ONCE))]
    return int(_script[0][1](keys=[cache.make_and_validate_key(replay_key), HITS_KEY, DRAIN_FLAG],
                             args=[REPLAY_WINDOW, payload]))


def record_hit_once(kind: str, token: str, hit: dict[str, Any]) -> str:
    """`is_replay`, then `record_hit` unless it is one, in ONE Redis round trip (a script) on the
    tracking endpoints' hot path: "replay", "buffered", "stored" or "lost". The replay mark is the
    cache key `is_replay` uses. Without Redis, or when the script fails, the two steps as they are."""
    if settings.REDIS_URL:
        try:
            got = _buffer_once(_replay_key(kind, token), json.dumps(hit, separators=(",", ":")))
        except Exception:
            log.warning("tracking: Redis script unavailable, recording in two steps", exc_info=True)
        else:
            if got == 2:
                _enqueue_drain()
            return "replay" if got == 0 else "buffered"
    if is_replay(kind, token):
        return "replay"
    return record_hit(hit)


def _enqueue_drain() -> None:
    from history.tasks import tracking_drain_trigger_task

    try:
        tracking_drain_trigger_task.delay()
    except Exception:  # the beat's periodic drain picks the hits up
        log.warning("tracking: could not enqueue the drain", exc_info=True)


_client: Any = None


def _redis() -> Any:
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _client


def store_hits(hits: list[dict[str, Any]]) -> int:
    """Store hits as history events (one ingestion per account). Returns how many were stored."""
    from accounts.models import Account
    from history.services.ingest import EventIn, events_ingest

    by_account: dict[int, list[EventIn]] = {}
    for h in hits:
        props: dict[str, Any] = {}
        if h.get("mr"):
            props["machine_reason"] = h["mr"]
        if h.get("ua"):
            props["user_agent"] = h["ua"]
        by_account.setdefault(h["a"], []).append(EventIn(
            type="message.opened" if h["k"] == "open" else "message.clicked", profile_id=h["p"], occurred_at=h["t"],
            properties=props, key=f"hit:{h['id']}", channel=h.get("ch") or "", resource_id=h.get("res") or None,
            mailing_id=h.get("m") or None, run_id=h.get("r") or None, ledger_id=h.get("l") or None,
            link_id=h.get("link") or None, machine=bool(h.get("mr")), source="tracking",
        ))
    stored = 0
    accounts = Account.objects.in_bulk(list(by_account))
    for account_id, events in by_account.items():
        account = accounts.get(account_id)
        if account is None:
            continue
        for start in range(0, len(events), 1000):
            stored += sum(r.status == "stored" for r in events_ingest(account=account, events=events[start:start + 1000],
                                                                       source="tracking"))
    return stored


def drain(*, batch: int = 1000, max_batches: int = 50) -> int:
    """Store the buffered hits, `batch` at a time; one drainer at a time (a Redis lock). A hit is
    removed from the list only after its batch is stored; a drainer that dies in between leaves
    them for the next one, whose idempotency keys make the retry store each once."""
    if not settings.REDIS_URL:
        return 0
    r = _redis()
    token = uuid.uuid4().hex
    if not r.set(DRAIN_LOCK, token, nx=True, ex=120):
        return 0
    total = 0
    try:
        for _ in range(max_batches):
            raw = r.lrange(HITS_KEY, 0, batch - 1)
            if not raw:
                break
            hits = []
            for item in raw:
                try:
                    hits.append(json.loads(item))
                except ValueError:
                    log.error("tracking: unreadable hit dropped: %r", item[:200])
            total += store_hits(hits)
            r.ltrim(HITS_KEY, len(raw), -1)
            r.expire(DRAIN_LOCK, 120)
            if len(raw) < batch:
                break
    finally:
        if r.get(DRAIN_LOCK) == token.encode():
            r.delete(DRAIN_LOCK)
    if r.llen(HITS_KEY):
        _enqueue_drain()
    return total


def buffered() -> int:
    if not settings.REDIS_URL:
        return 0
    try:
        return int(_redis().llen(HITS_KEY))
    except Exception:
        return -1


# --- links ----------------------------------------------------------------------------------------

_LINKS: OrderedDict[tuple[int, int], str] = OrderedDict()
_LINKS_MAX = 20_000


def link_url(account_id: int, link_id: int) -> str | None:
    """The stored URL of a link of this account (None if there is none). Links never change, so
    they are cached in the process and in the shared cache: a redirect rarely touches the database."""
    k = (account_id, link_id)
    url = _LINKS.get(k)
    if url is not None:
        _LINKS.move_to_end(k)
        return url
    ckey = f"link:{account_id}:{link_id}"
    try:
        url = cache.get(ckey)
    except Exception:
        url = None
    if url is None:
        from history.models import Link

        url = Link.objects.filter(pk=link_id, account_id=account_id).values_list("url", flat=True).first()
        if url is None:
            return None
        try:
            cache.set(ckey, url, timeout=86400)
        except Exception:
            log.warning("tracking: cache unavailable", exc_info=True)
    _LINKS[k] = url
    if len(_LINKS) > _LINKS_MAX:
        _LINKS.popitem(last=False)
    return url


def links_ensure(*, account_id: int, urls: list[str]) -> dict[str, int]:
    """Link ids for these URLs (created when new), set-based: for the content issue's link catalogue."""
    from history.models import Link

    hashes = {hashlib.sha256(u.encode()).hexdigest(): u for u in urls}
    Link.objects.bulk_create([Link(account_id=account_id, url=u, url_hash=h) for h, u in hashes.items()],
                             ignore_conflicts=True)
    found = dict(Link.objects.filter(account_id=account_id, url_hash__in=list(hashes)).values_list("url_hash", "id"))
    return {hashes[h]: i for h, i in found.items()}


def now_epoch() -> float:
    return time.time()
