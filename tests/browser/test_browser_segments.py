"""Segments in Chromium: a marketer builds "city is Berlin AND loyalty points > 5000 AND opened an
e-mail in the last 30 days" in the builder, watches the live count follow each condition, saves
it, recalculates it (a Job with a progress bar), and reads the size chart and the members; then
asks why a profile is not in it, and finds the segment on a profile's card."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone as tz
from playwright.sync_api import Page, expect

from accounts.access import Actor
from history.services import EventIn, events_ingest
from profiles.services import database_create, field_add, profile_create
from segments.models import Segment, SegmentRun
from segments.views import card

pytestmark = pytest.mark.browser


def settled(page: Page) -> None:
    """htmx has finished its last swap (see test_browser_settings.settled)."""
    expect(page.locator(".htmx-added, .htmx-settling, .htmx-swapping, .htmx-request")).to_have_count(0)


def _screenshot(page: Page, name: str, *, full: bool = False) -> None:
    shots = os.environ.get("CDP_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name), full_page=full)


def _world(acme):
    system = Actor.system()
    db = database_create(account=acme, name="Shop customers", actor=system)
    field_add(database=db, name="city", label="City", type="string", actor=system)
    field_add(database=db, name="loyalty_points", label="Loyalty points", type="integer", actor=system)
    people = {}
    for first, city, points in [("Anna", "Berlin", 6200), ("Bruno", "Berlin", 7400), ("Chloe", "Berlin", 300),
                                ("Dmitri", "Paris", 9100), ("Emma", "Berlin", 5600), ("Farid", "Hamburg", 12000)]:
        people[first] = profile_create(database=db, actor=system, values={
            "email": f"{first.lower()}@shop.example", "first_name": first, "last_name": "Example",
            "city": city, "loyalty_points": points})
    now = tz.now()
    events_ingest(account=acme, source="test", events=[
        EventIn("message.opened", people["Anna"].pk, now - timedelta(days=2), channel="email"),
        EventIn("message.opened", people["Bruno"].pk, now - timedelta(days=45), channel="email"),
        EventIn("message.opened", people["Emma"].pk, now - timedelta(days=9), channel="email"),
        EventIn("message.opened", people["Dmitri"].pk, now - timedelta(days=1), channel="email"),
    ])
    return db, people


def _count(page: Page):
    return page.get_by_test_id("live-count")


def test_a_marketer_builds_counts_saves_and_recalculates_a_segment(page: Page, live_server, acme, alice, sign_in) -> None:
    card.register()
    db, people = _world(acme)
    sign_in(page, "alice@acme.test")

    page.goto("/segments/")
    expect(page.get_by_text("No segments in Shop customers yet")).to_be_visible()
    _screenshot(page, "segments-list-empty.png")
    page.get_by_test_id("new-segment").click()
    expect(page).to_have_url(re.compile(r"/segments/new/\?db="))
    settled(page)
    # No conditions: everyone.
    expect(_count(page)).to_have_text("6")
    page.get_by_label("Name").fill("Active Berlin VIPs")
    page.evaluate("window.__sameDocument = true")

    builder = page.get_by_test_id("builder")
    rows = builder.get_by_test_id("condition")

    # City is Berlin.
    page.get_by_test_id("add-condition").first.click()
    page.get_by_test_id("add-field").first.click()
    expect(rows).to_have_count(1)
    settled(page)
    rows.nth(0).get_by_test_id("field").select_option("city")
    expect(rows.nth(0).get_by_test_id("operator")).to_have_value("eq")
    settled(page)
    rows.nth(0).get_by_test_id("value").fill("Berlin")
    expect(_count(page)).to_have_text("4")

    # AND loyalty points > 5000.
    page.get_by_test_id("add-condition").first.click()
    page.get_by_test_id("add-field").first.click()
    expect(rows).to_have_count(2)
    settled(page)
    rows.nth(1).get_by_test_id("field").select_option("loyalty_points")
    expect(rows.nth(1).get_by_test_id("value")).to_have_attribute("type", "number")
    settled(page)
    rows.nth(1).get_by_test_id("operator").select_option("gt")
    settled(page)
    rows.nth(1).get_by_test_id("value").fill("5000")
    expect(_count(page)).to_have_text("3")

    # AND opened an e-mail in the last 30 days.
    page.get_by_test_id("add-condition").first.click()
    page.get_by_test_id("add-event").first.click()
    expect(rows).to_have_count(3)
    settled(page)
    rows.nth(2).get_by_test_id("event").select_option("message.opened")
    expect(rows.nth(2).get_by_test_id("last-days")).to_have_value("30")
    settled(page)
    rows.nth(2).get_by_test_id("event-filters").click()
    rows.nth(2).get_by_test_id("event-channel").select_option("email")
    expect(_count(page)).to_have_text("2")
    sample = page.get_by_test_id("count-sample")
    expect(sample).to_contain_text("Anna")
    expect(sample).to_contain_text("Emma")
    expect(sample).not_to_contain_text("Bruno")
    expect(page.get_by_test_id("count-ms")).to_contain_text("ms")

    # An unfinished condition is left out of the count (and says so); a wrong value is an error
    # shown at its condition. Fixing them brings the count back.
    rows.nth(1).get_by_test_id("value").fill("")
    expect(page.locator("#node-1-errors")).to_contain_text("Enter a value")
    expect(page.get_by_test_id("count-unfinished")).to_contain_text("1 condition not finished")
    rows.nth(1).get_by_test_id("value").fill("5000")
    expect(page.get_by_test_id("count-unfinished")).to_have_count(0)
    rows.nth(2).get_by_test_id("last-days").fill("100000")
    expect(page.locator("#node-2-errors")).to_contain_text("between 1 and 36,500 days")
    expect(page.get_by_test_id("count-errors")).to_be_visible()
    rows.nth(2).get_by_test_id("last-days").fill("30")
    expect(_count(page)).to_have_text("2")
    expect(page.locator("#node-2-errors")).to_be_empty()
    settled(page)
    assert page.evaluate("window.__sameDocument") is True
    _screenshot(page, "segments-builder.png", full=True)

    page.get_by_test_id("save").click()
    segment = Segment.objects.get(name="Active Berlin VIPs")
    expect(page).to_have_url(re.compile(rf"/segments/{segment.pk}/$"))
    expect(page.get_by_test_id("conditions")).to_contain_text("City is Berlin")
    expect(page.get_by_test_id("conditions")).to_contain_text("Loyalty points is more than 5000")
    expect(page.get_by_test_id("conditions")).to_contain_text("Message opened at least once in the last 30 days")
    # Saving counted it once (the first calculation).
    expect(page.get_by_test_id("size")).to_have_text("2")

    # Recalculate: a Job with a progress bar; the page reloads with the new point on the chart.
    expect(page.get_by_test_id("runs").locator("tbody tr")).to_have_count(1)
    page.get_by_test_id("recalculate").click()
    expect(page.get_by_test_id("runs").locator("tbody tr")).to_have_count(2)
    expect(page.get_by_test_id("size-chart")).to_be_visible()
    expect(page.locator("[data-segment-job]")).to_have_count(0)
    assert SegmentRun.objects.filter(segment=segment, finished_at__isnull=False).count() == 2
    members = page.locator("#members")
    expect(members.locator("tbody tr")).to_have_count(2)
    expect(members).to_contain_text("anna@shop.example")
    expect(members).to_contain_text("emma@shop.example")
    settled(page)
    page.wait_for_function("() => { const c = document.getElementById('segment-size-chart'); return c && c.width > 0; }")
    _screenshot(page, "segments-detail.png", full=True)

    # Why is Bruno not in it? He opened an e-mail 45 days ago.
    page.get_by_label("Profile").fill("bruno@shop.example")
    page.get_by_role("button", name="Explain").click()
    expect(page.get_by_test_id("verdict")).to_have_text("Does not match")
    nodes = page.get_by_test_id("explain-node")
    expect(nodes.nth(3)).to_have_attribute("data-matched", "false")
    expect(nodes.nth(3)).to_contain_text("0 matching events")
    _screenshot(page, "segments-explain.png", full=True)

    # Anna's card lists the segment, with a link to why.
    page.goto(f"/databases/{db.slug}/profiles/{people['Anna'].pk}/?tab=segments")
    tab = page.get_by_test_id("segments-tab")
    expect(tab).to_contain_text("Active Berlin VIPs")
    _screenshot(page, "segments-card.png")
    tab.get_by_test_id("why").click()
    expect(page.get_by_test_id("verdict")).to_have_text("Matches the conditions")

    # The list now shows it, with its size and when it was computed.
    page.goto("/segments/")
    row = page.locator(f'tr[data-segment="{segment.pk}"]')
    expect(row.get_by_test_id("size")).to_have_text("2")
    expect(row.get_by_test_id("kind")).to_have_text("Dynamic")
    _screenshot(page, "segments-list.png")


def test_without_javascript_the_builder_still_builds_and_saves(browser, live_server, transactional_db, acme, alice) -> None:
    """The add menu is a <details>, its items and "Update the choices" are submit buttons: the
    server re-renders the page each time, and saving works as a plain form post."""
    db, _ = _world(acme)
    context = browser.new_context(java_script_enabled=False, base_url=live_server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto("/login/")
        page.get_by_label("Email").fill("alice@acme.test")
        page.get_by_label("Password").fill("correct horse battery staple")
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"/segments/new/?db={db.slug}")
        page.get_by_label("Name").fill("Berliners")
        page.get_by_test_id("add-condition").first.click()
        page.get_by_test_id("add-field").first.click()
        row = page.get_by_test_id("condition").first
        row.get_by_test_id("field").select_option("city")
        page.get_by_role("button", name="Update the choices").click()
        row = page.get_by_test_id("condition").first
        expect(row.get_by_test_id("operator")).to_have_value("eq")
        row.get_by_test_id("value").fill("Berlin")
        page.get_by_role("button", name="Count").click()
        expect(page.get_by_test_id("live-count")).to_have_text("4")
        expect(page.get_by_label("Name")).to_have_value("Berliners")
        page.get_by_test_id("save").click()
        segment = Segment.objects.get(name="Berliners")
        expect(page).to_have_url(re.compile(rf"/segments/{segment.pk}/$"))
        assert segment.conditions["items"] == [{"type": "field", "field": "city", "operator": "eq", "value": "Berlin"}]
    finally:
        context.close()
