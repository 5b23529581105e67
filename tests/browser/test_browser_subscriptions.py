"""Subscribing from the profile card in Chromium: a marketer adds an e-mail subscription on a
double opt-in channel, sees it wait for confirmation, unsubscribes it and reads the ledger."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.access import Actor
from profiles.services import database_create, profile_create
from resources.models import ConsentRecord, Subscription
from resources.services import resource_create

pytestmark = pytest.mark.browser


def test_a_marketer_subscribes_a_profile_from_the_card(page: Page, live_server, acme, alice, sign_in) -> None:
    system = Actor.system()
    db = database_create(account=acme, name="Shop customers", actor=system)
    resource_create(account=acme, database=db, actor=system, values={
        "name": "Shop news", "channels": ["email", "sms"], "categories": ["news:News", "offers:Offers"],
        "double_opt_in": ["email"],
    })
    anna = profile_create(database=db, values={"email": "anna@shop.example.com", "first_name": "Anna"}, actor=system)

    sign_in(page, "alice@acme.test")
    page.goto(f"/databases/{db.slug}/profiles/{anna.pk}/")
    page.get_by_role("tab", name="Subscriptions").click()
    tab = page.get_by_test_id("subscriptions-tab")
    expect(tab.get_by_test_id("no-subscriptions")).to_be_visible()

    # The form is open while there are no subscriptions, prefilled with the profile's e-mail.
    form = page.get_by_test_id("subscription-add-form")
    expect(form.get_by_label("Resource")).to_have_value(str(anna.database.resources.get().pk))
    expect(form.get_by_label("Address")).to_have_value("anna@shop.example.com")
    form.get_by_label("Offers").check()
    form.get_by_test_id("subscription-add").click()

    expect(page.locator(".toast")).to_contain_text("awaiting the person's confirmation")
    status = page.get_by_test_id("subscription-status")
    expect(status).to_have_text("Awaiting confirmation")
    expect(page.get_by_test_id("opted-out")).to_contain_text("Offers")
    expect(page.get_by_test_id("copy-confirmation")).to_be_visible()

    page.get_by_test_id("manage").locator("summary").click()
    page.get_by_label("Change status").select_option("unsubscribed")
    page.get_by_role("button", name="Change", exact=True).click()

    expect(status).to_have_text("Unsubscribed")
    ledger = page.get_by_test_id("consent-ledger")
    expect(ledger.locator("tbody tr")).to_have_count(2)
    expect(ledger.locator("tbody tr").first).to_contain_text("unconfirmed")
    expect(ledger.locator("tbody tr").first).to_contain_text("unsubscribed")
    expect(ledger.locator("tbody tr").first).to_contain_text("alice@acme.test")
    sub = Subscription.objects.get(profile=anna)
    assert sub.status == "unsubscribed" and sub.opted_out == ["offers"]
    assert list(ConsentRecord.objects.filter(profile=anna).order_by("id").values_list("new_status", flat=True)) == [
        "unconfirmed", "unsubscribed"]

    shots = os.environ.get("CDP_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.get_by_test_id("manage").locator("summary").click()
        page.screenshot(path=str(Path(shots) / "subscriptions-tab.png"), full_page=True)
