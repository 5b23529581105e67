"""The website snippet's collector: `POST /t/collect/<public key>` (static/js/cdp-track.js sends here).

A site embeds the snippet with its resource's public key; the key names the resource, whose
profile database is where people are looked up, and every event is stored with that resource.
The body is `{"events": [...]}` in the item shape of `history.services.payloads` (at most 100),
sent as text/plain (so `navigator.sendBeacon` and a plain fetch need no CORS preflight) or as
application/json (the browser then sends an OPTIONS preflight, answered here).

What a public endpoint may and may not do:
- Only the types integrations may send (page.viewed, app.event, form.submitted, order.*,
  promo.*, the account's own types); never the platform's (message.*, subscription.*).
- Never creates profiles: events of people who are not in the database are dropped. People
  are named by a match key of the database (email, customer_id...), not by a profile id, which
  is a guessable number.
- The answer depends only on what was sent, never on who is in the database: an item is
  "rejected" (with the reason) when it is wrong in itself (unknown type, bad properties, a time
  in the future, a malformed e-mail), and "accepted" otherwise, whether it was stored, was a
  duplicate, or named nobody. Otherwise anyone holding the (public) key could ask whether a
  given e-mail is a customer. The "Website tracking" page shows what was really stored.
- An event's id (its idempotency key) is kept in the resource's own namespace ("js<resource
  id>:" + the id sent), so a page cannot take an id that the API or an import will use and get
  their event dropped as a duplicate.
- Rate limited per (key, client IP) and per key, fixed one-minute windows in the shared cache
  (429 with Retry-After; the snippet backs off). If the cache is down, requests are let through:
  losing the limit for a while is better than losing a site's events.
- No cookie is read or set, and the answer carries `Access-Control-Allow-Origin: *` without
  credentials: any site may post, no site can read anything but the counts of its own request.

The resource's `subscribe_enabled` (its sign-up form) does not turn tracking off; replacing the
resource's public key (Resources -> the resource -> Replace key) stops every snippet that has the
old key.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.access import client_ip
from cdp.ratelimit import over_limit
from history.services.ingest import EventChecker, EventIn, TypeBook
from history.services.payloads import ITEM_KEYS, ingest_payloads
from profiles.fieldtypes import FieldValueError
from profiles.services import Schema
from resources.models import Resource

log = logging.getLogger(__name__)

MAX_EVENTS = 100
SOURCE = "js"


def max_bytes() -> int:
    return settings.TRACKING_COLLECT_MAX_BYTES


# --- answers ----------------------------------------------------------------------------------------


def _cors(response: HttpResponse) -> HttpResponse:
    # "*" rather than the echoed Origin: the endpoint never uses credentials (no cookie, no
    # session), so there is nothing an origin-specific answer would protect, and one cached
    # preflight serves every site. Retry-After is exposed so the snippet can honour a 429.
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Expose-Headers"] = "Retry-After"
    response["Cache-Control"] = "no-store"
    return response


def _error(status: int, message: str) -> HttpResponse:
    return _cors(JsonResponse({"error": {"message": message}}, status=status))


def _preflight() -> HttpResponse:
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response["Access-Control-Allow-Headers"] = "Content-Type"
    response["Access-Control-Max-Age"] = "86400"
    return _cors(response)


# --- rate limits --------------------------------------------------------------------------------------


def _rate_limited(key: str, ip: str) -> int:
    wait = over_limit(f"collect:ip:{key[:64]}:{ip}", settings.TRACKING_COLLECT_RATE_IP)
    return wait or over_limit(f"collect:key:{key[:64]}", settings.TRACKING_COLLECT_RATE_KEY)


# --- items ----------------------------------------------------------------------------------------------


class _ItemError(Exception):
    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message


def _check_profile(item: dict[str, Any], resource: Resource, sch: Schema) -> None:
    """The profile reference, checked on its own (shape and value, not whether anyone has it)."""
    ref = item.get("profile")
    keys = resource.database.match_keys or ["email"]
    if not isinstance(ref, dict) or len(ref) != 1:
        raise _ItemError("profile", f'name the person by one match key, e.g. {{"{keys[0]}": "..."}}: identify them first')
    (key, raw), = ref.items()
    if key == "id":
        raise _ItemError("profile", f"name the person by a match key ({', '.join(keys)}), not by a profile id")
    if key not in keys and key not in ("email", "phone"):
        raise _ItemError("profile", f"{str(key)[:40]!r} is not a match key of this site's profiles "
                                    f"(use one of: {', '.join(keys)})")
    if isinstance(raw, dict | list) or raw is None:
        raise _ItemError(f"profile.{key}", "expected a text or number value")
    try:
        value = sch.convert(key, raw)
    except FieldValueError as exc:
        raise _ItemError(f"profile.{key}", str(exc)) from None
    except TypeError:
        raise _ItemError(f"profile.{key}", "expected a text value") from None
    if value is None:
        raise _ItemError(f"profile.{key}", "is empty")


def _check_event(item: dict[str, Any], checker: EventChecker) -> None:
    """The event itself (type, time, properties, id, channel), exactly as ingestion checks it, for
    a placeholder profile: so the answer is the same whoever the profile is."""
    ev = EventIn(type=item.get("event"), profile_id=0, occurred_at=item.get("time"), properties=item.get("properties"),
                 key=item.get("id"), channel=item.get("channel") or "", source=SOURCE)
    problem = checker.problem(ev, public_only=True)
    if problem:
        raise _ItemError(*problem)


def _scoped(item: dict[str, Any], resource: Resource) -> dict[str, Any]:
    """The item as it is stored. The key decides the resource; a site's events are web events
    unless it says otherwise; and the event's id is namespaced per resource ("js<resource id>:"),
    so that a public page can never take an id that the API, an import or another site uses and
    have their event dropped as a duplicate of its own."""
    out = {**item, "resource": resource.slug, "channel": item.get("channel") or "web"}
    raw = item.get("id")
    if isinstance(raw, str | int) and not isinstance(raw, bool) and str(raw).strip():
        out["id"] = f"js{resource.pk}:{str(raw).strip()}"
    return out


def collect_items(resource: Resource, items: list[Any]) -> dict[str, Any]:
    """Check and store the items for `resource`; the answer (accepted/rejected per item)."""
    account, database = resource.account, resource.database
    book = TypeBook.for_account(account)
    sch = Schema.load(database)
    checker = EventChecker.for_account(account, book)
    results: list[dict[str, Any]] = []
    valid: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise _ItemError("", f"expected an event object, got {type(item).__name__}")
            unknown = set(item) - ITEM_KEYS
            if unknown:
                raise _ItemError(sorted(unknown)[0], f"unknown key (an event has {', '.join(sorted(ITEM_KEYS))})")
            _check_profile(item, resource, sch)
            scoped = _scoped(item, resource)
            _check_event(scoped, checker)
        except _ItemError as exc:
            results.append({"index": i, "status": "rejected", "error": {"field": exc.field, "message": exc.message}})
            continue
        valid.append(scoped)
        results.append({"index": i, "status": "accepted"})
    if valid:
        outcome = ingest_payloads(account=account, database=database, items=valid, create_profiles=False, source=SOURCE,
                                  public_only=True, resource_ids={resource.slug: resource.pk}, book=book)
        stored = outcome.counts["stored"]
        if stored < len(valid):
            # Unknown people, duplicates (a retried batch) and races with an erasure: not the sender's
            # business (see the module docstring), but worth a debug line.
            log.debug("collect: %s of %s events stored for resource %s", stored, len(valid), resource.pk)
    accepted = sum(r["status"] == "accepted" for r in results)
    return {"accepted": accepted, "rejected": len(results) - accepted, "results": results}


# --- the view -------------------------------------------------------------------------------------------


def _body(request: HttpRequest) -> list[Any] | HttpResponse:
    """The posted events, or the error answer."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = max_bytes()
    if length > limit:
        return _error(413, f"The body is larger than {limit // 1024} KB: send fewer events at a time.")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        return _error(413, f"The body is larger than {limit // 1024} KB: send fewer events at a time.")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return _error(400, "The body is not UTF-8 text.")
    except ValueError as exc:
        return _error(400, f'The body is not JSON ({exc}). Send {{"events": [...]}}.')
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        return _error(400, 'Send a JSON object with a list of events: {"events": [...]}.')
    events = data["events"]
    if len(events) > MAX_EVENTS:
        return _error(413, f"At most {MAX_EVENTS} events per request; this one has {len(events):,}. Send them in smaller batches.")
    return events


# A public, key-authenticated endpoint that other sites post to by design, so Django's CSRF check
# cannot apply (there is no token to give them) and has nothing to protect: no cookie or session is
# read, nothing is done on behalf of a signed-in user, and the key in the URL is all the authority.
@csrf_exempt
def collect(request: HttpRequest, key: str) -> HttpResponse:
    """Store a batch of website events for the resource whose public key is `key`.

    200 {"accepted": n, "rejected": n, "results": [{"index", "status", "error"?}]};
    400 (not JSON, no events list), 404 (unknown key), 405, 413 (body over the limit or over
    100 events), 429 with Retry-After. Every answer carries the CORS headers."""
    if request.method == "OPTIONS":
        return _preflight()
    if request.method != "POST":
        response = _error(405, "POST events here (see the Website tracking page of the CDP).")
        response["Allow"] = "POST, OPTIONS"
        return response
    wait = _rate_limited(key, client_ip(request) or "-")
    if wait:
        response = _error(429, "Too many requests: try again in a minute.")
        response["Retry-After"] = str(wait)
        return response
    events = _body(request)
    if isinstance(events, HttpResponse):
        return events
    resource = Resource.objects.select_related("account", "database").filter(public_key=key).first()
    if resource is None:
        return _error(404, "No site has this key (it may have been replaced: copy the snippet again).")
    answer = collect_items(resource, events) if events else {"accepted": 0, "rejected": 0, "results": []}
    return _cors(JsonResponse(answer))
