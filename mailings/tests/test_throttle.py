"""Token buckets, domain limits and back-offs: on the real Redis at REDIS_URL when it is set (each
test under its own key prefix, deleted afterwards) and on the in-process twin always."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import uuid

import pytest
from django.conf import settings

from mailings import throttle as throttle_module
from mailings.throttle import (
    DomainLimit,
    Grant,
    Throttle,
    canonical_domain,
    default_throttle,
    domain_key,
    domain_limit,
    split_by_domain,
)

# The settings' URL, not the environment's: under pytest-xdist each worker has its own Redis db.
REDIS_URL = settings.REDIS_URL
CLOSED_PORT = "redis://127.0.0.1:1/0"  # nothing listens there: an unreachable Redis


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _redis_client(url: str = REDIS_URL):
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=0.5)


@pytest.fixture
def redis_prefix():
    """A client on REDIS_URL and a key prefix of this test's own; its keys are deleted after."""
    if not REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    import redis

    client = _redis_client()
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    prefix = f"test-throttle:{uuid.uuid4().hex}:"
    yield client, prefix
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["local", "redis"])
def throttle(request, clock) -> Throttle:
    """The same contract on both stores, on a clock the test moves."""
    if request.param == "local":
        return Throttle(None, clock=clock)
    client, prefix = request.getfixturevalue("redis_prefix")
    return Throttle(client, clock=clock, prefix=prefix)


# --- buckets ------------------------------------------------------------------------------------


def test_it_grants_a_batch_what_the_burst_holds_and_says_when_the_next_token_comes(throttle):
    assert throttle.take("provider:1", 500, rate_per_second=100, burst=200) == Grant(200, 0.01)
    assert throttle.take("provider:1", 500, rate_per_second=100, burst=200) == Grant(0, 0.01)


def test_it_refills_by_elapsed_time_up_to_the_burst(throttle, clock):
    throttle.take("provider:1", 500, rate_per_second=100, burst=200)
    clock.advance(0.5)
    assert throttle.take("provider:1", 500, rate_per_second=100, burst=200).granted == 50
    clock.advance(0.25)
    assert throttle.take("provider:1", 10, rate_per_second=100, burst=200) == Grant(10, 0.0)
    clock.advance(3600)
    assert throttle.take("provider:1", 500, rate_per_second=100, burst=200).granted == 200


def test_it_counts_fractions_of_a_token_towards_the_wait(throttle, clock):
    assert throttle.take("provider:1", 5, rate_per_second=10, burst=5) == Grant(5, 0.0)
    assert throttle.take("provider:1", 1, rate_per_second=10, burst=5) == Grant(0, pytest.approx(0.1))
    clock.advance(0.06)
    assert throttle.take("provider:1", 3, rate_per_second=10, burst=5) == Grant(0, pytest.approx(0.04))
    clock.advance(0.04)
    assert throttle.take("provider:1", 3, rate_per_second=10, burst=5) == Grant(1, pytest.approx(0.1))
    clock.advance(0.25)
    assert throttle.take("provider:1", 3, rate_per_second=10, burst=5) == Grant(2, pytest.approx(0.05))


def test_it_keeps_keys_apart(throttle):
    assert throttle.take("provider:1", 3, rate_per_second=1, burst=3).granted == 3
    assert throttle.take("provider:2", 3, rate_per_second=1, burst=3).granted == 3
    assert throttle.take("domain:1:gmail.com", 3, rate_per_second=1, burst=3).granted == 3
    assert throttle.take("provider:1", 1, rate_per_second=1, burst=3).granted == 0


def test_it_defaults_the_burst_to_one_second_of_rate_and_treats_rate_zero_as_unlimited(throttle):
    assert throttle.take("provider:1", 500, rate_per_second=20).granted == 20
    assert throttle.take("provider:1", 1, rate_per_second=0.5).granted == 0  # the same bucket, empty
    assert throttle.take("provider:3", 1, rate_per_second=0.5).granted == 1  # at least one token
    assert throttle.take("provider:4", 10_000, rate_per_second=0) == Grant(10_000, 0.0)
    assert throttle.take("provider:4", 0, rate_per_second=10) == Grant(0, 0.0)


def _drain(throttle: Throttle, key: str, deadline: float, rate: float, burst: float, out: list[int]) -> None:
    got = 0
    while (now := time.monotonic()) < deadline:
        grant = throttle.take(key, 7, rate_per_second=rate, burst=burst)
        got += grant.granted
        if grant.wait_s:
            time.sleep(min(grant.wait_s, max(deadline - now, 0)))
    out.append(got)


def _process_drain(url: str, prefix: str, key: str, start_at: float, seconds: float, rate: float, burst: float,
                   results) -> None:
    while time.time() < start_at:  # both processes start together
        time.sleep(0.001)
    out: list[int] = []
    _drain(Throttle(_redis_client(url), prefix=prefix), key, time.monotonic() + seconds, rate, burst, out)
    results.put(out[0])


RATE, BURST, SECONDS = 300.0, 30.0, 0.6


def _assert_rate_held(total: int) -> None:
    expected = BURST + RATE * SECONDS
    assert total <= expected + RATE * 0.05  # never faster than the rate (50 ms of slack for the clocks)
    assert total >= expected * 0.85  # and the workers kept up with it


def test_it_holds_the_rate_across_threads_in_process():
    throttle = Throttle(None)
    out: list[int] = []
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=_drain, args=(throttle, "provider:1", deadline, RATE, BURST, out))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 3
    _assert_rate_held(sum(out))


def test_it_holds_the_rate_across_worker_processes_through_redis(redis_prefix):
    _, prefix = redis_prefix
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    start_at = time.time() + 0.15
    procs = [ctx.Process(target=_process_drain, args=(REDIS_URL, prefix, "provider:1", start_at, SECONDS, RATE,
                                                      BURST, results)) for _ in range(2)]
    for p in procs:
        p.start()
    counts = [results.get(timeout=10) for _ in procs]
    for p in procs:
        p.join(timeout=5)
    assert all(c > 0 for c in counts)  # both took part
    _assert_rate_held(sum(counts))


# --- back-off -----------------------------------------------------------------------------------


def test_it_backs_off_exponentially_up_to_the_cap(throttle, clock):
    delays = []
    for _ in range(7):
        delays.append(throttle.backoff("provider:1"))
        clock.advance(delays[-1])
    assert delays == [30, 60, 120, 240, 480, 900, 900]


def test_it_blocks_takes_while_backed_off(throttle, clock):
    throttle.backoff("provider:1")
    assert throttle.blocked_for("provider:1") == pytest.approx(30)
    assert throttle.take("provider:1", 10, rate_per_second=100, burst=100) == Grant(0, pytest.approx(30))
    assert throttle.take("provider:1", 10, rate_per_second=0) == Grant(0, pytest.approx(30))
    assert throttle.take("provider:2", 10, rate_per_second=100, burst=100).granted == 10
    clock.advance(30)
    assert throttle.blocked_for("provider:1") == 0
    assert throttle.take("provider:1", 10, rate_per_second=100, burst=100).granted == 10


def test_it_counts_one_strike_for_a_batch_of_slow_downs(throttle, clock):
    assert throttle.backoff("provider:1") == pytest.approx(30)
    clock.advance(5)
    assert throttle.backoff("provider:1") == pytest.approx(25)  # already blocked: no escalation
    assert throttle.backoff("provider:1", retry_after=40) == pytest.approx(40)  # but a longer Retry-After
    clock.advance(40)
    assert throttle.backoff("provider:1") == pytest.approx(60)


def test_it_honours_retry_after_within_limits(throttle, clock):
    assert throttle.backoff("provider:1", retry_after=120) == pytest.approx(120)
    clock.advance(120)
    assert throttle.backoff("provider:1", retry_after=1) == pytest.approx(60)  # the exponential is longer
    assert throttle.backoff("provider:2", retry_after=86_400) == pytest.approx(3600)


def test_it_forgets_the_strikes_after_a_success(throttle, clock):
    throttle.backoff("provider:1")
    throttle.succeeded("provider:1")  # an in-flight send finished: the block stands
    assert throttle.blocked_for("provider:1") == pytest.approx(30)
    clock.advance(30)
    assert throttle.backoff("provider:1") == pytest.approx(60)
    clock.advance(60)
    throttle.succeeded("provider:1")
    assert throttle.backoff("provider:1") == pytest.approx(30)


def test_it_forgets_the_strikes_after_a_quiet_spell(throttle, clock):
    throttle.backoff("provider:1")
    clock.advance(30 + 900)
    assert throttle.backoff("provider:1") == pytest.approx(30)


def test_it_reads_the_back_off_settings(throttle, clock, settings):
    settings.MAILINGS_BACKOFF_BASE = 2
    settings.MAILINGS_BACKOFF_CAP = 5
    assert [throttle.backoff("provider:1"), (clock.advance(2), throttle.backoff("provider:1"))[1],
            (clock.advance(4), throttle.backoff("provider:1"))[1]] == [2, 4, 5]


# --- Redis missing or down ----------------------------------------------------------------------


def test_it_fails_closed_briefly_when_redis_is_unreachable_then_goes_on_per_process(settings, caplog):
    throttle = Throttle(_redis_client(CLOSED_PORT))
    with caplog.at_level(logging.WARNING, logger="mailings.throttle"):
        first = throttle.take("provider:1", 10, rate_per_second=100, burst=100)
        second = throttle.take("provider:1", 10, rate_per_second=100, burst=100)
    assert first.granted == second.granted == 0
    assert 4 < second.wait_s <= 5
    assert len(caplog.records) == 1  # logged once per outage
    assert throttle.backoff("provider:1") == pytest.approx(30, abs=0.1)  # kept in the process
    settings.MAILINGS_THROTTLE_OUTAGE_WAIT = 0
    assert throttle.take("provider:2", 10, rate_per_second=100, burst=100) == Grant(10, 0.0)
    assert throttle.take("provider:1", 10, rate_per_second=100, burst=100).granted == 0  # backed off locally


def test_it_uses_the_shared_buckets_again_when_redis_is_back(redis_prefix, settings, caplog):
    client, prefix = redis_prefix
    throttle = Throttle(_redis_client(CLOSED_PORT), prefix=prefix)
    settings.MAILINGS_THROTTLE_REDIS_RETRY = 0
    assert throttle.take("provider:1", 1, rate_per_second=1, burst=1).granted == 0
    throttle.client = client  # the same Redis again, reachable now
    throttle._take = client.register_script(throttle_module.TAKE_LUA)
    with caplog.at_level(logging.WARNING, logger="mailings.throttle"):
        assert throttle.take("provider:1", 1, rate_per_second=1, burst=1).granted == 1
    assert "reachable again" in caplog.text
    assert client.exists(f"{prefix}tb:{{provider:1}}")


def test_it_builds_the_default_throttle_from_redis_url(settings):
    settings.REDIS_URL = ""
    assert default_throttle().client is None
    assert default_throttle() is default_throttle()
    settings.REDIS_URL = CLOSED_PORT
    assert default_throttle().client is not None


# --- domains ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("domain", "canonical"), [
    ("gmail.com", "gmail.com"), ("GoogleMail.COM.", "gmail.com"), ("hotmail.com", "outlook.com"),
    ("live.com", "outlook.com"), ("ymail.com", "yahoo.com"), ("me.com", "icloud.com"),
    ("example.org", "example.org"), ("bücher.de", "xn--bcher-kva.de"),
])
def test_it_merges_domain_aliases(domain, canonical):
    assert canonical_domain(domain) == canonical


def test_it_keys_domains_per_provider():
    assert domain_key("Ann@GoogleMail.com", provider=7) == "domain:7:gmail.com"
    assert domain_key('"a@b"@Hotmail.com', provider="smtp") == "domain:smtp:outlook.com"


def test_it_reads_domain_limits_and_aliases_from_settings(settings):
    assert domain_limit("gmail.com") == DomainLimit(rate=100, burst=200)
    assert domain_limit("example.org") is None
    settings.MAILINGS_DOMAIN_LIMITS = {"gmail.com": {"rate": 5}, "*": {"rate": 2, "burst": 4}}
    settings.MAILINGS_DOMAIN_ALIASES = {"corp.example": "gmail.com"}
    assert domain_limit("gmail.com") == DomainLimit(rate=5, burst=5)
    assert domain_limit("example.org") == DomainLimit(rate=2, burst=4)
    assert canonical_domain("corp.example") == "gmail.com"
    assert canonical_domain("googlemail.com") == "gmail.com"  # the built-in aliases stay


def test_it_splits_a_batch_by_domain_in_order():
    addresses = ["a@gmail.com", "b@yahoo.com", "c@GoogleMail.com", "d@example.org", "broken", "e@ymail.com", "f@"]
    assert split_by_domain(addresses) == {
        "gmail.com": ["a@gmail.com", "c@GoogleMail.com"],
        "yahoo.com": ["b@yahoo.com", "e@ymail.com"],
        "example.org": ["d@example.org"],
        "": ["broken", "f@"],
    }
    rows = [(1, "x@hotmail.com"), (2, "y@outlook.com")]
    assert split_by_domain(rows, address=lambda r: r[1]) == {"outlook.com": rows}


def test_it_lets_other_domains_send_while_one_is_slow(throttle):
    batch = [f"u{i}@gmail.com" for i in range(50)] + [f"v{i}@yahoo.com" for i in range(50)]
    throttle.backoff(domain_key("x@gmail.com", provider=1))
    sent, deferred = [], []
    for domain, group in split_by_domain(batch).items():
        limit = domain_limit(domain)
        grant = throttle.take(f"domain:1:{domain}", len(group), limit.rate, limit.burst)
        sent += group[:grant.granted]
        deferred += group[grant.granted:]
    assert sent == batch[50:]
    assert deferred == batch[:50]
