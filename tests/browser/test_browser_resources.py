"""Resources and suppression lists in Chromium: an admin creates "Shop news", imports suppressions."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.access import Actor
from profiles.services import database_create, profile_create
from resources.models import Resource
from resources.services import Via, subscription_create

pytestmark = pytest.mark.browser

SYSTEM = Actor.system()
SCREENSHOTS = Path(os.environ.get("CDP_SCREENSHOTS", "test-artifacts"))


@pytest.fixture
def shop(acme):
    return database_create(account=acme, name="Shop customers", actor=SYSTEM)


def test_an_admin_creates_a_resource_and_sees_its_page(page: Page, live_server, adam, shop, sign_in) -> None:
    sign_in(page, "adam@acme.test")
    page.locator("#sidebar").get_by_role("link", name="Resources").click()
    expect(page.locator("#sidebar .nav-link.active")).to_have_text("Resources")
    expect(page.get_by_role("heading", name="No resources yet")).to_be_visible()
    page.get_by_role("link", name="Create a resource").click()

    form = page.get_by_test_id("resource-form")
    form.get_by_label("Name").fill("Shop news")
    form.get_by_label("Database").select_option(label="Shop customers")
    channels = form.locator("#id_channels")
    for label in ("E-mail", "SMS", "Web push", "Mobile push", "Telegram"):
        channels.get_by_label(label, exact=True).check()
    form.get_by_label("Subscription categories").fill("news:News\noffers:Offers\nevents:Events")
    form.locator("#id_double_opt_in").get_by_label("E-mail", exact=True).check()
    form.get_by_role("button", name="Create resource").click()

    expect(page.get_by_role("status")).to_contain_text("Shop news is ready")
    expect(page.get_by_role("heading", level=1)).to_have_text("Shop news")
    counters = page.locator("#counters tbody tr")
    expect(counters).to_have_count(5)
    expect(page.locator("#counters tbody tr[data-channel='telegram'] th")).to_contain_text("Telegram")
    expect(page.get_by_test_id("double-opt-in")).to_have_text("E-mail")
    expect(page.get_by_test_id("categories")).to_contain_text("News")
    expect(page.get_by_test_id("categories")).to_contain_text("Offers")
    expect(page.get_by_test_id("categories")).to_contain_text("Events")
    snippet = page.locator("#embed-snippet")
    expect(snippet).to_contain_text('name="website"')
    expect(snippet).to_contain_text('value="offers"')
    expect(page.get_by_test_id("subscribe-url")).to_have_value(re.compile(r"/p/subscribe/pk_[\w-]+/$"))

    # Subscribers arrive (from imports, the API, the form): the counters show them.
    resource = Resource.objects.get(slug="shop-news")
    for i in range(3):
        profile = profile_create(database=shop, values={"email": f"p{i}@shop.example", "phone": f"+49151123456{i:02}"},
                                 actor=SYSTEM)
        subscription_create(profile=profile, resource=resource, channel="email", address=profile.email, actor=SYSTEM,
                            via=Via(source="test"), confirmed=i > 0)
        subscription_create(profile=profile, resource=resource, channel="sms", address=profile.phone, actor=SYSTEM,
                            via=Via(source="test"), status="unsubscribed" if i == 2 else "subscribed")
    page.reload()
    expect(page.locator("#counters tr[data-channel='email'] [data-status='subscribed']")).to_have_text("2")
    expect(page.locator("#counters tr[data-channel='email'] [data-status='unconfirmed']")).to_have_text("1")
    expect(page.locator("#counters tr[data-channel='sms'] [data-status='unsubscribed']")).to_have_text("1")
    expect(page.get_by_test_id("grand-total")).to_contain_text("6 subscriptions")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "resource-detail.png"), full_page=True)

    # Settings: the preference page may edit the first name; the public pages speak Russian.
    page.get_by_role("link", name="Settings", exact=True).click()
    settings_form = page.get_by_test_id("settings-form")
    settings_form.locator("#id_preference_editable_fields").get_by_label("First name").check()
    settings_form.get_by_label("Language of the public pages").select_option("ru")
    page.screenshot(path=str(SCREENSHOTS / "resource-settings.png"), full_page=True)
    settings_form.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status").last).to_contain_text("Settings saved.")
    expect(page.locator("#settings-summary")).to_contain_text("First name")
    expect(page.locator("#settings-summary")).to_contain_text("Russian")

    # It is on the list, with its channels.
    page.locator("#sidebar").get_by_role("link", name="Resources").click()
    row = page.locator("tr[data-resource='shop-news']")
    expect(row).to_contain_text("Shop customers")
    expect(row.locator("[data-channel]")).to_have_count(5)


def test_an_admin_imports_a_suppression_csv(page: Page, live_server, adam, sign_in) -> None:
    sign_in(page, "adam@acme.test")
    page.locator("#sidebar").get_by_role("link", name="Suppressions").click()
    expect(page.get_by_text("No suppressed addresses")).to_be_visible()
    page.get_by_test_id("import").click()
    page.get_by_label("CSV file").set_input_files(files=[{
        "name": "blocklist.csv", "mimeType": "text/csv",
        "buffer": b"value,kind,reason\nbounced@example.com,,bounce\n@spam.example,domain,\nnot an address,email,\n",
    }])
    page.get_by_role("button", name="Import").click()

    expect(page.locator(".job-progress")).to_have_attribute("data-state", "succeeded")
    expect(page.get_by_test_id("added")).to_have_text("2")
    expect(page.get_by_test_id("invalid")).to_have_text("1")
    expect(page.locator("#import-errors")).to_contain_text("not an address")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "suppression-import.png"), full_page=True)

    page.get_by_role("link", name="Suppression list").click()
    rows = page.locator("#suppressions tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#suppressions")).to_contain_text("bounced@example.com")
    expect(page.locator("#suppressions")).to_contain_text("spam.example")
    expect(page.get_by_test_id("count-email")).to_have_text("1")
    expect(page.get_by_test_id("count-domain")).to_have_text("1")
    page.screenshot(path=str(SCREENSHOTS / "suppression-list.png"), full_page=True)
