"""The resources API's request and answer schemas (the routes are in resources.api.routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field as F
from ninja import Schema
from pydantic import (
    ConfigDict,
    StringConstraints,
    model_validator,
)

from cdp.api.errors import ErrorDetail

MAX_BATCH = 1000

ChannelName = Literal["email", "sms", "webpush", "mobilepush", "telegram"]
StatusName = Literal["subscribed", "unconfirmed", "suspended", "unsubscribed", "bounced", "complained", "blocked"]
NewStatus = Literal["subscribed", "unconfirmed", "unsubscribed"]
KindName = Literal["email", "domain", "phone"]
ReasonName = Literal["manual", "bounce", "complaint", "legal", "role", "imported"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=60)]
Address = str | int



class CategoryOut(Schema):
    key: str
    label: str


class CategoryIn(Schema):
    key: str = F(..., max_length=40, description="Letters, digits and _, starting with a letter.")
    label: str = F("", max_length=100, description="Shown on the preference page; made from the key when empty.")


_CATEGORIES = (
    "Subscription categories people can opt out of, as objects {key, label} or strings "
    '"key" / "key:Label".'
)


class ResourceOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 3, "name": "Shop news", "slug": "shop-news", "database": "customers", "description": "",
        "channels": ["email", "sms"], "categories": [{"key": "news", "label": "News"}], "double_opt_in": ["email"],
        "preference_visible_fields": ["first_name"], "preference_editable_fields": ["first_name"], "language": "",
        "public_key": "pk_3v9Yc0sQy5b1hX2aQ", "subscribe_enabled": True, "subscribe_redirect_url": "",
        "created_at": "2026-01-02T10:00:00Z", "updated_at": "2026-01-02T10:00:00Z",
    }]})

    id: int
    name: str
    slug: str
    database: str = F(description="The profile database's slug.")
    description: str
    channels: list[ChannelName]
    categories: list[CategoryOut]
    double_opt_in: list[ChannelName] = F(description="Channels whose new subscriptions start unconfirmed.")
    preference_visible_fields: list[str]
    preference_editable_fields: list[str]
    language: str = F(description="en, ru, or empty: the visitor's browser decides.")
    public_key: str = F(description="The key of the public subscribe endpoint (safe to embed in a web form).")
    subscribe_enabled: bool
    subscribe_redirect_url: str
    created_at: datetime
    updated_at: datetime


class ResourceDetailOut(ResourceOut):
    counts: dict[str, dict[str, int]] = F(
        description="Subscriptions per channel and status, with a total per channel: "
        '{"email": {"subscribed": 10, "unsubscribed": 2, ..., "total": 12}}.'
    )


class ResourceIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "database": "customers", "name": "Shop news", "channels": ["email", "sms"],
        "categories": ["news:News", {"key": "offers", "label": "Offers"}], "double_opt_in": ["email"],
    }]})

    database: str = F(..., description="The slug of the profile database whose profiles subscribe.")
    name: Name
    slug: Slug | None = F(None, description="Made from the name when left out; used in every URL of the resource.")
    description: str = F("", max_length=5000)
    channels: list[ChannelName] = F(["email"], min_length=1)
    categories: list[CategoryIn | str] = F([], description=_CATEGORIES)
    double_opt_in: list[ChannelName] = F([], description="Enabled channels whose new subscriptions need confirming.")
    preference_visible_fields: list[str] = F([], description="Profile fields the preference page shows.")
    preference_editable_fields: list[str] = F([], description="Profile fields the subscriber may change there (shown too).")
    language: Literal["", "en", "ru"] = ""
    subscribe_enabled: bool = F(True, description="Whether the public subscribe endpoint accepts sign-ups.")
    subscribe_redirect_url: str = F("", max_length=500, description="Where the public form sends people after signing up.")


class ResourcePatch(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"channels": ["email", "sms", "telegram"]},
                                                             {"double_opt_in": [], "language": "ru"}]})

    name: Name | None = None
    slug: Slug | None = F(None, description="Changing it changes the resource's URLs.")
    description: str | None = F(None, max_length=5000)
    channels: list[ChannelName] | None = F(None, min_length=1, description="A channel with subscriptions cannot be removed.")
    categories: list[CategoryIn | str] | None = F(None, description=_CATEGORIES)
    double_opt_in: list[ChannelName] | None = None
    preference_visible_fields: list[str] | None = None
    preference_editable_fields: list[str] | None = None
    language: Literal["", "en", "ru"] | None = None
    subscribe_enabled: bool | None = None
    subscribe_redirect_url: str | None = F(None, max_length=500)


class SubscriptionOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 17, "profile": 42, "resource": "shop-news", "channel": "email", "address": "alice@example.com",
        "status": "subscribed", "reason": "", "suspended_until": None, "opted_out": ["offers"], "priority": 1,
        "meta": {}, "source": "api", "confirmed_at": "2026-01-02T10:05:00Z", "created_at": "2026-01-02T10:00:00Z",
        "changed_at": "2026-01-02T10:05:00Z", "updated_at": "2026-01-02T10:05:00Z",
    }]})

    id: int
    profile: int = F(description="The profile's id.")
    resource: str = F(description="The resource's slug.")
    channel: ChannelName
    address: str = F(description="Normalised: lowercase e-mail, E.164 phone, push endpoint or token, Telegram chat id.")
    status: StatusName
    reason: str
    suspended_until: datetime | None = F(description="Set while suspended: when sending resumes.")
    opted_out: list[str] = F(description="Category keys this subscriber opted out of.")
    priority: int = F(description="1 is the primary address on its channel.")
    meta: dict[str, Any]
    source: str
    confirmed_at: datetime | None
    created_at: datetime
    changed_at: datetime = F(description="When the status last changed.")
    updated_at: datetime


class SubscriptionFilter(Schema):
    resource: str | None = F(None, description="A resource's slug.")
    channel: ChannelName | None = None
    status: StatusName | None = None


class SubscriptionIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"resource": "shop-news", "channel": "email"},
        {"resource": "shop-news", "channel": "sms", "address": "+49 151 1234 5678", "opted_out": ["offers"]},
        {"resource": "shop-news", "channel": "mobilepush", "address": "f3b1...device-token", "meta": {"platform": "ios"}},
    ]})

    resource: str = F(..., description="The resource's slug; it must belong to the profile's database.")
    channel: ChannelName
    address: Address | None = F(None, description="Left out: the profile's e-mail (email) or phone (sms).")
    status: NewStatus = F("subscribed", description="On a double opt-in channel, subscribed becomes unconfirmed unless `confirmed`.")
    opted_out: list[str] = F([], description="Category keys to opt out of.")
    priority: int | None = F(None, ge=1, le=32767, description="Left out: after the profile's other addresses on the channel.")
    meta: dict[str, Any] = F({}, description="Channel details: push keys, platform, app, chat name.")
    confirmed: bool = F(False, description="The person already confirmed (double opt-in elsewhere): skip unconfirmed.")
    reason: str = F("", max_length=500)


class SubscriptionPatch(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "unsubscribed", "reason": "asked by phone"},
        {"status": "suspended", "until": "2026-03-01T00:00:00Z"},
        {"status": "subscribed", "force": True, "reason": "renewed consent by e-mail, ticket 4711"},
        {"opted_out": ["offers"], "priority": 1},
    ]})

    status: StatusName | None = F(None, description="Checked against the allowed transitions.")
    reason: str = F("", max_length=500, description="Recorded in the consent ledger. Required with `force`.")
    until: datetime | None = F(None, description="The end of a pause; required with status suspended.")
    force: bool = F(False, description="Leave a system state (bounced, complained, blocked): the person renewed consent.")
    opted_out: list[str] | None = F(None, description="Category keys opted out of (replaces the list).")
    priority: int | None = F(None, ge=1, le=32767)
    meta: dict[str, Any] | None = None


class ConsentOut(Schema):
    id: int
    resource: str = F(description="The resource's slug.")
    subscription: int | None = F(description="Null once the subscription was deleted.")
    channel: ChannelName
    address: str
    action: Literal["created", "status", "categories", "moved", "deleted"]
    old_status: str
    new_status: str
    old_categories: list[str] | None
    new_categories: list[str] | None
    actor_type: Literal["user", "token", "subscriber", "system"]
    actor_label: str
    source: str = F(description="ui, import:<job>, api, form, link, one-click, preferences, confirmation, bounce...")
    reason: str
    ip: str | None
    user_agent: str
    created_at: datetime


class SubscribeIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"match": {"email": "alice@example.com"}, "channel": "email"},
        {"match": "email", "profile": {"email": "alice@example.com", "first_name": "Alice"}, "channel": "email",
         "opted_out": ["offers"]},
        {"match": {"phone": "+4930123456"}, "channel": "telegram", "address": "123456789", "confirmed": True},
    ]})

    match: str | dict[str, Any] | None = F(
        None, description="How to find the profile: a match key's name (its value in `profile`; the database's first "
        "key by default), or a one-entry object {key: value}."
    )
    profile: dict[str, Any] = F(
        {}, description="Field name -> value for the profile, converted like a profile upsert's `fields`; "
        "the profile is created when no profile has the match key's value."
    )
    channel: ChannelName
    address: Address | None = F(None, description="Left out: the profile's e-mail (email) or phone (sms).")
    status: NewStatus = F("subscribed", description="On a double opt-in channel, subscribed becomes unconfirmed unless `confirmed`.")
    opted_out: list[str] | None = F(None, description="Category keys to opt out of; left out: unchanged.")
    confirmed: bool = F(False, description="The person already confirmed (double opt-in elsewhere).")
    force: bool = F(False, description="Subscribe an address that bounced, complained or was blocked: renewed consent.")
    reason: str = F("", max_length=500, description="Recorded in the consent ledger. Required with `force`.")


class SubscribeProfileOut(Schema):
    id: int
    database: str
    status: Literal["created", "updated", "unchanged"]


class SubscribeOut(Schema):
    profile: SubscribeProfileOut
    profile_created: bool
    subscription_created: bool
    subscription: SubscriptionOut


class SuppressionOut(Schema):
    id: int
    kind: KindName
    channel: Literal["email", "sms"] = F(description="The channel the suppression blocks.")
    value: str = F(description="Normalised: lowercase e-mail, domain, or E.164 phone.")
    reason: ReasonName
    note: str
    source: str
    created_by: str = F(alias="created_by_label")
    created_at: datetime


class SuppressionFilter(Schema):
    kind: KindName | None = None
    q: str | None = F(None, max_length=320, description="Prefix of the address, domain or phone.")


class SuppressionItemIn(Schema):
    kind: KindName | None = F(None, description="Guessed from the value when left out: a@b.c e-mail, b.c domain, else phone.")
    value: Address = F(..., description="An e-mail address, a domain (example.com or @example.com) or a phone number.")
    reason: ReasonName = "manual"
    note: str = F("", max_length=500)


class SuppressionIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"value": "alice@example.com", "reason": "legal", "note": "GDPR objection, ticket 4711"},
        {"kind": "domain", "value": "competitor.example"},
        {"items": [{"value": "a@example.com"}, {"value": "+4930123456", "reason": "complaint"}]},
    ]})

    kind: KindName | None = F(None, description="Guessed from the value when left out: a@b.c e-mail, b.c domain, else phone.")
    value: Address | None = F(None, description="One address, domain or phone; or send `items` instead.")
    reason: ReasonName = "manual"
    note: str = F("", max_length=500)
    items: list[dict[str, Any]] | None = F(
        None, min_length=1, json_schema_extra={"maxItems": MAX_BATCH},
        description=f"A batch of up to {MAX_BATCH:,} objects {{kind?, value, reason?, note?}}; each is added on its own.",
    )

    @model_validator(mode="after")
    def _one_or_batch(self) -> SuppressionIn:
        if (self.value is None) == (self.items is None):
            raise ValueError("send either value (one suppression) or items (a batch)")
        return self


class SuppressionBatchItemOut(Schema):
    index: int
    status: Literal["created", "existing", "failed"]
    id: int | None = None
    value: str | None = F(None, description="The normalised value.")
    errors: list[ErrorDetail] = []


class SuppressionBatchOut(Schema):
    results: list[SuppressionBatchItemOut]
    created: int
    existing: int
    failed: int


class SuppressionCheckOut(Schema):
    channel: ChannelName
    address: str = F(description="The address, normalised.")
    suppressed: bool
    suppression: SuppressionOut | None = F(description="The entry that blocks the address (an address, domain or phone).")


