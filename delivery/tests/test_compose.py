"""compose_email / compose_other and the test-send service, end to end through locmem."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

import dkim as dkimpy
import pytest
from django.core.exceptions import ValidationError

from accounts.access import Actor
from accounts.models import AuditEvent
from delivery.backends import DeliveryError, locmem
from delivery.compose import compose_email, compose_other
from delivery.dns import NoRecord
from delivery.mime import unsubscribe_parse, verp_parse
from delivery.selectors import dkim_key_for_signing
from delivery.services import (
    provider_account_create,
    sender_create,
    sending_domain_create,
    sending_domain_verify,
    test_send,
)

SYSTEM = Actor.system()


@pytest.fixture
def sender(acme):
    domain = sending_domain_create(account=acme, domain="shop.example", actor=SYSTEM)
    return sender_create(account=acme, domain=domain, local_part="news", from_name="Northwind",
                         reply_to="help@shop.example", actor=SYSTEM)


def verify(sender):
    key = sender.domain.active_key()

    def resolve(name, rdtype):
        if (name, rdtype) == (key.record_name, "TXT"):
            return [key.txt_value]
        raise NoRecord(name)

    sending_domain_verify(domain=sender.domain, resolve=resolve)
    sender.domain.refresh_from_db()


def dnsfunc_for(sender):
    key = sender.domain.active_key()
    return lambda name, timeout=5: key.txt_value.encode() if name.decode().rstrip(".") == key.record_name else b""


def test_compose_email_signs_sets_verp_and_list_unsubscribe(sender):
    parts = {"subject": "Привет, Ольга", "html": "<p>Hi</p>", "text": "Hi"}
    message = compose_email(rendered=parts, sender=sender, to="olga@example.com", ref="L77",
                            unsubscribe_url="https://cdp.example/p/u/one-click/tok/",
                            dkim_key=dkim_key_for_signing(sender.domain))

    parsed = message_from_bytes(message.raw, policy=default)
    assert message.channel == "email" and message.ref == "L77" and message.to == "olga@example.com"
    assert verp_parse(message.envelope_from) == "L77"
    assert message.envelope_from.endswith("@bounces.shop.example")
    assert parsed["subject"] == "Привет, Ольга" and parsed["reply-to"] == "help@shop.example"
    https_part, mailto_part = (v.strip().strip("<>") for v in parsed["list-unsubscribe"].split(","))
    assert https_part == "https://cdp.example/p/u/one-click/tok/"
    mailto, _, query = mailto_part.removeprefix("mailto:").partition("?")
    assert unsubscribe_parse(mailto) == "L77" and mailto.endswith("@bounces.shop.example")
    assert query == "subject=unsubscribe"
    assert verp_parse(mailto) is None and unsubscribe_parse(message.envelope_from) is None, "one is not the other"
    assert parsed["message-id"].startswith("<L77.")
    assert dkimpy.verify(message.raw, dnsfunc=dnsfunc_for(sender))


def test_compose_email_takes_the_one_click_url_of_a_subscription(sender, monkeypatch):
    from resources import tokens

    monkeypatch.setattr(tokens, "one_click_url", lambda subscription: f"https://cdp.example/oc/{subscription}/")
    message = compose_email(rendered={"subject": "s", "html": "<p>h</p>", "text": "h"}, sender=sender,
                            to="a@example.com", ref="L1", subscription="S9")

    header = message_from_bytes(message.raw, policy=default)["list-unsubscribe"]
    assert header.startswith("<https://cdp.example/oc/S9/>, <mailto:u+L1.")
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in message.raw
    assert not message.raw.startswith(b"DKIM-Signature")  # no key given: unsigned


def test_compose_other_keeps_only_the_channels_parts():
    push = compose_other("webpush", {"title": "Sale", "body": "50% off", "url": "https://shop.example/s",
                                     "icon": "", "subject": "ignored"}, to="https://push.example/ep", ref="L5",
                         meta={"keys": {"p256dh": "k", "auth": "a"}})
    text = compose_other("sms", {"text": "Code 1234"}, to="+4915112345678", ref="L6", sender="Shop")

    assert push.payload == {"title": "Sale", "body": "50% off", "url": "https://shop.example/s"}
    assert push.meta == {"keys": {"p256dh": "k", "auth": "a"}}
    assert text.payload == {"text": "Code 1234", "sender": "Shop"}
    with pytest.raises(ValueError):
        compose_other("email", {}, to="x", ref="L")


# --- test_send -----------------------------------------------------------------------------------


@pytest.fixture
def version(acme):
    from content.models import Template, TemplateVersion
    from content.rendering import prepare

    template = Template.objects.create(account=acme, name="Welcome")

    def make(channel, data):
        prepared = prepare(channel, data)
        return TemplateVersion.objects.create(
            account=acme, template=template, channel=channel, number=1, data=data, compiled=prepared.compiled,
            links=prepared.links, size=prepared.size, is_current=True)

    return make


EMAIL = {"subject": "Welcome {{ data.name }}", "html": "<p>Hello {{ data.name }}!</p>", "text": ""}


def test_a_test_send_renders_signs_and_sends_through_the_backend_and_is_audited(acme, adam, sender, version):
    verify(sender)
    result = test_send(account=acme, version=version("email", EMAIL), address="adam@acme.test",
                       data={"name": "Adam"}, actor=Actor(user=adam))

    assert result.ok and result.ref.startswith("T")
    [sent] = locmem.outbox
    parsed = message_from_bytes(sent.raw, policy=default)
    assert parsed["subject"] == "Welcome Adam" and parsed["to"] == "adam@acme.test"
    assert "Hello Adam!" in parsed.get_body(("html",)).get_content()
    assert parsed.get_body(("plain",)) is not None  # the text part was generated
    assert dkimpy.verify(sent.raw, dnsfunc=dnsfunc_for(sender))
    event = AuditEvent.objects.get(verb="template.test_sent")
    assert event.actor == adam and event.data["to"] == "adam@acme.test" and event.data["ok"]


def test_test_sends_are_limited_per_account_and_hour(acme, globex, adam, sender, version, settings, mid_window):
    verify(sender)
    settings.TEST_SEND_LIMIT_PER_HOUR = 2
    v = version("email", EMAIL)
    for _ in range(2):
        test_send(account=acme, version=v, address="adam@acme.test", actor=Actor(user=adam))

    with pytest.raises(ValidationError, match="sent 2 tests in the last hour"):
        test_send(account=acme, version=v, address="adam@acme.test", actor=Actor(user=adam))
    assert len(locmem.outbox) == 2
    # Another account has its own allowance.
    from content.models import Template, TemplateVersion

    theirs = TemplateVersion.objects.create(
        account=globex, template=Template.objects.create(account=globex, name="Theirs"), channel="sms", number=1,
        data={"text": "hi"}, compiled={"text": "hi"}, is_current=True)
    assert test_send(account=globex, version=theirs, address="+4915112345678", actor=Actor.system()).ok


def test_an_unverified_sender_may_test_send_only_to_a_local_backend(acme, sender, version, settings):
    v = version("email", EMAIL)
    assert test_send(account=acme, version=v, address="a@example.com", actor=SYSTEM).ok  # locmem is local

    provider_account_create(account=acme, channel="email", kind="smtp", name="Relay", is_default=True,
                            data={"host": "127.0.0.1", "port": "9", "tls": "none"}, actor=SYSTEM)
    with pytest.raises(ValidationError, match="not verified"):
        test_send(account=acme, version=v, address="a@example.com", actor=SYSTEM)


def test_a_test_send_refused_by_the_provider_raises_with_its_text(acme, sender, version):
    verify(sender)
    locmem.fail("nobody@example.com", "550 5.1.1 User unknown", permanent=True)

    with pytest.raises(DeliveryError, match=r"550 5\.1\.1 User unknown") as info:
        test_send(account=acme, version=version("email", EMAIL), address="nobody@example.com", actor=SYSTEM)
    assert info.value.permanent
    assert AuditEvent.objects.get(verb="template.test_sent").data["ok"] is False


def test_a_template_error_raises_render_error(acme, sender, version):
    from content.rendering import RenderError

    broken = version("email", {"subject": "Hi", "html": "<p>{{ data.items|frobnicate }}</p>"})
    with pytest.raises(RenderError):
        test_send(account=acme, version=broken, address="a@example.com", actor=SYSTEM)
    assert locmem.outbox == []


def test_a_bad_address_or_another_accounts_version_is_refused(acme, globex, sender, version):
    v = version("email", EMAIL)

    with pytest.raises(ValidationError):
        test_send(account=acme, version=v, address="not an address", actor=SYSTEM)
    with pytest.raises(ValidationError, match="this account"):
        test_send(account=globex, version=v, address="a@example.com", actor=SYSTEM)


def test_other_channels_are_test_sent_as_their_payload(acme, version):
    result = test_send(account=acme, version=version("sms", {"text": "Hi {{ data.name }}"}), address="+4915112345678",
                       data={"name": "Olga"}, actor=SYSTEM)

    assert result.ok
    assert locmem.outbox[0].payload == {"text": "Hi Olga"} and locmem.outbox[0].channel == "sms"
