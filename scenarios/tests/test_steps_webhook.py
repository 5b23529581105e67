"""The webhook step against a real HTTP server on loopback: signed bodies, the delivery key,
retries by status, timeouts, the SSRF guard, and a group's requests going out concurrently."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from scenarios.engine.steps.webhook import webhook_url_problem
from scenarios.tests.test_steps_support import enter, item_of, one_step, run

pytestmark = pytest.mark.django_db


@dataclass
class Receiver:
    """A loopback HTTP server answering `status` after `delay` seconds, recording each request."""

    status: int = 200
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            time.sleep(rec.delay)
            try:
                self.send_response(rec.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client timed out and left

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/cdp"
    yield rec
    server.shutdown()
    server.server_close()


def hook(world, receiver, **config: Any):
    return one_step(world, "webhook", {"url": receiver.url, "timeout_seconds": 5, "retries": 2, **config},
                    webhooks_private_ok=True, webhook_secret="topsecret")


def test_it_posts_a_signed_json_body_and_goes_on(world, receiver):
    scenario = hook(world, receiver)
    [p] = enter(scenario, world.profile_ids[:1], context={"data": {"order": "A-1"}})
    [o] = run(scenario, [p])
    assert (o.exit, o.outcome) == ("next", "webhook: HTTP 200")
    [req] = receiver.requests
    body = req["body"]
    expected = "sha256=" + hmac.new(b"topsecret", body, hashlib.sha256).hexdigest()
    assert req["headers"]["X-CDP-Signature"] == expected
    assert req["headers"]["X-CDP-Delivery"] == f"{p.pk}:0"
    assert req["headers"]["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["scenario"] == {"id": scenario.pk, "name": "Welcome journey"}
    assert payload["step"] == "s2" and payload["participation"] == p.pk
    assert payload["profile"]["id"] == p.profile_id
    assert payload["profile"]["fields"]["email"] == "person0@example.com"
    assert payload["context"] == {"data": {"order": "A-1"}}


def test_it_sends_the_same_delivery_key_when_called_again(world, receiver):
    scenario = hook(world, receiver)
    parts = enter(scenario, world.profile_ids[:1])
    run(scenario, parts)
    run(scenario, parts)
    keys = [r["headers"]["X-CDP-Delivery"] for r in receiver.requests]
    assert keys == [f"{parts[0].pk}:0"] * 2


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_it_retries_a_temporary_failure_until_the_retries_are_used(world, receiver, status):
    receiver.status = status
    scenario = hook(world, receiver, retries=2)
    [p] = enter(scenario, world.profile_ids[:1])
    outcomes = []
    for attempts in range(3):
        item = item_of(p)
        item.attempts = attempts
        outcomes += run(scenario, [item])
    assert [o.retry for o in outcomes[:2]] == [f"webhook: HTTP {status}"] * 2
    assert outcomes[2].fail == f"webhook failed after 3 attempts: HTTP {status}"
    assert all(o.exit is None for o in outcomes)


def test_it_fails_at_once_on_a_client_error(world, receiver):
    receiver.status = 404
    scenario = hook(world, receiver)
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert (o.fail, o.retry) == ("webhook answered HTTP 404", "")


def test_it_retries_after_a_timeout(world, receiver):
    receiver.delay = 5
    scenario = hook(world, receiver, timeout_seconds=1)
    started = time.monotonic()
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert o.retry == "webhook: timed out"
    assert time.monotonic() - started < 4  # gave up after ~1 s, not after the answer (5 s)


def test_it_retries_when_nobody_listens(world):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    scenario = one_step(world, "webhook", {"url": f"http://127.0.0.1:{port}/", "timeout_seconds": 2, "retries": 1},
                        webhooks_private_ok=True)
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert o.retry.startswith("webhook: ") and o.fail == ""


def test_it_refuses_a_loopback_address_unless_allowed(world, receiver, settings):
    settings.SCENARIOS_WEBHOOK_ALLOW_PRIVATE = False
    scenario = one_step(world, "webhook", {"url": receiver.url, "timeout_seconds": 2, "retries": 3})
    [p] = enter(scenario, world.profile_ids[:1])
    [o] = run(scenario, [p])
    assert o.fail.startswith("webhook 127.0.0.1 is a private or reserved address")
    assert receiver.requests == []
    settings.SCENARIOS_WEBHOOK_ALLOW_PRIVATE = True
    [o] = run(scenario, [p])
    assert o.exit == "next" and len(receiver.requests) == 1


def test_it_sends_a_groups_requests_concurrently(world, receiver):
    receiver.delay = 1.0
    scenario = hook(world, receiver)
    parts = enter(scenario, world.profile_ids[:5])
    started = time.monotonic()
    outcomes = run(scenario, parts)
    elapsed = time.monotonic() - started
    assert [o.exit for o in outcomes] == ["next"] * 5
    assert sorted(r["headers"]["X-CDP-Delivery"] for r in receiver.requests) == sorted(f"{p.pk}:0" for p in parts)
    assert elapsed < 3  # together ~1 s; one after the other: 5 s


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://hooks.example.com/x", "must start with http:// or https://"),
    ("https://user:pw@93.184.216.34/x", "may not contain a user name or password"),
    ("http:///nohost", "has no host"),
    ("http://127.0.0.1:8000/x", "points to a private, loopback or reserved address"),
    ("http://10.1.2.3/x", "points to a private, loopback or reserved address"),
    ("http://169.254.169.254/latest/meta-data", "points to a private, loopback or reserved address"),
    ("http://[::1]/x", "points to a private, loopback or reserved address"),
    ("http://[::ffff:127.0.0.1]/x", "points to a private, loopback or reserved address"),
    ("http://224.0.0.1/x", "points to a private, loopback or reserved address"),
    ("http://localhost/x", "points to a private, loopback or reserved address"),
    ("https://93.184.216.34/hooks", None),
])
def test_it_explains_what_is_wrong_with_a_webhook_url(url, problem, settings):
    settings.SCENARIOS_WEBHOOK_ALLOW_PRIVATE = False
    found = webhook_url_problem(url, private_ok=False)
    assert found == problem if problem is None else (found or "").startswith(problem)


def test_it_accepts_a_private_address_when_the_scenario_allows_it(settings):
    settings.SCENARIOS_WEBHOOK_ALLOW_PRIVATE = False
    assert webhook_url_problem("http://10.1.2.3/crm", private_ok=True) is None
    assert webhook_url_problem("ftp://10.1.2.3/crm", private_ok=True) == "must start with http:// or https://"


def test_it_defers_the_requests_a_slow_endpoint_leaves_no_time_for(world, receiver, monkeypatch):
    from scenarios.engine.steps import Item, webhook

    monkeypatch.setattr(webhook, "GROUP_BUDGET", 0.3)
    receiver.delay = 1.0
    scenario = hook(world, receiver)
    [p] = enter(scenario, world.profile_ids[:1])
    template = item_of(p)
    items = [Item(**{**template.__dict__, "id": n}) for n in range(1, webhook.MAX_WORKERS + 3)]
    outcomes = run(scenario, items)
    sent = [o for o in outcomes if o.exit == "next"]
    deferred = [o for o in outcomes if o.exit is None]
    assert len(sent) == webhook.MAX_WORKERS and len(receiver.requests) == webhook.MAX_WORKERS
    assert len(deferred) == 2
    assert all(o.wait == {"deferred": "webhook"} and o.wait_until is not None and not o.retry for o in deferred)
