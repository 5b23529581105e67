"""Templates in Chromium: a marketer creates "Welcome", writes its e-mail and watches the sandboxed
preview and the checks follow each keystroke (a lint warning appears, then goes when fixed),
previews it as a real profile and at phone width, saves versions, compares and restores one,
writes the SMS with the live segment counter and sends a test; and F14: a template full of
script cannot run any of it, reach the parent page, or open a dialog.

Screenshots go to $CDP_SCREENSHOTS when it is set (e.g. /tmp/shots-content)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import FrameLocator, Page, expect

from accounts.access import Actor
from content import services
from content.models import Template, TemplateVersion
from profiles.services import database_create, field_add, profile_create

pytestmark = pytest.mark.browser

SYSTEM = Actor.system()


def settled(page: Page) -> None:
    """htmx has finished its last swap."""
    expect(page.locator(".htmx-added, .htmx-settling, .htmx-swapping, .htmx-request")).to_have_count(0)


def _screenshot(page: Page, name: str, *, full: bool = False) -> None:
    shots = os.environ.get("CDP_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name), full_page=full)


def _world(acme):
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", actor=SYSTEM)
    anna = profile_create(database=db, actor=SYSTEM, values={"email": "anna@shop.example", "first_name": "Anna",
                                                             "last_name": "Berg", "city": "Berlin"})
    return db, anna


def _frame(page: Page) -> FrameLocator:
    """The preview iframe's document, looked up afresh on every use: each preview is a navigation of
    the sandboxed frame, and Chromium may swap the frame's process for it (the Frame object from
    before the swap is then gone, and page.frame() finds nothing until the new one is attached)."""
    return page.frame_locator("#preview-frame")


def test_a_marketer_writes_previews_checks_versions_and_restores_a_template(
        page: Page, live_server, acme, alice, sign_in, settings, scripts_ready) -> None:
    settings.DELIVERY_BACKENDS = {**settings.DELIVERY_BACKENDS,
                                  "sms": {"BACKEND": "delivery.backends.locmem.LocmemBackend", "OPTIONS": {}}}
    db, anna = _world(acme)
    services.template_create(account=acme, name="Order receipt", database=db, kind="transactional", actor=SYSTEM)
    sign_in(page, "alice@acme.test")

    page.goto("/templates/")
    expect(page.get_by_text("Order receipt")).to_be_visible()
    page.get_by_test_id("new-template").click()
    page.get_by_label("Name").fill("Welcome")
    page.get_by_label("Database").select_option(label="Shop customers")
    page.get_by_test_id("save-template").click()
    expect(page.get_by_test_id("template-name")).to_contain_text("Welcome")
    welcome = Template.objects.get(account=acme, name="Welcome")

    # Write: the preview and the checks follow the typing.
    page.get_by_label("Subject").fill("Hello {{ profile.first_name }}")
    page.get_by_label("HTML").fill('<h1>Hi {{ profile.first_name }} from {{ profile.city }}</h1>'
                                   '<img src="https://img.example/hero.png">')
    expect(_frame(page).locator("h1")).to_have_text("Hi Alex from Sample")
    expect(page.get_by_test_id("inbox-subject")).to_have_text("Hello Alex")
    settled(page)
    lint = page.get_by_test_id("lint-panel")
    expect(lint.locator(".lint-item", has_text=re.compile("alt", re.I))).to_have_count(1)
    expect(lint.locator(".lint-item", has_text=re.compile("unsubscribe", re.I))).to_have_count(1)
    _screenshot(page, "template-editor-lint.png", full=True)
    # Fix both: the messages go.
    page.get_by_label("HTML").fill('<h1>Hi {{ profile.first_name }} from {{ profile.city }}</h1>'
                                   '<img src="https://img.example/hero.png" alt="Spring">'
                                   '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>')
    expect(lint.locator(".lint-item", has_text=re.compile("alt", re.I))).to_have_count(0)
    expect(lint.locator(".lint-item", has_text=re.compile("unsubscribe", re.I))).to_have_count(0)
    expect(_frame(page).locator("img")).to_have_attribute("alt", "Spring")

    # A variable from the sidebar goes in at the caret.
    page.get_by_label("Subject").click()
    page.get_by_label("Subject").press("End")
    page.locator("[data-insert='{{ profile.city }}']").click()
    expect(page.get_by_label("Subject")).to_have_value("Hello {{ profile.first_name }}{{ profile.city }}")
    page.get_by_label("Subject").fill("Hello {{ profile.first_name }}")

    # Preview as Anna, from the picker.
    page.get_by_test_id("profile-search").fill("anna@")
    page.locator(f"[data-pick-profile='{anna.pk}']").click()
    expect(page.locator("#preview-as-label")).to_have_text("Anna Berg")
    expect(_frame(page).locator("h1")).to_have_text("Hi Anna from Berlin")
    _screenshot(page, "template-editor-desktop.png", full=True)

    # Phone width.
    page.get_by_test_id("width-phone").click()
    expect(page.get_by_test_id("preview-frame")).to_have_css("width", "375px")
    expect(_frame(page).locator("h1")).to_have_text("Hi Anna from Berlin")
    page.wait_for_timeout(300)  # the width transition
    _screenshot(page, "template-editor-phone.png", full=True)
    page.get_by_test_id("width-desktop").click()
    expect(page.get_by_test_id("preview-frame")).to_have_css("width", "600px")

    # Save two versions.
    page.get_by_test_id("version-note").fill("first draft")
    page.get_by_test_id("save-version").click()
    expect(page.get_by_test_id("current-version")).to_contain_text("Version 1")
    page.get_by_label("Subject").fill("Welcome aboard, {{ profile.first_name }}")
    page.get_by_test_id("save-version").click()
    expect(page.get_by_test_id("current-version")).to_contain_text("Version 2")

    # Versions, compare, restore.
    page.get_by_test_id("versions-tab").click()
    expect(page.locator("tr[data-version]")).to_have_count(2)
    page.get_by_test_id("compare-button").click()
    compare = page.get_by_test_id("compare")
    expect(compare.locator(".diff-add", has_text="Welcome aboard")).not_to_have_count(0)
    expect(compare.locator(".diff-del", has_text="Hello")).not_to_have_count(0)
    _screenshot(page, "template-compare.png", full=True)
    page.once("dialog", lambda d: d.accept())
    page.get_by_test_id("restore-a").click()
    expect(page.get_by_test_id("current-version")).to_contain_text("Version 3")
    expect(page.get_by_label("Subject")).to_have_value("Hello {{ profile.first_name }}")
    v3 = TemplateVersion.objects.get(template=welcome, channel="email", is_current=True)
    assert v3.number == 3 and v3.data["subject"] == "Hello {{ profile.first_name }}"

    # The SMS: a live segment counter, then a test through the backend.
    page.get_by_test_id("channel-tabs").get_by_role("link", name="SMS").click()
    counter = page.get_by_test_id("sms-counter")
    page.get_by_label("Text").fill("Hi {{ profile.first_name }}, spring sale!")
    expect(counter.locator("[data-sms=encoding]")).to_have_text("GSM-7")
    expect(counter.locator("[data-sms=segments]")).to_have_text("1")
    page.get_by_label("Text").fill("Hi {{ profile.first_name }} 🌷 " + "x" * 70)
    expect(counter.locator("[data-sms=encoding]")).to_have_text("UCS-2")
    expect(counter.locator("[data-sms=segments]")).to_have_text("2")
    expect(_frame(page).get_by_test_id("sms-bubble")).to_contain_text("Hi Alex 🌷")
    page.wait_for_timeout(300)
    _screenshot(page, "template-editor-sms.png")
    page.get_by_test_id("save-version").click()
    expect(page.get_by_test_id("current-version")).to_contain_text("Version 1")
    scripts_ready(page)  # the test send is an htmx post
    page.get_by_test_id("test-address").fill("+4915112345678")
    page.get_by_test_id("test-send-button").click()
    expect(page.get_by_test_id("toast").last).to_contain_text("sent to +4915112345678")

    page.goto("/templates/")
    expect(page.locator(f"tr[data-template='{welcome.pk}'] [data-channel]")).to_have_count(2)
    _screenshot(page, "templates-list.png")


F14_HTML = """<h1 id="hello">Hello</h1>
<script>alert("script"); document.body.setAttribute("data-ran", "1");</script>
<img src="x" alt="x" onerror="alert('onerror'); document.body.setAttribute('data-ran', '1')">
<script>
  try { window.parent.document.body.innerHTML = "pwned"; } catch (e) {}
  try { top.location = "https://evil.example/"; } catch (e) {}
  try { window.parent.alert("parent"); } catch (e) {}
</script>
<a href="{{ links.unsubscribe }}">Unsubscribe</a>"""


def test_a_template_full_of_script_runs_none_of_it_in_the_preview(page: Page, live_server, acme, alice, sign_in) -> None:
    """F14: no dialog opens, the parent page is unchanged, the frame is sandboxed without
    allow-scripts, and the preview response carries a CSP sandbox of its own."""
    t = services.template_create(account=acme, name="Hostile", kind="marketing", actor=SYSTEM)
    services.template_version_save(template=t, channel="email", actor=SYSTEM,
                                   data={"subject": "Hi", "html": F14_HTML})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, "alice@acme.test")
    with page.expect_response(lambda r: "/preview/" in r.url) as preview:
        page.goto(f"/templates/{t.pk}/")
    response = preview.value
    assert response.headers["content-security-policy"].startswith("sandbox;")
    assert "script-src" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "SAMEORIGIN"

    frame_el = page.get_by_test_id("preview-frame")
    assert frame_el.get_attribute("sandbox") == ""
    frame = _frame(page)
    expect(frame.locator("#hello")).to_have_text("Hello")
    # Edit the draft so the frame is re-posted: the live path must be as inert as the first load.
    page.get_by_label("Subject").fill("Hi again")
    expect(page.get_by_test_id("inbox-subject")).to_have_text("Hi again")
    expect(frame.locator("#hello")).to_have_text("Hello")
    page.wait_for_timeout(500)  # give any script that could run the time to run

    assert dialogs == []
    assert frame.locator("body").get_attribute("data-ran") is None
    assert "pwned" not in page.locator("body").inner_text()
    assert page.url.endswith(f"/templates/{t.pk}/")
    expect(page.get_by_test_id("template-name")).to_contain_text("Hostile")


def test_push_and_telegram_previews_are_phone_mockups(page: Page, live_server, acme, bob, sign_in) -> None:
    """An analyst reads (no save button) and sees each channel as the phone would show it."""
    t = services.template_create(account=acme, name="Shipping", kind="transactional", actor=SYSTEM)
    services.template_version_save(template=t, channel="telegram", actor=SYSTEM, data={
        "text": "<b>Hi {{ profile.first_name }}</b>, your order shipped.", "parse_mode": "HTML",
        "buttons": [[{"text": "Track", "url": "https://track.example"}, {"text": "Help", "url": "https://help.example"}]]})
    services.template_version_save(template=t, channel="webpush", actor=SYSTEM, data={
        "title": "Sale ends tonight", "body": "Hi {{ profile.first_name }}, 30% off everything.",
        "url": "https://shop.example/sale"})
    sign_in(page, "bob@acme.test")

    page.goto(f"/templates/{t.pk}/?channel=telegram")
    expect(page.get_by_test_id("save-version")).to_have_count(0)
    expect(page.get_by_test_id("preview-frame")).to_have_css("width", "375px")
    frame = _frame(page)
    expect(frame.locator(".tg b")).to_have_text("Hi Alex")
    expect(frame.locator(".tg-btn")).to_have_text(["Track", "Help"])
    page.wait_for_timeout(300)
    _screenshot(page, "template-telegram.png")

    page.goto(f"/templates/{t.pk}/?channel=webpush")
    frame = _frame(page)
    expect(frame.locator(".notif .title")).to_have_text("Sale ends tonight")
    expect(frame.locator(".notif .body")).to_have_text("Hi Alex, 30% off everything.")
    page.wait_for_timeout(300)
    _screenshot(page, "template-webpush.png")

    page.get_by_test_id("versions-tab").click()
    expect(page.locator("tr[data-version]")).to_have_count(1)
    _screenshot(page, "template-versions.png")


def test_what_is_typed_before_the_editor_script_runs_still_reaches_the_preview(
        page: Page, live_server, acme, alice, sign_in) -> None:
    """The editor's script is deferred: HTML typed while it is still on its way (a slow page, a
    quick typist, a restored form) is previewed and checked once it starts; a page nobody has
    touched is not posted again."""
    db, _ = _world(acme)
    t = services.template_create(account=acme, name="Welcome", database=db, kind="marketing", actor=SYSTEM)
    sign_in(page, "alice@acme.test")
    expect(page.locator("#sidebar")).to_be_visible()
    held: list = []
    posts: list[str] = []
    page.route("**/js/template-editor.js*", lambda route: held.append(route))
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    for typed in (True, False):
        held.clear()
        posts.clear()
        page.goto(f"/templates/{t.pk}/", wait_until="commit")
        if typed:
            page.get_by_label("HTML").fill("<h1>Hi {{ profile.first_name }}</h1><img src='https://img.example/a.png'>")
        for _ in range(250):  # route handlers run while Playwright waits
            if held:
                break
            page.wait_for_timeout(20)
        assert len(held) == 1, "the page never asked for the editor's script"
        assert page.evaluate("document.readyState") == "interactive"  # parsed, the deferred script not run
        held[0].continue_()
        page.wait_for_load_state("load")
        if typed:
            expect(_frame(page).locator("h1")).to_have_text("Hi Alex")
            lint = page.get_by_test_id("lint-panel")
            expect(lint.locator(".lint-item", has_text=re.compile("alt", re.I))).to_have_count(1)
            assert any("/preview/" in url for url in posts)
        else:
            page.wait_for_timeout(800)  # past the editor's 400 ms debounce
            assert posts == [], "an untouched editor posted its form"
