"""API: sending events (one, or a batch of up to 1,000), reading a profile's events, and the
account's event types (issue 5, item 10).

Sending: `POST /events/batch` is the ingestion hot path (benchmarked at thousands of events a
second), so it reads the body with `json.loads` and hands the items to
`history.services.ingest_payloads` as they are: no pydantic model per event, no query per event
(profiles, types and resources are resolved set-based). Each item gets its own result (stored,
duplicate, or error naming the field); only a request that cannot be read at all (malformed JSON,
no `events` list, more than 1,000 items, an unknown database) is refused as a whole. The sender's
event ids make retries safe: an id already stored in the account is answered `duplicate` and not
stored again, within one batch too. `Idempotency-Key` works as for any POST (the first answer is
replayed), though event ids already make a resent batch harmless.

Reading follows cdp/api/__init__.py: `{db}` and the profile are resolved through the token's
account (another account's are 404); the list is keyset-paged on (time, id), newest first.

Event types: system types (the platform's catalogue) are read-only; custom types are created,
changed and deleted through history.services (audited), whose field errors become 422 details.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Query, Router, Status

from accounts.access import Actor
from accounts.models import Account
from accounts.permissions import Perm
from cdp import confcache
from cdp.api.auth import require
from cdp.api.errors import ERRORS, ApiError
from cdp.api.pagination import CursorPage
from history import selectors
from history.api.schemas import (
    BATCH_BODY,
    ONE_BODY,
    EventBatchOut,
    EventFilter,
    EventOut,
    EventResultOut,
    EventTypeIn,
    EventTypeListOut,
    EventTypeOut,
    EventTypePatch,
)
from history.catalogue import BY_ID, BY_NAME
from history.models import Event, EventType, Link
from history.services import (
    MAX_BATCH,
    EventTypeError,
    eventtype_create,
    eventtype_delete,
    eventtype_update,
    ingest_payloads,
)
from profiles.api import DatabaseRef, profile_or_404
from profiles.models import ProfileDatabase

router = Router()

EVENTS = ["events"]
TYPES = ["event types"]

BATCH_KEYS = frozenset({"database", "events"})


# --- reading the body ---------------------------------------------------------------------------


def _invalid(loc: list[str | int], message: str, *, type_: str = "invalid_value", status: int = 422) -> ApiError:
    where = ".".join(str(p) for p in loc)
    return ApiError(status, f"{where}: {message}." if where else f"{message[0].upper()}{message[1:]}.",
                    details=[{"loc": loc, "message": message, "type": type_}])


def _json_object(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying where it stops being JSON."""
    raw = request.body
    if not raw.strip():
        raise ApiError(400, "The request body is empty; send a JSON object.", code="invalid_json",
                       details=[{"loc": ["body"], "message": "empty", "type": "json_invalid"}])
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno} (character {exc.pos})"
        raise ApiError(400, f"The body is not valid JSON: {exc.msg} at {where}.", code="invalid_json",
                       details=[{"loc": ["body"], "message": f"{exc.msg} at {where}", "type": "json_invalid"}]) from None
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"The body is not UTF-8 text (byte {exc.start}).", code="invalid_json",
                       details=[{"loc": ["body"], "message": "not UTF-8", "type": "json_invalid"}]) from None
    except RecursionError:
        raise ApiError(400, "The body is nested too deeply to read.", code="invalid_json",
                       details=[{"loc": ["body"], "message": "nested too deeply", "type": "json_invalid"}]) from None
    if not isinstance(body, dict):
        raise _invalid(["body"], f"expected a JSON object, got {_json_type(body)}", type_="object_type", status=422)
    return body


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(type(value), "a number")


# Databases by (account, slug), per process until the configuration changes (cdp.confcache):
# the batch endpoint needs one per request and the request's authentication has just synced.
_DATABASES: dict[tuple[int, str], ProfileDatabase] = confcache.register({})


def _database(account: Account, slug: Any) -> ProfileDatabase:
    """The account's database named by `slug`, or its only database when `slug` is left out."""
    if isinstance(slug, str) and confcache.check(fresh_within=1.0):
        hit = _DATABASES.get((account.pk, slug))
        if hit is not None:
            return hit
    qs = ProfileDatabase.objects.for_account(account)
    if slug is None:
        found = list(qs.order_by("pk")[:2])
        if len(found) == 1:
            database = found[0]
        elif not found:
            raise _invalid(["database"], "this account has no profile database yet", type_="missing")
        else:
            raise _invalid(["database"], "name the profile database by its slug (the account has several)", type_="missing")
    elif not isinstance(slug, str):
        raise _invalid(["database"], f"expected the database's slug, got {_json_type(slug)}")
    else:
        database = qs.filter(slug=slug).first()
        if database is None:
            raise ApiError(404, f"There is no profile database {slug[:60]!r} in this account.",
                           details=[{"loc": ["database"], "message": "no such database in this account", "type": "not_found"}])
        database.account = account  # the token's, already loaded
        if len(_DATABASES) >= 10_000:
            _DATABASES.clear()
        _DATABASES[(account.pk, slug)] = database
    database.account = account
    return database


# --- sending events -----------------------------------------------------------------------------


@router.post("/events/batch", tags=EVENTS, response={200: EventBatchOut, **ERRORS}, openapi_extra={"requestBody": BATCH_BODY},
             summary=f"Send up to {MAX_BATCH:,} events")
def events_batch_api(request: HttpRequest) -> HttpResponse:
    """Stores each valid event and answers a result per item, in order: `stored` (with the event's
    id), `duplicate` (its id was stored before, or earlier in this batch: nothing stored again) or
    `error` with the field and the reason (unknown type or profile, properties that do not match a
    strict type, a time too far ahead or back, oversize properties...). A bad item never stops the
    others. An unknown profile is created when the token may create profiles (`profiles_created`
    counts them), else it is an error on `profile`.

    The whole request is refused only when it cannot be read: malformed JSON (400 `invalid_json`
    with the line and column), no `events` array or more than 1,000 items (422), an unknown
    database (404). A body over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default) is 413."""
    require(request, Perm.DATA_EDIT)
    body = _json_object(request)
    unknown = sorted(set(body) - BATCH_KEYS)
    if unknown:
        raise _invalid([unknown[0]], "unknown key (a batch has database and events)", type_="extra_forbidden")
    events = body.get("events")
    if events is None:
        raise _invalid(["events"], "give the events as an array", type_="missing")
    if not isinstance(events, list):
        raise _invalid(["events"], f"expected an array of events, got {_json_type(events)}", type_="list_type")
    if len(events) > MAX_BATCH:
        raise _invalid(["events"], f"a batch holds at most {MAX_BATCH:,} events; this one has {len(events):,} "
                                   f"(send the rest in another request)", type_="too_long")
    token = request.auth
    database = _database(token.account, body.get("database"))
    outcome = ingest_payloads(account=token.account, database=database, items=events,
                              create_profiles=token.create_profiles, source="api", public_only=True)
    # Written out as JSON directly, without a pydantic pass over a thousand results.
    return HttpResponse(outcome.as_json(), content_type="application/json")


def _field_loc(field: str) -> list[str | int]:
    """ "properties.price" -> ["properties", "price"]; "properties[2].name" -> ["properties", 2, "name"]."""
    loc: list[str | int] = []
    for part in re.split(r"\.|\[(\d+)\]", field):
        if part:
            loc.append(int(part) if part.isdigit() else part)
    return loc


@router.post("/events", tags=EVENTS, response={200: EventResultOut, 201: EventResultOut, **ERRORS},
             openapi_extra={"requestBody": ONE_BODY}, summary="Send one event")
def event_create_api(request: HttpRequest) -> Status:
    """One event, shaped like an item of `/events/batch` plus `database`. 201 when stored, 200 when
    its `id` was stored before (nothing stored again; the answer names the first event's id), 422
    naming the field when the event is refused."""
    require(request, Perm.DATA_EDIT)
    item = _json_object(request)
    slug = item.pop("database", None)
    token = request.auth
    database = _database(token.account, slug)
    outcome = ingest_payloads(account=token.account, database=database, items=[item],
                              create_profiles=token.create_profiles, source="api", public_only=True)
    result = outcome.results[0]
    if result.status == "error":
        loc = _field_loc(result.field)
        raise ApiError(422, f"The event was not stored: {result.field + ': ' if result.field else ''}{result.error}.",
                       details=[{"loc": loc, "message": result.error, "type": "invalid_value"}])
    body = {"status": result.status, "id": result.id, "untyped": result.untyped,
            "profile_created": outcome.profiles_created > 0}
    return Status(201 if result.status == "stored" else 200, body)


# --- a profile's events -------------------------------------------------------------------------


def _type_ids(account: Account, names: list[str]) -> set[int]:
    wanted = {n.strip() for raw in names for n in raw.split(",") if n.strip()}
    ids = {BY_NAME[n].id for n in wanted if n in BY_NAME}
    custom = wanted - BY_NAME.keys()
    if custom:
        found = dict(EventType.objects.for_account(account).filter(name__in=custom).values_list("name", "id"))
        unknown = sorted(custom - found.keys())
        if unknown:
            raise _invalid(["query", "type"], f"no event type {unknown[0][:64]!r} in this account (GET /event-types lists them)")
        ids.update(found.values())
    return ids


def _aware(value: datetime | None, account: Account) -> datetime | None:
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value, account.tzinfo)
    return value


def _events_out(account: Account, events: list[Event]) -> list[dict[str, Any]]:
    names = {i: st.name for i, st in BY_ID.items()}
    custom = {e.type_id for e in events} - names.keys()
    if custom:
        names.update(EventType.objects.filter(account=account, id__in=custom).values_list("id", "name"))
    resource_ids = {e.resource_id for e in events if e.resource_id is not None}
    resources: dict[int, str] = {}
    if resource_ids:
        from resources.models import Resource  # below history: the allowed direction

        resources = dict(Resource.objects.for_account(account).filter(id__in=resource_ids).values_list("id", "slug"))
    link_ids = {e.link_id for e in events if e.link_id is not None}
    links = dict(Link.objects.for_account(account).filter(id__in=link_ids).values_list("id", "url")) if link_ids else {}
    return [{
        "id": e.pk, "event": names.get(e.type_id, ""), "time": e.occurred_at, "received_at": e.received_at,
        "channel": e.channel, "resource": resources.get(e.resource_id) if e.resource_id else None,
        "mailing_id": e.mailing_id, "run_id": e.run_id, "ledger_id": e.ledger_id,
        "link": links.get(e.link_id) if e.link_id else None, "properties": e.properties, "source": e.source,
        "machine": e.machine, "untyped": e.untyped,
    } for e in events]


@router.get("/databases/{slug:db}/profiles/{int:profile_id}/events", tags=EVENTS,
            response={200: CursorPage[EventOut], **ERRORS}, summary="A profile's events, newest first")
def profile_events_api(request: HttpRequest, db: DatabaseRef, profile_id: int, filters: Query[EventFilter],
                       cursor: str | None = None, limit: int | None = None) -> dict:
    """Newest first by time (then id), at most 200 a page (`limit`, default 50). Filter by `type`
    (repeat it or separate names with commas), `since` (at or after) and `until` (before). Pages
    with `cursor` = the previous `next_cursor`."""
    require(request, Perm.ACCOUNT_VIEW)
    account = request.auth.account
    limit = selectors.DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= selectors.MAX_LIMIT:
        raise _invalid(["query", "limit"], f"between 1 and {selectors.MAX_LIMIT}")
    profile = profile_or_404(request, db, profile_id)
    types = _type_ids(account, filters.type) if filters.type else None
    try:
        page = selectors.timeline(profile, types=types, since=_aware(filters.since, account),
                                  until=_aware(filters.until, account), cursor=cursor, limit=limit)
    except selectors.CursorError as exc:
        raise ApiError(400, "The cursor is not valid; use next_cursor from the previous page.", code="invalid_cursor",
                       details=[{"loc": ["query", "cursor"], "message": "not a cursor this API issued"}]) from exc
    return {"items": _events_out(account, page.events), "next_cursor": page.next_cursor}


# --- event types --------------------------------------------------------------------------------


def _type_out(et: EventType) -> dict[str, Any]:
    return {
        "name": et.name, "label": et.label, "description": et.description, "system": et.is_system,
        "public": et.public, "strict": et.strict, "enabled": et.enabled, "properties": et.properties,
        "created_at": et.created_at, "updated_at": et.updated_at,
    }


def _type_or_404(request: HttpRequest, name: str) -> EventType:
    et = EventType.objects.visible_to(request.auth.account).filter(name=name).first()
    if et is None:
        raise ApiError(404, f"There is no event type {name[:64]!r} in this account.")
    return et


def _type_refused(exc: EventTypeError, what: str) -> ApiError:
    details = [{"loc": _field_loc(k), "message": v, "type": "invalid_value"} for k, v in exc.errors.items()]
    summary = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
    return ApiError(422, f"{what}: {summary}.", details=details)


def _system_refused(et: EventType, verb: str) -> ApiError:
    message = f"{et.name!r} is a system event type: it cannot be {verb}"
    return ApiError(422, f"{message}. Define a custom type instead.", code="system_type",
                    details=[{"loc": ["name"], "message": message, "type": "system_type"}])


@router.get("/event-types", tags=TYPES, response={200: EventTypeListOut, **ERRORS}, summary="List event types")
def eventtype_list_api(request: HttpRequest) -> dict:
    """The platform's system types and the account's own, system types first, each by name."""
    require(request, Perm.ACCOUNT_VIEW)
    types = sorted(EventType.objects.visible_to(request.auth.account), key=lambda t: (not t.is_system, t.name))
    return {"items": [_type_out(t) for t in types]}


@router.post("/event-types", tags=TYPES, response={201: EventTypeOut, **ERRORS}, summary="Define a custom event type")
def eventtype_create_api(request: HttpRequest, payload: EventTypeIn) -> Status:
    """Events of a strict type (the default) whose properties do not match the schema are refused
    with the reason; a loose type (`strict: false`) stores them marked `untyped`. A name in use,
    or a schema entry that does not fit, is 422 naming it (`loc: ["properties", 0, "type"]`)."""
    require(request, Perm.DATABASES_MANAGE)
    try:
        et = eventtype_create(account=request.auth.account, name=payload.name, label=payload.label,
                              description=payload.description, properties=payload.properties, strict=payload.strict,
                              actor=Actor.from_request(request))
    except EventTypeError as exc:
        raise _type_refused(exc, "The event type was not created") from exc
    return Status(201, _type_out(et))


@router.get("/event-types/{name}", tags=TYPES, response={200: EventTypeOut, **ERRORS}, summary="An event type")
def eventtype_get_api(request: HttpRequest, name: str) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return _type_out(_type_or_404(request, name))


@router.patch("/event-types/{name}", tags=TYPES, response={200: EventTypeOut, **ERRORS},
              summary="Change a custom event type")
def eventtype_update_api(request: HttpRequest, name: str, payload: EventTypePatch) -> dict:
    """Only the fields sent change. A new schema applies to events stored from now on. `enabled:
    false` makes the API refuse the type (stored events stay). System types are 422."""
    require(request, Perm.DATABASES_MANAGE)
    et = _type_or_404(request, name)
    if et.is_system:
        raise _system_refused(et, "changed")
    values = payload.dict(exclude_unset=True)
    try:
        et = eventtype_update(event_type=et, actor=Actor.from_request(request), **{
            k: values.get(k) for k in ("label", "description", "properties", "strict", "enabled")})
    except EventTypeError as exc:
        raise _type_refused(exc, "The event type was not changed") from exc
    return _type_out(et)


@router.delete("/event-types/{name}", tags=TYPES, response={204: None, **ERRORS}, summary="Delete a custom event type")
def eventtype_delete_api(request: HttpRequest, name: str) -> Status:
    """Only a type without stored events: otherwise 409, and disabling it (`PATCH {"enabled":
    false}`) is the way to stop it while its history stays."""
    require(request, Perm.DATABASES_MANAGE)
    et = _type_or_404(request, name)
    if et.is_system:
        raise _system_refused(et, "deleted")
    try:
        eventtype_delete(event_type=et, actor=Actor.from_request(request))
    except EventTypeError as exc:
        message = (f"Events of type {et.name!r} are stored, so it cannot be deleted. Disable it instead "
                   f"(PATCH {{\"enabled\": false}}): the API then refuses it and its history stays.")
        raise ApiError(409, message, code="in_use",
                       details=[{"loc": ["name"], "message": exc.errors.get("name", str(exc)), "type": "in_use"}]) from exc
    return Status(204, None)
