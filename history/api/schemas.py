"""Schemas of the history API: event types (validated by pydantic, then by history.services), and
the shapes of events and ingestion results (documentation; the ingestion routes read and write
JSON themselves, see routes.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field as F
from ninja import Schema
from pydantic import ConfigDict

from history.services import CHANNELS, MAX_BATCH, MAX_PROPERTIES_BYTES

PropertyTypeName = Literal["string", "integer", "decimal", "boolean", "date", "datetime", "enum", "list", "json"]

_CHANNELS = ", ".join(sorted(c for c in CHANNELS if c))

# --- ingestion (request bodies documented by hand: the routes parse them without pydantic) --------

EVENT_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "profile"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "maxLength": 128,
               "description": "Your id of the event: an event with an id already stored in this account is "
                              "answered `duplicate` and not stored again. Give one to make retries safe."},
        "event": {"type": "string", "examples": ["order.placed", "cart_abandoned"],
                  "description": "An event type's name: a public system type (`GET /event-types`) or one of yours."},
        "time": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
                 "description": "When it happened: ISO 8601 (no offset means UTC) or epoch seconds/milliseconds. "
                                "Default: now. At most an hour ahead, at most 10 years (or the retention period) back."},
        "profile": {"type": "object", "minProperties": 1, "maxProperties": 1,
                    "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                    "examples": [{"email": "ann@example.com"}, {"id": 42}, {"customer_id": "C-1001"}],
                    "description": "The profile by exactly one match key of the database, or by its id. An unknown "
                                   "profile is created only when the token may create profiles."},
        "properties": {"type": "object", "description": f"Checked against the type's schema; at most "
                                                        f"{MAX_PROPERTIES_BYTES // 1024} KB as JSON."},
        "channel": {"type": "string", "description": f"One of: {_CHANNELS}."},
        "resource": {"type": "string", "description": "The slug of a resource of the database."},
    },
}

_ITEM_EXAMPLE = {"id": "ord-1001-placed", "event": "order.placed", "time": "2026-11-28T10:15:00Z",
                 "profile": {"email": "ann@example.com"}, "properties": {"order_id": "1001", "total": "59.90"},
                 "channel": "web"}

BATCH_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {
        "schema": {
            "type": "object",
            "required": ["events"],
            "additionalProperties": False,
            "properties": {
                "database": {"type": "string", "description": "The profile database's slug; may be left out when "
                                                              "the account has exactly one database."},
                "events": {"type": "array", "maxItems": MAX_BATCH, "items": EVENT_ITEM_SCHEMA},
            },
        },
        "example": {"database": "customers", "events": [_ITEM_EXAMPLE]},
    }},
}

ONE_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {
        "schema": {**EVENT_ITEM_SCHEMA, "properties": {
            "database": BATCH_BODY["content"]["application/json"]["schema"]["properties"]["database"],
            **EVENT_ITEM_SCHEMA["properties"],
        }},
        "example": {"database": "customers", **_ITEM_EXAMPLE},
    }},
}


class ItemError(Schema):
    field: str = F(description='Where in the item: "event", "time", "profile.email", "properties.price"...')
    message: str


class ItemResultOut(Schema):
    index: int = F(description="The item's position in `events`, from 0.")
    status: Literal["stored", "duplicate", "error"]
    id: int | None = F(None, description="The stored event's id (for a duplicate: the one stored first).")
    error: ItemError | None = None
    untyped: bool = F(False, description="Stored although its properties did not match its (loose) type's schema.")


class EventBatchOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "stored": 1, "duplicate": 0, "error": 1, "profiles_created": 0,
        "results": [{"index": 0, "status": "stored", "id": 912},
                    {"index": 1, "status": "error", "error": {"field": "properties.price", "message": "not a number"}}],
    }]})

    stored: int
    duplicate: int
    error: int
    profiles_created: int
    results: list[ItemResultOut]


class EventResultOut(Schema):
    status: Literal["stored", "duplicate"]
    id: int
    untyped: bool = False
    profile_created: bool = False


# --- a profile's events ---------------------------------------------------------------------------


class EventOut(Schema):
    id: int
    event: str = F(description="The event type's name.")
    time: datetime = F(description="When it happened (UTC).")
    received_at: datetime
    channel: str
    resource: str | None = F(description="The resource's slug.")
    mailing_id: int | None
    run_id: int | None
    ledger_id: int | None
    link: str | None = F(description="The URL of the clicked link.")
    properties: dict[str, Any]
    source: str = F(description="api, import, web, tracking, consent, ...")
    machine: bool = F(description="Likely a machine (mail privacy proxy, link scanner), not a person.")
    untyped: bool


class EventFilter(Schema):
    type: list[str] = F([], description="Event type names; repeat the parameter or separate names with commas.")
    since: datetime | None = F(None, description="At or after this moment (no offset: the account's timezone).")
    until: datetime | None = F(None, description="Before this moment (no offset: the account's timezone).")


# --- event types ----------------------------------------------------------------------------------


class PropertyOut(Schema):
    name: str
    type: PropertyTypeName
    required: bool
    choices: list[str] | None = None


class EventTypeOut(Schema):
    name: str
    label: str
    description: str
    system: bool = F(description="Part of the platform's catalogue (cannot be changed or deleted).")
    public: bool = F(description="Integrations may send it (the API, the website snippet).")
    strict: bool = F(description="Events whose properties do not match are refused; otherwise stored as untyped.")
    enabled: bool = F(description="A disabled type is refused; its stored events stay.")
    properties: list[PropertyOut]
    created_at: datetime
    updated_at: datetime


class EventTypeListOut(Schema):
    items: list[EventTypeOut] = F(description="System types, then the account's own, by name (not paged: a few hundred at most).")


_PROPERTIES = ('The property schema: [{"name": "sku", "type": "string", "required": true}, {"name": "size", "type": '
               '"enum", "choices": ["S", "M", "L"]}]. Types: ' + ", ".join(PropertyTypeName.__args__) + ". "
               "Properties the schema does not name are kept as sent.")


class EventTypeIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "cart_abandoned", "label": "Cart abandoned",
        "properties": [{"name": "sku", "type": "string", "required": True}, {"name": "price", "type": "decimal"}],
    }]})

    name: str = F(..., max_length=64, description="2-63 lowercase letters, digits and _, starting with a letter.")
    label: str = F("", max_length=200)
    description: str = F("", max_length=5000)
    properties: list[dict[str, Any]] = F([], description=_PROPERTIES)
    strict: bool = F(True, description="Refuse events whose properties do not match (false: store them as untyped).")


class EventTypePatch(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}, {"strict": False}]})

    label: str | None = F(None, max_length=200)
    description: str | None = F(None, max_length=5000)
    properties: list[dict[str, Any]] | None = F(None, description=_PROPERTIES + " Applies to events stored from now on.")
    strict: bool | None = None
    enabled: bool | None = None
