"""The profiles REST API: databases, fields, profiles (upsert, batch, lookup, list, edit, erase, merge)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.access import Actor
from accounts.models import AuditEvent, Job
from accounts.permissions import Role
from profiles.fieldtypes import FieldType
from profiles.models import ErasedIdentity, Field, Profile, ProfileChange, ProfileDatabase
from profiles.services import database_create, field_add, profile_upsert

SYSTEM = Actor.system()
SHOP = "/api/v1/databases/shop"


@pytest.fixture
def shop(acme) -> ProfileDatabase:
    acme.default_phone_region = "DE"
    acme.save()
    db = database_create(account=acme, name="Shop", slug="shop", actor=SYSTEM)
    for name, type_, extra in [
        ("city", FieldType.STRING, {"indexed": True}),
        ("points", FieldType.INTEGER, {}),
        ("price", FieldType.DECIMAL, {}),
        ("vip", FieldType.BOOLEAN, {"default": False}),
        ("since", FieldType.DATE, {}),
        ("seen_at", FieldType.DATETIME, {}),
        ("backup_email", FieldType.EMAIL, {}),
        ("tier", FieldType.ENUM, {"choices": ["bronze", "silver", "gold"]}),
        ("tags", FieldType.LIST, {}),
        ("extra", FieldType.JSON, {}),
    ]:
        field_add(database=db, name=name, label=name.replace("_", " ").capitalize(), type=type_, actor=SYSTEM, **extra)
    return db


@pytest.fixture
def admin(caller, acme, shop):
    return caller(acme, Role.ADMIN)


@pytest.fixture
def marketer(caller, acme, shop):
    return caller(acme, Role.MARKETER)


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def _upsert(c, fields: dict, match: str | None = None, **kw):
    return c.post(f"{SHOP}/profiles", {"fields": fields, **({"match": match} if match else {})}, **kw)


def _new(email: str, **values) -> Profile:
    database = ProfileDatabase.objects.get(account__slug="acme", slug="shop")
    return profile_upsert(database=database, values={"email": email, **values}, actor=SYSTEM).profile


# --- databases ------------------------------------------------------------------------------------


def test_it_creates_lists_shows_renames_and_deletes_a_database(admin):
    response = admin.post("/api/v1/databases", {"name": "  Newsletter readers ", "description": "From the footer form"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Newsletter readers" and body["slug"] == "newsletter-readers"
    assert body["match_keys"] == ["email"]
    assert [f["name"] for f in body["fields"]][:7] == ["email", "phone", "first_name", "last_name", "birthday", "gender", "timezone"]
    event = AuditEvent.objects.get(verb="database.created", target_id=str(body["id"]))
    assert event.actor_token.name == "crm sync"

    assert {d["slug"] for d in admin.get("/api/v1/databases").json()["items"]} == {"shop", "newsletter-readers"}
    assert admin.get("/api/v1/databases/newsletter-readers").json()["description"] == "From the footer form"

    response = admin.patch("/api/v1/databases/newsletter-readers", {"name": "Readers", "match_keys": ["phone", "email"]})
    assert response.status_code == 200
    assert response.json()["name"] == "Readers" and response.json()["match_keys"] == ["phone", "email"]
    assert response.json()["slug"] == "newsletter-readers"  # URLs stay stable

    assert admin.delete("/api/v1/databases/newsletter-readers").status_code == 204
    response = admin.get("/api/v1/databases/newsletter-readers")
    assert response.status_code == 404 and _error(response)["code"] == "not_found"
    assert not ProfileDatabase.objects.filter(slug="newsletter-readers").exists()


def test_a_database_slug_is_unique_and_match_keys_are_checked(admin):
    response = admin.post("/api/v1/databases", {"name": "Another shop", "slug": "shop"})
    assert response.status_code == 409
    assert _error(response)["details"][0]["loc"] == ["slug"] and "already exists" in _error(response)["message"]
    response = admin.post("/api/v1/databases", {"name": "X", "slug": "Not A Slug"})
    assert response.status_code == 422 and ["slug"] in [d["loc"] for d in _error(response)["details"]]
    response = admin.post("/api/v1/databases", {"name": "X", "match_keys": ["city"]})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"][0] == "match_keys"
    response = admin.post("/api/v1/databases", {"name": "   "})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["name"]

    response = admin.patch(SHOP, {"match_keys": ["city"]})
    assert response.status_code == 422
    error = _error(response)
    assert error["details"][0]["loc"] == ["match_keys"] and "unique first" in error["message"]
    assert admin.patch(SHOP, {"match_keys": []}).status_code == 422
    assert ProfileDatabase.objects.get(slug="shop").match_keys == ["email"]


# --- fields ---------------------------------------------------------------------------------------


def test_fields_can_be_added_renamed_reordered_and_removed(admin, shop, django_capture_on_commit_callbacks):
    response = admin.post(f"{SHOP}/fields", {"name": "nickname", "type": "string", "label": "Nickname"})
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "nickname" and response.json()["is_system"] is False
    names = [f["name"] for f in admin.get(f"{SHOP}/fields").json()["items"]]
    assert names[-1] == "nickname"

    response = admin.patch(f"{SHOP}/fields/nickname", {"label": "Nick name"})
    assert response.status_code == 200 and response.json()["label"] == "Nick name"

    response = admin.patch(f"{SHOP}/fields", {"order": ["nickname", "email"]})
    assert response.status_code == 200
    assert [f["name"] for f in response.json()["items"]][:3] == ["nickname", "email", "phone"]
    response = admin.patch(f"{SHOP}/fields", {"order": ["nickname", "nope"]})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["order"]
    assert "nope" in _error(response)["message"]

    _new("a@example.com", nickname="Al")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.delete(f"{SHOP}/fields/nickname")
    assert response.status_code == 202
    assert response.json()["kind"] == "profiles.field_remove"
    assert Job.objects.get(pk=response.json()["id"]).state == Job.State.SUCCEEDED
    assert "nickname" not in [f["name"] for f in admin.get(f"{SHOP}/fields").json()["items"]]
    assert "nickname" not in Profile.objects.get(email="a@example.com").data
    assert admin.patch(f"{SHOP}/fields/nickname", {"label": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("payload", "loc", "reason"),
    [
        ({"name": "email"}, "name", "is reserved"),
        ({"name": "match"}, "name", "is reserved"),
        ({"name": "city"}, "name", "already has a field"),
        ({"name": "2fast"}, "name", "lowercase letters"),
        ({"name": "size", "type": "enum", "choices": []}, "choices", "allowed values"),
        ({"name": "labels", "type": "list", "unique": True}, "unique", "cannot be unique"),
        ({"name": "age", "type": "integer", "default": "old"}, "default", "is not a whole number"),
        ({"name": "age", "type": "number"}, "type", "Input should be"),
    ],
)
def test_a_field_that_cannot_be_added_is_a_422_naming_the_problem(admin, payload, loc, reason):
    response = admin.post(f"{SHOP}/fields", payload)
    assert response.status_code == 422
    error = _error(response)
    assert error["details"][0]["loc"] == [loc]
    assert reason in error["details"][0]["message"]
    assert not Field.objects.filter(name=payload["name"], is_system=False).exclude(name="city").exists()


def test_a_type_change_is_refused_when_a_stored_value_would_not_convert(admin, shop):
    _new("a@example.com", city="Berlin", points=12)
    response = admin.patch(f"{SHOP}/fields/city", {"type": "integer"})
    assert response.status_code == 422
    error = _error(response)
    assert error["details"][0]["loc"] == ["type"]
    assert "'Berlin'" in error["message"] and "whole number" in error["message"]
    assert shop.fields.get(name="city").type == "string"

    response = admin.patch(f"{SHOP}/fields/points", {"type": "string"})
    assert response.status_code == 200 and response.json()["type"] == "string"
    assert Profile.objects.get(email="a@example.com").data["points"] == "12"


def test_system_fields_and_match_keys_cannot_be_removed(admin):
    response = admin.delete(f"{SHOP}/fields/email")
    assert response.status_code == 409 and "system field" in _error(response)["message"]
    response = admin.patch(f"{SHOP}/fields/email", {"type": "string"})
    assert response.status_code == 409 and "only its label" in _error(response)["message"]
    assert admin.patch(f"{SHOP}/fields/email", {"label": "E-mail address"}).json()["label"] == "E-mail address"

    assert admin.post(f"{SHOP}/fields", {"name": "customer_id", "unique": True}).status_code == 201
    assert admin.patch(SHOP, {"match_keys": ["email", "customer_id"]}).status_code == 200
    response = admin.delete(f"{SHOP}/fields/customer_id")
    assert response.status_code == 409 and "match key" in _error(response)["message"]
    response = admin.patch(f"{SHOP}/fields/customer_id", {"unique": False})
    assert response.status_code == 409 and "match key" in _error(response)["message"]
    assert Field.objects.filter(name="customer_id").exists()
    assert admin.delete(f"{SHOP}/fields/nothing").status_code == 404


# --- upsert ---------------------------------------------------------------------------------------


def test_an_upsert_creates_201_then_updates_200_then_is_unchanged(marketer):
    response = _upsert(marketer, {"email": " Ann@Example.com ", "first_name": "Ann", "points": "12", "tier": "Gold"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "created"
    profile = body["profile"]
    assert profile["email"] == "ann@example.com" and profile["first_name"] == "Ann" and profile["database"] == "shop"
    assert profile["fields"] == {"points": 12, "vip": False, "tier": "gold"}  # vip: the field's default
    assert profile["last_name"] is None and profile["phone"] is None

    response = _upsert(marketer, {"email": "ann@example.com", "first_name": "Anna", "city": ""})
    assert response.status_code == 200
    assert response.json()["status"] == "updated" and response.json()["changed"] == ["first_name"]
    assert response.json()["profile"]["id"] == profile["id"]

    response = _upsert(marketer, {"email": "ANN@example.com", "first_name": "Anna"})
    assert response.status_code == 200
    assert response.json()["status"] == "unchanged" and response.json()["changed"] == []
    assert Profile.objects.count() == 1
    change = ProfileChange.objects.get()
    assert change.source == "api" and "crm sync" in change.actor_label and change.changes == {"first_name": ["Ann", "Anna"]}


def test_an_upsert_can_match_by_phone(admin, shop):
    admin.patch(SHOP, {"match_keys": ["email", "phone"]})
    assert _upsert(admin, {"phone": "+49 30 123456", "first_name": "Pat"}, match="phone").status_code == 201
    response = _upsert(admin, {"phone": "030 123456", "last_name": "Doe"}, match="phone")
    assert response.status_code == 200 and response.json()["profile"]["phone"] == "+4930123456"
    assert response.json()["profile"]["first_name"] == "Pat"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("city", "x" * 1001, "longer than 1,000 characters"),
        ("points", "12a", "is not a whole number"),
        ("points", 1.5, "is not a whole number"),
        ("price", "1,2,3", "is not a number"),
        ("vip", "maybe", "is not yes/no"),
        ("since", "2024-02-30", "is not a real date"),
        ("since", "next week", "is not a date"),
        ("seen_at", "yesterday", "is not a date and time"),
        ("backup_email", "alice@@example.com", "is not a valid e-mail address"),
        ("phone", "12", "phone number"),
        ("tier", "platinum", "is not one of: bronze, silver, gold"),
        ("tags", {"a": 1}, "expected a list of strings"),
        ("extra", "{bad", "not valid JSON"),
        ("gender", "robot", "is not one of"),
        ("birthday", "1990-13-01", "not a real date"),
        ("timezone", "Mars/Olympus", "not a timezone name"),
        ("loyalty", 1, "there is no such field"),
        ("created_at", "2024-01-01", "is read-only"),
    ],
)
def test_a_value_that_does_not_fit_is_a_422_naming_the_field_and_the_reason(marketer, field, value, reason):
    response = _upsert(marketer, {"email": "ann@example.com", field: value})
    assert response.status_code == 422, response.content
    error = _error(response)
    assert error["code"] == "validation_error"
    assert [d["loc"] for d in error["details"]] == [["fields", field]]
    assert reason in error["details"][0]["message"]
    assert field in error["message"] and reason in error["message"]
    assert not Profile.objects.exists()


def test_every_bad_field_is_reported_at_once(marketer):
    response = _upsert(marketer, {"email": "nope", "points": "lots", "tier": "platinum"})
    assert response.status_code == 422
    assert {tuple(d["loc"]) for d in _error(response)["details"]} == {("fields", "email"), ("fields", "points"), ("fields", "tier")}


def test_an_upsert_needs_its_match_key(marketer):
    response = _upsert(marketer, {"first_name": "Nobody"})
    assert response.status_code == 422
    assert _error(response)["details"][0]["loc"] == ["fields", "email"]
    assert "match key" in _error(response)["details"][0]["message"]
    response = _upsert(marketer, {"email": "a@example.com"}, match="city")
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["match"]
    response = marketer.post(f"{SHOP}/profiles", {"fields": {}})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["fields"]
    assert not Profile.objects.exists()


def test_a_value_another_profile_holds_is_a_field_error(marketer):
    _new("a@example.com", phone="+4930123456")
    response = _upsert(marketer, {"email": "b@example.com", "phone": "030 123456"})
    assert response.status_code == 422
    assert _error(response)["details"] == [
        {"loc": ["fields", "phone"], "message": "another profile already has this value", "type": "invalid_value"}
    ]


def test_an_idempotency_key_replays_an_upsert(marketer):
    headers = {"Idempotency-Key": "upsert-1"}
    first = _upsert(marketer, {"email": "a@example.com", "first_name": "A"}, headers=headers)
    second = _upsert(marketer, {"email": "a@example.com", "first_name": "A"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and second["Idempotent-Replayed"] == "true"


# --- batch ----------------------------------------------------------------------------------------


def test_a_batch_stores_the_valid_items_and_reports_the_others(marketer):
    erased = _new("gone@example.com")
    assert marketer.delete(f"{SHOP}/profiles/{erased.pk}").status_code == 204
    _new("taken@example.com", phone="+4930123456")
    items = [
        {"email": "a@example.com", "points": 1},
        {"email": "b@example.com", "points": "many", "since": "yesterday"},
        {"email": "c@example.com", "tier": "silver"},
        {"email": "A@example.com", "points": 2},
        {"email": "a@example.com", "points": 2},
        {"email": "Gone@Example.com", "first_name": "Back"},
        {"first_name": "No key"},
        {"email": "d@example.com", "phone": "030 123456"},  # the phone is taken: a database-level conflict
        {"email": "e@example.com"},
    ]
    response = marketer.post(f"{SHOP}/profiles/batch", {"items": items})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["status"] for r in body["results"]] == [
        "created", "failed", "created", "updated", "unchanged", "skipped", "failed", "failed", "created"
    ]
    assert [r["index"] for r in body["results"]] == list(range(9))
    assert (body["created"], body["updated"], body["unchanged"], body["failed"], body["skipped"]) == (3, 1, 1, 3, 1)
    bad = body["results"][1]
    assert bad["id"] is None
    assert {tuple(e["loc"]) for e in bad["errors"]} == {("items", 1, "points"), ("items", 1, "since")}
    assert "whole number" in next(e["message"] for e in bad["errors"] if e["loc"][-1] == "points")
    assert body["results"][5]["reason"].startswith("erased")
    assert body["results"][6]["errors"][0]["loc"] == ["items", 6, "email"]
    assert body["results"][7]["errors"] == [
        {"loc": ["items", 7, "phone"], "message": "another profile already has this value", "type": "invalid_value"}
    ]
    a = Profile.objects.get(email="a@example.com")
    assert body["results"][0]["id"] == body["results"][3]["id"] == a.pk and a.data["points"] == 2
    assert set(Profile.objects.values_list("email", flat=True)) == {
        "a@example.com", "c@example.com", "e@example.com", "taken@example.com"
    }


def test_a_batch_in_insert_or_update_mode_skips_with_a_reason(marketer):
    _new("old@example.com", city="Rome")
    items = [{"email": "old@example.com", "city": "Oslo"}, {"email": "new@example.com", "city": "Oslo"}]
    body = marketer.post(f"{SHOP}/profiles/batch", {"mode": "insert", "items": items}).json()
    assert [r["status"] for r in body["results"]] == ["skipped", "created"]
    assert "exists" in body["results"][0]["reason"]
    assert Profile.objects.get(email="old@example.com").data["city"] == "Rome"
    items = [{"email": "old@example.com", "city": "Oslo"}, {"email": "newer@example.com"}]
    body = marketer.post(f"{SHOP}/profiles/batch", {"mode": "update", "items": items}).json()
    assert [r["status"] for r in body["results"]] == ["updated", "skipped"]
    assert not Profile.objects.filter(email="newer@example.com").exists()


def test_a_batch_is_refused_whole_when_it_is_too_big_empty_or_badly_matched(marketer):
    response = marketer.post(f"{SHOP}/profiles/batch", {"items": [{"email": f"p{i}@example.com"} for i in range(1001)]})
    assert response.status_code == 422
    error = _error(response)
    assert "at most 1,000 items" in error["message"] and "1,001" in error["message"]
    assert error["details"][0]["loc"] == ["items"]
    response = marketer.post(f"{SHOP}/profiles/batch", {"items": []})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["items"]
    response = marketer.post(f"{SHOP}/profiles/batch", {"match": "city", "items": [{"email": "a@example.com"}]})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["match"]
    response = marketer.post(f"{SHOP}/profiles/batch", {"mode": "replace", "items": [{"email": "a@example.com"}]})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["mode"]
    assert not Profile.objects.exists()


def test_a_batch_of_1000_items_is_accepted_and_reads_the_schema_once(marketer):
    items = [{"email": f"p{i}@example.com", "points": i} for i in range(1000)]
    with CaptureQueriesContext(connection) as queries:
        response = marketer.post(f"{SHOP}/profiles/batch", {"items": items})
    assert response.status_code == 200 and response.json()["created"] == 1000
    assert Profile.objects.count() == 1000
    assert len([q for q in queries.captured_queries if 'FROM "profiles_field"' in q["sql"]]) == 1


# --- lookup ---------------------------------------------------------------------------------------


def test_a_lookup_finds_a_profile_by_a_normalised_email_or_phone(caller, acme, admin):
    alice = _new("alice@example.com", phone="+4930123456", first_name="Alice")
    analyst = caller(acme, Role.ANALYST)
    response = analyst.get(f"{SHOP}/profiles/lookup", {"email": " Alice@Example.COM "})
    assert response.status_code == 200, response.content
    assert response.json()["id"] == alice.pk and response.json()["first_name"] == "Alice"
    assert analyst.get(f"{SHOP}/profiles/lookup", {"phone": "030 123456"}).json()["id"] == alice.pk

    response = analyst.get(f"{SHOP}/profiles/lookup", {"email": "bob@example.com"})
    assert response.status_code == 404 and _error(response)["code"] == "not_found"
    response = analyst.get(f"{SHOP}/profiles/lookup", {"email": "not an address"})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["query", "email"]
    for params in ({}, {"email": "alice@example.com", "phone": "+4930123456"}):
        response = analyst.get(f"{SHOP}/profiles/lookup", params)
        assert response.status_code == 422 and "exactly one" in _error(response)["message"]
    response = analyst.get(f"{SHOP}/profiles/lookup", {"city": "Berlin"})
    assert response.status_code == 422 and "not a match key" in _error(response)["message"]


def test_a_lookup_by_a_custom_match_key(admin, shop):
    admin.post(f"{SHOP}/fields", {"name": "customer_id", "unique": True})
    admin.patch(SHOP, {"match_keys": ["email", "customer_id"]})
    p = _new("c@example.com", customer_id="C-7")
    assert admin.get(f"{SHOP}/profiles/lookup", {"customer_id": " C-7 "}).json()["id"] == p.pk


# --- list -----------------------------------------------------------------------------------------


def test_the_list_filters_by_email_phone_prefix_date_and_field_values(caller, acme, shop):
    ann = _new("ann@example.com", first_name="Ann", city="Berlin", points=10, vip=True, tier="gold")
    bob = _new("bob@example.com", last_name="Annson", phone="+4930123456", points=5)
    cid = _new("cid@shop.example", first_name="Cid", city="Rome", price="9.5", since="2024-01-31")
    Profile.objects.filter(pk__in=[ann.pk, bob.pk]).update(updated_at=timezone.now() - timedelta(days=10))
    analyst = caller(acme, Role.ANALYST)

    def ids(**params):
        response = analyst.get(f"{SHOP}/profiles", params)
        assert response.status_code == 200, response.content
        return [p["id"] for p in response.json()["items"]]

    assert ids() == [cid.pk, bob.pk, ann.pk]  # newest first
    assert ids(email=" ANN@example.com") == [ann.pk]
    assert ids(phone="030 123456") == [bob.pk]
    assert ids(q="ann") == [bob.pk, ann.pk]  # e-mail prefix and last name prefix
    assert ids(q="CID") == [cid.pk]
    assert ids(q="example") == []  # a prefix, not a substring
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(updated_since=since) == [cid.pk]
    assert ids(**{"field.city": "Berlin"}) == [ann.pk]
    assert ids(**{"field.points": "10"}) == [ann.pk]
    assert ids(**{"field.vip": "yes"}) == [ann.pk]
    assert ids(**{"field.tier": "GOLD"}) == [ann.pk]
    assert ids(**{"field.price": "9.50"}) == [cid.pk]
    assert ids(**{"field.since": "31.01.2024"}) == [cid.pk]
    assert ids(**{"field.first_name": "Cid"}) == [cid.pk]
    assert ids(**{"field.city": "Rome", "q": "ann"}) == []

    for params, loc in [
        ({"field.nope": "1"}, "field.nope"),
        ({"field.points": "ten"}, "field.points"),
        ({"field.tags": "a"}, "field.tags"),
        ({"email": "not an address"}, "email"),
        ({"updated_since": "soon"}, "updated_since"),
    ]:
        response = analyst.get(f"{SHOP}/profiles", params)
        assert response.status_code == 422, params
        assert _error(response)["details"][0]["loc"] == ["query", loc]


def test_the_list_pages_with_a_cursor_and_keeps_its_filters(admin, django_assert_max_num_queries):
    made = [_new(f"p{i}@example.com", city="Oslo" if i % 2 else "Rome") for i in range(9)]
    oslo = [p.pk for p in reversed(made) if p.data["city"] == "Oslo"]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "field.city": "Oslo", **({"cursor": cursor} if cursor else {})}
        body = admin.get(f"{SHOP}/profiles", params).json()
        seen += [p["id"] for p in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == oslo
    with django_assert_max_num_queries(6):  # token, last use, database, fields, page: not per profile
        assert len(admin.get(f"{SHOP}/profiles", {"limit": 50}).json()["items"]) == 9
    response = admin.get(f"{SHOP}/profiles", {"cursor": "%%%"})
    assert response.status_code == 400 and _error(response)["code"] == "invalid_cursor"


def test_a_profile_shows_only_the_fields_the_schema_still_has(admin):
    p = _new("a@example.com", city="Oslo")
    Profile.objects.filter(pk=p.pk).update(data={"city": "Oslo", "removed_field": "stale"})
    assert admin.get(f"{SHOP}/profiles/{p.pk}").json()["fields"] == {"city": "Oslo"}


# --- one profile ----------------------------------------------------------------------------------


def test_a_profile_can_be_read_and_patched(marketer):
    p = _new("a@example.com", first_name="Al", tier="gold", birthday="1990-05-04")
    body = marketer.get(f"{SHOP}/profiles/{p.pk}").json()
    assert body["birthday"] == "1990-05-04" and body["fields"]["tier"] == "gold"

    response = marketer.patch(f"{SHOP}/profiles/{p.pk}", {"fields": {"last_name": "Smith", "tier": None, "points": "3"}})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["last_name"] == "Smith" and "tier" not in body["fields"] and body["fields"]["points"] == 3
    change = ProfileChange.objects.get(profile=p)
    assert change.source == "api" and set(change.changes) == {"last_name", "tier", "points"}

    response = marketer.patch(f"{SHOP}/profiles/{p.pk}", {"fields": {"points": "x", "birthday": "31.02.1990"}})
    assert response.status_code == 422
    assert {tuple(d["loc"]) for d in _error(response)["details"]} == {("fields", "points"), ("fields", "birthday")}
    response = marketer.patch(f"{SHOP}/profiles/{p.pk}", {"fields": {"email": ""}})
    assert response.status_code == 422 and "match key" in _error(response)["details"][0]["message"]
    _new("b@example.com")
    response = marketer.patch(f"{SHOP}/profiles/{p.pk}", {"fields": {"email": "B@example.com"}})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["fields", "email"]
    assert Profile.objects.get(pk=p.pk).email == "a@example.com"
    assert marketer.get(f"{SHOP}/profiles/999999").status_code == 404


def test_deleting_a_profile_erases_it_and_it_is_not_created_again(marketer):
    p = _new("gone@example.com", phone="+4930123456", first_name="Gone")
    response = marketer.delete(f"{SHOP}/profiles/{p.pk}")
    assert response.status_code == 204
    assert marketer.get(f"{SHOP}/profiles/{p.pk}").status_code == 404
    assert not Profile.objects.filter(pk=p.pk).exists()
    assert ErasedIdentity.objects.count() == 2  # e-mail and phone, as salted hashes
    assert AuditEvent.objects.filter(verb="profile.erased").exists()

    response = _upsert(marketer, {"email": " GONE@example.com", "first_name": "Back"})
    assert response.status_code == 409
    assert _error(response)["code"] == "erased"
    assert not Profile.objects.exists()


def test_two_profiles_can_be_merged(marketer, admin, acme):
    target = _new("t@example.com", city="Oslo")
    source = _new("s@example.com", first_name="Sam", phone="+4930123456", city="Rome", tier="gold")
    ProfileChange.objects.create(account=acme, profile=source, changes={"city": ["", "Rome"]}, source="ui")
    response = marketer.post(f"{SHOP}/profiles/merge", {"target": target.pk, "source": source.pk})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == target.pk and body["email"] == "t@example.com"
    assert body["first_name"] == "Sam" and body["phone"] == "+4930123456"
    assert body["fields"]["city"] == "Oslo" and body["fields"]["tier"] == "gold"  # target keeps, fills gaps
    assert marketer.get(f"{SHOP}/profiles/{source.pk}").status_code == 404
    assert ProfileChange.objects.filter(profile=target).count() == 2

    response = marketer.post(f"{SHOP}/profiles/merge", {"target": target.pk, "source": target.pk})
    assert response.status_code == 422 and "itself" in _error(response)["message"]
    response = marketer.post(f"{SHOP}/profiles/merge", {"target": target.pk, "source": source.pk})
    assert response.status_code == 404 and _error(response)["details"][0]["loc"] == ["source"]
    other = database_create(account=acme, name="Other", actor=SYSTEM)
    stranger = profile_upsert(database=other, values={"email": "x@example.com"}, actor=SYSTEM).profile
    response = marketer.post(f"{SHOP}/profiles/merge", {"target": stranger.pk, "source": target.pk})
    assert response.status_code == 404 and _error(response)["details"][0]["loc"] == ["target"]


# --- roles and accounts ---------------------------------------------------------------------------


def test_an_analyst_reads_but_cannot_write(caller, acme, shop):
    p = _new("a@example.com")
    analyst = caller(acme, Role.ANALYST)
    for path in ("/api/v1/databases", SHOP, f"{SHOP}/fields", f"{SHOP}/profiles", f"{SHOP}/profiles/{p.pk}"):
        assert analyst.get(path).status_code == 200, path
    refused = [
        analyst.post(f"{SHOP}/profiles", {"fields": {"email": "b@example.com"}}),
        analyst.post(f"{SHOP}/profiles/batch", {"items": [{"email": "b@example.com"}]}),
        analyst.patch(f"{SHOP}/profiles/{p.pk}", {"fields": {"first_name": "X"}}),
        analyst.delete(f"{SHOP}/profiles/{p.pk}"),
        analyst.post(f"{SHOP}/profiles/merge", {"target": p.pk, "source": p.pk}),
        analyst.post("/api/v1/databases", {"name": "Mine"}),
        analyst.post(f"{SHOP}/fields", {"name": "x"}),
    ]
    for response in refused:
        assert response.status_code == 403 and _error(response)["code"] == "forbidden"
    assert "Analyst" in _error(refused[0])["message"]
    assert list(Profile.objects.values_list("email", "first_name")) == [("a@example.com", "")]
    assert ProfileDatabase.objects.count() == 1


def test_a_marketer_edits_profiles_but_not_databases_or_fields(marketer):
    assert _upsert(marketer, {"email": "a@example.com"}).status_code == 201
    refused = [
        marketer.post("/api/v1/databases", {"name": "Mine"}),
        marketer.patch(SHOP, {"name": "Renamed"}),
        marketer.delete(SHOP),
        marketer.post(f"{SHOP}/fields", {"name": "x"}),
        marketer.patch(f"{SHOP}/fields/city", {"label": "Town"}),
        marketer.patch(f"{SHOP}/fields", {"order": ["city"]}),
        marketer.delete(f"{SHOP}/fields/city"),
    ]
    for response in refused:
        assert response.status_code == 403 and _error(response)["code"] == "forbidden"
    assert ProfileDatabase.objects.get().name == "Shop"
    assert Field.objects.get(name="city").label == "City"


def test_another_accounts_database_and_profiles_are_404(caller, acme, globex, shop):
    acme_profile = _new("a@example.com")
    theirs = database_create(account=globex, name="Globex shop", slug="globex-shop", actor=SYSTEM)
    their_profile = profile_upsert(database=theirs, values={"email": "g@example.com"}, actor=SYSTEM).profile
    outsider = caller(globex, Role.OWNER)
    for response in [
        outsider.get(SHOP),
        outsider.get(f"{SHOP}/profiles"),
        outsider.get(f"{SHOP}/profiles/{acme_profile.pk}"),
        outsider.get(f"{SHOP}/profiles/lookup", {"email": "a@example.com"}),
        outsider.post(f"{SHOP}/profiles", {"fields": {"email": "new@example.com"}}),
        outsider.post(f"{SHOP}/profiles", {"not": "even valid"}),  # 404 before the body is looked at
        outsider.patch(f"{SHOP}/profiles/{acme_profile.pk}", {"fields": {"first_name": "X"}}),
        outsider.delete(f"{SHOP}/profiles/{acme_profile.pk}"),
        outsider.delete(f"{SHOP}/fields/city"),
        outsider.delete(SHOP),
    ]:
        assert response.status_code == 404, response.content
        assert _error(response)["code"] == "not_found"
    assert outsider.get("/api/v1/databases").json()["items"][0]["slug"] == "globex-shop"
    assert Profile.objects.filter(database=shop).count() == 1 and ProfileDatabase.objects.filter(slug="shop").exists()

    # A slug that both accounts use names each account's own database.
    database_create(account=globex, name="Their shop", slug="shop", actor=SYSTEM)
    assert outsider.get(SHOP).json()["name"] == "Their shop"
    acme_owner = caller(acme, Role.OWNER)
    assert acme_owner.get(SHOP).json()["name"] == "Shop"
    # Another account's profile id under one's own database.
    assert acme_owner.get(f"{SHOP}/profiles/{their_profile.pk}").status_code == 404
    response = acme_owner.post(f"{SHOP}/profiles/merge", {"target": acme_profile.pk, "source": their_profile.pk})
    assert response.status_code == 404
    assert Profile.objects.filter(pk=their_profile.pk).exists()


# --- regressions: bugs found while writing the API (NaN in JSON, unique custom fields) -----------

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="unique custom fields are indexes on PostgreSQL")


def test_nan_in_a_json_field_is_a_field_error(marketer, client):
    response = client.post(f"{SHOP}/profiles", '{"fields": {"email": "n@example.com", "extra": [1, NaN]}}',
                           content_type="application/json", headers=marketer.headers)
    assert response.status_code == 422
    assert _error(response)["details"][0]["loc"] == ["fields", "extra"]


@postgres_only
def test_a_taken_unique_custom_value_names_its_field(admin):
    admin.post(f"{SHOP}/fields", {"name": "customer_id", "unique": True})
    _new("a@example.com", customer_id="C-1")
    response = _upsert(admin, {"email": "b@example.com", "city": "Oslo", "customer_id": "C-1"})
    assert response.status_code == 422
    assert _error(response)["details"][0]["loc"] == ["fields", "customer_id"]


@postgres_only
def test_a_merge_moves_a_unique_custom_value(admin):
    admin.post(f"{SHOP}/fields", {"name": "customer_id", "unique": True})
    target, source = _new("t@example.com"), _new("s@example.com", customer_id="C-1")
    response = admin.post(f"{SHOP}/profiles/merge", {"target": target.pk, "source": source.pk})
    assert response.status_code == 200 and response.json()["fields"]["customer_id"] == "C-1"


@postgres_only
def test_a_type_change_that_would_make_unique_values_equal_is_refused(admin):
    admin.post(f"{SHOP}/fields", {"name": "code", "unique": True})
    _new("a@example.com", code="1")
    _new("b@example.com", code="01")
    response = admin.patch(f"{SHOP}/fields/code", {"type": "integer"})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["type"]


# --- document -------------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_profile_endpoints(db, client):
    doc = client.get("/api/v1/openapi.json").json()
    assert set(doc["paths"]["/api/v1/databases/{db}/profiles"]) == {"get", "post"}
    assert set(doc["paths"]["/api/v1/databases/{db}/profiles/{profile_id}"]) == {"get", "patch", "delete"}
    assert "/api/v1/databases/{db}/profiles/batch" in doc["paths"]
    schemas = doc["components"]["schemas"]
    assert schemas["UpsertIn"]["examples"] and schemas["BatchIn"]["examples"] and schemas["ProfileOut"]["examples"]
    assert schemas["BatchIn"]["properties"]["items"]["maxItems"] == 1000
    assert set(schemas["FieldIn"]["properties"]["type"]["enum"]) == set(FieldType.values)
