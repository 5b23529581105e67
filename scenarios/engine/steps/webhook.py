"""The webhook step: a signed HTTP POST per participation to the tenant's system.

Body (JSON): {"scenario": {"id", "name"}, "step": key, "participation": id,
"profile": {"id", "fields": {...}}, "context": {...}}. Headers: X-CDP-Signature
"sha256=" + hex HMAC-SHA256(scenario.webhook_secret, body), X-CDP-Delivery "<participation>:<seq>"
(the same for a repeated call: the receiver's idempotency key), X-CDP-Scenario.

2xx: exit "next". 408, 429, 5xx, timeouts and connection errors: `retry` (the core backs off)
until `config["retries"]` attempts were made, then `fail`. Other answers (3xx: redirects are
not followed, 4xx): `fail`.

SSRF (RELIABILITY.md): a tenant types the URL, so the server refuses schemes other than
http/https, credentials in the URL, and hosts resolving to loopback, private, link-local,
shared, reserved or multicast addresses — every address the name resolves to is checked, and
the connection goes to the checked address (a second DNS answer cannot swap in 127.0.0.1) —
unless the scenario allows private addresses (an admin's choice) or settings
SCENARIOS_WEBHOOK_ALLOW_PRIVATE is set.

The profiles' data is read in one query; the requests of a group go out concurrently on a small
bounded thread pool (no database work in the threads), so one slow endpoint does not serialize
hundreds of requests; those not started within GROUP_BUDGET seconds are deferred to the next tick
(state waiting, due now, `wait={"deferred": "webhook"}`; no attempt used up).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings

from delivery.netpolicy import PrivateAddress, checked_address
from profiles.models import WRITABLE_SYSTEM_FIELDS, Profile
from scenarios.engine.steps import Handler, Item, Outcome, StepRun, same

if TYPE_CHECKING:
    import httpx

MAX_WORKERS = 8
# Seconds a group's requests may take to start: later ones wait for the next tick (see _post_all).
GROUP_BUDGET = 20.0
DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 30
USER_AGENT = "CDP-Scenarios/1 (+webhook)"
_RETRY_STATUSES = frozenset({408, 429})


def private_allowed(*, private_ok: bool) -> bool:
    return private_ok or bool(getattr(settings, "SCENARIOS_WEBHOOK_ALLOW_PRIVATE", False))


def _shape_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "may not contain a user name or password (sign requests with the scenario's secret instead)"
    if port == 0:
        return "has an invalid port"
    return None


def webhook_url_problem(url: str, *, private_ok: bool) -> str | None:
    """Why the server will not POST to `url` ("must start with https://..."), or None. For the
    editor's validation: it resolves the host (a name that does not resolve is a problem)."""
    problem = _shape_problem(str(url or "").strip())
    if problem or private_allowed(private_ok=private_ok):
        return problem
    parts = urlsplit(str(url).strip())
    try:
        checked_address(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), private_ok=False)
    except PrivateAddress:
        return "points to a private, loopback or reserved address (an admin may allow private addresses)"
    except OSError:
        return f"its host {parts.hostname} does not resolve"
    return None


def client(*, timeout: float, private_ok: bool) -> httpx.Client:
    import httpx

    c = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), follow_redirects=False,
                     headers={"User-Agent": USER_AGENT}, trust_env=False,
                     limits=httpx.Limits(max_connections=MAX_WORKERS, max_keepalive_connections=MAX_WORKERS))
    # Connections go only to addresses delivery.netpolicy checked. httpx and httpcore (and the
    # guard) are imported on the first webhook POST, not with the step handlers: every engine and
    # trigger worker loads the handlers, few ever post (~0.3 s of CPU and a few MB a process).
    from delivery.backends._http import guard

    return guard(c, private_ok=private_ok)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class _Answer:
    status: int | None = None
    error: str = ""
    refused: bool = False  # a private address: permanent


def _post(c: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> _Answer:
    import httpx

    try:
        # The answer's body is never read: only the status counts, and a huge body cannot tie up
        # a worker or its memory.
        with c.stream("POST", url, content=body, headers=headers) as response:
            status = response.status_code
    except httpx.TimeoutException:
        return _Answer(error="timed out")
    except PrivateAddress as exc:  # raised by the guard, through httpx unchanged
        return _Answer(error=str(exc)[:200], refused=True)
    except httpx.HTTPError as exc:
        return _Answer(error=(str(exc) or type(exc).__name__)[:200])
    return _Answer(status=status)


def _profile_fields(run: StepRun, items: Sequence[Item]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for p in Profile.objects.filter(pk__in={i.profile_id for i in items}, database_id=run.scenario.database_id):
        fields: dict[str, Any] = {name: p.value(name) for name in WRITABLE_SYSTEM_FIELDS}
        fields.update(p.data or {})
        out[p.pk] = fields
    return out


def body_of(run: StepRun, item: Item, fields: dict[str, Any] | None) -> bytes:
    payload = {
        "scenario": {"id": run.scenario.pk, "name": run.scenario.name},
        "step": run.step.key,
        "participation": item.id,
        "profile": {"id": item.profile_id, "fields": fields or {}},
        "context": item.context,
    }
    return json.dumps(payload, default=str, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """POST to the configured URL for each item (see the module docstring)."""
    config = run.step.config or {}
    url = str(config.get("url") or "").strip()
    private_ok = private_allowed(private_ok=bool(run.scenario.webhooks_private_ok))
    problem = _shape_problem(url)
    if problem:
        return same(Outcome(fail=f"the webhook URL {problem}"), len(items))
    timeout = float(min(max(_int(config.get("timeout_seconds"), DEFAULT_TIMEOUT), 1), MAX_TIMEOUT))
    retries = min(max(_int(config.get("retries"), 0), 0), 5)
    fields = _profile_fields(run, items)
    secret = run.scenario.webhook_secret or ""
    requests = []
    for item in items:
        body = body_of(run, item, fields.get(item.profile_id))
        requests.append((body, {"Content-Type": "application/json", "X-CDP-Signature": sign(secret, body),
                                "X-CDP-Delivery": f"{item.id}:{item.seq}", "X-CDP-Scenario": str(run.scenario.pk)}))
    with client(timeout=timeout, private_ok=private_ok) as c:
        if len(requests) == 1:
            answers: list[_Answer | None] = [_post(c, url, *requests[0])]
        else:
            answers = _post_all(c, url, requests)
    return [_outcome(item, answer, retries) if answer is not None else
            Outcome(wait_until=run.now, wait={"deferred": "webhook"}, outcome="webhook: deferred (a slow endpoint)")
            for item, answer in zip(items, answers, strict=True)]


def _post_all(c: httpx.Client, url: str, requests: list[tuple[bytes, dict[str, str]]]) -> list[_Answer | None]:
    """POST every request on the bounded pool. Requests not started within GROUP_BUDGET seconds
    are not sent (None): a slow endpoint may not hold the engine's batch (and its transaction)
    for hundreds of timeouts; those trips wait until the next tick (no attempt is used up)."""
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(requests)), thread_name_prefix="scn-webhook")
    try:
        futures = [pool.submit(_post, c, url, body, headers) for body, headers in requests]
        wait(futures, timeout=GROUP_BUDGET)
        for f in futures:
            f.cancel()  # only those not started yet; running ones finish (within their timeout)
        return [None if f.cancelled() else f.result() for f in futures]
    finally:
        pool.shutdown(wait=True)


def _outcome(item: Item, answer: _Answer, retries: int) -> Outcome:
    if answer.status is not None and 200 <= answer.status < 300:
        return Outcome(exit="next", outcome=f"webhook: HTTP {answer.status}")
    if answer.refused:
        return Outcome(fail=f"webhook {answer.error}")
    what = f"HTTP {answer.status}" if answer.status is not None else answer.error
    transient = answer.status is None or answer.status in _RETRY_STATUSES or answer.status >= 500
    if not transient:
        return Outcome(fail=f"webhook answered {what}")
    if item.attempts >= retries:
        tries = item.attempts + 1
        return Outcome(fail=f"webhook failed after {tries} attempt{'s' if tries != 1 else ''}: {what}")
    return Outcome(retry=f"webhook: {what}")


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None and value != "" else default
    except (TypeError, ValueError):
        return default


HANDLERS: dict[str, Handler] = {"webhook": webhook_run}
