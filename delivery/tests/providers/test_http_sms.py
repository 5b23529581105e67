"""The generic HTTP SMS backend against a loopback gateway emulator."""

from __future__ import annotations

import base64

import pytest

from delivery.backends import DeliveryError, OutboundMessage
from delivery.backends.http_sms import HttpSmsBackend
from delivery.tests.providers._server import Reply
from delivery.tests.providers.fake_sms import GenericGateway


def sms(to: str, text: str = "Hello", ref: str = "", **payload) -> OutboundMessage:
    return OutboundMessage(channel="sms", to=to, ref=ref or f"L-{to}", payload={"text": text, **payload})


def backend(url: str, **options) -> HttpSmsBackend:
    defaults = {
        "url": f"{url}/api/sms",
        "auth": "bearer",
        "secret": "gw-token",
        "to_field": "phone",
        "text_field": "message",
        "sender_field": "sender",
        "sender": "ACME",
        "message_id_path": "data.messages.0.id",
        "error_path": "error.message",
        "error_code_path": "error.code",
        "deactivate_codes": "NUMBER_INVALID, BLACKLISTED",
    }
    return HttpSmsBackend(**{**defaults, **options})


def test_it_posts_mapped_json_fields_with_the_bearer_token_and_keeps_the_gateway_id(serve):
    gateway = GenericGateway()
    server = serve(gateway)
    with backend(server.url, extra_fields={"type": "unicode"}) as sms_backend:
        results = sms_backend.send_many([sms("+15550000001", "Привет"), sms("+15550000002", sender="SHOP")])

    assert [(r.ok, r.provider_id) for r in results] == [(True, "gw-1"), (True, "gw-2")]
    first, second = server.requests
    assert first.headers["authorization"] == "Bearer gw-token"
    assert first.json() == {"type": "unicode", "phone": "+15550000001", "message": "Привет", "sender": "ACME"}
    assert second.json()["sender"] == "SHOP"
    # One open client: the batch went over one keep-alive connection.
    assert first.client_port == second.client_port


def test_it_sends_form_bodies_with_basic_auth(serve):
    seen = []

    def app(request):
        seen.append(request)
        return Reply(202, {"id": 7})

    server = serve(app)
    sms_backend = backend(
        server.url, body_format="form", auth="basic", username="acme", secret="pw", message_id_path="id"
    )
    [result] = sms_backend.send_many([sms("+15550000001", "Hi")])
    sms_backend.close()

    assert result.ok and result.provider_id == "7"
    assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen[0].form() == {"phone": "+15550000001", "message": "Hi", "sender": "ACME"}
    assert seen[0].headers["authorization"] == "Basic " + base64.b64encode(b"acme:pw").decode()


def test_it_sends_get_requests_with_the_fields_in_the_query_and_a_custom_auth_header(serve):
    seen = []

    def app(request):
        seen.append(request)
        return Reply(200, "OK")

    server = serve(app)
    with backend(
        server.url, method="GET", auth="header", header_name="X-Api-Key", secret="k1", message_id_path=""
    ) as sms_backend:
        [result] = sms_backend.send_many([sms("+15550000001", "a b&c")])

    assert result.ok and result.provider_id == ""
    assert seen[0].method == "GET"
    assert seen[0].query == {"phone": "+15550000001", "message": "a b&c", "sender": "ACME"}
    assert seen[0].headers["x-api-key"] == "k1"


def test_it_marks_an_invalid_number_permanent_and_deactivated_with_the_gateway_text(serve):
    server = serve(GenericGateway())
    with backend(server.url) as sms_backend:
        bad, good = sms_backend.send_many([sms("12345"), sms("+15550000003")])

    assert not bad.ok and bad.permanent and bad.deactivate
    assert bad.error == "HTTP 400: invalid number 12345 (code NUMBER_INVALID)"
    assert good.ok


def test_it_keeps_other_client_errors_permanent_without_deactivating(serve):
    server = serve(GenericGateway())
    with backend(server.url) as sms_backend:
        [result] = sms_backend.send_many([sms("+15550000001", text="")])

    assert not result.ok and result.permanent and not result.deactivate
    assert "message is empty (code EMPTY)" in result.error


def test_it_turns_a_server_error_into_a_temporary_failure(serve):
    gateway = GenericGateway()
    gateway.faults.fail_next(
        Reply(503, {"error": {"code": "BUSY", "message": "try later"}}, {"Retry-After": "7"})
    )
    server = serve(gateway)
    with backend(server.url) as sms_backend:
        failed, sent = sms_backend.send_many([sms("+15550000001"), sms("+15550000002")])

    assert not failed.ok and not failed.permanent and failed.retry_after == 7
    assert sent.ok


def test_it_stops_the_batch_when_the_gateway_rate_limits(serve):
    gateway = GenericGateway()
    gateway.faults.fail_next(
        Reply(429, {"error": {"code": "RATE", "message": "slow down"}}, {"Retry-After": "3"})
    )
    server = serve(gateway)
    with backend(server.url) as sms_backend:
        results = sms_backend.send_many([sms("+15550000001"), sms("+15550000002"), sms("+15550000003")])

    assert [r.ok for r in results] == [False, False, False]
    assert all(not r.permanent and r.retry_after == 3 for r in results)
    assert results[0].error == "HTTP 429: slow down (code RATE)"
    assert [r.error.startswith("not attempted") for r in results] == [False, True, True]
    assert len(server.requests) == 1


def test_it_refuses_the_batch_when_the_credentials_are_wrong(serve):
    server = serve(GenericGateway())
    with backend(server.url, secret="wrong") as sms_backend, pytest.raises(DeliveryError) as caught:
        sms_backend.send_many([sms("+15550000001")])

    assert caught.value.permanent
    assert "invalid API token" in caught.value.message


def test_it_raises_a_temporary_error_when_the_gateway_is_unreachable(closed_port_url):
    with backend(closed_port_url) as sms_backend, pytest.raises(DeliveryError) as caught:
        sms_backend.send_many([sms("+15550000001")])

    assert not caught.value.permanent
    assert "unreachable" in caught.value.message


def test_it_reports_a_dropped_connection_as_ambiguous(serve):
    gateway = GenericGateway()
    gateway.faults.fail_next(Reply(0))
    server = serve(gateway)
    with backend(server.url) as sms_backend:
        dropped, sent = sms_backend.send_many([sms("+15550000001"), sms("+15550000002")])

    assert not dropped.ok and dropped.ambiguous and not dropped.permanent
    assert sent.ok


def test_it_refuses_a_misconfiguration_before_sending():
    with pytest.raises(DeliveryError, match="url"):
        HttpSmsBackend(url="")
    with pytest.raises(DeliveryError, match="extra_fields"):
        HttpSmsBackend(url="http://127.0.0.1:1/", extra_fields="{not json")


def test_its_check_calls_the_check_url_with_the_credentials(serve):
    server = serve(GenericGateway())
    with backend(server.url, check_url=f"{server.url}/api/balance") as sms_backend:
        assert sms_backend.check() == "The gateway answered HTTP 200"
    assert server.requests[-1].headers["authorization"] == "Bearer gw-token"

    wrong = backend(server.url, check_url=f"{server.url}/api/balance", secret="wrong")
    with wrong, pytest.raises(DeliveryError) as caught:
        wrong.check()
    assert caught.value.permanent and "invalid API token" in caught.value.message

    with backend(server.url) as sms_backend:
        assert sms_backend.check().startswith("No check URL configured")
