"""Account switching, members, invitations, API tokens and the audit export, in a real Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.request
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from accounts.models import ApiToken
from accounts.permissions import Role
from accounts.tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"


def test_it_switches_to_another_account(
    page: Page, live_server, olivia, adam, charlie, globex, sign_in
) -> None:
    MembershipFactory(account=globex, user=olivia, role=Role.ADMIN)
    sign_in(page, "olivia@acme.test")
    switcher = page.get_by_test_id("account-switcher")
    expect(switcher).to_contain_text("Acme")

    switcher.click()
    menu = page.locator(".account-switcher .dropdown-menu")
    expect(menu.get_by_role("button")).to_have_text(["Acme", "Globex"])
    menu.get_by_role("button", name="Globex").click()

    expect(page.get_by_role("status")).to_contain_text("Switched to Globex.")
    expect(switcher).to_contain_text("Globex")
    expect(switcher).to_contain_text("Admin")
    expect(page.get_by_text("Globex · Europe/Berlin")).to_be_visible()

    page.locator("#sidebar").get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Members")
    expect(page.get_by_text("People who can sign in to Globex")).to_be_visible()
    rows = page.locator("#members tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="charlie@globex.test")).to_be_visible()
    expect(rows.filter(has_text="olivia@acme.test")).to_contain_text("(you)")
    expect(page.get_by_text("adam@acme.test")).to_have_count(0)


def test_it_invites_a_member_who_signs_up_through_the_emailed_link(
    page: Page, new_page: Callable[[], Page], live_server, settings, smtp_server, olivia, sign_in
) -> None:
    settings.SITE_URL = live_server.url
    sign_in(page, "olivia@acme.test")
    page.locator("#sidebar").get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Members")

    page.get_by_role("button", name="Invite member").click()
    invite = page.locator("#invite")
    expect(invite).to_be_visible()
    invite.get_by_label("E-mail address").fill("newbie@acme.test")
    invite.get_by_label("Role").select_option("marketer")
    invite.get_by_test_id("send-invite").click()

    expect(page.get_by_role("status")).to_contain_text("Invitation sent to newbie@acme.test.")
    pending = page.locator("#invitations")
    expect(pending).to_contain_text("newbie@acme.test")
    expect(pending).to_contain_text("Marketer")

    [message] = smtp_server.wait_for(1)
    assert message["To"] == "newbie@acme.test"
    assert "invited you to Acme" in message["Subject"]
    body = smtp_server.text_of(message)
    found = re.search(re.escape(live_server.url) + r"/invite/[^/\s]+/", body)
    assert found, body
    link = found.group(0)

    newbie = new_page()  # another person: a context without Olivia's session
    newbie.goto(link)
    expect(newbie.get_by_role("heading", name="Join Acme")).to_be_visible()
    expect(newbie.get_by_text("Olivia Owner invited newbie@acme.test as Marketer")).to_be_visible()
    newbie.get_by_label("Your name").fill("Nina Newbie")
    # By role: get_by_label() counts the label's aria-hidden "*" (required) in its text.
    newbie.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
    newbie.get_by_label("Password again").fill(PASSWORD)
    newbie.get_by_test_id("accept").click()

    expect(newbie).to_have_url(f"{live_server.url}/")
    expect(newbie.get_by_role("status")).to_contain_text("Welcome to Acme, Nina.")
    expect(newbie.get_by_role("heading", level=1)).to_have_text("Good to see you, Nina")
    switcher = newbie.get_by_test_id("account-switcher")
    expect(switcher).to_contain_text("Acme")
    expect(switcher).to_contain_text("Marketer")
    sidebar = newbie.locator("#sidebar")
    expect(sidebar.get_by_role("link", name="Dashboard")).to_be_visible()
    for name in ("Members", "API tokens", "Audit log"):
        expect(sidebar.get_by_role("link", name=name)).to_have_count(0)

    response = newbie.goto("/settings/members/")
    assert response is not None and response.status == 403
    expect(newbie.get_by_role("heading", name="You can't do that here")).to_be_visible()

    # The link is used up.
    response = newbie.goto(link)
    assert response is not None and response.status == 410
    expect(newbie.get_by_role("heading", name="This invitation was already accepted")).to_be_visible()


def test_it_creates_an_api_token_shown_once(page: Page, live_server, olivia, adam, sign_in) -> None:
    sign_in(page, "adam@acme.test")
    page.locator("#sidebar").get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("API tokens")
    expect(page.get_by_text("No API tokens yet")).to_be_visible()

    form = page.locator("form").filter(has=page.get_by_test_id("create-token"))
    form.get_by_label("Name").fill("Shop backend")
    form.get_by_label("Role").select_option("analyst")
    form.get_by_test_id("create-token").click()

    shown = page.get_by_test_id("new-token")
    expect(shown).to_be_visible()
    expect(shown).to_contain_text("Token “Shop backend” created")
    raw = page.locator("#new-token-value").inner_text().strip()
    assert raw

    # S310: an http URL of our own live server, not user input.
    url, headers = f"{live_server.url}/api/v1/account", {"Authorization": f"Bearer {raw}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200
        data = json.load(response)
    assert data["slug"] == "acme"
    assert data["token"] == {"name": "Shop backend", "role": "analyst"}

    page.goto("/settings/api-tokens/")
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    row = page.locator("tbody tr").filter(has_text="Shop backend")
    expect(row).to_contain_text("Analyst")
    expect(row).to_contain_text("Active")
    expect(row).not_to_contain_text("Never")  # it was just used
    expect(row).to_contain_text(raw[: len(ApiToken.PREFIX) + 6] + "…")  # only a hint of it is left
    expect(page.locator("body")).not_to_contain_text(raw)


def test_it_exports_the_audit_log_as_csv(page: Page, live_server, olivia, sign_in) -> None:
    sign_in(page, "olivia@acme.test")
    page.locator("#sidebar").get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    expect(page.locator("#audit tbody tr").filter(has_text="auth.login")).to_have_count(1)

    page.get_by_role("button", name="Export CSV").click()

    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    job_pk = re.search(r"/jobs/(\d+)/$", page.url).group(1)
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log export")
    progress = page.locator(f"#job-{job_pk}")
    expect(progress).to_have_attribute("data-state", "succeeded")
    expect(progress).to_contain_text("Succeeded")
    expect(progress).to_contain_text("events exported")
    download_link = page.get_by_test_id("download")
    expect(download_link).to_be_visible()

    with page.expect_download() as download_info:
        download_link.click()
    download = download_info.value
    assert download.suggested_filename.startswith("audit-acme-")
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    assert "verb" in rows[0]
    verbs = [row[rows[0].index("verb")] for row in rows[1:]]
    assert "auth.login" in verbs


def settled(page: Page) -> None:
    """Wait until htmx has settled the last swap: it binds the new content's triggers in its
    settle step (20 ms after the swap, after the URL is pushed), so typing before that is
    typing into a form nothing listens to yet."""
    expect(page.locator(".htmx-added, .htmx-settling, .htmx-swapping, .htmx-request")).to_have_count(0)


def test_it_filters_members_as_you_type_without_reloading(
    page: Page, live_server, olivia, adam, alice, bob, acme, sign_in, scripts_ready
) -> None:
    for n, name in enumerate(["Dana Data", "Eli Events", "Fay Funnels"]):
        MembershipFactory(
            account=acme, role=Role.ANALYST, user=UserFactory(email=f"extra{n}@acme.test", full_name=name)
        )
    sign_in(page, "olivia@acme.test")
    page.locator("#sidebar").get_by_role("link", name="Members").click()
    rows = page.locator("#members tbody tr")
    expect(rows).to_have_count(7)
    expect(page.get_by_test_id("count")).to_have_text("7 results")

    scripts_ready(page)  # htmx listens to the search box
    page.evaluate("window.__sameDocument = true")  # lost if the browser loads a new document
    search = page.get_by_role("searchbox", name="Search by name or e-mail")
    with page.expect_request(lambda r: "q=alice" in r.url) as sent:
        search.fill("alice")

    assert sent.value.headers.get("hx-request") == "true"
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("alice@acme.test")
    expect(page.get_by_test_id("count")).to_have_text("1 result")
    expect(page).to_have_url(re.compile(r"/settings/members/\?(.+&)?q=alice(&|$)"))

    settled(page)
    search.fill("acme.test nobody")  # every word must match
    expect(page.locator("#members")).to_contain_text("No members match")
    expect(rows).to_have_count(0)

    settled(page)
    search.fill("")
    expect(rows).to_have_count(7)
    settled(page)
    page.get_by_role("combobox", name="All roles").select_option("analyst")
    expect(rows).to_have_count(4)
    expect(page).to_have_url(re.compile(r"[?&]role=analyst"))
    assert page.evaluate("window.__sameDocument") is True
