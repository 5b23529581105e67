"""Scenarios in Chromium: a marketer builds the issue's "Welcome journey" in the editor (entry when
a profile subscribes to "Shop news" by e-mail -> send "Welcome" -> wait 2 days -> opened it? ->
"Top picks" / SMS "Did you miss this?" -> wait for order.placed or 7 days -> on order set
"customer stage" = "buyer" and exit; on timeout an A/B split 50/50 between two reminders), every
step added from the "+" of an exit with its htmx form in the side panel; the validation panel
says it is complete; she activates it. A profile subscribes (the real services: the history
event enters it, Celery runs eagerly in the live server's thread), the page shows it waiting
after "Welcome"; two days later (time-machine) the engine's tick moves it through the condition
to the SMS and into the order wait, and the page, the participants list and its path show it.

Screenshots of each page go to $CDP_SCREENSHOTS when it is set."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from mailings.tests.factories import SYSTEM, make_template
from scenarios.models import Participation, Scenario, Step
from scenarios.tests.factories import make_scenario_world, make_sms_provider

pytestmark = pytest.mark.browser


def settled(page: Page) -> None:
    """htmx has finished its last swap."""
    expect(page.locator(".htmx-added, .htmx-settling, .htmx-swapping, .htmx-request")).to_have_count(0)


def _screenshot(page: Page, name: str, *, full: bool = False) -> None:
    shots = os.environ.get("CDP_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name), full_page=full)


def _whole_diagram(page: Page, name: str) -> None:
    """The whole diagram in one picture: a viewport wide enough for every column."""
    if not os.environ.get("CDP_SCREENSHOTS"):
        return
    width = page.get_by_test_id("diagram").evaluate("el => el.scrollWidth")
    height = page.get_by_test_id("diagram").evaluate("el => el.scrollHeight")
    page.set_viewport_size({"width": width + 400, "height": height + 400})
    style = page.add_style_tag(content=".s-scroll { overflow: visible !important; max-height: none !important; }")
    page.get_by_test_id("diagram").screenshot(path=str(Path(os.environ["CDP_SCREENSHOTS"]) / name))
    style.evaluate("el => el.remove()")
    page.set_viewport_size({"width": 1400, "height": 900})


class Editor:
    """The editor page, driven like a person: the "+" of an exit, a kind from the palette, the form."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.form = page.get_by_test_id("side-panel").locator("form[data-testid=step-form]")

    def field(self, name: str):
        return self.form.locator(f"[name={name}]")

    def add(self, kind: str, *, after: str | None = None, exit: str = "next", values: dict[str, str] | None = None,
            selects: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> str:
        """Add a step of `kind` (after `after`'s `exit`), fill the form; returns the new step's key."""
        page = self.page
        if after:
            page.get_by_test_id(f"add-after-{after}-{exit}").click()
            settled(page)
            page.get_by_test_id("side-panel").get_by_test_id(f"kind-{kind}").click()
        else:
            page.get_by_test_id("add-step").click()
            page.get_by_test_id("add-menu").get_by_test_id(f"kind-{kind}").click()
        settled(page)
        expect(self.form).to_be_visible()
        before = set(page.locator(".s-node").evaluate_all("els => els.map(e => e.dataset.step)"))
        for name, value in (values or {}).items():
            self.field(name).fill(value)
        for name, value in (selects or {}).items():
            self.field(name).select_option(value)
        for name, label in (labels or {}).items():
            self.field(name).select_option(label=label)
        page.get_by_test_id("save-step").click()
        settled(page)
        expect(page.get_by_test_id("step-form")).to_have_count(0)
        after_keys = set(page.locator(".s-node").evaluate_all("els => els.map(e => e.dataset.step)"))
        (new,) = after_keys - before
        return new


def test_a_marketer_builds_activates_and_watches_the_welcome_journey(page: Page, live_server, acme, alice,
                                                                     sign_in) -> None:
    world = make_scenario_world(acme, user=alice, n=3)
    make_sms_provider(world)
    for name in ("Welcome", "Top picks", "Did you miss this?", "Reminder A", "Reminder B"):
        make_template(acme, world.database, name=name)
    from profiles.services.databases import field_add

    field_add(database=world.database, name="customer_stage", label="Customer stage", type="string", actor=SYSTEM)
    page.on("dialog", lambda dialog: dialog.accept())
    # Import the URLconf (every app's API schemas) here, not in the live server's first request:
    # on a loaded machine that takes longer than the browser's 10 s page-load budget.
    reverse("scenarios:list")
    sign_in(page, "alice@acme.test")

    page.goto("/scenarios/")
    expect(page.get_by_text("No scenarios yet")).to_be_visible()
    page.get_by_test_id("new-scenario").click()
    page.get_by_label("Name").fill("Welcome journey")
    page.get_by_label("Database").select_option(label=world.database.name)
    page.get_by_test_id("save").click()
    scenario = Scenario.objects.get(name="Welcome journey")
    expect(page).to_have_url(re.compile(rf"/scenarios/{scenario.pk}/$"))
    expect(page.get_by_test_id("diagram-empty")).to_be_visible()

    ed = Editor(page)
    # Every key is read back from the page (the services number steps).
    s1 = ed.add("entry.subscription", labels={"resource": "Shop news"}, selects={"channel": "email"})
    s2 = ed.add("send", after=s1, values={"title": "Welcome"}, labels={"resource": "Shop news", "template": "Welcome"},
                selects={"channel": "email"})
    s3 = ed.add("wait", after=s2, values={"title": "Wait 2 days", "amount": "2"}, selects={"unit": "86400"})
    s4 = ed.add("condition", after=s3, values={"title": "Opened “Welcome”?"},
                selects={"test": "message", "message_step": s2, "what": "opened"})
    s5 = ed.add("send", after=s4, exit="yes", values={"title": "Top picks"},
                labels={"resource": "Shop news", "template": "Top picks"}, selects={"channel": "email"})
    s6 = ed.add("send", after=s4, exit="no", values={"title": "Did you miss this?"},
                labels={"resource": "Shop news", "template": "Did you miss this?"}, selects={"channel": "sms"})
    s7 = ed.add("wait_event", after=s5, values={"title": "Order or 7 days", "amount": "7"},
                selects={"type": "order.placed", "unit": "86400"})
    # The SMS branch joins the same wait: open s6 and point its exit there.
    page.get_by_test_id(f"open-{s6}").click()
    settled(page)
    ed.field("exit_next").select_option(s7)
    page.get_by_test_id("save-step").click()
    settled(page)
    s8 = ed.add("update", after=s7, exit="event", values={"title": "Customer stage: buyer", "u0_value": "buyer"},
                selects={"u0_field": "customer_stage"})
    s9 = ed.add("exit", after=s8)
    # A mistake is said in the form, which stays open with what was typed.
    page.get_by_test_id(f"add-after-{s7}-timeout").click()
    settled(page)
    page.get_by_test_id("side-panel").get_by_test_id("kind-split").click()
    settled(page)
    ed.field("b_weight").fill("40")
    page.get_by_test_id("save-step").click()
    settled(page)
    expect(page.get_by_test_id("form-errors")).to_have_text("The weights add up to 90%, not 100%.")
    expect(ed.field("b_weight")).to_have_value("40")
    # The redrawn diagram stays scrolled where she was working (s7 is far right).
    expect(page.get_by_test_id(f"step-{s7}")).to_be_in_viewport()
    _screenshot(page, "scenario-step-form-error.png")
    s10 = ed.add("split", after=s7, exit="timeout", values={"title": "A/B reminder"})
    ed.add("send", after=s10, exit="a", values={"title": "Reminder A"},
           labels={"resource": "Shop news", "template": "Reminder A"}, selects={"channel": "email", "exit_next": s9})
    ed.add("send", after=s10, exit="b", values={"title": "Reminder B"},
           labels={"resource": "Shop news", "template": "Reminder B"}, selects={"channel": "email", "exit_next": s9})

    expect(page.locator(".s-node")).to_have_count(12)
    expect(page.get_by_test_id("valid")).to_be_visible()
    expect(page.locator("path.s-edge")).to_have_count(14)
    expect(page.locator(".s-edge-label").filter(has_text="timeout")).to_have_count(1)
    expect(page.locator(".s-edge-label").filter(has_text="A · 50%")).to_have_count(1)
    _screenshot(page, "scenario-editor-welcome-journey.png")
    _whole_diagram(page, "scenario-editor-welcome-journey-whole.png")

    # A step's form, as it opens in the side panel.
    page.get_by_test_id(f"open-{s4}").click()
    settled(page)
    expect(ed.field("message_step")).to_have_value(s2)
    _screenshot(page, "scenario-step-form-condition.png")
    page.get_by_test_id(f"open-{s7}").click()
    settled(page)
    _screenshot(page, "scenario-step-form-wait-event.png")

    page.get_by_test_id("activate").click()
    expect(page.get_by_test_id("state")).to_have_text("Active")
    scenario.refresh_from_db()
    assert scenario.state == "active" and scenario.live_version.number == 1
    assert Step.objects.filter(version=scenario.live_version, kind="send", mailing__isnull=False).count() == 5

    # Someone subscribes: the real services, the history event, the entry, the first steps.
    from profiles.services.profiles import profile_create
    from resources.services.common import Via
    from resources.services.subscriptions import subscription_create

    nora = profile_create(database=world.database, values={"email": "nora@example.com", "phone": "+4915199990000",
                                                           "first_name": "Nora"}, actor=SYSTEM)
    subscription_create(profile=nora, resource=world.resource, channel="sms", address="+4915199990000",
                        actor=SYSTEM, via=Via("test"), confirmed=True)
    subscription_create(profile=nora, resource=world.resource, channel="email", address="nora@example.com",
                        actor=SYSTEM, via=Via("test"), confirmed=True)
    trip = Participation.objects.get(scenario=scenario, profile_id=nora.pk)
    assert trip.state == "waiting" and trip.step.key == s3

    page.reload()
    expect(page.get_by_test_id(f"now-{s3}")).to_have_text("1")
    expect(page.get_by_test_id(f"passed-{s2}")).to_have_text("1")
    expect(page.get_by_test_id("total-in-now")).to_have_text("1")
    _screenshot(page, "scenario-live-figures.png")

    # Two days later the tick moves her: not opened -> the SMS -> waiting for an order.
    from scenarios.engine import engine_tick

    with time_machine.travel(timezone.now() + timedelta(days=2, minutes=5), tick=True):
        engine_tick()
        trip.refresh_from_db()
        assert trip.state == "waiting" and trip.step.key == s7, (trip.state, trip.error)
        page.reload()
        expect(page.get_by_test_id(f"now-{s3}")).to_have_text("0")
        expect(page.get_by_test_id(f"now-{s7}")).to_have_text("1")
        expect(page.get_by_test_id(f"passed-{s4}")).to_have_text("1")

        page.get_by_test_id("participants").click()
        expect(page.locator("tr[data-participation]")).to_have_count(1)
        expect(page.get_by_test_id("step")).to_contain_text("Order or 7 days")
        _screenshot(page, "scenario-participants.png")
        page.get_by_role("link", name="Path").click()
        expect(page.get_by_test_id("path").locator("li")).to_have_count(6)
        expect(page.get_by_test_id("path")).to_contain_text("Did you miss this?")
        expect(page.get_by_text("here now")).to_be_visible()
        _screenshot(page, "scenario-path.png", full=True)

    page.goto("/scenarios/")
    expect(page.locator(f'tr[data-scenario="{scenario.pk}"] [data-testid=in-now]')).to_have_text("1")
    _screenshot(page, "scenario-list.png")
