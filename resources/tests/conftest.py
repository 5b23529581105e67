"""Fixtures for the resources tests: a shop database with profiles and the "Shop news" resource."""

from __future__ import annotations

import pytest

from accounts.access import Actor
from profiles.models import Profile, ProfileDatabase
from profiles.services import database_create, field_add, profile_create
from resources.models import Resource
from resources.services import resource_create

SYSTEM = Actor.system()


@pytest.fixture
def shop(acme) -> ProfileDatabase:
    acme.default_phone_region = "DE"
    acme.save()
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", actor=SYSTEM)
    return db


@pytest.fixture
def news(acme, shop) -> Resource:
    return resource_create(account=acme, database=shop, actor=SYSTEM, values={
        "name": "Shop news", "channels": ["email", "sms", "webpush", "mobilepush", "telegram"],
        "categories": ["news:News", "offers:Offers", "events:Events"], "double_opt_in": ["email"],
        "preference_editable_fields": ["first_name", "city"],
    })


@pytest.fixture
def anna(shop) -> Profile:
    return profile_create(database=shop, values={"email": "anna@shop.example.com", "phone": "+4915112345678", "first_name": "Anna"},
                          actor=SYSTEM)


@pytest.fixture
def ben(shop) -> Profile:
    return profile_create(database=shop, values={"email": "ben@shop.example.com", "first_name": "Ben"}, actor=SYSTEM)


@pytest.fixture
def other_db(globex) -> ProfileDatabase:
    return database_create(account=globex, name="Globex people", actor=SYSTEM)


@pytest.fixture
def globex_news(globex, other_db) -> Resource:
    return resource_create(account=globex, database=other_db, actor=SYSTEM, values={"name": "Globex news", "channels": ["email"]})
