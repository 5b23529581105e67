"""The templates API: list (cursor, search, channel), create with versions (all or nothing),
read, change (new versions), render (profile or data; template errors as a 422 with part and
line), test-send; token roles, and another account's template is a 404 on every route."""

from __future__ import annotations

import pytest

from accounts.access import Actor
from content import services
from content.models import Template, TemplateVersion
from profiles.services import database_create, profile_create

SYSTEM = Actor.system()
EMAIL = {"subject": "Hello {{ profile.first_name }}", "preheader": "News",
         "html": '<p>Hi {{ profile.first_name }}</p><p><a href="https://shop.example/sale">Sale</a>'
                 '<a href="{{ links.unsubscribe }}">Unsubscribe</a></p>'}


@pytest.fixture
def welcome(acme, shop_db) -> Template:
    t = services.template_create(account=acme, name="Welcome", database=shop_db, kind="marketing", actor=SYSTEM)
    services.template_version_save(template=t, channel="email", data=EMAIL, actor=SYSTEM)
    services.template_version_save(template=t, channel="sms", data={"text": "Hi {{ profile.first_name }}"},
                                   actor=SYSTEM)
    return t


# --- list ------------------------------------------------------------------------------------------------


def test_it_lists_templates_newest_first_with_their_channels(caller, acme, welcome):
    other = services.template_create(account=acme, name="Receipt", kind="transactional", actor=SYSTEM)
    r = caller(acme, "analyst").get("/api/v1/templates")
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["id"] for i in items] == [other.pk, welcome.pk]
    assert items[1]["channels"] == ["email", "sms"] and items[1]["database"] == "shop-customers"
    assert items[0]["channels"] == [] and items[0]["kind"] == "transactional"


def test_the_list_pages_by_cursor_and_filters(caller, acme, welcome):
    for n in range(3):
        services.template_create(account=acme, name=f"Extra {n}", kind="marketing", actor=SYSTEM)
    api = caller(acme, "analyst")
    first = api.get("/api/v1/templates", {"limit": 2}).json()
    second = api.get("/api/v1/templates", {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(first["items"]) == 2 and len(second["items"]) == 2 and second["next_cursor"] is None
    assert {i["name"] for i in first["items"] + second["items"]} == {"Welcome", "Extra 0", "Extra 1", "Extra 2"}
    assert [i["name"] for i in api.get("/api/v1/templates", {"channel": "sms"}).json()["items"]] == ["Welcome"]
    assert [i["name"] for i in api.get("/api/v1/templates", {"q": "xtra 1"}).json()["items"]] == ["Extra 1"]


def test_the_list_never_shows_another_accounts_templates(caller, globex, welcome):
    assert caller(globex).get("/api/v1/templates").json()["items"] == []


# --- create -----------------------------------------------------------------------------------------------


def test_it_creates_a_template_with_versions(caller, acme, shop_db):
    r = caller(acme, "marketer").post("/api/v1/templates", {
        "name": "Spring", "kind": "marketing", "database": "shop-customers",
        "versions": {"email": EMAIL, "sms": {"text": "Spring sale, {{ profile.first_name }}!"}}, "note": "first"})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["name"] == "Spring" and body["database"] == "shop-customers"
    assert set(body["versions"]) == {"email", "sms"}
    email = body["versions"]["email"]
    assert email["number"] == 1 and email["note"] == "first" and email["data"]["subject"] == EMAIL["subject"]
    assert [link["url"] for link in email["links"]] == ["https://shop.example/sale"]


def test_a_version_with_a_syntax_error_creates_nothing_and_names_part_and_line(caller, acme):
    r = caller(acme, "marketer").post("/api/v1/templates", {
        "name": "Broken", "versions": {"email": {**EMAIL, "html": "<p>a</p>\n<p>{% if %}</p>"}}})
    assert r.status_code == 422
    detail = r.json()["error"]["details"][0]
    assert detail["loc"] == ["versions", "email", "html"]
    assert detail["part"] == "html" and detail["line"] == 2
    assert not Template.objects.filter(name="Broken").exists()


def test_a_missing_required_part_is_a_422_at_the_part(caller, acme):
    r = caller(acme, "marketer").post("/api/v1/templates", {"name": "No subject",
                                                            "versions": {"email": {"html": "<p>x</p>"}}})
    assert r.status_code == 422
    assert ["versions", "email", "subject"] in [d["loc"] for d in r.json()["error"]["details"]]
    assert not Template.objects.filter(name="No subject").exists()


def test_bad_input_is_a_422_naming_the_field(caller, acme):
    api = caller(acme, "marketer")
    r = api.post("/api/v1/templates", {"name": "", "kind": "promo"})
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["error"]["details"]]
    assert ["name"] in locs and ["kind"] in locs
    r = api.post("/api/v1/templates", {"name": "X", "versions": {"fax": {"text": "hi"}}})
    assert r.status_code == 422 and ["versions", "fax"] in [d["loc"] for d in r.json()["error"]["details"]]
    r = api.post("/api/v1/templates", {"name": "X", "database": "nope"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == ["database"]


def test_a_duplicate_name_is_refused(caller, acme, welcome):
    api = caller(acme, "marketer")
    r = api.post("/api/v1/templates", {"name": "Welcome"})
    assert r.status_code == 409 and r.json()["error"]["details"][0]["loc"] == ["name"]
    assert Template.objects.filter(account=acme, name="Welcome").count() == 1
    other = services.template_create(account=acme, name="Other", kind="marketing", actor=SYSTEM)
    assert api.patch(f"/api/v1/templates/{other.pk}", {"name": "Welcome"}).status_code == 409
    assert api.patch(f"/api/v1/templates/{welcome.pk}", {"name": "Welcome"}).status_code == 200


def test_an_analyst_token_cannot_create(caller, acme):
    r = caller(acme, "analyst").post("/api/v1/templates", {"name": "X"})
    assert r.status_code == 403 and not Template.objects.filter(name="X").exists()


# --- read and change ------------------------------------------------------------------------------------------


def test_it_reads_a_template_with_its_current_versions_links_and_lint(caller, acme, welcome):
    r = caller(acme, "analyst").get(f"/api/v1/templates/{welcome.pk}")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == welcome.pk and set(body["versions"]) == {"email", "sms"}
    assert isinstance(body["versions"]["email"]["lint"], list)
    assert body["versions"]["email"]["links"][0]["url"] == "https://shop.example/sale"


def test_patch_renames_and_saves_new_versions(caller, acme, welcome):
    r = caller(acme, "marketer").patch(f"/api/v1/templates/{welcome.pk}", {
        "name": "Welcome 2", "versions": {"sms": {"text": "Hey {{ profile.first_name }}"}}, "note": "shorter"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["name"] == "Welcome 2" and body["versions"]["sms"]["number"] == 2
    assert body["versions"]["sms"]["note"] == "shorter" and body["versions"]["email"]["number"] == 1
    assert TemplateVersion.objects.filter(template=welcome, channel="sms").count() == 2


def test_patch_with_a_broken_version_changes_nothing(caller, acme, welcome):
    r = caller(acme, "marketer").patch(f"/api/v1/templates/{welcome.pk}", {
        "name": "Renamed", "versions": {"sms": {"text": "{{ oops"}}})
    assert r.status_code == 422
    welcome.refresh_from_db()
    assert welcome.name == "Welcome"
    assert TemplateVersion.objects.filter(template=welcome, channel="sms").count() == 1


def test_an_analyst_token_cannot_patch(caller, acme, welcome):
    assert caller(acme, "analyst").patch(f"/api/v1/templates/{welcome.pk}", {"name": "X"}).status_code == 403


# --- render ------------------------------------------------------------------------------------------------------


def test_render_for_a_profile(caller, acme, welcome, anna):
    r = caller(acme, "analyst").post(f"/api/v1/templates/{welcome.pk}/render", {"channel": "email",
                                                                                "profile_id": anna.pk})
    assert r.status_code == 200, r.content
    parts = r.json()["parts"]
    assert parts["subject"] == "Hello Anna" and "Hi Anna" in parts["html"] and "Hi Anna" in parts["text"]
    assert r.json()["version"] == 1


def test_render_with_data_and_an_old_version(caller, acme, welcome):
    services.template_version_save(template=welcome, channel="sms", data={"text": "Order {{ data.order }}"},
                                   actor=SYSTEM)
    api = caller(acme, "analyst")
    now = api.post(f"/api/v1/templates/{welcome.pk}/render", {"channel": "sms", "data": {"order": "A-17"}}).json()
    assert now["parts"]["text"] == "Order A-17" and now["version"] == 2
    old = api.post(f"/api/v1/templates/{welcome.pk}/render", {"channel": "sms", "version": 1}).json()
    assert old["version"] == 1 and old["parts"]["text"].startswith("Hi")


def test_a_template_that_cannot_render_is_a_422_with_part_and_line(caller, acme):
    t = services.template_create(account=acme, name="Loops", kind="transactional", actor=SYSTEM)
    services.template_version_save(template=t, channel="sms", actor=SYSTEM,
                                   data={"text": "x\n{{ range(10**9)|list|length }}"})
    r = caller(acme, "analyst").post(f"/api/v1/templates/{t.pk}/render", {"channel": "sms"})
    assert r.status_code == 422
    detail = r.json()["error"]["details"][0]
    assert detail["loc"] == ["template", "text"] and detail["part"] == "text"


def test_render_of_a_channel_without_a_version_is_a_409(caller, acme, welcome):
    r = caller(acme, "analyst").post(f"/api/v1/templates/{welcome.pk}/render", {"channel": "telegram"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_version"


def test_render_with_another_accounts_profile_is_refused(caller, acme, globex, welcome):
    theirs_db = database_create(account=globex, name="Theirs", actor=SYSTEM)
    theirs = profile_create(database=theirs_db, actor=SYSTEM, values={"email": "z@globex.example"})
    r = caller(acme, "analyst").post(f"/api/v1/templates/{welcome.pk}/render", {"channel": "email",
                                                                                "profile_id": theirs.pk})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == ["profile_id"]


def test_render_bad_input_is_a_422(caller, acme, welcome):
    r = caller(acme, "analyst").post(f"/api/v1/templates/{welcome.pk}/render", {"channel": "pigeon", "extra": 1})
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["error"]["details"]]
    assert ["channel"] in locs and ["extra"] in locs


# --- test-send --------------------------------------------------------------------------------------------------


def test_an_analyst_token_cannot_test_send(caller, acme, welcome):
    r = caller(acme, "analyst").post(f"/api/v1/templates/{welcome.pk}/test-send",
                                     {"channel": "sms", "address": "+4915112345678"})
    assert r.status_code == 403


# --- another account ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("get", "", None), ("patch", "", {"name": "Mine"}), ("post", "/render", {"channel": "email"}),
    ("post", "/test-send", {"channel": "email", "address": "x@example.com"}),
])
def test_another_accounts_template_is_a_404(caller, globex, welcome, method, suffix, body):
    api = caller(globex)
    r = getattr(api, method)(f"/api/v1/templates/{welcome.pk}{suffix}", *([body] if body is not None else []))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    welcome.refresh_from_db()
    assert welcome.name == "Welcome"


def test_an_unknown_or_huge_id_is_a_404(caller, acme):
    api = caller(acme)
    assert api.get("/api/v1/templates/999999").status_code == 404
    assert api.get(f"/api/v1/templates/{2**70}").status_code == 404


def test_test_send_sends_the_current_version_through_the_backend(caller, acme, welcome, anna, settings):
    from delivery.backends import locmem

    settings.DELIVERY_BACKENDS = {**settings.DELIVERY_BACKENDS,
                                  "sms": {"BACKEND": "delivery.backends.locmem.LocmemBackend", "OPTIONS": {}}}
    locmem.outbox.clear()
    r = caller(acme, "marketer").post(f"/api/v1/templates/{welcome.pk}/test-send",
                                      {"channel": "sms", "address": "+4915112345678", "profile_id": anna.pk})
    assert r.status_code == 200, r.content
    assert r.json() == {"ok": True, "version": 1, "provider_id": "locmem-1", "error": "", "permanent": False}
    assert locmem.outbox[0].payload["text"] == "Hi Anna"


def test_test_send_of_an_email_without_a_sender_is_a_422_saying_so(caller, acme, welcome):
    r = caller(acme, "marketer").post(f"/api/v1/templates/{welcome.pk}/test-send",
                                      {"channel": "email", "address": "me@example.com"})
    assert r.status_code == 422 and "Add a sender" in r.json()["error"]["message"]


def test_test_send_of_a_channel_without_a_version_is_a_409(caller, acme, welcome):
    r = caller(acme, "marketer").post(f"/api/v1/templates/{welcome.pk}/test-send",
                                      {"channel": "telegram", "address": "12345"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_version"
