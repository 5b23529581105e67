"""Schemas of the mailings API. Schedules, triggers and send windows travel as the JSON documented
on `mailings.models.Mailing`; pydantic checks their outer shape, the lifecycle services validate
them and name the field at fault."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field as F
from ninja import Schema
from pydantic import ConfigDict, StringConstraints

KindName = Literal["broadcast", "regular", "trigger"]
StateName = Literal["draft", "scheduled", "sending", "paused", "done", "cancelled"]
ChannelName = Literal["email", "sms", "webpush", "mobilepush", "telegram"]
AudienceName = Literal["database", "segments"]
LedgerStatus = Literal["queued", "sending", "sent", "failed", "skipped", "ambiguous"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
MAX_BULK = 1000

_SCHEDULE = (
    'Broadcast: {"mode": "now"} | {"mode": "at", "at": "2026-12-01T09:00:00+01:00"} | {"mode": "local", "date": '
    '"2026-12-01", "time": "09:00"} (each recipient\'s timezone). Regular, in the account\'s timezone: '
    '{"daily_at": "10:00"}, {"every_hours": 6}, {"cron": "m h dom mon dow"}. Trigger: {}.'
)
_TRIGGER = (
    'Trigger mailings: {"on": "event", "event": "cart_abandoned", "filters": [{"property": "price", "op": "gte", '
    '"value": 50}], "delay_seconds": 3600} | {"on": "subscription", "delay_seconds": 0} | {"on": "confirmation"} | '
    '{"on": "api"}. Filter ops: eq, ne, gt, gte, lt, lte, contains, in, exists (numbers, booleans and ISO dates compare '
    "by type)."
)
_WINDOW = 'When messages may go out, in the recipient\'s timezone: {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "20:00"}.'
_CAP = 'The mailing\'s own sending policy: {"max_messages": 3, "days": 7, "scope": "profile"}; null removes it.'

EXAMPLE_BROADCAST: dict[str, Any] = {
    "name": "Winter sale", "kind": "broadcast", "channel": "email", "resource": 3, "template": 12,
    "audience": "segments", "include_segments": [7], "exclude_segments": [], "categories": ["offers"],
    "schedule": {"mode": "at", "at": "2026-12-01T09:00:00+01:00"}, "speed_limit": 6000,
}
EXAMPLE_TRIGGER: dict[str, Any] = {
    "name": "Abandoned cart", "kind": "trigger", "channel": "email", "resource": 3, "template": 14,
    "trigger": {"on": "event", "event": "cart_abandoned", "delay_seconds": 3600,
                "filters": [{"property": "price", "op": "gte", "value": 20}]},
}


class _Values(Schema):
    description: str | None = F(None, max_length=5000)
    transactional: bool | None = F(None, description="Receipts and confirmations: exempt from frequency caps.")
    sender: int | None = F(None, description="E-mail: a sender's id; null: the resource's or account's default.")
    provider: int | None = F(None, description="A provider account's id on the channel; null: the channel's default.")
    template: int | None = F(None, description="The template's id (it needs a current version for the channel).")
    audience: AudienceName | None = F(None, description="database: every subscriber of the resource; segments: "
                                                        "include_segments minus exclude_segments.")
    include_segments: list[int] | None = F(None, max_length=50)
    exclude_segments: list[int] | None = F(None, max_length=50)
    categories: list[str] | None = F(None, max_length=50, description="Subscription categories the mailing belongs "
                                                                      "to: subscribers who opted out are skipped.")
    schedule: dict[str, Any] | None = F(None, description=_SCHEDULE)
    trigger: dict[str, Any] | None = F(None, description=_TRIGGER)
    speed_limit: int | None = F(None, ge=0, description="At most this many messages a minute; null or 0: no limit.")
    send_window: dict[str, Any] | None = F(None, description=_WINDOW)
    track_opens: bool | None = None
    track_clicks: bool | None = None
    cap: dict[str, Any] | None = F(None, description=_CAP)


class MailingIn(_Values):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_BROADCAST, EXAMPLE_TRIGGER]})

    name: Name
    kind: KindName = "broadcast"
    channel: ChannelName = "email"
    resource: int = F(..., description="The resource's id: its subscribers on the channel are the recipients.")


class MailingPatch(_Values):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Winter sale (final)"}, {"schedule": {"mode": "at", "at": "2026-12-02T09:00:00+01:00"}},
        {"trigger": {"on": "event", "event": "cart_abandoned", "delay_seconds": 7200}},
    ]})

    name: Name | None = None
    kind: KindName | None = F(None, description="Drafts only.")
    channel: ChannelName | None = F(None, description="Drafts only.")
    resource: int | None = F(None, description="Drafts only.")


class FiguresOut(Schema):
    planned: int
    sent: int
    opened_unique: int
    clicked_unique: int
    open_rate: float | None = F(description="Percent of the messages received.")
    click_rate: float | None


class MailingOut(Schema):
    id: int
    name: str
    description: str
    kind: KindName
    state: StateName = F(description="draft -> scheduled -> sending -> paused -> done | cancelled. A listening "
                                     "trigger mailing is `sending`.")
    transactional: bool
    channel: ChannelName
    database: str = F(description="The profile database's slug.")
    resource: int
    sender: int | None
    provider: int | None
    template: int | None
    audience: AudienceName
    include_segments: list[int]
    exclude_segments: list[int]
    categories: list[str]
    schedule: dict[str, Any]
    trigger: dict[str, Any]
    speed_limit: int | None
    send_window: dict[str, Any] | None
    track_opens: bool
    track_clicks: bool
    cap: dict[str, Any] | None = F(description="The mailing's own sending policy, if any.")
    next_run_at: datetime | None = F(description="Scheduled mailings: when the next run starts.")
    last_error: str
    figures: FiguresOut = F(description="Key figures, summed from the counters.")
    problems: dict[str, str] = F(description="What stops a launch now, by field (empty: it can be launched). Drafts only.")
    created_at: datetime
    updated_at: datetime
    launched_at: datetime | None
    finished_at: datetime | None


class MailingFilter(Schema):
    state: StateName | None = F(None, description="Only mailings in this state.")
    kind: KindName | None = F(None, description="Only mailings of this kind.")
    q: str = F("", max_length=100, description="Part of the name.")


# --- preview, report, recipients ----------------------------------------------------------------------


class PreviewOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "audience": 1200, "sendable": 1034, "excluded": {"unsubscribed": 120, "suppressed": 4, "capped": 12},
        "no_address": 30, "capped": 12, "outside_window": 0, "cap": "at most 3 in 7 days per recipient (account policy)",
        "error": "",
    }]})

    audience: int = F(description="Profiles in the audience.")
    sendable: int = F(description="Messages that would be queued now.")
    excluded: dict[str, int] = F(description="Messages that would be skipped, by reason.")
    no_address: int = F(description="Audience profiles with no subscription on the channel.")
    capped: int
    outside_window: int = F(description="Sendable messages the send window would delay.")
    cap: str = F(description="The sending policy that applies, as text.")
    error: str = F(description="Why nothing could be counted (a broken segment).")


class ReasonOut(Schema):
    reason: str
    label: str
    count: int


class LinkOut(Schema):
    link_id: int
    url: str
    clicks: int


class ReportOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "mailing_id": 12, "run_id": None,
        "figures": {"planned": 1000, "sent": 980, "failed": 8, "skipped": 12, "opened_unique": 410, "clicked_unique": 96},
        "rates": {"delivery": 99.1, "open": 42.2, "click": 9.9, "click_to_open": 23.4, "unsubscribe": 0.3,
                  "complaint": 0.0, "bounce": 0.8, "hard_bounce": 0.5},
        "skipped": [{"reason": "unsubscribed", "label": "Unsubscribed", "count": 12}], "failed": [],
        "links": [{"link_id": 5, "url": "https://shop.example/sale", "clicks": 80}],
        "series": [{"hour": "2026-12-01T09:00:00Z", "sent": 980, "opened": 300, "clicked": 70}],
    }]})

    mailing_id: int
    run_id: int | None
    figures: dict[str, int] = F(description="Every counter: planned, queued, sent, failed, skipped, ambiguous, delivered, "
                                            "opened(_unique/_human/_machine), clicked(...), unsubscribed, complained, "
                                            "bounced_hard, bounced_soft...")
    rates: dict[str, float | None] = F(description="Percentages; null when there is nothing to divide by.")
    skipped: list[ReasonOut]
    failed: list[ReasonOut]
    links: list[LinkOut] = F(description="Human clicks per link, most clicked first.")
    series: list[dict[str, Any]] = F(description="Per hour (UTC): sent, and opens and clicks by people (machine ones left out, as in the rates).")


class RecipientOut(Schema):
    id: int = F(description="The ledger row's id.")
    run_id: int
    profile_id: int
    subscription_id: int
    channel: ChannelName
    address: str
    status: LedgerStatus
    reason: str = F(description="Why it was skipped or failed (unsubscribed, capped, hard_bounce...).")
    detail: str = F(description="The server's answer, the cap that applied, the error.")
    attempts: int
    not_before: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    bounced_at: datetime | None
    trigger_key: str | None
    created_at: datetime


# --- triggers ------------------------------------------------------------------------------------------

_PROFILE_REF = ('The profile, by exactly one match key of the mailing\'s database, e.g. {"email": "ann@example.com"}, '
                '{"customer_id": "C-1001"} or {"id": 42}.')
_FIELDS = ("Profile fields to create or update first (upsert by the match key in `profile`); needs a token that may "
           "edit data. Without it the profile must exist.")
_DATA = "Template data: the template reads it as data.<name> (an order, a cart). Up to 64 KB."


class TriggerIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"profile": {"email": "ann@example.com"},
         "data": {"order": {"id": "1001", "total": "59.90", "items": [{"sku": "SH-100", "qty": 1}]}}},
        {"profile": {"email": "ben@example.com"}, "fields": {"first_name": "Ben", "city": "Berlin"},
         "data": {"code": "WELCOME10"}},
    ]})

    profile: dict[str, str | int] = F(..., description=_PROFILE_REF)
    fields: dict[str, Any] | None = F(None, description=_FIELDS)
    data: dict[str, Any] | None = F(None, description=_DATA)


class TriggerOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"ledger_id": 5812, "status": "queued", "reason": "", "run_id": 77, "profile_id": 42},
        {"ledger_id": 5813, "status": "skipped", "reason": "unsubscribed", "run_id": 77, "profile_id": 43},
    ]})

    ledger_id: int = F(description="The ledger row: follow it in GET /mailings/{id}/recipients.")
    status: LedgerStatus = F(description="queued (sent within seconds), or skipped with the reason.")
    reason: str
    run_id: int
    profile_id: int


class TriggerItemIn(Schema):
    model_config = ConfigDict(extra="forbid")

    profile: Any = F(..., description=_PROFILE_REF)
    fields: dict[str, Any] | None = F(None, description=_FIELDS)
    data: Any = F(None, description=_DATA)
    key: str | None = F(None, max_length=120, description="The item's idempotency key: the same key again (in this "
                                                         "or a later request) answers the same ledger row.")


class TriggerBulkIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"items": [
        {"profile": {"email": "ann@example.com"}, "data": {"order": {"id": "1001"}}, "key": "order-1001"},
        {"profile": {"id": 42}, "data": {"order": {"id": "1002"}}, "key": "order-1002"},
    ]}]})

    items: list[TriggerItemIn] = F(..., min_length=1, description=f"Up to {MAX_BULK:,} items.")


class ItemErrorOut(Schema):
    loc: list[str | int]
    message: str
    type: str = ""


class TriggerItemOut(Schema):
    index: int
    ledger_id: int | None
    status: LedgerStatus | Literal["error"]
    reason: str = ""
    errors: list[ItemErrorOut] = []


class TriggerBulkOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "queued": 1, "skipped": 0, "error": 1, "results": [
            {"index": 0, "ledger_id": 5812, "status": "queued", "reason": "", "errors": []},
            {"index": 1, "ledger_id": None, "status": "error", "reason": "",
             "errors": [{"loc": ["items", 1, "profile", "id"], "message": "no profile #42 in this database",
                         "type": "not_found"}]},
        ],
    }]})

    queued: int
    skipped: int
    error: int
    results: list[TriggerItemOut]
