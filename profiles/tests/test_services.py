from __future__ import annotations

import pytest
from django.db import connection

from accounts.access import Actor
from accounts.models import AuditEvent, Job
from profiles import schema
from profiles.models import ErasedIdentity, Field, Profile, ProfileChange
from profiles.services import (
    ProfileError,
    ProfileValidationError,
    database_create,
    database_update,
    field_add,
    field_remove,
    field_update,
    fields_reorder,
    profile_create,
    profile_erase,
    profile_find,
    profile_merge,
    profile_update,
    profile_upsert,
)

SYSTEM = Actor.system()


@pytest.fixture
def shop(acme):
    acme.default_phone_region = "DE"
    acme.save()
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", indexed=True, actor=SYSTEM)
    field_add(database=db, name="loyalty_points", label="Loyalty points", type="integer", actor=SYSTEM)
    field_add(database=db, name="vip", label="VIP", type="boolean", actor=SYSTEM, default=False)
    field_add(database=db, name="tier", label="Tier", type="enum", choices=["bronze", "silver", "gold"], actor=SYSTEM)
    return db


def test_a_new_database_has_the_system_fields_and_email_as_match_key(shop):
    names = list(shop.fields.values_list("name", flat=True))
    assert names[:9] == ["email", "phone", "first_name", "last_name", "birthday", "gender", "timezone", "created_at", "updated_at"]
    assert shop.match_keys == ["email"] and shop.slug == "shop-customers"
    assert AuditEvent.objects.filter(verb="database.created").exists()


def test_field_names_are_checked(shop):
    for bad, reason in [("City", None), ("1abc", None), ("email", "reserved"), ("city", "already has"), ("a-b", None)]:
        with pytest.raises(ProfileValidationError) as exc:
            field_add(database=shop, name=bad, label="x", type="string", actor=SYSTEM)
        if reason:
            assert reason in exc.value.errors["name"]
    with pytest.raises(ProfileValidationError, match="cannot be unique"):
        field_add(database=shop, name="tags", label="Tags", type="list", unique=True, actor=SYSTEM)
    with pytest.raises(ProfileValidationError, match="allowed values"):
        field_add(database=shop, name="size", label="Size", type="enum", choices=[], actor=SYSTEM)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="expression indexes are created on PostgreSQL")
def test_an_indexed_field_gets_an_expression_index(shop):
    city = shop.fields.get(name="city")
    assert schema.index_exists(city)
    field_update(field=city, indexed=False, actor=SYSTEM)
    assert not schema.index_exists(city)


def test_upsert_creates_updates_and_leaves_unchanged(shop):
    r = profile_upsert(database=shop, values={"email": "Ann@Example.com", "city": "Berlin", "loyalty_points": "7000"}, actor=SYSTEM)
    assert r.status == "created"
    p = r.profile
    assert p.email == "ann@example.com" and p.data == {"city": "Berlin", "loyalty_points": 7000, "vip": False}
    r2 = profile_upsert(database=shop, values={"email": "ann@example.com", "city": "Munich"}, actor=SYSTEM)
    assert r2.status == "updated" and r2.changed == {"city": ["Berlin", "Munich"]}
    r3 = profile_upsert(database=shop, values={"email": "ann@example.com", "city": "Munich", "tier": ""}, actor=SYSTEM)
    assert r3.status == "unchanged"  # empty leaves as is
    assert ProfileChange.objects.filter(profile=p).count() == 1


def test_upsert_reports_every_bad_field_and_stores_nothing(shop):
    r = profile_upsert(
        database=shop, values={"email": "nope", "loyalty_points": "lots", "tier": "platinum", "unknown": 1}, actor=SYSTEM
    )
    assert r.status == "failed"
    assert set(r.errors) == {"email", "loyalty_points", "tier", "unknown"}
    assert not Profile.objects.exists()


def test_upsert_modes(shop):
    assert profile_upsert(database=shop, values={"email": "a@example.com"}, mode="update", actor=SYSTEM).status == "skipped"
    assert profile_upsert(database=shop, values={"email": "a@example.com"}, mode="insert", actor=SYSTEM).status == "created"
    r = profile_upsert(database=shop, values={"email": "a@example.com", "city": "X"}, mode="insert", actor=SYSTEM)
    assert r.status == "skipped" and Profile.objects.get().data.get("city") is None


def test_a_phone_or_email_taken_by_another_profile_is_a_field_error(shop):
    profile_upsert(database=shop, values={"email": "a@example.com", "phone": "+4930123456"}, actor=SYSTEM)
    r = profile_upsert(database=shop, values={"email": "b@example.com", "phone": "030 123456"}, actor=SYSTEM)
    assert r.errors == {"phone": "another profile already has this value"}


def test_required_fields_are_enforced_on_create(shop):
    field_update(field=shop.fields.get(name="city"), required=True, actor=SYSTEM)
    r = profile_upsert(database=shop, values={"email": "a@example.com"}, actor=SYSTEM)
    assert r.errors == {"city": "is required"}


def test_a_type_change_that_would_lose_values_is_refused(shop):
    profile_upsert(database=shop, values={"email": "a@example.com", "city": "Berlin"}, actor=SYSTEM)
    profile_upsert(database=shop, values={"email": "b@example.com", "loyalty_points": 12}, actor=SYSTEM)
    with pytest.raises(ProfileValidationError, match=r"'Berlin'.*whole number"):
        field_update(field=shop.fields.get(name="city"), type="integer", actor=SYSTEM)
    f = field_update(field=shop.fields.get(name="loyalty_points"), type="string", actor=SYSTEM)
    assert f.type == "string"
    assert Profile.objects.get(email="b@example.com").data["loyalty_points"] == "12"


def test_a_field_with_repeated_values_cannot_become_unique(shop):
    for e in ("a@example.com", "b@example.com"):
        profile_upsert(database=shop, values={"email": e, "city": "Berlin"}, actor=SYSTEM)
    with pytest.raises(ProfileValidationError, match="share a value"):
        field_update(field=shop.fields.get(name="city"), unique=True, actor=SYSTEM)


def test_a_unique_custom_field_can_be_a_match_key(shop):
    code = field_add(database=shop, name="customer_code", label="Customer code", type="string", unique=True, actor=SYSTEM)
    database_update(database=shop, match_keys=["email", "customer_code"], actor=SYSTEM)
    r = profile_upsert(database=shop, values={"customer_code": "C-1", "city": "Rome"}, match="customer_code", actor=SYSTEM)
    assert r.status == "created"
    r = profile_upsert(database=shop, values={"customer_code": "C-1", "city": "Paris"}, match="customer_code", actor=SYSTEM)
    assert r.status == "updated"
    with pytest.raises(ProfileError, match="match key"):
        field_remove(field=code, actor=SYSTEM)
    with pytest.raises(ProfileError, match="unique first"):
        database_update(database=shop, match_keys=["city"], actor=SYSTEM)


def test_removing_a_field_strips_its_values_in_the_background(shop, django_capture_on_commit_callbacks):
    profile_upsert(database=shop, values={"email": "a@example.com", "city": "Berlin", "loyalty_points": 1}, actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        job = field_remove(field=shop.fields.get(name="city"), actor=SYSTEM)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.result == {"profiles": 1}
    assert Profile.objects.get().data == {"loyalty_points": 1, "vip": False}
    assert not Field.objects.filter(database=shop, name="city").exists()
    with pytest.raises(ProfileError, match="system field"):
        field_remove(field=shop.fields.get(name="email"), actor=SYSTEM)


def test_fields_reorder(shop):
    fields_reorder(database=shop, names=["tier", "email"], actor=SYSTEM)
    assert list(shop.fields.values_list("name", flat=True))[:2] == ["tier", "email"]


def test_profile_update_validates_and_records_history(shop, olivia):
    p = profile_create(database=shop, values={"email": "a@example.com", "first_name": "Ann"}, actor=Actor(user=olivia))
    with pytest.raises(ProfileValidationError) as exc:
        profile_update(profile=p, values={"birthday": "31.02.1990"}, actor=Actor(user=olivia))
    assert "not a real date" in exc.value.errors["birthday"]
    diff = profile_update(profile=p, values={"birthday": "01.02.1990", "tier": "gold"}, actor=Actor(user=olivia))
    assert diff == {"birthday": [None, "1990-02-01"], "tier": [None, "gold"]}
    change = ProfileChange.objects.get(profile=p)
    assert change.actor_label == "olivia@acme.test" and change.source == "ui"


def test_merge_fills_gaps_moves_history_and_deletes_the_duplicate(shop):
    a = profile_create(database=shop, values={"email": "a@example.com", "city": "Berlin"}, actor=SYSTEM)
    b = profile_create(database=shop, values={"phone": "+49301234567", "email": "b@example.com", "first_name": "Bo", "city": "Rome", "tier": "gold"}, actor=SYSTEM)
    profile_update(profile=b, values={"last_name": "Lee"}, actor=SYSTEM)
    merged = profile_merge(target=a, source=b, actor=SYSTEM)
    assert not Profile.objects.filter(pk=b.pk).exists()
    assert merged.email == "a@example.com" and merged.phone == "+49301234567"
    assert merged.first_name == "Bo" and merged.data["city"] == "Berlin" and merged.data["tier"] == "gold"
    assert ProfileChange.objects.filter(profile=merged).count() == 2
    assert AuditEvent.objects.get(verb="profile.merged").data["merged"] == b.pk
    with pytest.raises(ProfileError):
        profile_merge(target=merged, source=merged, actor=SYSTEM)


def test_erasure_removes_the_person_and_blocks_re_import(shop):
    p = profile_create(database=shop, values={"email": "gone@example.com", "phone": "+49301234567"}, actor=SYSTEM)
    profile_update(profile=p, values={"first_name": "Gone"}, actor=SYSTEM)
    profile_erase(profile=p, actor=SYSTEM)
    assert not Profile.objects.exists() and not ProfileChange.objects.exists()
    assert ErasedIdentity.objects.filter(database=shop).count() == 2
    stored = " ".join(AuditEvent.objects.values_list("target_label", flat=True)) + str(list(AuditEvent.objects.values_list("data", flat=True)))
    assert "gone@example.com" not in stored and "Gone" not in stored
    r = profile_upsert(database=shop, values={"email": "GONE@example.com"}, actor=SYSTEM)
    assert r.status == "skipped" and "erased" in r.skipped


def test_find_normalises_the_key(shop):
    p = profile_create(database=shop, values={"email": "ann@example.com", "phone": "+49301234567"}, actor=SYSTEM)
    assert profile_find(database=shop, key="email", value=" ANN@example.com ") == p
    assert profile_find(database=shop, key="phone", value="030 1234567") == p
    with pytest.raises(ProfileValidationError):
        profile_find(database=shop, key="email", value="nope")
