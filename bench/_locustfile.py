"""The locust users of `python -m bench load` (bench/load.py runs `locust -f` on this file in a
subprocess: locust patches the standard library with gevent on import, which must not happen in
the benchmark's own process, where Django's threads and the tick live).

Private on purpose (the leading underscore): bench.harness.discover imports every public module
of the package, and importing this one would monkey-patch the benchmark process.

Contract with bench/load.py:
- BENCH_LOAD_CONFIG names a JSON file: the API token, the database slug, subscriber addresses,
  the trigger mailing's id, open and click paths (tokens made by the project's own link makers),
  the session cookie of a signed-in user and the pages to read, the think time, and `out`.
- On test_stop this file writes `out`: one record a request, [name, start epoch s, response ms,
  error or null], and the users' own exceptions. Percentiles are computed from these records by
  bench/load.py (exact, not locust's rounded histogram buckets).

Every answer is checked, not just its status: the event batch must store every item, a trigger
call must answer 202 with a queued ledger row, a page must answer 200 itself (a redirect to the
login page is a failure, not a 3xx success), a click must redirect to the shop, an open must be
the GIF.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from typing import Any

from locust import FastHttpUser, between, events, task

CONFIG: dict[str, Any] = json.loads(open(os.environ["BENCH_LOAD_CONFIG"]).read())  # noqa: SIM115
RECORDS: list[list[Any]] = []
USER_ERRORS: list[str] = []
WAIT = between(*CONFIG["wait"])
EVENT_TYPES = ("page.viewed", "page.viewed", "order.placed")


@events.request.add_listener
def _record(request_type: str, name: str, response_time: float, exception: Any, start_time: float | None = None,
            **_: Any) -> None:
    RECORDS.append([name, start_time or time.time(), response_time, None if exception is None else str(exception)[:300]])


@events.user_error.add_listener
def _user_error(user_instance: Any, exception: Exception, tb: Any, **_: Any) -> None:
    USER_ERRORS.append(f"{type(user_instance).__name__}: {exception!r}"[:500])


@events.test_stop.add_listener
def _dump(**_: Any) -> None:
    with open(CONFIG["out"], "w") as out:
        json.dump({"records": RECORDS, "user_errors": USER_ERRORS}, out)


def _check(response: Any, ok: bool, what: str) -> None:
    """Mark a caught response failed with what was wrong (status and the start of the body)."""
    if ok:
        response.success()
    else:
        body = (response.text or "")[:200] if response.status_code else ""
        response.failure(f"{what}: status {response.status_code} {body!r}")


class ApiUser(FastHttpUser):
    """A shop's backend: event batches of 10-100 (POST /api/v1/events/batch) and trigger calls with
    an Idempotency-Key (POST /api/v1/mailings/{id}/trigger)."""

    weight = 2
    wait_time = WAIT

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {CONFIG['token']}", "Content-Type": "application/json"}

    @task(3)
    def event_batch(self) -> None:
        n = random.randint(10, 100)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        batch = [{"id": str(uuid.uuid4()), "event": random.choice(EVENT_TYPES), "time": now,
                  "profile": {"email": random.choice(CONFIG["emails"])},
                  "properties": {"url": f"https://shop.example/p/{random.randrange(5000)}", "title": "Northwind"},
                  "channel": "web"} for _ in range(n)]
        body = json.dumps({"database": CONFIG["database"], "events": batch})
        with self.client.post("/api/v1/events/batch", data=body, headers=self.headers, name="events batch",
                              catch_response=True) as r:
            stored = -1
            if r.status_code == 200:
                try:
                    stored = sum(1 for item in r.json()["results"] if item.get("status") == "stored")
                except (ValueError, KeyError, TypeError):
                    stored = -1
            _check(r, stored == n, f"{stored} of {n} events stored")

    @task(1)
    def trigger(self) -> None:
        key = str(uuid.uuid4())
        body = json.dumps({"profile": {"email": random.choice(CONFIG["emails"])},
                           "data": {"order": {"number": key[:8], "total": "42.00"}}})
        with self.client.post(f"/api/v1/mailings/{CONFIG['trigger_mailing']}/trigger", data=body,
                              headers={**self.headers, "Idempotency-Key": key}, name="trigger",
                              catch_response=True) as r:
            status = ""
            if r.status_code == 202:
                try:
                    status = r.json().get("status", "")
                except ValueError:
                    status = ""
            _check(r, status == "queued", f"trigger row {status or 'missing'}")


class TrackingUser(FastHttpUser):
    """People reading the broadcast: open pixels and click redirects with valid tokens."""

    weight = 2
    wait_time = WAIT

    @task(3)
    def open_pixel(self) -> None:
        with self.client.get(random.choice(CONFIG["open_paths"]), name="open", catch_response=True) as r:
            _check(r, r.status_code == 200 and (r.headers.get("Content-Type") or "").startswith("image/gif"), "open")

    @task(2)
    def click(self) -> None:
        with self.client.get(random.choice(CONFIG["click_paths"]), name="click", allow_redirects=False,
                             catch_response=True) as r:
            location = r.headers.get("Location") or ""
            _check(r, r.status_code == 302 and location.startswith("https://"), f"click to {location!r}")


class BrowserUser(FastHttpUser):
    """A marketer signed in (a session made for the bench user): the main pages, in turn."""

    weight = 2
    wait_time = WAIT

    def on_start(self) -> None:
        # The session cookie is Secure (DEBUG off): sent as a header, and the proxy header tells
        # Django the request came over HTTPS, as it would behind the load balancer.
        self.headers = {"Cookie": CONFIG["session_cookie"], "X-Forwarded-Proto": "https"}
        self.pages = list(CONFIG["pages"].items())
        self.turn = random.randrange(len(self.pages))

    @task
    def page(self) -> None:
        name, path = self.pages[self.turn % len(self.pages)]
        self.turn += 1
        with self.client.get(path, headers=self.headers, name=f"page {name}", allow_redirects=False,
                             catch_response=True) as r:
            _check(r, r.status_code == 200, f"page {name}")


class HealthUser(FastHttpUser):
    """The baseline: /healthz (process up, no database) under the same load, about once a second."""

    fixed_count = 1
    wait_time = between(0.5, 1.5)

    @task
    def healthz(self) -> None:
        with self.client.get("/healthz", name="healthz", catch_response=True) as r:
            _check(r, r.status_code == 200, "healthz")
