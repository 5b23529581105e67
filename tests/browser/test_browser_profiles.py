"""Profile databases end to end in Chromium: schema, a profile, search, filter, edit, history, export."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def _settled(page: Page) -> None:
    """Wait until htmx has swapped the table in and bound its inputs (it does so ~20 ms after the swap)."""
    expect(page.locator("#profiles")).to_have_count(1)
    expect(page.locator(".htmx-request, .htmx-settling, .htmx-added, .htmx-swapping")).to_have_count(0)


def _dismiss_toasts(page: Page) -> None:
    """Clear the toasts still showing, so they cover nothing the test clicks next. Removed, not
    clicked: app.js removes each after 6 s, and one could go between a look and a click."""
    page.locator("#toasts .toast").evaluate_all("toasts => toasts.forEach(t => t.remove())")


def test_an_admin_builds_a_database_and_works_with_a_profile(page: Page, live_server, adam, sign_in,
                                                             scripts_ready) -> None:
    sign_in(page, "adam@acme.test")
    page.locator("#sidebar").get_by_role("link", name="Profiles").click()
    expect(page.get_by_role("heading", name="No profile databases yet")).to_be_visible()

    # A database.
    page.get_by_role("link", name="Create a database").click()
    page.get_by_label("Name").fill("Shop customers")
    page.get_by_label("Description").fill("Buyers of the web shop")
    page.get_by_label("Recognise a person by").select_option("email")
    page.get_by_role("button", name="Create database").click()
    expect(page.get_by_role("status")).to_contain_text("Shop customers is ready")
    expect(page.get_by_role("heading", level=1)).to_have_text("Shop customers")

    # Its fields. The name follows the label; "Allowed values" shows only for "One of a list".
    add = page.locator("#add-field")
    choices = add.get_by_label("Allowed values")
    for label, name, type_, indexed in [
        ("City", "city", "string", True),
        ("Loyalty points", "loyalty_points", "integer", False),
        ("VIP", "vip", "boolean", False),
        ("Tier", "tier", "enum", False),
    ]:
        add.get_by_label("Label").fill(label)
        expect(add.get_by_label("Name")).to_have_value(name)
        add.get_by_label("Type").select_option(type_)
        if type_ == "enum":
            expect(choices).to_be_visible()
            choices.fill("bronze\nsilver\ngold")
        else:
            expect(choices).to_be_hidden()
        if indexed:
            add.get_by_label("Indexed").check()
        add.get_by_test_id("add-field").click()
        expect(page.get_by_role("status").last).to_contain_text(f"Field “{label}” added.")
    fields = page.locator("#fields tbody tr")
    expect(fields).to_have_count(13)  # 9 system fields and ours
    expect(page.locator('tr[data-field="city"]')).to_contain_text("Indexed")
    expect(page.locator('tr[data-field="tier"]')).to_contain_text("bronze, silver, gold")

    # A profile. (Toasts sit over the header's buttons for a few seconds: close them first.)
    _dismiss_toasts(page)
    page.get_by_role("link", name="View profiles").click()
    expect(page.get_by_text("No profiles yet")).to_be_visible()
    page.get_by_role("link", name="New profile").click()
    form = page.get_by_test_id("profile-form")
    form.get_by_label("E-mail").fill("Anna.Berg@Shop.example")
    form.get_by_label("First name").fill("Anna")
    form.get_by_label("Last name").fill("Berg")
    form.get_by_label("City").fill("Berlin")
    form.get_by_label("Loyalty points").fill("120")
    form.get_by_label("VIP").check()
    form.get_by_label("Tier").select_option("gold")
    form.get_by_role("button", name="Create profile").click()
    expect(page.get_by_role("status")).to_contain_text("Profile created.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Anna Berg")
    expect(page.get_by_text("anna.berg@shop.example")).to_be_visible()
    card_url = page.url

    # Search and filter: the table updates in place (htmx) and the URL follows.
    page.locator(".breadcrumb").get_by_role("link", name="Shop customers").click()
    rows = page.locator("#profiles tbody tr")
    expect(rows).to_have_count(1)
    scripts_ready(page)  # htmx listens to the search box
    search = page.get_by_role("searchbox")
    search.fill("nobody@")
    expect(page.get_by_text("No profiles match")).to_be_visible()
    search.fill("anna.b")
    expect(page.get_by_test_id("search-kind")).to_contain_text("First or last name starts with")
    expect(page.get_by_text("No profiles match")).to_be_visible()
    search.fill("ANNA.BERG@")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("anna.berg@shop.example")
    expect(page).to_have_url(re.compile(r"q=ANNA\.BERG%40"))
    _settled(page)
    page.locator("#f0").select_option("tier")
    expect(page.locator("#v0")).to_be_visible()
    _settled(page)
    page.locator("#v0").select_option("silver")
    expect(page.get_by_text("No profiles match")).to_be_visible()
    _settled(page)
    page.locator("#v0").select_option("gold")
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"f0=tier.*v0=gold"))

    # Edit a field, see the change in the history.
    rows.first.get_by_role("link").first.click()
    expect(page).to_have_url(card_url)
    form = page.get_by_test_id("profile-form")
    form.get_by_label("City").fill("Potsdam")
    form.get_by_label("Loyalty points").fill("1.5")
    form.get_by_role("button", name="Save changes").click()
    expect(page.locator(".invalid-feedback")).to_contain_text("is not a whole number")
    form = page.get_by_test_id("profile-form")
    form.get_by_label("Loyalty points").fill("150")
    form.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("Saved: City, Loyalty points.")
    page.get_by_role("tab", name="History").click()
    expect(page).to_have_url(re.compile(r"tab=history"))
    change = page.locator("[data-change]").first
    expect(change).to_contain_text("adam@acme.test")
    expect(change).to_contain_text("City: Berlin")
    expect(change).to_contain_text("Potsdam")
    expect(change).to_contain_text("120")

    # Export what the list shows; the job page offers the file.
    page.locator(".breadcrumb").get_by_role("link", name="Shop customers").click()
    page.get_by_test_id("export").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Export of Shop customers")
    expect(page.locator(".job-progress")).to_have_attribute("data-state", "succeeded")
    with page.expect_download() as download_info:
        page.get_by_test_id("download").click()
    text = open(download_info.value.path(), encoding="utf-8-sig").read()  # noqa: SIM115 (read once)
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["email"] == "anna.berg@shop.example" and row["city"] == "Potsdam"
    assert row["loyalty_points"] == "150" and row["vip"] == "true" and row["tier"] == "gold"


@pytest.fixture
def nojs_page(browser, live_server, transactional_db):
    context = browser.new_context(java_script_enabled=False, base_url=live_server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_the_profile_pages_work_without_javascript(nojs_page: Page, adam, acme) -> None:
    from accounts.access import Actor
    from profiles.services import database_create, field_add, profile_create

    db = database_create(account=acme, name="Shop customers", actor=Actor.system())
    field_add(database=db, name="tier", label="Tier", type="enum", choices=["bronze", "gold"], actor=Actor.system())
    profile_create(database=db, values={"email": "anna@shop.example", "first_name": "Anna", "tier": "gold"}, actor=Actor.system())
    profile_create(database=db, values={"email": "ben@shop.example", "first_name": "Ben", "tier": "bronze"}, actor=Actor.system())
    page = nojs_page
    page.goto("/login/")
    page.get_by_label("Email").fill("adam@acme.test")
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"/databases/{db.slug}/")
    rows = page.locator("#profiles tbody tr")
    expect(rows).to_have_count(2)

    # A filter in two steps: the field, then (its operators now known) the value.
    page.locator("#f0").select_option("tier")
    page.get_by_role("button", name="Apply").click()
    page.locator("#v0").select_option("gold")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("anna@shop.example")
    assert "f0=tier" in page.url and "v0=gold" in page.url

    # The column chooser is a <details> menu with a plain form; it keeps the filter.
    page.get_by_test_id("columns").click()
    page.locator(".column-chooser").get_by_label("Tier").check()
    page.locator(".column-chooser").get_by_role("button", name="Apply").click()
    expect(page.locator("#profiles thead")).to_contain_text("Tier")
    expect(rows).to_have_count(1)

    # Fields move with plain forms.
    page.goto(f"/databases/{db.slug}/settings/")
    page.get_by_role("button", name="Move Tier up").click()
    expect(page.locator('#fields tbody tr[data-field="tier"] + tr[data-field="updated_at"]:last-child')).to_have_count(1)
    order = page.locator("#fields tbody tr").evaluate_all("rows => rows.map(r => r.dataset.field)")
    assert order[-2:] == ["tier", "updated_at"]
