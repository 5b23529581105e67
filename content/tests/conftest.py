"""The template tests' shared world: a database with a custom field, and a profile in it."""

from __future__ import annotations

import pytest

from accounts.access import Actor
from profiles.models import Profile, ProfileDatabase
from profiles.services import database_create, field_add, profile_create


@pytest.fixture
def shop_db(acme) -> ProfileDatabase:
    db = database_create(account=acme, name="Shop customers", actor=Actor.system())
    field_add(database=db, name="city", label="City", type="string", actor=Actor.system())
    return db


@pytest.fixture
def anna(shop_db) -> Profile:
    return profile_create(database=shop_db, actor=Actor.system(),
                          values={"email": "anna@shop.example", "first_name": "Anna", "city": "Berlin"})
