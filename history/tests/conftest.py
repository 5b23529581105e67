"""Fixtures for the history tests: a shop database with two profiles, a custom event type, and a
globex profile (another account)."""

from __future__ import annotations

import pytest

from accounts.access import Actor
from history.models import EventType
from history.services import eventtype_create
from profiles.models import Profile, ProfileDatabase
from profiles.services import database_create, database_update, field_add, profile_create

SYSTEM = Actor.system()


@pytest.fixture
def shop(acme) -> ProfileDatabase:
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    field_add(database=db, name="customer_id", label="Customer id", type="string", unique=True, actor=SYSTEM)
    return database_update(database=db, actor=SYSTEM, match_keys=["email", "customer_id"])


@pytest.fixture
def anna(shop) -> Profile:
    return profile_create(database=shop, values={"email": "anna@shop.example.com", "first_name": "Anna",
                                                 "customer_id": "C-1"}, actor=SYSTEM)


@pytest.fixture
def ben(shop) -> Profile:
    return profile_create(database=shop, values={"email": "ben@shop.example.com", "first_name": "Ben"}, actor=SYSTEM)


@pytest.fixture
def cart_abandoned(acme) -> EventType:
    return eventtype_create(account=acme, name="cart_abandoned", label="Cart abandoned", actor=SYSTEM, properties=[
        {"name": "sku", "type": "string", "required": True},
        {"name": "price", "type": "decimal"},
    ])


@pytest.fixture
def gina(globex) -> Profile:
    db = database_create(account=globex, name="Globex people", actor=SYSTEM)
    return profile_create(database=db, values={"email": "gina@globex.example.com"}, actor=SYSTEM)
