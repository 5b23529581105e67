"""Fixtures for the segment tests: a shop database with a custom field of every type, a resource
with categories, a custom event type with typed properties, a fixed clock, and a few profiles;
plus a globex database (another account) for isolation checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from accounts.access import Actor
from history.models import Event, EventType
from history.services import eventtype_create
from profiles.models import Profile, ProfileDatabase
from profiles.services import database_create, field_add, profile_create
from resources.models import Resource
from resources.services import resource_create

SYSTEM = Actor.system()
# 2026-11-28 10:00 UTC, 11:00 in Berlin (the account's timezone).
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

CUSTOM_FIELDS = [
    ("city", "string", None),
    ("bio", "text", None),
    ("points", "integer", None),
    ("score", "decimal", None),
    ("vip", "boolean", None),
    ("signup", "date", None),
    ("last_seen", "datetime", None),
    ("work_email", "email", None),
    ("mobile", "phone", None),
    ("plan", "enum", ["free", "pro", "team"]),
    ("tags", "list", None),
    ("extra", "json", None),
]


@pytest.fixture
def shop(acme) -> ProfileDatabase:
    acme.timezone = "Europe/Berlin"
    acme.default_phone_region = "DE"
    acme.save()
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM, match_keys=["email", "phone"])
    for name, type_, choices in CUSTOM_FIELDS:
        field_add(database=db, name=name, label=name.replace("_", " ").title(), type=type_, choices=choices, actor=SYSTEM)
    return ProfileDatabase.objects.select_related("account").get(pk=db.pk)


@pytest.fixture
def news(shop) -> Resource:
    return resource_create(account=shop.account, database=shop, actor=SYSTEM, values={
        "name": "Shop news", "channels": ["email", "sms"],
        "categories": [{"key": "deals", "label": "Deals"}, {"key": "tips", "label": "Tips"}],
    })


@pytest.fixture
def cart(acme) -> EventType:
    return eventtype_create(account=acme, name="cart_abandoned", label="Cart abandoned", actor=SYSTEM, properties=[
        {"name": "sku", "type": "string", "required": True},
        {"name": "price", "type": "decimal"},
        {"name": "size", "type": "enum", "choices": ["S", "M", "L"]},
    ])


@pytest.fixture
def make_profile(shop):
    counter = iter(range(1, 10**6))

    def _make(**values: Any) -> Profile:
        if not values.get("email") and not values.get("phone"):
            values["email"] = f"someone{next(counter)}@example.net"
        return profile_create(database=shop, values=values, actor=SYSTEM)

    return _make


@pytest.fixture
def add_event(acme):
    """add_event(profile, type_id, occurred_at, **columns) -> Event (straight into the table)."""

    def _add(profile: Profile, type_id: int, occurred_at: datetime, **kw: Any) -> Event:
        return Event.objects.create(account_id=profile.account_id, database_id=profile.database_id, profile_id=profile.pk,
                                    type_id=type_id, occurred_at=occurred_at, **kw)

    return _add


@pytest.fixture
def globex_db(globex) -> ProfileDatabase:
    db = database_create(account=globex, name="Globex people", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", actor=SYSTEM)
    return db


def group(*items: dict[str, Any], op: str = "and", negate: bool = False) -> dict[str, Any]:
    return {"type": "group", "op": op, "negate": negate, "items": list(items)}


def field(name: str, operator: str, value: Any = None, value2: Any = None) -> dict[str, Any]:
    node = {"type": "field", "field": name, "operator": operator}
    if value is not None:
        node["value"] = value
    if value2 is not None:
        node["value2"] = value2
    return node


def event(name: str, op: str = "exists", n: int = 1, window: Any = None, where: Any = None) -> dict[str, Any]:
    return {"type": "event", "event": name, "count": {"op": op, "n": n}, "window": window, "where": where or {}}
