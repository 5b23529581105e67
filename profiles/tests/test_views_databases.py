"""The database pages: list with counts, create, settings, the schema editor, delete."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.access import Actor
from accounts.models import AuditEvent, Job
from profiles import selectors
from profiles.models import Field, Profile, ProfileDatabase
from profiles.selectors import profile_count_estimate, profile_count_label
from profiles.services import database_create, field_add, profile_create

SYSTEM = Actor.system()


@pytest.fixture
def shop(acme) -> ProfileDatabase:
    database = database_create(account=acme, name="Shop customers", actor=SYSTEM, description="Buyers of the web shop")
    field_add(database=database, name="city", label="City", type="string", indexed=True, actor=SYSTEM)
    field_add(database=database, name="code", label="Code", type="string", actor=SYSTEM)
    return database


def _settings(db: ProfileDatabase) -> str:
    return f"/databases/{db.slug}/settings/"


# --- the list ------------------------------------------------------------------------------------


def test_it_lists_the_accounts_databases_with_their_profile_counts(login, bob, shop, globex):
    profile_create(database=shop, values={"email": "a@shop.example"}, actor=SYSTEM)
    profile_create(database=shop, values={"email": "b@shop.example"}, actor=SYSTEM)
    database_create(account=globex, name="Globex people", actor=SYSTEM)
    response = login(bob).get("/databases/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Shop customers" in html and "2 profiles" in html and "Buyers of the web shop" in html
    assert "Globex people" not in html
    assert response.context["section"] == "profiles"


def test_an_admin_without_databases_is_offered_to_create_one(login, adam, bob):
    html = login(adam).get("/databases/").content.decode()
    assert "No profile databases yet" in html and "Create a database" in html and "/databases/new/" in html
    html = login(bob).get("/databases/").content.decode()
    assert "No profile databases yet" in html and "/databases/new/" not in html


def test_the_count_is_exact_when_small_and_an_estimate_beyond_the_limit(shop, monkeypatch):
    for i in range(8):
        profile_create(database=shop, values={"email": f"p{i}@shop.example"}, actor=SYSTEM)
    assert profile_count_estimate(shop) == 8
    monkeypatch.setattr(selectors, "EXACT_COUNT_LIMIT", 5)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Profile._meta.db_table}")
        estimate = profile_count_estimate(shop)
        assert estimate >= 6  # the planner's number, never below the exact limit
        assert profile_count_label(estimate).startswith(("≈", "5+"))
    else:
        assert profile_count_estimate(shop) == 6
        assert profile_count_label(6) == "5+ profiles"


def test_the_exact_count_reads_a_bounded_subquery(shop, django_assert_num_queries):
    with django_assert_num_queries(1) as captured:
        profile_count_estimate(shop)
    assert "LIMIT 10001" in captured.captured_queries[0]["sql"]


# --- creating ------------------------------------------------------------------------------------


def test_an_admin_creates_a_database_matched_by_phone(login, adam, acme):
    client = login(adam)
    assert client.get("/databases/new/").status_code == 200
    response = client.post("/databases/new/", {"name": "App users", "description": "Mobile app", "match_key": "phone"})
    database = ProfileDatabase.objects.get(account=acme, name="App users")
    assert response.status_code == 302 and response["Location"] == f"/databases/{database.slug}/settings/#fields"
    assert database.match_keys == ["phone"] and database.description == "Mobile app"
    assert database.fields.filter(is_system=True).count() == 9
    assert AuditEvent.objects.filter(account=acme, verb="database.created").exists()


def test_creating_needs_a_name(login, adam, acme):
    response = login(adam).post("/databases/new/", {"name": "", "match_key": "email"})
    assert response.status_code == 400 and b"This field is required" in response.content
    assert not ProfileDatabase.objects.exists()


def test_a_marketer_cannot_create_a_database_or_change_a_schema(login, alice, shop):
    client = login(alice)
    assert client.get("/databases/new/").status_code == 403
    assert client.post("/databases/new/", {"name": "X", "match_key": "email"}).status_code == 403
    assert client.get(_settings(shop)).status_code == 200  # reading the schema is fine
    assert client.post(_settings(shop), {"name": "Renamed", "match_keys": ["email"]}).status_code == 403
    assert client.get(f"/databases/{shop.slug}/fields/new/").status_code == 403
    assert client.post(f"/databases/{shop.slug}/fields/new/", {"name": "x", "label": "X", "type": "string"}).status_code == 403
    assert client.get(f"/databases/{shop.slug}/fields/city/").status_code == 403
    assert client.post(f"/databases/{shop.slug}/fields/reorder/", {"name": "city", "direction": "up"}).status_code == 403
    assert client.post(f"/databases/{shop.slug}/fields/city/remove/").status_code == 403
    assert client.post(f"/databases/{shop.slug}/delete/", {"confirm": "Shop customers"}).status_code == 403
    shop.refresh_from_db()
    assert shop.name == "Shop customers" and shop.fields.filter(name="city").exists()


def test_the_settings_page_shows_the_schema_read_only_to_a_marketer(login, alice, shop):
    html = login(alice).get(_settings(shop)).content.decode()
    assert "City" in html and "field-type-string" in html and "Indexed" in html
    assert "Add a field" not in html and "/fields/reorder/" not in html and "Only admins can change" in html


def test_another_accounts_database_is_404(login, charlie, shop):
    client = login(charlie)
    for url in (_settings(shop), f"/databases/{shop.slug}/fields/new/", f"/databases/{shop.slug}/fields/city/",
                f"/databases/{shop.slug}/fields/city/remove/", f"/databases/{shop.slug}/delete/"):
        assert client.get(url).status_code == 404, url


# --- settings ------------------------------------------------------------------------------------


def test_an_admin_renames_the_database_and_adds_a_unique_field_as_match_key(login, adam, shop):
    field_add(database=shop, name="customer_no", label="Customer number", type="string", unique=True, actor=SYSTEM)
    client = login(adam)
    response = client.post(_settings(shop), {"name": "Web shop", "description": "", "match_keys": ["customer_no", "email"]})
    assert response.status_code == 302
    shop.refresh_from_db()
    assert shop.name == "Web shop" and shop.match_keys == ["email", "customer_no"]  # the old default stays first
    assert "Match keys" in client.get(_settings(shop)).content.decode()


def test_removing_every_match_key_is_refused_inline(login, adam, shop):
    response = login(adam).post(_settings(shop), {"name": "Shop customers", "description": "", "match_keys": []})
    assert response.status_code == 400 and b"This field is required" in response.content
    shop.refresh_from_db()
    assert shop.match_keys == ["email"]


# --- fields --------------------------------------------------------------------------------------


def test_an_admin_adds_an_enum_field_with_its_values(login, adam, shop):
    response = login(adam).post(
        f"/databases/{shop.slug}/fields/new/",
        {"label": "Tier", "name": "tier", "type": "enum", "choices": "bronze\nsilver\n\ngold\n", "default": "bronze",
         "required": "on", "indexed": "on"},
    )
    assert response.status_code == 302 and response["Location"].endswith("/settings/#fields")
    tier = Field.objects.get(database=shop, name="tier")
    assert tier.choices == ["bronze", "silver", "gold"] and tier.default == "bronze"
    assert tier.required and tier.indexed and not tier.unique and tier.position > Field.objects.get(database=shop, name="code").position


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"label": "E-mail 2", "name": "email", "type": "string"}, "name", "is reserved"),
        ({"label": "City again", "name": "city", "type": "string"}, "name", "already has a field"),
        ({"label": "Bad", "name": "Bad Name", "type": "string"}, "name", "Use lowercase letters"),
        ({"label": "Tier", "name": "tier", "type": "enum", "choices": ""}, "choices", "List the allowed values"),
        ({"label": "Points", "name": "points", "type": "integer", "default": "many"}, "default", "is not a whole number"),
        ({"label": "Tags", "name": "tags", "type": "list", "unique": "on"}, "unique", "cannot be unique"),
    ],
)
def test_a_refused_field_shows_the_reason_on_its_input(login, adam, shop, data, field, message):
    response = login(adam).post(f"/databases/{shop.slug}/fields/new/", data)
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert message.replace("'", "&#x27;") in response.content.decode()
    assert not Field.objects.filter(database=shop, name=data["name"].strip().lower(), label=data["label"]).exists()


def test_an_admin_edits_a_fields_label_and_rules(login, adam, shop):
    client = login(adam)
    page = client.get(f"/databases/{shop.slug}/fields/code/")
    assert page.status_code == 200 and b'value="Code"' in page.content
    response = client.post(f"/databases/{shop.slug}/fields/code/",
                           {"label": "Promo code", "type": "string", "required": "on", "indexed": "on"})
    assert response.status_code == 302
    code = Field.objects.get(database=shop, name="code")
    assert (code.label, code.required, code.indexed, code.unique) == ("Promo code", True, True, False)


def test_a_type_change_that_would_lose_values_is_refused_with_the_services_message(login, adam, shop):
    profile_create(database=shop, values={"email": "a@shop.example", "code": "abc"}, actor=SYSTEM)
    response = login(adam).post(f"/databases/{shop.slug}/fields/code/", {"label": "Code", "type": "integer"})
    assert response.status_code == 400
    errors = response.context["form"].errors["type"]
    assert errors and "Cannot change Code to Integer" in errors[0] and "abc" in errors[0]
    assert "Cannot change Code to Integer" in response.content.decode()
    assert Field.objects.get(database=shop, name="code").type == "string"


def test_a_type_change_converts_the_stored_values(login, adam, shop):
    p = profile_create(database=shop, values={"email": "a@shop.example", "code": "42"}, actor=SYSTEM)
    assert login(adam).post(f"/databases/{shop.slug}/fields/code/", {"label": "Code", "type": "integer"}).status_code == 302
    p.refresh_from_db()
    assert p.data["code"] == 42 and Field.objects.get(database=shop, name="code").type == "integer"


def test_a_system_field_only_changes_its_label_and_required(login, adam, shop):
    client = login(adam)
    page = client.get(f"/databases/{shop.slug}/fields/email/").content.decode()
    assert "A system field" in page
    response = client.post(f"/databases/{shop.slug}/fields/email/",
                           {"label": "Work e-mail", "type": "integer", "unique": "", "required": "on"})
    assert response.status_code == 302
    email = Field.objects.get(database=shop, name="email")
    assert (email.label, email.type, email.unique, email.required) == ("Work e-mail", "email", True, True)


def test_fields_move_up_and_down_without_javascript(login, adam, shop):
    client = login(adam)
    names = lambda: list(shop.fields.values_list("name", flat=True))  # noqa: E731
    before = names()
    assert before[-2:] == ["city", "code"]
    response = client.post(f"/databases/{shop.slug}/fields/reorder/", {"name": "code", "direction": "up"})
    assert response.status_code == 302 and response["Location"].endswith("#fields")
    assert names()[-2:] == ["code", "city"]
    client.post(f"/databases/{shop.slug}/fields/reorder/", {"name": "email", "direction": "up"})  # already first
    assert names()[0] == "email"
    client.post(f"/databases/{shop.slug}/fields/reorder/", {"name": "email", "direction": "down"})
    assert names()[:2] == ["phone", "email"]
    html = client.get(_settings(shop)).content.decode()
    assert html.index('data-field="phone"') < html.index('data-field="email"')


def test_removing_a_field_confirms_then_clears_the_values_in_a_background_job(
    login, adam, shop, django_capture_on_commit_callbacks
):
    p = profile_create(database=shop, values={"email": "a@shop.example", "code": "X1", "city": "Berlin"}, actor=SYSTEM)
    client = login(adam)
    page = client.get(f"/databases/{shop.slug}/fields/code/remove/")
    assert page.status_code == 200 and b"removed from every profile in the background" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/databases/{shop.slug}/fields/code/remove/")
    job = Job.objects.get(kind="profiles.field_remove")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert not Field.objects.filter(database=shop, name="code").exists()
    p.refresh_from_db()
    job.refresh_from_db()
    assert job.state == "succeeded" and "code" not in p.data and p.data["city"] == "Berlin"


def test_a_system_field_or_match_key_cannot_be_removed(login, adam, shop):
    client = login(adam)
    page = client.get(f"/databases/{shop.slug}/fields/email/remove/")
    assert page.status_code == 200 and b"is a system field" in page.content
    assert client.post(f"/databases/{shop.slug}/fields/email/remove/").status_code == 400
    assert Field.objects.filter(database=shop, name="email").exists() and not Job.objects.exists()
    assert client.get(f"/databases/{shop.slug}/fields/nope/").status_code == 404


def test_deleting_a_database_needs_its_name_typed(login, adam, shop, acme):
    profile_create(database=shop, values={"email": "a@shop.example"}, actor=SYSTEM)
    client = login(adam)
    page = client.get(f"/databases/{shop.slug}/delete/")
    assert page.status_code == 200 and b"1 profile" in page.content
    wrong = client.post(f"/databases/{shop.slug}/delete/", {"confirm": "shop customers"})
    assert wrong.status_code == 400 and b"Type Shop customers exactly" in wrong.content
    assert ProfileDatabase.objects.filter(pk=shop.pk).exists()
    response = client.post(f"/databases/{shop.slug}/delete/", {"confirm": " Shop customers "})
    assert response.status_code == 302 and response["Location"] == "/databases/"
    assert not ProfileDatabase.objects.filter(pk=shop.pk).exists() and not Profile.objects.exists()
    assert "Shop customers and all its profiles are deleted." in client.get("/databases/").content.decode()
