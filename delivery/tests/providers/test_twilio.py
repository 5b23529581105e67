"""The Twilio backend against a loopback emulator of the Messages API."""

from __future__ import annotations

import pytest

from delivery.backends import DeliveryError, OutboundMessage
from delivery.backends.twilio import TwilioBackend
from delivery.tests.providers._server import Reply
from delivery.tests.providers.fake_sms import TwilioEmulator, twilio_error


def sms(to: str, text: str = "Your code is 1234", **payload) -> OutboundMessage:
    return OutboundMessage(channel="sms", to=to, ref=f"L-{to}", payload={"text": text, **payload})


@pytest.fixture
def twilio(serve):
    emulator = TwilioEmulator()
    server = serve(emulator)

    def make(**options) -> TwilioBackend:
        defaults = {
            "account_sid": emulator.account_sid,
            "auth_token": emulator.auth_token,
            "from_number": "+15005550006",
            "api_base": server.url,
        }
        return TwilioBackend(**{**defaults, **options})

    return emulator, server, make


def test_it_posts_the_form_with_basic_auth_and_keeps_the_message_sid(twilio):
    emulator, server, make = twilio
    with make(status_callback="https://cdp.example/hooks/twilio") as backend:
        results = backend.send_many([sms("+15550000001"), sms("+15550000002", sender="+15005550009")])

    assert all(r.ok for r in results)
    assert [r.provider_id for r in results] == [m["sid"] for m in emulator.messages]
    assert results[0].provider_id.startswith("SM")
    assert emulator.messages[0] == {
        "To": "+15550000001",
        "From": "+15005550006",
        "Body": "Your code is 1234",
        "StatusCallback": "https://cdp.example/hooks/twilio",
        "sid": results[0].provider_id,
    }
    assert emulator.messages[1]["From"] == "+15005550009"
    assert server.requests[0].path == f"/2010-04-01/Accounts/{emulator.account_sid}/Messages.json"
    assert server.requests[0].client_port == server.requests[1].client_port


def test_it_sends_through_a_messaging_service_when_configured(twilio):
    emulator, _, make = twilio
    with make(from_number="", messaging_service_sid="MG123") as backend:
        [result] = backend.send_many([sms("+15550000001")])

    assert result.ok
    assert emulator.messages[0]["MessagingServiceSid"] == "MG123"
    assert "From" not in emulator.messages[0]


def test_it_deactivates_an_invalid_number_with_twilios_message(twilio):
    _, _, make = twilio
    with make() as backend:
        bad, good = backend.send_many([sms("555-CALL-NOW"), sms("+15550000002")])

    assert not bad.ok and bad.permanent and bad.deactivate
    assert bad.error == "HTTP 400: The 'To' number 555-CALL-NOW is not a valid phone number. (code 21211)"
    assert good.ok


def test_it_deactivates_a_recipient_who_replied_stop(twilio):
    emulator, _, make = twilio
    emulator.opted_out.add("+15550000001")
    with make() as backend:
        [result] = backend.send_many([sms("+15550000001")])

    assert not result.ok and result.permanent and result.deactivate
    assert "unsubscribed recipient (code 21610)" in result.error


def test_it_keeps_other_client_errors_permanent_without_deactivating(twilio):
    _, _, make = twilio
    with make() as backend:
        [result] = backend.send_many([sms("+15550000001", text="")])

    assert not result.ok and result.permanent and not result.deactivate
    assert "(code 21602)" in result.error


def test_it_stops_the_batch_on_429_with_the_retry_after(twilio):
    emulator, server, make = twilio
    emulator.faults.fail_next(twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "2"}))
    with make() as backend:
        results = backend.send_many([sms("+15550000001"), sms("+15550000002")])

    assert [(r.ok, r.permanent, r.retry_after) for r in results] == [(False, False, 2.0), (False, False, 2.0)]
    assert "Too Many Requests (code 20429)" in results[0].error
    assert results[1].error.startswith("not attempted")
    assert len(server.requests) == 1


def test_it_treats_a_server_error_as_temporary_and_carries_on(twilio):
    emulator, _, make = twilio
    emulator.faults.fail_next(
        Reply(503, "Service Unavailable", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    )
    with make() as backend:
        failed, sent = backend.send_many([sms("+15550000001"), sms("+15550000002")])

    assert not failed.ok and not failed.permanent and failed.retry_after == 0
    assert failed.error == "HTTP 503: Service Unavailable"
    assert sent.ok


def test_it_raises_a_permanent_error_when_twilio_refuses_the_credentials(twilio):
    _, _, make = twilio
    with make(auth_token="wrong") as backend, pytest.raises(DeliveryError) as caught:
        backend.send_many([sms("+15550000001")])

    assert caught.value.permanent
    assert "Authenticate (code 20003)" in caught.value.message


def test_its_check_fetches_the_account(twilio):
    _, server, make = twilio
    with make() as backend:
        assert backend.check() == "Twilio account Acme SMS (active)"
    assert server.requests[-1].method == "GET"

    with make(auth_token="wrong") as backend, pytest.raises(DeliveryError) as caught:
        backend.check()
    assert caught.value.permanent


def test_it_requires_a_sender():
    with pytest.raises(DeliveryError, match="from_number or a messaging_service_sid"):
        TwilioBackend(account_sid="AC1", auth_token="t")
