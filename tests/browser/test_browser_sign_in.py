"""Signing in and out, lockout, and what a role without settings access sees, in a real Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
SETTINGS_LINKS = ("Account", "Members", "API tokens", "Audit log")


def test_it_signs_in_shows_the_dashboard_and_signs_out(page: Page, live_server, olivia, sign_in) -> None:
    sign_in(page, "olivia@acme.test")

    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Good to see you, Olivia")
    expect(page.get_by_text("Acme · Europe/Berlin")).to_be_visible()
    cards = page.locator(".stat-card")
    expect(cards).to_have_count(4)
    expect(cards).to_contain_text(
        ["Members", "Pending invitations", "Active API tokens", "Actions, last 14 days"]
    )
    expect(cards.filter(has_text="Members")).to_contain_text("1")
    switcher = page.get_by_test_id("account-switcher")
    expect(switcher).to_contain_text("Acme")
    expect(switcher).to_contain_text("Owner")
    sidebar = page.locator("#sidebar")
    for name in SETTINGS_LINKS:
        expect(sidebar.get_by_role("link", name=name)).to_be_visible()

    page.get_by_role("button", name=re.compile("Olivia Owner")).click()
    page.get_by_role("button", name="Sign out").click()

    expect(page).to_have_url(f"{live_server.url}/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("You are signed out.")
    # Signed out for real: the dashboard sends her back to the login form.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))


def test_it_rejects_a_wrong_password_then_locks_the_address(page: Page, live_server, olivia, sign_in) -> None:
    sign_in(page, "olivia@acme.test", "not her password")

    alert = page.get_by_role("alert")
    expect(alert).to_have_text("That e-mail and password do not match an active user.")
    expect(page).to_have_url(f"{live_server.url}/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_value("olivia@acme.test")

    for attempt in range(2, 6):
        sign_in(page, "olivia@acme.test", f"wrong guess {attempt}")
        expect(alert).to_have_text("That e-mail and password do not match an active user.")

    # The sixth attempt is refused even with the right password.
    sign_in(page, "olivia@acme.test", PASSWORD)
    expect(alert).to_contain_text("Too many failed sign-in attempts")
    expect(page).to_have_url(f"{live_server.url}/login/")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))


def test_it_hides_settings_from_an_analyst(page: Page, live_server, olivia, bob, sign_in) -> None:
    sign_in(page, "bob@acme.test")

    expect(page.get_by_role("heading", level=1)).to_have_text("Good to see you, Bob")
    expect(page.get_by_test_id("account-switcher")).to_contain_text("Analyst")
    sidebar = page.locator("#sidebar")
    expect(sidebar.get_by_role("link", name="Dashboard")).to_be_visible()
    expect(sidebar.get_by_text("Settings", exact=True)).to_have_count(0)
    for name in SETTINGS_LINKS:
        # Not exact: an icon's glyph is part of a link's accessible name.
        expect(sidebar.get_by_role("link", name=name)).to_have_count(0)
    expect(page.get_by_role("link", name="Invite member")).to_have_count(0)

    response = page.goto("/settings/api-tokens/")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="You can't do that here")).to_be_visible()
    expect(page.get_by_text("Your role does not allow this")).to_be_visible()
