"""The system catalogue of event types: what the platform itself records (fixed ids, forever).

Ids are part of the schema: events store the type's id, segments and reports join on it, and
`post_migrate` keeps the EventType rows of this list in step (see `apps.HistoryConfig`). Add new
types at the end with the next id; never reuse or renumber one. Custom types of an account get
ids from 1000 up.

Properties listed here are what the platform writes or what an integration is expected to send
(typed when present, never required unless marked); any other property is kept as sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FIRST_CUSTOM_ID = 1000


@dataclass(frozen=True)
class SystemType:
    id: int
    name: str
    label: str
    group: str
    icon: str
    # Integrations may send it through the API and the JavaScript snippet; the others are written
    # only by the platform (mailings, subscriptions, tracking).
    public: bool = False
    properties: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""


def _p(name: str, type_: str = "string", required: bool = False, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "required": required, **extra}


_MESSAGE = [_p("template"), _p("subject")]

SYSTEM_TYPES: list[SystemType] = [
    SystemType(1, "message.sent", "Message sent", "messages", "send", properties=_MESSAGE),
    SystemType(2, "message.delivered", "Message delivered", "messages", "check2-circle"),
    SystemType(3, "message.soft_bounced", "Not delivered (soft)", "messages", "exclamation-circle",
               properties=[_p("reason"), _p("code")], description="A temporary failure: mailbox full, greylisting, a server down."),
    SystemType(4, "message.hard_bounced", "Not delivered (hard)", "messages", "x-octagon",
               properties=[_p("reason"), _p("code")], description="A permanent failure: the address does not exist."),
    SystemType(5, "message.opened", "Message opened", "messages", "envelope-open"),
    SystemType(6, "message.clicked", "Link clicked", "messages", "cursor", properties=[_p("url")]),
    SystemType(7, "message.unsubscribed", "Unsubscribed", "messages", "envelope-x",
               description="Unsubscribed: from a message's link, the preference page, the API or an admin."),
    SystemType(8, "message.complained", "Marked as spam", "messages", "flag"),
    SystemType(9, "subscription.subscribed", "Subscribed", "subscriptions", "envelope-plus",
               properties=[_p("status"), _p("address")]),
    SystemType(10, "subscription.changed", "Subscription status changed", "subscriptions", "arrow-left-right",
               properties=[_p("old_status"), _p("status"), _p("address"), _p("reason")]),
    SystemType(11, "form.submitted", "Form submitted", "site", "ui-checks", public=True, properties=[_p("form"), _p("url")]),
    SystemType(12, "page.viewed", "Page viewed", "site", "eye", public=True,
               properties=[_p("url"), _p("title"), _p("referrer")]),
    SystemType(13, "app.event", "App event", "app", "phone", public=True, properties=[_p("name"), _p("screen")]),
    SystemType(14, "order.placed", "Order placed", "orders", "bag", public=True,
               properties=[_p("order_id", required=True), _p("total", "decimal"), _p("currency"), _p("items", "json")]),
    SystemType(15, "order.paid", "Order paid", "orders", "credit-card", public=True,
               properties=[_p("order_id", required=True), _p("total", "decimal"), _p("currency")]),
    SystemType(16, "order.cancelled", "Order cancelled", "orders", "bag-x", public=True,
               properties=[_p("order_id", required=True), _p("reason")]),
    SystemType(17, "promo.issued", "Promo code issued", "promo", "ticket-perforated", public=True,
               properties=[_p("code", required=True), _p("campaign")]),
    SystemType(18, "promo.redeemed", "Promo code redeemed", "promo", "ticket", public=True,
               properties=[_p("code", required=True), _p("order_id")]),
]

BY_NAME: dict[str, SystemType] = {t.name: t for t in SYSTEM_TYPES}
BY_ID: dict[int, SystemType] = {t.id: t for t in SYSTEM_TYPES}


def type_id(name: str) -> int:
    """The fixed id of a system type (KeyError for a name not in the catalogue)."""
    return BY_NAME[name].id


assert len(BY_NAME) == len(BY_ID) == len(SYSTEM_TYPES), "system event type names and ids must be unique"
assert max(BY_ID) < FIRST_CUSTOM_ID
