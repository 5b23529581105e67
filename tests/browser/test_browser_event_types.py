"""Event types and history settings in Chromium: an admin defines "cart_abandoned" with two
properties (adding and removing rows in place, a mistake shown at its row), then sets how long
events are kept."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.access import Actor
from conftest import PASSWORD
from history.models import EventType, HistorySettings
from profiles.services import database_create

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(os.environ.get("CDP_SCREENSHOTS", "test-artifacts"))
WIDTH = {"width": 1280, "height": 900}


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.set_viewport_size(WIDTH)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_an_admin_defines_an_event_type_with_properties(page: Page, live_server, adam, acme, sign_in) -> None:
    database_create(account=acme, name="Shop customers", actor=Actor.system())
    sign_in(page, "adam@acme.test")
    page.locator("#sidebar").get_by_role("link", name="Event types").click()
    expect(page.locator("#sidebar .nav-link.active")).to_have_text("Event types")
    expect(page.get_by_role("heading", name="No event types of your own yet")).to_be_visible()
    expect(page.locator("#event-types tbody tr[data-type='order.placed']")).to_contain_text("System")
    _shot(page, "history-types-empty.png")

    page.get_by_test_id("no-custom-types").get_by_role("link", name="New event type").click()
    form = page.get_by_test_id("type-form")
    form.get_by_label("Label").fill("Cart abandoned")
    expect(form.get_by_role("textbox", name=re.compile(r"^Name\b"))).to_have_value("cart_abandoned")  # follows the label

    rows = form.locator("[data-row]:visible")
    expect(rows).to_have_count(3)  # blank rows to start with
    expect(form.locator("[data-remove-fallback]:visible")).to_have_count(0)  # the script's trash buttons instead
    form.get_by_role("button", name="Add a property").click()
    expect(rows).to_have_count(4)
    expect(rows.nth(3).get_by_label("Property name")).to_be_focused()
    rows.nth(3).get_by_label("Property name").fill("to_be_removed")
    rows.nth(3).get_by_role("button", name="Remove this property").click()
    expect(rows).to_have_count(3)

    rows.nth(0).get_by_label("Property name").fill("sku")
    rows.nth(0).get_by_label("Required").check()
    expect(rows.nth(0).locator("[data-choices] input")).to_be_hidden()  # only for "One of a list"
    rows.nth(1).get_by_label("Property name").fill("9price")
    rows.nth(1).get_by_label("Type").select_option("decimal")
    rows.nth(2).get_by_label("Type").select_option("enum")
    expect(rows.nth(2).locator("[data-choices] input")).to_be_visible()
    rows.nth(2).get_by_label("Type").select_option("string")  # changed their mind: a blank row again
    form.get_by_label("Reject events whose properties don't match").check()
    form.get_by_role("button", name="Create event type").click()

    # The mistake is shown at its row and field; what was typed is still there.
    form = page.get_by_test_id("type-form")
    rows = form.locator("[data-row]:visible")
    bad = rows.nth(1)
    expect(bad.locator("[data-error='name']")).to_contain_text("'9price' is not a property name")
    expect(bad.get_by_label("Property name")).to_have_class(re.compile(r"\bis-invalid\b"))
    expect(bad.get_by_label("Type")).to_have_value("decimal")
    expect(rows.nth(0).locator("[data-error]")).to_have_count(0)
    expect(rows.nth(0).get_by_label("Property name")).to_have_value("sku")
    expect(form.locator("input[value='to_be_removed']")).to_be_hidden()  # removed stays removed
    _shot(page, "history-type-form-error.png")

    bad.get_by_label("Property name").fill("price")
    form.get_by_role("button", name="Create event type").click()

    expect(page.get_by_role("status")).to_contain_text("cart_abandoned is ready")
    expect(page.get_by_role("heading", level=1)).to_have_text("Cart abandoned")
    et = EventType.objects.get(account=acme, name="cart_abandoned")
    assert et.properties == [{"name": "sku", "type": "string", "required": True},
                             {"name": "price", "type": "decimal", "required": False}]
    assert et.strict is True
    payload = json.loads(page.get_by_test_id("example-payload").inner_text())
    assert payload["event"] == "cart_abandoned" and payload["properties"] == {"sku": "SKU-1001", "price": 19.99}
    form = page.get_by_test_id("type-form")
    expect(form.locator("[data-row]:visible").nth(0).get_by_label("Property name")).to_have_value("sku")
    expect(form.locator("[data-row]:visible").nth(1).get_by_label("Property name")).to_have_value("price")
    _shot(page, "history-type-detail.png")

    page.get_by_role("link", name="Event types").first.click()
    row = page.locator("#event-types tbody tr[data-type='cart_abandoned']")
    expect(row.get_by_test_id("properties")).to_have_text(re.compile(r"sku: string\*, price: decimal"))
    expect(page.get_by_test_id("no-custom-types")).to_have_count(0)
    _shot(page, "history-types.png")


def test_a_label_typed_before_the_script_has_run_is_still_followed(page: Page, live_server, adam, acme, sign_in) -> None:
    """The page's scripts are deferred: a person (or a slow page) can type the label before the
    script listens. The name catches up when it starts, and a name typed by hand is never replaced."""
    sign_in(page, "adam@acme.test")
    expect(page.locator("#sidebar")).to_be_visible()
    held: list = []

    def hold(route) -> None:  # the script's request waits until we let it go
        held.append(route)

    page.route("**/js/field-name.js*", hold)
    for typed_name, expected in (("", "cart_abandoned"), ("my_own", "my_own")):
        held.clear()
        page.goto("/history/types/new/", wait_until="commit")
        form = page.get_by_test_id("type-form")
        form.get_by_label("Label").fill("Cart abandoned")
        if typed_name:
            form.get_by_role("textbox", name=re.compile(r"^Name\b")).fill(typed_name)
        for _ in range(250):  # route handlers run while Playwright waits
            if held:
                break
            page.wait_for_timeout(20)
        assert len(held) == 1, "the page never asked for its script"
        assert page.evaluate("document.readyState") == "interactive"  # parsed, deferred script not run
        held[0].continue_()
        page.wait_for_load_state("load")
        expect(form.get_by_role("textbox", name=re.compile(r"^Name\b"))).to_have_value(expected)
    page.unroute("**/js/field-name.js*", hold)


def test_an_admin_sets_how_long_events_are_kept(page: Page, live_server, adam, acme, sign_in) -> None:
    sign_in(page, "adam@acme.test")
    page.locator("#sidebar").get_by_role("link", name="History settings").click()
    expect(page.get_by_test_id("policy")).to_have_text("Keep every event")
    form = page.get_by_test_id("retention-form")
    form.get_by_label("Keep events for").fill("3")
    form.get_by_role("button", name="Save").click()
    expect(page.locator(".invalid-feedback")).to_contain_text("7")
    page.get_by_test_id("retention-form").get_by_label("Keep events for").fill("90")
    page.get_by_test_id("retention-form").get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Events are kept for 90 days")
    expect(page.get_by_test_id("policy")).to_have_text("Keep 90 days")
    expect(page.get_by_test_id("cutoff")).to_contain_text(acme.timezone)
    assert HistorySettings.objects.get(account=acme).retention_days == 90

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Clean up now").click()
    expect(page.get_by_role("status").first).to_contain_text("The cleanup has started")
    # Celery runs eagerly here: the cleanup has ended by the time the page is back.
    expect(page.get_by_test_id("last-cleanup")).to_contain_text("0 events deleted")
    _shot(page, "history-settings.png")


def test_the_form_works_without_javascript(browser, live_server, transactional_db, adam, acme) -> None:
    context = browser.new_context(java_script_enabled=False, base_url=live_server.url, viewport=WIDTH)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto("/login/")
        page.get_by_label("Email").fill("adam@acme.test")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto("/history/types/new/")
        form = page.get_by_test_id("type-form")
        expect(form.get_by_role("button", name="Add a property")).to_be_hidden()
        rows = form.locator("[data-row]:visible")
        expect(rows).to_have_count(3)
        form.get_by_role("textbox", name=re.compile(r"^Name\b")).fill("plan_changed")
        rows.nth(0).get_by_label("Property name").fill("plan")
        rows.nth(0).get_by_label("Type").select_option("enum")
        rows.nth(0).get_by_label("Allowed values (comma-separated)").fill("free, pro")  # shown on every row
        rows.nth(1).get_by_label("Property name").fill("seats")
        rows.nth(1).get_by_label("Type").select_option("integer")
        rows.nth(2).get_by_label("Property name").fill("oops")
        rows.nth(2).get_by_label("Remove", exact=True).check()
        form.get_by_role("button", name="Create event type").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("plan_changed")
        et = EventType.objects.get(account=acme, name="plan_changed")
        assert et.properties == [{"name": "plan", "type": "enum", "required": False, "choices": ["free", "pro"]},
                                 {"name": "seats", "type": "integer", "required": False}]
        # The edit form comes back with the two properties and one blank row for a third.
        expect(page.get_by_test_id("type-form").locator("[data-row]:visible")).to_have_count(3)
    finally:
        context.close()
