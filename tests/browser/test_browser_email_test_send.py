"""The whole sending path in Chromium: a marketer writes an e-mail with a <style> block, saves it
and presses "Send a test"; the account's SMTP relay (a real aiosmtpd server on loopback) receives
one message whose CSS was inlined at save, whose text part was generated from the HTML, and whose
DKIM signature (RSA-2048, the domain's active key) verifies with dkimpy."""

from __future__ import annotations

import re
from email.header import decode_header, make_header

import dkim as dkimpy
import pytest
from playwright.sync_api import Page, expect

from accounts.access import Actor
from content.models import Template
from delivery.dns import NoRecord
from delivery.mime import verp_parse
from delivery.services import (
    provider_account_create,
    sender_create,
    sending_domain_create,
    sending_domain_verify,
)
from profiles.services import database_create, profile_create

pytestmark = pytest.mark.browser

SYSTEM = Actor.system()

HTML = """<html><head><style>.cta { color: #ffffff; background: #4f46e5; } h1 { font-size: 24px; }</style></head>
<body><h1>Hello {{ profile.first_name }}</h1><p>Our spring sale starts today.</p>
<p><a class="cta" href="https://shop.example/sale">Shop the sale</a></p>
<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p></body></html>"""


def test_a_test_email_leaves_through_smtp_signed_with_dkim(page: Page, live_server, acme, alice, sign_in,
                                                            smtp_server, scripts_ready) -> None:
    domain = sending_domain_create(account=acme, domain="shop.example", actor=SYSTEM)
    key = domain.active_key()

    def resolve(name, rdtype):
        if (name, rdtype) == (key.record_name, "TXT"):
            return [key.txt_value]
        raise NoRecord(name)

    sending_domain_verify(domain=domain, resolve=resolve)
    sender_create(account=acme, domain=domain, local_part="news", from_name="Northwind Shop", is_default=True,
                  actor=SYSTEM)
    provider_account_create(account=acme, channel="email", kind="smtp", name="Relay", is_default=True, actor=SYSTEM,
                            data={"host": smtp_server.host, "port": smtp_server.port, "tls": "none", "timeout": 5})
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    profile_create(database=db, actor=SYSTEM, values={"email": "anna@shop.example", "first_name": "Anna"})

    sign_in(page, "alice@acme.test")
    page.goto("/templates/new/")
    page.get_by_label("Name").fill("Spring sale")
    page.get_by_label("Database").select_option(label="Shop customers")
    page.get_by_test_id("save-template").click()
    expect(page.get_by_test_id("template-name")).to_contain_text("Spring sale")
    page.get_by_label("Subject").fill("Spring sale, {{ profile.first_name }} 🌷")
    page.get_by_label("HTML").fill(HTML)
    page.get_by_test_id("save-version").click()
    expect(page.get_by_test_id("current-version")).to_contain_text("Version 1")
    scripts_ready(page)  # the test send is an htmx post

    page.get_by_test_id("test-address").fill("qa@inbox.example")
    page.get_by_test_id("test-send-button").click()
    expect(page.get_by_test_id("toast").last).to_contain_text("qa@inbox.example")

    [message] = smtp_server.wait_for(1)
    [(mail_from, rcpt_tos)] = smtp_server.envelopes
    assert rcpt_tos == ["qa@inbox.example"]
    assert verp_parse(mail_from), f"the envelope sender {mail_from!r} is a VERP address we can match bounces to"
    assert message["From"] == "Northwind Shop <news@shop.example>"
    assert str(make_header(decode_header(message["Subject"]))) == "Spring sale, Alex 🌷"  # like the preview: the sample person
    assert message.get_content_type() == "multipart/alternative"
    html = next(p for p in message.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    # CSS was inlined at save: the link carries its rule as a style attribute, the <style> block is gone.
    assert re.search(r'<a [^>]*style="color: ?#ffffff; ?background: ?#4f46e5;?"', html), html
    assert re.search(r'<h1 [^>]*style="font-size: ?24px;?"', html), html
    assert ".cta" not in html
    text = smtp_server.text_of(message)
    assert "Our spring sale starts today." in text and "https://shop.example/sale" in text

    # DKIM: the bytes as received verify against the domain's published key.
    raw = message.as_bytes()
    dnsfunc = lambda name, timeout=5: key.txt_value.encode() if name.decode().rstrip(".") == key.record_name else b""  # noqa: E731
    assert dkimpy.verify(raw, dnsfunc=dnsfunc)
    signature = message["DKIM-Signature"]
    assert f"s={key.selector}" in signature and "d=shop.example" in signature and "a=rsa-sha256" in signature
    assert Template.objects.get(account=acme, name="Spring sale").versions.count() == 1
