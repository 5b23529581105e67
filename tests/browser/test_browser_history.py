"""The action history in Chromium: a marketer reads a profile's events on the card, filters them
by type without a reload, scrolls to load older ones, then searches the account's events by a
property in the explorer and opens one to read its JSON."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone as tz
from playwright.sync_api import Page, expect

from accounts.access import Actor
from history.catalogue import type_id
from history.models import Event
from history.services import EventIn, events_ingest, eventtype_create
from history.tracking import links_ensure
from profiles.services import database_create, profile_create

pytestmark = pytest.mark.browser


def settled(page: Page) -> None:
    """htmx has finished its last swap (see test_browser_settings.settled)."""
    expect(page.locator(".htmx-added, .htmx-settling, .htmx-swapping, .htmx-request")).to_have_count(0)


def _screenshot(page: Page, name: str) -> None:
    shots = os.environ.get("CDP_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name))  # the viewport: 1280 x 900


def test_a_marketer_reads_filters_and_scrolls_a_profiles_events_then_searches_the_explorer(
    page: Page, live_server, acme, alice, sign_in
) -> None:
    system = Actor.system()
    db = database_create(account=acme, name="Shop customers", actor=system)
    anna = profile_create(database=db, values={"email": "anna@shop.example.com", "first_name": "Anna"}, actor=system)
    cart = eventtype_create(account=acme, name="cart_abandoned", label="Cart abandoned", actor=system,
                            properties=[{"name": "sku", "type": "string"}, {"name": "price", "type": "decimal"}])
    start = tz.now() - timedelta(days=20)
    # 130 abandoned carts and 60 page views, older than what the integration sends below.
    Event.objects.bulk_create([
        Event(account_id=acme.pk, database_id=db.pk, profile_id=anna.pk, occurred_at=start + timedelta(minutes=i),
              type_id=cart.pk if i % 19 < 13 else type_id("page.viewed"),
              properties={"sku": f"S-{i}", "price": 10 + i} if i % 19 < 13 else {"url": f"/p/{i}"})
        for i in range(190)
    ])
    [link] = links_ensure(account_id=acme.pk, urls=["https://shop.example.com/winter-sale"]).values()
    now = tz.now()
    events_ingest(account=acme, events=[
        EventIn("message.sent", anna.pk, now - timedelta(hours=3), {"subject": "Winter sale"}, channel="email", mailing_id=12),
        EventIn("message.opened", anna.pk, now - timedelta(hours=2, minutes=59), {"machine_reason": "mail privacy proxy"},
                channel="email", mailing_id=12, machine=True),
        EventIn("message.clicked", anna.pk, now - timedelta(hours=2), channel="email", mailing_id=12, link_id=link),
        EventIn("cart_abandoned", anna.pk, now - timedelta(minutes=30), {"sku": "A-7", "price": "49.90"}, key="cart-a7",
                channel="web", source="js"),
        EventIn("order.placed", anna.pk, now - timedelta(minutes=5),
                {"order_id": "O-1001", "total": "49.90", "currency": "EUR", "items": [{"sku": "A-7", "qty": 1}]},
                key="order-1001", source="api"),
    ], source="api")

    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, "alice@acme.test")
    page.goto(f"/databases/{db.slug}/profiles/{anna.pk}/")
    page.get_by_role("tab", name="Events").click()
    tab = page.get_by_test_id("events-tab")
    rows = tab.get_by_test_id("event-row")
    expect(rows).to_have_count(50)
    expect(rows.first.get_by_test_id("event-label")).to_have_text("Order placed")
    expect(tab.get_by_test_id("machine")).to_have_attribute("title", "mail privacy proxy")
    expect(tab.get_by_test_id("mailing").first).to_have_text("Mailing #12")
    expect(tab.get_by_test_id("link")).to_contain_text("https://shop.example.com/winter-sale")
    rows.first.get_by_test_id("event-properties").click()
    expect(rows.first.get_by_test_id("event-json")).to_contain_text('"order_id": "O-1001"')
    settled(page)
    _screenshot(page, "history-timeline.png")
    rows.first.get_by_test_id("event-properties").click()
    page.evaluate("window.__sameDocument = true")

    # Filter by type: the rows change, the URL follows, the page stays.
    page.get_by_test_id("type-filter").click()
    page.get_by_label("Cart abandoned").check()
    expect(page.locator("#timeline-type-summary")).to_have_text("Cart abandoned")
    expect(page).to_have_url(re.compile(r"[?&]type=cart_abandoned"))
    page.keyboard.press("Escape")
    expect(rows).to_have_count(50)
    expect(tab.locator('[data-testid="event-row"]:not([data-type="cart_abandoned"])')).to_have_count(0)

    # Scroll: older rows come in 50 at a time until the beginning of the history.
    for expected in (100, 131):
        settled(page)
        rows.last.scroll_into_view_if_needed()
        expect(rows).to_have_count(expected)
    expect(tab.get_by_test_id("events-end")).to_be_visible()
    ids = [int(x) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.event)")]
    assert len(set(ids)) == 131
    assert page.evaluate("window.__sameDocument") is True

    # The explorer: search by a property, open the row.
    page.goto("/history/")
    rows = page.get_by_test_id("explorer-results").get_by_test_id("event-row")
    expect(rows).to_have_count(50)
    page.get_by_test_id("explorer-prop").fill("sku=A-7")
    page.get_by_test_id("explorer-prop").press("Enter")
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"prop=sku%3DA-7"))
    expect(page.get_by_test_id("explorer-note")).to_contain_text("last 24 hours")
    row = rows.first
    expect(row.get_by_test_id("event-label")).to_have_text("Cart abandoned")
    expect(row.get_by_test_id("event-profile")).to_have_text("Anna")
    row.get_by_test_id("event-properties").click()
    expect(row.get_by_test_id("idempotency-key")).to_have_text("cart-a7")
    expect(row.get_by_test_id("event-json")).to_contain_text('"price": 49.9')
    settled(page)
    _screenshot(page, "history-explorer.png")

    # Each row leads to the profile's Events tab.
    row.get_by_test_id("event-profile").click()
    expect(page.get_by_test_id("events-tab")).to_be_visible()
    expect(page.get_by_role("tab", name="Events")).to_have_attribute("aria-selected", "true")


def test_the_explorer_shows_new_events_live(page: Page, live_server, acme, alice, sign_in) -> None:
    system = Actor.system()
    db = database_create(account=acme, name="Shop customers", actor=system)
    ben = profile_create(database=db, values={"email": "ben@shop.example.com", "first_name": "Ben"}, actor=system)
    events_ingest(account=acme, events=[EventIn("page.viewed", ben.pk, None, {"url": "/first"})])
    sign_in(page, "alice@acme.test")
    page.goto("/history/")
    rows = page.get_by_test_id("explorer-results").get_by_test_id("event-row")
    expect(rows).to_have_count(1)
    page.get_by_test_id("explorer-live").check()
    expect(page.get_by_test_id("explorer-live-status")).to_contain_text("Live")
    expect(page).to_have_url(re.compile(r"live=1"))
    events_ingest(account=acme, events=[EventIn("order.placed", ben.pk, None, {"order_id": "O-7"})])
    expect(rows).to_have_count(2, timeout=8_000)
    expect(rows.first.get_by_test_id("event-label")).to_have_text("Order placed")
    events_ingest(account=acme, events=[EventIn("promo.issued", ben.pk, None, {"code": "WELCOME"})])
    expect(rows).to_have_count(3, timeout=8_000)
    expect(rows.first.get_by_test_id("event-label")).to_have_text("Promo code issued")
