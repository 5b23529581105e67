"""Links and forms work with JavaScript off: htmx and Bootstrap only enhance."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import Membership
from accounts.permissions import Role
from conftest import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def nojs_page(browser, live_server, transactional_db):
    context = browser.new_context(java_script_enabled=False, base_url=live_server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_it_signs_in_switches_account_searches_and_signs_out_without_javascript(nojs_page, olivia, adam, globex):
    Membership.objects.create(account=globex, user=olivia, role=Role.ADMIN)
    page = nojs_page
    page.goto("/login/")
    page.get_by_label("Email").fill("olivia@acme.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("account-switcher")).to_contain_text("Acme")

    # The table's search is a plain GET form (Enter submits it).
    page.goto("/settings/members/")
    search = page.get_by_role("searchbox")
    search.fill("adam")
    search.press("Enter")
    assert "q=adam" in page.url
    expect(page.locator("[data-member]")).to_have_count(1)

    # The invite form opens through its anchor.
    page.get_by_role("button", name="Invite member").click()
    expect(page.locator("#invite")).to_be_visible()

    # Menus are <details>: they open on click with no script.
    page.get_by_test_id("account-switcher").click()
    page.locator(".account-switcher").get_by_role("button", name="Globex").click()
    expect(page.get_by_test_id("account-switcher")).to_contain_text("Globex")

    page.get_by_role("button", name="Olivia Owner").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
