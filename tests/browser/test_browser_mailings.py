"""Mailings in Chromium: a marketer creates a broadcast through the wizard (kind and name; channel
and resource; the whole database, with the live audience preview saying who is left out and why;
the template with its sandboxed preview; "now"; the default policy), reviews and launches it,
watches the progress bar reach done (Celery runs eagerly in the live server's thread), then opens
the report and the recipient log and asks why one person did not get it.

Screenshots of each page go to $CDP_SCREENSHOTS when it is set."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from mailings.models import Mailing, Run
from mailings.services.stats import stats_add
from mailings.tests.factories import make_world
from resources.models import Subscription

pytestmark = pytest.mark.browser


def settled(page: Page) -> None:
    """htmx has finished its last swap."""
    expect(page.locator(".htmx-added, .htmx-settling, .htmx-swapping, .htmx-request")).to_have_count(0)


def _screenshot(page: Page, name: str, *, full: bool = True) -> None:
    shots = os.environ.get("CDP_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name), full_page=full)


def _finish_runs() -> None:
    """What the 5-second tick does in production: finish drained runs (the mailing's state follows)."""
    from mailings.services.dispatch import dispatch_tick

    dispatch_tick()


def test_a_marketer_creates_launches_and_reads_a_broadcast(page: Page, live_server, acme, alice, sign_in,
                                                           scripts_ready) -> None:
    world = make_world(acme, user=alice, n=12)
    # One unsubscribed and one with a suspended subscription: the preview names both reasons.
    subs = list(Subscription.objects.filter(resource=world.resource, channel="email").order_by("id"))
    Subscription.objects.filter(pk=subs[0].pk).update(status="unsubscribed")
    Subscription.objects.filter(pk=subs[1].pk).update(status="bounced")
    sign_in(page, "alice@acme.test")

    page.goto("/mailings/")
    expect(page.get_by_text("No mailings yet")).to_be_visible()
    _screenshot(page, "mailings-list-empty.png", full=False)
    page.get_by_test_id("new-mailing").click()

    # 1. Kind and name; a missing name is said next to the field.
    page.get_by_test_id("next").click()
    settled(page)
    expect(page.locator(".invalid-feedback").first).to_have_text("This field is required.")
    page.get_by_label("Name").fill("June newsletter")
    page.get_by_label("Broadcast").check()
    _screenshot(page, "wizard-1-basics.png")
    page.get_by_test_id("next").click()
    settled(page)

    # 2. Channel and resource (the first save).
    page.get_by_label("Resource").select_option(label="Shop news")
    page.get_by_label("Sender").select_option(index=1)
    _screenshot(page, "wizard-2-channel.png")
    page.get_by_test_id("next").click()
    settled(page)
    mailing = Mailing.objects.get(name="June newsletter")
    expect(page).to_have_url(re.compile(rf"/mailings/{mailing.pk}/edit/audience/$"))

    # 3. Audience: the preview counts the whole database, excluded by reason.
    preview = page.get_by_test_id("audience-preview")
    expect(preview.get_by_test_id("sendable")).to_have_text("10")
    expect(preview.get_by_test_id("excluded")).to_contain_text("Unsubscribed")
    expect(preview.get_by_test_id("excluded")).to_contain_text("Address bounced")
    # Ticking a category counts again, live.
    page.get_by_label("News").check()
    settled(page)
    expect(preview.get_by_test_id("sendable")).to_have_text("10")
    _screenshot(page, "wizard-3-audience.png")
    page.get_by_test_id("next").click()
    settled(page)

    # 4. Content: the template and its sandboxed preview.
    page.get_by_label("Template").select_option(label="Spring sale")
    frame = page.get_by_test_id("preview-frame")
    expect(frame).to_have_attribute("sandbox", "")
    expect(page.frame_locator("[data-testid=preview-frame]").get_by_text("See the sale")).to_be_visible()
    page.get_by_test_id("next").click()
    settled(page)

    # Back on the content step (saved), a test send goes to two addresses.
    page.get_by_test_id("step-content").click()
    settled(page)
    page.get_by_label("Addresses").fill("me@shop.example, boss@shop.example")
    page.get_by_test_id("test-send").click()
    expect(page.get_by_test_id("test-results")).to_contain_text("me@shop.example")
    expect(page.frame_locator("[data-testid=preview-frame]").get_by_text("See the sale")).to_be_visible()
    _screenshot(page, "wizard-4-content.png")
    page.get_by_test_id("step-when").click()
    settled(page)

    # 5. When: now. 6. Policy: as it is.
    expect(page.get_by_label("Now, at launch")).to_be_checked()
    _screenshot(page, "wizard-5-when.png")
    page.get_by_test_id("next").click()
    settled(page)
    _screenshot(page, "wizard-6-policy.png")
    page.get_by_test_id("next").click()
    settled(page)

    # 7. Review and launch.
    expect(page).to_have_url(re.compile(rf"/mailings/{mailing.pk}/edit/review/$"))
    expect(page.get_by_test_id("summary")).to_contain_text("Every subscriber of Shop news")
    expect(page.get_by_test_id("problems")).to_have_count(0)
    _screenshot(page, "wizard-7-review.png")
    page.get_by_test_id("launch").click()

    # The mailing's page: the progress reaches done (the tick finishes the drained run).
    expect(page).to_have_url(re.compile(rf"/mailings/{mailing.pk}/$"))
    expect(page.get_by_test_id("progress")).to_be_visible()
    _finish_runs()
    expect(page.get_by_test_id("done")).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id("progress").get_by_test_id("sent")).to_have_text("10")
    expect(page.get_by_test_id("progress").get_by_test_id("skipped")).to_have_text("2")
    expect(page.locator("#mailing-header").get_by_test_id("state")).to_have_text("Done")
    _screenshot(page, "mailing-detail-done.png")

    # Some opens and clicks come back (as the tracking handler counts them), for the report.
    run = Run.objects.get(mailing=mailing)
    a, m, r = acme.pk, mailing.pk, run.pk
    from history.models import Link

    link = Link.objects.create(account=acme, url="https://shop.example/june-sale", url_hash="june-sale")
    stats_add(Counter({(a, m, r, "opened", None): 9, (a, m, r, "opened_unique", None): 6,
                       (a, m, r, "opened_machine", None): 2, (a, m, r, "clicked", None): 4,
                       (a, m, r, "clicked_unique", None): 3, (a, m, r, "link_clicked", link.pk): 4,
                       (a, m, r, "unsubscribed", None): 1}))

    page.get_by_test_id("report").click()
    expect(page.get_by_test_id("fig-sent")).to_contain_text("10")
    expect(page.get_by_test_id("fig-opened")).to_contain_text("60.0% open rate")
    expect(page.get_by_test_id("fig-opened")).to_contain_text("7 opens in all")  # people's: 2 were machines
    expect(page.get_by_role("link", name="https://shop.example/june-sale")).to_be_visible()
    expect(page.get_by_test_id("skip-unsubscribed")).to_contain_text("1")
    expect(page.get_by_test_id("report-chart")).to_be_visible()
    _screenshot(page, "mailing-report.png")

    page.get_by_role("link", name="Recipients").first.click()
    expect(page.get_by_test_id("log").locator("tbody tr")).to_have_count(12)
    scripts_ready(page)  # htmx listens to the filter
    page.get_by_label("Status").select_option("skipped")
    settled(page)
    expect(page.get_by_test_id("log").locator("tbody tr")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"status=skipped"))
    page.locator("#explain-profile").fill(subs[0].address)
    page.get_by_role("button", name="Explain").click()
    expect(page.get_by_test_id("explain-answer")).to_contain_text("Skipped: unsubscribed")
    _screenshot(page, "mailing-recipients.png")

    page.goto("/mailings/")
    row = page.locator(f"tr[data-mailing='{mailing.pk}']")
    expect(row.get_by_test_id("sent")).to_have_text("10")
    expect(row.get_by_test_id("open-rate")).to_have_text("60.0%")
    _screenshot(page, "mailings-list.png", full=False)

    page.goto("/mailings/calendar/")
    expect(page.get_by_test_id("cal-entry").first).to_contain_text("June newsletter")
    _screenshot(page, "mailings-calendar.png")


def test_sending_policies_page_for_an_admin(page: Page, live_server, acme, adam, sign_in) -> None:
    make_world(acme, n=0)
    sign_in(page, "adam@acme.test")
    page.goto("/mailings/policies/")
    card = page.get_by_test_id("policy-account")
    card.get_by_label("At most").fill("3")
    card.get_by_label("messages in (days)").fill("7")
    card.get_by_test_id("cap-save").click()
    expect(page.get_by_test_id("policy-account")).to_contain_text("at most 3 in 7 days per recipient")
    _screenshot(page, "mailings-policies.png")
