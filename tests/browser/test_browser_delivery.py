"""Sending infrastructure in Chromium: an admin adds shop.example, copies its DNS records, verifies
them against a fake DNS (first nothing published, then the DKIM record with DMARC unreachable),
rotates the DKIM key and removes the retired one, adds a sender, adds an SMTP provider and tests
its connection against a real SMTP server (aiosmtpd), and reads a test-sent message in the outbox
with its HTML in a sandboxed frame."""

from __future__ import annotations

import os
import re
from pathlib import Path

import dns.exception
import pytest
from playwright.sync_api import Page, expect

from accounts.access import Actor
from content.services import template_create, template_version_save
from delivery.models import DkimKey, ProviderAccount, Sender, SendingDomain
from delivery.services import sender_create, sending_domain_create, test_send
from delivery.tests.test_views_domains import DNS, fake_dns  # noqa: F401 - the fake DNS fixture

pytestmark = pytest.mark.browser

SMTP_PASSWORD = "relay-Pa55-word-never-shown"


def _screenshot(page: Page, name: str, *, full: bool = True) -> None:
    shots = os.environ.get("CDP_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / name), full_page=full)


def settled(page: Page) -> None:
    expect(page.locator(".htmx-added, .htmx-settling, .htmx-swapping, .htmx-request")).to_have_count(0)


@pytest.fixture
def outbox(settings, tmp_path) -> Path:
    """E-mail goes to the file backend, in this test's own directory."""
    directory = tmp_path / "outbox"
    settings.DELIVERY_OUTBOX_DIR = directory
    settings.DELIVERY_BACKENDS = {"default": {"BACKEND": "delivery.backends.file.FileBackend",
                                              "OPTIONS": {"directory": str(directory)}}}
    return directory


def test_an_admin_sets_up_a_domain_a_sender_and_an_smtp_relay(
    page: Page, sign_in, scripts_ready, live_server, acme, adam, fake_dns, smtp_server, outbox  # noqa: F811
):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    sign_in(page, "adam@acme.test")

    # The nav leads to the sending domains; none yet.
    page.get_by_role("link", name="Sending domains").click()
    expect(page.get_by_role("heading", name="No sending domains yet")).to_be_visible()
    page.get_by_test_id("add-domain").click()
    page.get_by_label("Domain").fill("localhost")
    page.get_by_role("button", name="Add domain").click()
    expect(page.locator(".invalid-feedback")).to_contain_text("not a valid domain name")
    page.get_by_label("Domain").fill("Shop.Example")
    page.get_by_role("button", name="Add domain").click()

    # The domain's page: the records to publish, each with a copy button.
    expect(page.get_by_role("heading", name="shop.example")).to_be_visible()
    domain = SendingDomain.objects.get(account=acme)
    key = domain.active_key()
    records = page.get_by_test_id("records")
    expect(records.locator('[data-record="dkim-0"] [data-testid="value"]')).to_have_text(key.txt_value)
    expect(records.locator('[data-record="dkim-0"]')).to_contain_text(key.record_name)
    expect(records).to_contain_text("v=spf1")
    expect(records).to_contain_text("_dmarc.shop.example")
    expect(records.locator('[data-testid="check"]').first).to_contain_text("Not checked")
    scripts_ready(page)  # the copy button is app.js's
    records.locator('[data-record="dkim-0"] [data-testid="copy"]').click()
    expect(records.locator('[data-record="dkim-0"] [data-testid="copy"]')).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == key.txt_value
    _screenshot(page, "delivery-01-domain-records.png")

    # Verify with nothing published: the DKIM record is missing, the domain stays pending.
    page.get_by_test_id("verify").click()
    settled(page)
    dkim_check = records.locator('[data-record="dkim-0"] [data-testid="check"]')
    expect(dkim_check).to_contain_text("Missing")
    expect(page.get_by_test_id("domain-status")).to_have_text("Pending")

    # Publish the DKIM record; DMARC's lookup times out (offline): "could not check", not an error.
    DNS[(key.record_name, "TXT")] = [key.txt_value]
    DNS[("_dmarc.shop.example", "TXT")] = dns.exception.Timeout()
    page.get_by_test_id("verify").click()
    settled(page)
    expect(dkim_check).to_contain_text("Found")
    expect(page.get_by_test_id("domain-status")).to_have_text("Verified")
    dmarc = records.locator("tr", has_text="_dmarc.shop.example")
    expect(dmarc).to_contain_text("Could not check")
    expect(dmarc).to_contain_text("could not check:")
    expect(records.locator("tr", has_text="bounces.shop.example")).to_contain_text("Missing")
    _screenshot(page, "delivery-02-verified.png")

    # Rotate: a new active key, the old one retired but still published.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("rotate").click()
    expect(page.locator(".toast, .alert").filter(has_text="signs from now on").first).to_be_visible()
    new = domain.active_key()
    assert new.selector != key.selector
    expect(page.locator(f'[data-key="{key.selector}"] [data-testid="key-status"]')).to_have_text(
        "Retired (still published)")
    expect(page.locator(f'[data-key="{new.selector}"] [data-testid="key-status"]')).to_have_text("Active")
    expect(page.get_by_test_id("records")).to_contain_text(new.record_name)
    expect(page.get_by_test_id("records")).to_contain_text(key.record_name)
    expect(page.get_by_test_id("domain-status")).to_have_text("Pending")
    _screenshot(page, "delivery-03-rotated.png")

    # Remove the retired key, after a confirmation page.
    page.locator(f'[data-key="{key.selector}"]').get_by_test_id("remove-key").click()
    expect(page.get_by_role("heading", name=f"Remove DKIM key {key.selector}?")).to_be_visible()
    page.get_by_test_id("confirm-remove").click()
    expect(page.locator(f'[data-key="{key.selector}"]')).to_have_count(0)
    assert list(DkimKey.objects.filter(domain=domain).values_list("selector", flat=True)) == [new.selector]

    # A sender on it: pending after the rotation, so the list warns.
    page.get_by_role("link", name="Senders", exact=True).click()
    page.get_by_test_id("add-sender").click()
    page.get_by_label("From name").fill("Northwind")
    page.get_by_label("Address").fill("news")
    page.get_by_label("Default sender").check()
    page.get_by_role("button", name="Add sender").click()
    row = page.locator('[data-sender="news@shop.example"]')
    expect(row).to_contain_text("Northwind")
    expect(row.get_by_test_id("unverified")).to_contain_text("not verified")
    expect(row.get_by_test_id("default")).to_be_visible()
    assert Sender.objects.get(account=acme).from_address == "news@shop.example"
    _screenshot(page, "delivery-04-senders.png")

    # An SMTP relay: channel, then kind, then the kind's own form.
    page.get_by_role("link", name="Providers").click()
    page.get_by_test_id("add-provider").click()
    scripts_ready(page)  # picking reloads the step through app.js's autosubmit
    page.get_by_label("Channel").select_option("email")
    expect(page).to_have_url(re.compile(r"channel=email"))
    scripts_ready(page)
    page.get_by_label("Provider").select_option("smtp")  # reloads the step with the SMTP form
    form = page.get_by_test_id("provider-form")
    expect(form.locator("[name=opt_host]")).to_be_visible()
    form.get_by_role("textbox", name="Name", exact=True).fill("Loopback relay")
    form.locator("[name=opt_host]").fill(smtp_server.host)
    form.locator("[name=opt_port]").fill(str(smtp_server.port))
    form.locator("[name=opt_tls]").select_option("none")
    form.get_by_label("Password").fill(SMTP_PASSWORD)
    _screenshot(page, "delivery-05-provider-form.png")
    page.get_by_test_id("save-provider").click()
    expect(page.get_by_role("heading", name="Loopback relay")).to_be_visible()
    password = page.get_by_label("Password")
    expect(password).to_have_value("")
    expect(page.get_by_test_id("saved")).to_be_visible()
    assert SMTP_PASSWORD not in page.content()
    provider = ProviderAccount.objects.get(account=acme)
    assert provider.secrets["password"] == SMTP_PASSWORD and not provider.is_default

    page.get_by_test_id("test-connection").click()
    expect(page.get_by_test_id("test-result")).to_contain_text("It works.")
    expect(page.get_by_test_id("test-result")).to_contain_text(f"{smtp_server.host}:{smtp_server.port}")
    _screenshot(page, "delivery-06-provider-tested.png")
    page.get_by_label("Breadcrumb").get_by_role("link", name="Providers").click()
    expect(page.locator('[data-provider="Loopback relay"]')).to_contain_text(f"{smtp_server.host}:{smtp_server.port}")
    _screenshot(page, "delivery-07-providers.png")

    # Web push: "Generate VAPID keys" saves a pair and shows the public key to copy.
    page.locator('[data-channel="webpush"]').get_by_role("link", name="Add").click()
    scripts_ready(page)
    page.get_by_label("Provider").select_option("webpush")
    form = page.get_by_test_id("provider-form")
    form.locator("[name=opt_vapid_subject]").fill("mailto:ops@shop.example")
    form.get_by_test_id("generate-vapid").click()
    public_key = ProviderAccount.objects.get(account=acme, kind="webpush").options["vapid_public_key"]
    expect(page.get_by_test_id("vapid-public-key")).to_have_text(public_key)
    _screenshot(page, "delivery-07b-webpush.png")


def test_a_marketer_reads_a_test_sent_message_in_the_outbox(page: Page, sign_in, acme, olivia, alice, outbox):
    actor = Actor(user=olivia)
    domain = sending_domain_create(account=acme, domain="shop.example", actor=actor)
    sender_create(account=acme, domain=domain, local_part="news", from_name="Northwind", is_default=True,
                  actor=actor)
    template = template_create(account=acme, name="Welcome", kind="transactional", actor=actor)
    version = template_version_save(template=template, channel="email", actor=actor, data={
        "subject": "Welcome to Northwind", "preheader": "",
        "html": '<h1 style="color:#1d4ed8">Hello!</h1><p>Thanks for joining.</p>'
                '<img src="x" onerror="parent.document.title=\'pwned\'" alt="">'})
    result = test_send(account=acme, version=version, address="ada@example.com", actor=actor)
    assert result.ok

    sign_in(page, "alice@acme.test")
    page.get_by_role("link", name="Outbox").click()
    row = page.locator("#outbox tbody tr").first
    expect(row).to_contain_text("Welcome to Northwind")
    expect(row).to_contain_text("ada@example.com")
    _screenshot(page, "delivery-08-outbox.png")
    row.get_by_test_id("open-message").click()
    expect(page.get_by_role("heading", name="Welcome to Northwind")).to_be_visible()
    expect(page.get_by_test_id("headers")).to_contain_text("news@shop.example")
    expect(page.get_by_test_id("headers")).to_contain_text("DKIM-Signature")
    expect(page.get_by_test_id("text-part")).to_contain_text("Thanks for joining.")
    frame = page.frame_locator('[data-testid="html-frame"]')
    expect(frame.get_by_role("heading", name="Hello!")).to_be_visible()
    assert page.title() != "pwned"  # the event handler in the message never ran
    _screenshot(page, "delivery-09-outbox-message.png")
    with page.expect_download() as download:
        page.get_by_test_id("download-raw").click()
    assert download.value.suggested_filename.endswith(".eml")
