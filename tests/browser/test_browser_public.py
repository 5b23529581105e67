"""The subscriber's public pages in Chromium: unsubscribe from a message's link, RFC 8058 one-click
from a plain HTTP client, and the preference page (pause, categories), at phone width too."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.access import Actor
from profiles.services import database_create, field_add, profile_create
from resources import tokens
from resources.models import ConsentRecord, Status, Subscription
from resources.services import Via, resource_create, subscription_create

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
SYSTEM = Actor.system()


@pytest.fixture
def anna_email(acme) -> Subscription:
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", actor=SYSTEM)
    news = resource_create(account=acme, database=db, actor=SYSTEM, values={
        "name": "Shop news", "channels": ["email", "sms"], "categories": ["news:News", "offers:Offers", "events:Events"],
        "double_opt_in": ["email"], "preference_editable_fields": ["first_name", "city"],
    })
    anna = profile_create(database=db, values={"email": "anna@shop.example.com", "phone": "+4915112345678", "first_name": "Anna"},
                          actor=SYSTEM)
    subscription_create(profile=anna, resource=news, channel="sms", address=anna.phone, actor=SYSTEM, via=Via("test"))
    return subscription_create(profile=anna, resource=news, channel="email", address=anna.email, actor=SYSTEM,
                               via=Via("test"), confirmed=True)


def _shot(page: Page, name: str) -> None:
    out = Path(__file__).resolve().parents[2] / "test-artifacts"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / f"public-{name}.png"), full_page=True)


def test_a_subscriber_unsubscribes_from_the_link_in_a_message(new_page, anna_email) -> None:
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(tokens.unsubscribe_url(anna_email).removeprefix(tokens.settings.SITE_URL))
    expect(page.get_by_test_id("resource-name")).to_have_text("Shop news")
    expect(page.get_by_role("heading", name="Unsubscribe anna@shop.example.com from Shop news?")).to_be_visible()
    _shot(page, "unsubscribe")
    assert Subscription.objects.get(pk=anna_email.pk).status == Status.SUBSCRIBED  # opening the page changed nothing

    page.get_by_role("button", name="Yes, unsubscribe").click()
    expect(page.get_by_test_id("unsubscribed")).to_have_text("You are unsubscribed")
    _shot(page, "unsubscribed")
    assert Subscription.objects.get(pk=anna_email.pk).status == Status.UNSUBSCRIBED
    assert ConsentRecord.objects.get(subscription=anna_email, source="link").actor_type == "subscriber"

    # Changed their mind: back through double opt-in, on the preference page.
    page.get_by_role("button", name="Unsubscribed by mistake? Subscribe again").click()
    expect(page.get_by_test_id("notice")).to_contain_text("please confirm your subscription")
    assert Subscription.objects.get(pk=anna_email.pk).status == Status.UNCONFIRMED


def test_a_mail_client_unsubscribes_with_one_click_and_no_cookies(live_server, anna_email) -> None:
    url = live_server.url + tokens.one_click_url(anna_email).removeprefix(tokens.settings.SITE_URL)
    for _ in range(2):
        request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST",  # noqa: S310
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 200
            assert response.headers.get("Set-Cookie") is None
    assert Subscription.objects.get(pk=anna_email.pk).status == Status.UNSUBSCRIBED
    assert ConsentRecord.objects.filter(subscription=anna_email, source="one-click").count() == 1


def test_a_subscriber_pauses_and_chooses_topics(new_page, anna_email) -> None:
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(tokens.preferences_url(anna_email).removeprefix(tokens.settings.SITE_URL))
    expect(page.get_by_role("heading", name="Your subscription preferences")).to_be_visible()
    card = page.locator(f"#sub-{anna_email.pk}")
    expect(card.get_by_test_id("status")).to_have_text("Subscribed")
    _shot(page, "preferences")

    card.get_by_label("Offers").uncheck()
    card.get_by_role("button", name="Save topics").click()
    expect(page.get_by_test_id("notice")).to_have_text("Your topics are saved.")
    expect(page.locator(f"#sub-{anna_email.pk}").get_by_label("Offers")).not_to_be_checked()
    assert Subscription.objects.get(pk=anna_email.pk).opted_out == ["offers"]

    card = page.locator(f"#sub-{anna_email.pk}")
    card.get_by_label("Pause for").select_option("30")
    card.get_by_role("button", name="Pause", exact=True).click()
    expect(page.get_by_test_id("notice")).to_have_text("Your subscription is paused.")
    expect(page.locator(f"#sub-{anna_email.pk}").get_by_test_id("status")).to_have_text("Paused")
    sub = Subscription.objects.get(pk=anna_email.pk)
    assert sub.status == Status.SUSPENDED and sub.suspended_until is not None
    _shot(page, "preferences-paused")

    page.get_by_label("City").fill("Berlin")
    page.get_by_role("button", name="Save my details").click()
    expect(page.get_by_test_id("notice")).to_have_text("Your details are saved.")
    assert sub.profile.__class__.objects.get(pk=sub.profile_id).data["city"] == "Berlin"


def test_the_preference_page_speaks_russian_to_a_russian_browser(new_page, anna_email) -> None:
    page = new_page()
    page.set_viewport_size(PHONE)
    page.set_extra_http_headers({"Accept-Language": "ru-RU,ru;q=0.9"})
    page.goto(tokens.preferences_url(anna_email).removeprefix(tokens.settings.SITE_URL))
    expect(page.get_by_role("heading", name="Настройки подписки")).to_be_visible()
    expect(page.locator(f"#sub-{anna_email.pk}").get_by_test_id("status")).to_have_text("Активна")
    _shot(page, "preferences-ru")
