"""Open and click tracking: signed tokens, replays, machine flags, the Redis buffer and its failures.

The suite runs on PostgreSQL + Redis (REDIS_URL set: hits are buffered in Redis and drained) and on
SQLite without Redis (hits are stored directly); `settle()` drains whatever is buffered before a
test looks at the events. The tests of the Redis path itself use a Redis database of their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import DatabaseError, connection
from django.test import Client
from django.utils import timezone

from history import tracking
from history.models import Event
from history.tracking import Claims, click_url, links_ensure, make_token, open_url, read_token

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
# The Redis-path tests' own database (the cache of the suite uses REDIS_URL's); one a pytest-xdist
# worker (gwN: 7 + N), as the buffer's keys are fixed and each test empties it.
TRACKING_REDIS_DB = 7 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
OPENED, CLICKED = 5, 6
SENT_AT = int(time.time()) - 3600  # fixed: a message's tokens do not change between its opens


# --- helpers and fixtures ---------------------------------------------------------------------------------


def _clear_buffer() -> None:
    if not tracking.settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(tracking.settings.REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.delete(tracking.HITS_KEY, tracking.DRAIN_FLAG, tracking.DRAIN_LOCK)
        # The replay marks too (the one-round-trip path keeps them in this Redis): on SQLite ids,
        # and so tokens, repeat between tests within the replay window.
        for key in client.scan_iter(match="*hit:*", count=1000):
            client.delete(key)
    except redis.RedisError:  # a test pointing REDIS_URL at a closed port
        pass
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _fresh_buffer(monkeypatch):
    """Each test starts with an empty hit buffer, a Redis client for its own settings, and no links
    remembered in the process (ids repeat between tests, whose rows are rolled back; never in use)."""
    monkeypatch.setattr(tracking, "_client", None)
    tracking._LINKS.clear()
    _clear_buffer()
    yield
    _clear_buffer()
    tracking._LINKS.clear()
    tracking._client = None


def settle() -> None:
    """Store what the Redis buffer holds (nothing to do without Redis: hits were stored directly)."""
    tracking.drain()


def _path(url: str) -> str:
    return urlsplit(url).path


def _claims(profile, **extra) -> Claims:
    values = {"account_id": profile.account_id, "profile_id": profile.pk, "ledger_id": 501, "mailing_id": 77, "run_id": 9,
              "resource_id": 3, "channel": "email", "sent_at": SENT_AT}
    return Claims(**{**values, **extra})


def _events(type_id: int | None = None):
    qs = Event.objects.filter(source="tracking")
    return qs.filter(type_id=type_id) if type_id else qs


def _open(client: Client, claims: Claims, *, ua: str = BROWSER, method: str = "get", **extra):
    return getattr(client, method)(_path(open_url(claims)), HTTP_USER_AGENT=ua, **extra)


@pytest.fixture
def sale(acme) -> int:
    return links_ensure(account_id=acme.pk, urls=["https://shop.example.com/sale?utm_source=news"])[
        "https://shop.example.com/sale?utm_source=news"]


def _tracking_redis_url() -> str:
    base = tracking.settings.REDIS_URL or "redis://127.0.0.1:6379/0"
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}/{TRACKING_REDIS_DB}"


@pytest.fixture
def redis_buffer(settings, monkeypatch):
    """REDIS_URL pointing at a Redis database of these tests; the drain is not run in-process (a
    worker would), so the test sees the buffer. Yields the Redis client and the enqueued drains."""
    redis = pytest.importorskip("redis")
    url = _tracking_redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url}")
    settings.REDIS_URL = url
    monkeypatch.setattr(tracking, "_client", None)
    _clear_buffer()
    enqueued: list[int] = []
    monkeypatch.setattr(tracking, "_enqueue_drain", lambda: enqueued.append(1))
    yield tracking._redis(), enqueued
    _clear_buffer()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


# --- tokens -------------------------------------------------------------------------------------------------


def test_a_token_round_trips_its_claims(anna):
    c = _claims(anna, link_id=123456789, channel="sms", sent_at=1_790_000_000)
    token = make_token(c)
    assert read_token(token) == c
    assert len(token) < 80 and "=" not in token
    assert _path(open_url(c)) == f"/t/o/{make_token(c)}.gif"
    assert read_token(_path(click_url(c, 42)).removeprefix("/t/c/")) == c.with_link(42)


def _flip(token: str, byte: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[byte] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _with_mac_of(key: bytes, token: str) -> str:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    payload = raw[:-tracking.MAC_BYTES]
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:tracking.MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()


def _forgeries(anna, link_id: int) -> dict[str, str]:
    good = make_token(_claims(anna, link_id=link_id))
    other_key = hashlib.sha256(b"cdp.history.tracking:another-secret-key").digest()
    # A well-formed payload under the real key but a version this code does not speak.
    v2 = tracking._varints([2, anna.account_id, anna.pk, 1, 1, 1, 1, link_id, 1, 0])
    return {
        "bit flipped in the claims": _flip(good, 2),
        "bit flipped in the mac": _flip(good, -1),
        "mac from another key": _with_mac_of(other_key, good),
        "truncated": good[:-3],
        "only the mac": good[-16:],
        "garbage": "not-a-token",
        "not base64": "%%%%%%",
        "too long": "A" * 300,
        "empty claims": base64.urlsafe_b64encode(b"\x00" * 12).rstrip(b"=").decode(),
        "unknown version": base64.urlsafe_b64encode(
            v2 + hmac.new(tracking._key(), v2, hashlib.sha256).digest()[:tracking.MAC_BYTES]).rstrip(b"=").decode(),
    }


def test_a_forged_token_records_nothing_the_pixel_still_answers_and_the_click_is_a_dead_link(client, anna, sale):
    forgeries = _forgeries(anna, sale)
    for name, token in forgeries.items():
        with pytest.raises(tracking.BadToken):
            read_token(token)
        pixel = client.get(f"/t/o/{token}.gif", HTTP_USER_AGENT=BROWSER)
        assert pixel.status_code == 200, name
        assert pixel["Content-Type"] == "image/gif" and pixel.content.startswith(b"GIF89a"), name
        dead = client.get(f"/t/c/{token}", HTTP_USER_AGENT=BROWSER)
        assert dead.status_code == 404, name
        assert b'data-testid="dead-link"' in dead.content, name
    settle()
    assert tracking.buffered() == 0
    assert not Event.objects.exists()


def test_the_real_token_next_to_the_forgeries_does_record(client, anna, sale):
    # The forgeries above are minimal changes of this token: the test can tell them apart.
    assert client.get(_path(click_url(_claims(anna), sale)), HTTP_USER_AGENT=BROWSER).status_code == 302
    settle()
    assert _events(CLICKED).count() == 1


def test_a_link_of_another_account_is_a_dead_link_and_records_nothing(client, anna, globex):
    theirs = links_ensure(account_id=globex.pk, urls=["https://globex.example.com/secret"])["https://globex.example.com/secret"]
    response = client.get(_path(click_url(_claims(anna), theirs)), HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 404
    assert b"globex.example.com" not in response.content
    no_link = client.get(_path(open_url(_claims(anna))).replace("/t/o/", "/t/c/").removesuffix(".gif"))
    assert no_link.status_code == 404  # an open token (no link) on the click path
    settle()
    assert not Event.objects.exists()


def test_a_token_naming_another_accounts_profile_stores_nothing(client, anna, gina, acme, globex, sale):
    _open(client, _claims(gina, account_id=acme.pk))  # acme's token, globex's profile
    _open(client, _claims(anna, account_id=globex.pk))  # and the other way round
    click = client.get(_path(click_url(_claims(gina, account_id=acme.pk), sale)), HTTP_USER_AGENT=BROWSER)
    assert click.status_code == 302  # the link is acme's; the event is dropped by the ingestion's join
    settle()
    assert not Event.objects.exists()


# --- what a hit stores ----------------------------------------------------------------------------------------


def test_an_open_is_stored_with_the_tokens_references(client, anna, shop):
    response = _open(client, _claims(anna))
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("no-store")
    assert response.content == tracking_pixel()
    settle()
    e = _events(OPENED).get()
    assert (e.account_id, e.database_id, e.profile_id) == (anna.account_id, shop.pk, anna.pk)
    assert (e.ledger_id, e.mailing_id, e.run_id, e.resource_id, e.channel) == (501, 77, 9, 3, "email")
    assert e.machine is False and "machine_reason" not in e.properties
    assert e.properties["user_agent"] == BROWSER
    assert abs((e.occurred_at - timezone.now()).total_seconds()) < 60


def tracking_pixel() -> bytes:
    from history.views.tracking import PIXEL

    return PIXEL


def test_the_click_redirects_to_the_stored_link_never_to_one_from_the_request(client, anna, sale):
    url = _path(click_url(_claims(anna), sale)) + "?url=https://evil.example.net/&next=https://evil.example.net/"
    response = client.get(url, HTTP_USER_AGENT=BROWSER, HTTP_REFERER="https://evil.example.net/")
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example.com/sale?utm_source=news"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Cache-Control"].startswith("no-store")
    settle()
    e = _events(CLICKED).get()
    assert e.link_id == sale and e.profile_id == anna.pk and e.machine is False


def test_only_get_and_head_are_answered(client, anna, sale):
    assert client.post(_path(open_url(_claims(anna)))).status_code == 405
    assert client.post(_path(click_url(_claims(anna), sale))).status_code == 405


# --- replays ----------------------------------------------------------------------------------------------------


def test_the_same_open_twice_within_the_window_is_one_event(client, anna, ben):
    for _ in range(3):
        _open(client, _claims(anna))
    _open(client, _claims(ben))  # another person's open is its own
    settle()
    assert sorted(_events(OPENED).values_list("profile_id", flat=True)) == sorted([anna.pk, ben.pk])


def test_after_the_window_the_same_open_is_a_second_event(client, anna, monkeypatch):
    claims = _claims(anna)
    _open(client, claims)
    # The window has passed: its cache key expired, and the clock moved on.
    tracking.cache.delete("hit:" + hashlib.sha256(f"open:{make_token(claims)}".encode()).hexdigest()[:32])
    later = timezone.now() + timedelta(seconds=tracking.REPLAY_WINDOW + 1)
    monkeypatch.setattr(tracking.tz, "now", lambda: later)
    _open(client, claims)
    settle()
    assert _events(OPENED).count() == 2


def _inside_one_slot(monkeypatch) -> None:
    """Hits of the test fall inside one replay slot, wherever the clock stands."""
    start = timezone.now().replace(microsecond=0)
    slot = start - timedelta(seconds=int(start.timestamp()) % tracking.REPLAY_WINDOW - 1)
    monkeypatch.setattr(tracking.tz, "now", lambda: slot)


def test_with_the_replay_check_down_the_same_open_is_still_stored_once(client, anna, monkeypatch, caplog):
    _inside_one_slot(monkeypatch)

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(tracking.cache, "add", down)
    monkeypatch.setattr(tracking, "_buffer_once", down)  # the one-round-trip check and buffering too
    for _ in range(3):
        assert _open(client, _claims(anna)).status_code == 200
    settle()
    assert "replay check unavailable" in caplog.text
    assert _events(OPENED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_open_concurrently_is_one_event(acme, shop, anna, monkeypatch):
    claims = _claims(anna)
    _inside_one_slot(monkeypatch)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def hit() -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(_open(Client(), claims).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert statuses == [200] * 8
    settle()
    assert _events(OPENED).count() == 1


# --- machine flags -----------------------------------------------------------------------------------------------


def _reason(**filters) -> tuple[bool, str | None]:
    settle()
    e = _events().get(**filters)
    return e.machine, e.properties.get("machine_reason")


def test_a_head_request_is_a_link_scanner(client, anna, sale):
    assert _open(client, _claims(anna), method="head").status_code == 200
    assert client.head(_path(click_url(_claims(anna), sale)), HTTP_USER_AGENT=BROWSER).status_code == 302
    assert _reason(type_id=OPENED) == (True, "HEAD request (link scanner)")
    assert _reason(type_id=CLICKED) == (True, "HEAD request (link scanner)")


def test_a_hit_within_a_second_of_sending_is_a_machine(client, anna, ben, monkeypatch):
    sent = 1_800_000_000
    monkeypatch.setattr(tracking, "now_epoch", lambda: sent + 0.4)
    _open(client, _claims(anna, sent_at=sent))
    monkeypatch.setattr(tracking, "now_epoch", lambda: sent + 5)
    _open(client, _claims(ben, sent_at=sent))
    assert _reason(profile_id=anna.pk) == (True, "within a second of sending")
    assert _reason(profile_id=ben.pk) == (False, None)


@pytest.mark.parametrize("ua", [
    "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
    "Mimecast-Url-Protect/1.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
    "python-requests/2.32.3",
    "curl/8.5.0",
    "Microsoft Office Protocol Discovery",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
])
def test_scanner_user_agents_are_machines(client, anna, sale, ua):
    client.get(_path(click_url(_claims(anna), sale)), HTTP_USER_AGENT=ua)
    assert _reason(type_id=CLICKED) == (True, "link scanner or bot user agent")


def test_no_user_agent_is_a_machine(client, anna):
    client.get(_path(open_url(_claims(anna))))
    assert _reason(type_id=OPENED) == (True, "no user agent")


def test_apples_network_fetching_the_pixel_is_mail_privacy_protection(client, anna, ben, sale):
    _open(client, _claims(anna), ua=APPLE_MAIL, REMOTE_ADDR="17.58.101.4")
    client.get(_path(click_url(_claims(ben), sale)), HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="17.58.101.4")
    assert _reason(type_id=OPENED) == (True, "Apple Mail Privacy Protection")
    assert _reason(type_id=CLICKED) == (False, None)  # a person on Apple's network clicking is a person


def test_the_forwarded_address_counts_behind_a_proxy(client, anna, ben, settings):
    settings.USE_X_FORWARDED_FOR = True
    _open(client, _claims(anna), ua=APPLE_MAIL, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="17.1.2.3, 10.0.0.1")
    _open(client, _claims(ben), ua=APPLE_MAIL, REMOTE_ADDR="17.1.2.3", HTTP_X_FORWARDED_FOR="198.51.100.20")
    assert _reason(profile_id=anna.pk) == (True, "Apple Mail Privacy Protection")
    assert _reason(profile_id=ben.pk) == (False, None)


def test_yahoos_image_proxy_is_a_machine_open(client, anna):
    _open(client, _claims(anna), ua="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy) YahooMailProxy")
    assert _reason(type_id=OPENED) == (True, "mail privacy proxy")


def test_a_person_opening_in_a_browser_is_not_a_machine(client, anna):
    _open(client, _claims(anna), REMOTE_ADDR="198.51.100.23")
    assert _reason(type_id=OPENED) == (False, None)


# --- the Redis buffer ---------------------------------------------------------------------------------------------


def test_with_redis_the_pixel_makes_no_database_query_and_the_drain_stores_each_hit_once(
        client, anna, redis_buffer, django_assert_num_queries):
    r, enqueued = redis_buffer
    with django_assert_num_queries(0):
        response = _open(client, _claims(anna))
    assert response.status_code == 200
    raw = r.lrange(tracking.HITS_KEY, 0, -1)
    assert len(raw) == 1
    hit = json.loads(raw[0])
    assert (hit["k"], hit["a"], hit["p"], hit["l"], hit["mr"]) == ("open", anna.account_id, anna.pk, 501, "")
    assert enqueued == [1]  # the first hit of the second asks a worker to drain
    assert not Event.objects.exists()

    assert tracking.drain() == 1
    assert r.llen(tracking.HITS_KEY) == 0
    assert tracking.drain() == 0
    r.rpush(tracking.HITS_KEY, raw[0])  # the same hit delivered to the buffer again
    assert tracking.drain() == 0
    assert _events(OPENED).count() == 1


def test_with_redis_a_repeated_click_needs_no_database_query(client, anna, ben, sale, redis_buffer,
                                                            django_assert_num_queries):
    _r, _enqueued = redis_buffer
    assert client.get(_path(click_url(_claims(anna), sale)), HTTP_USER_AGENT=BROWSER).status_code == 302  # loads the link
    with django_assert_num_queries(0):
        response = client.get(_path(click_url(_claims(ben), sale)), HTTP_USER_AGENT=BROWSER)
    assert response["Location"] == "https://shop.example.com/sale?utm_source=news"
    assert tracking.drain() == 2


def test_with_redis_the_same_open_within_the_window_is_buffered_once_in_one_round_trip(client, anna, redis_buffer,
                                                                                       monkeypatch):
    r, _enqueued = redis_buffer
    calls = []
    real = tracking._buffer_once
    monkeypatch.setattr(tracking, "_buffer_once", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(tracking, "is_replay", lambda *a: pytest.fail("the two-step path was taken"))
    for _ in range(3):
        assert _open(client, _claims(anna)).status_code == 200
    assert len(calls) == 3 and r.llen(tracking.HITS_KEY) == 1  # one script call per hit, the replays pushed nothing
    assert tracking.drain() == 1
    assert _events(OPENED).count() == 1


def test_hits_of_one_second_ask_for_one_drain(client, anna, ben, redis_buffer):
    r, enqueued = redis_buffer
    _open(client, _claims(anna))
    _open(client, _claims(ben))
    assert r.llen(tracking.HITS_KEY) == 2
    assert enqueued == [1]


def test_a_drain_interrupted_before_trimming_the_buffer_does_not_duplicate(client, anna, ben, redis_buffer):
    r, _enqueued = redis_buffer
    _open(client, _claims(anna))
    _open(client, _claims(ben))

    def die(*args, **kwargs):
        raise ConnectionError("the drainer died after storing")

    r.ltrim = die  # on this client object only
    try:
        with pytest.raises(ConnectionError):
            tracking.drain()
    finally:
        del r.ltrim
    assert _events(OPENED).count() == 2  # stored...
    assert r.llen(tracking.HITS_KEY) == 2  # ...but still buffered
    assert r.get(tracking.DRAIN_LOCK) is None  # the lock went with it
    assert tracking.drain() == 0  # the next drainer stores nothing twice
    assert r.llen(tracking.HITS_KEY) == 0
    assert _events(OPENED).count() == 2


def test_one_drainer_at_a_time(client, anna, redis_buffer):
    r, _enqueued = redis_buffer
    _open(client, _claims(anna))
    r.set(tracking.DRAIN_LOCK, "another-drainer", ex=120)
    assert tracking.drain() == 0
    assert r.llen(tracking.HITS_KEY) == 1
    r.delete(tracking.DRAIN_LOCK)
    assert tracking.drain() == 1


def test_with_redis_down_the_hit_is_stored_directly(client, anna, sale, settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    with caplog.at_level(logging.WARNING, logger="history.tracking"):
        assert _open(client, _claims(anna)).status_code == 200
        assert client.get(_path(click_url(_claims(anna), sale)), HTTP_USER_AGENT=BROWSER).status_code == 302
    assert "Redis unavailable" in caplog.text
    assert sorted(_events().values_list("type_id", flat=True)) == [OPENED, CLICKED]


def test_with_redis_and_the_database_down_the_pixel_still_answers(client, anna, settings, monkeypatch, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{_closed_port()}/0"

    def db_down(hits):
        raise DatabaseError("the database is down")

    monkeypatch.setattr(tracking, "store_hits", db_down)
    with caplog.at_level(logging.ERROR, logger="history.tracking"):
        response = _open(client, _claims(anna))
    assert response.status_code == 200 and response.content == tracking_pixel()
    assert "hit lost" in caplog.text
    assert not Event.objects.exists()
