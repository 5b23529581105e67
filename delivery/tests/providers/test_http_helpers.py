"""The shared HTTP helpers: Retry-After, dotted paths, the per-message loop, JWT signing."""

from __future__ import annotations

import email.utils
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from delivery.backends import DeliveryError, OutboundMessage, SendResult
from delivery.backends._http import BatchAbort, dotted_get, jwt_encode, parse_retry_after, send_each
from delivery.tests.providers._jwt import BadToken, verify_jwt


def test_retry_after_reads_seconds_and_http_dates():
    now = time.time()
    assert parse_retry_after("120") == 120
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(
        30, abs=1
    )
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_dotted_paths_follow_dicts_and_list_indexes():
    body = {"data": {"messages": [{"id": "a"}, {"id": "b"}]}}
    assert dotted_get(body, "data.messages.1.id") == "b"
    assert dotted_get(body, "data.messages.-1.id") == "b"
    assert dotted_get(body, "data.messages.5.id") is None
    assert dotted_get(body, "data.missing.id") is None
    assert dotted_get(None, "id") is None


def _messages(n: int) -> list[OutboundMessage]:
    return [OutboundMessage(channel="sms", to=f"+1555000000{i}", ref=f"L{i}") for i in range(n)]


def test_an_abort_mid_batch_keeps_earlier_results_and_marks_the_rest_not_attempted():
    def send_one(message: OutboundMessage) -> SendResult:
        if message.ref == "L1":
            raise BatchAbort("credentials refused", permanent=True)
        return SendResult(ref=message.ref, ok=True)

    results = send_each(_messages(3), send_one)

    assert [(r.ref, r.ok, r.permanent) for r in results] == [
        ("L0", True, False),
        ("L1", False, False),
        ("L2", False, False),
    ]
    assert results[1].error == "credentials refused"
    assert results[2].error == "not attempted: credentials refused"


def test_an_abort_on_the_first_message_is_a_batch_error():
    def send_one(message: OutboundMessage) -> SendResult:
        raise BatchAbort("credentials refused", permanent=True)

    with pytest.raises(DeliveryError) as caught:
        send_each(_messages(2), send_one)
    assert caught.value.permanent


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(("make_key", "alg"), [(_rsa, "RS256"), (_p256, "ES256")])
def test_jwts_verify_with_the_public_key_and_not_with_another_key_of_the_same_kind(make_key, alg):
    key = make_key()
    token = jwt_encode({"iss": "me", "iat": 1}, key, kid="k1")

    header, claims = verify_jwt(token, key.public_key())
    assert header == {"alg": alg, "typ": "JWT", "kid": "k1"}
    assert claims == {"iss": "me", "iat": 1}
    with pytest.raises(BadToken, match="bad signature"):
        verify_jwt(token, make_key().public_key())
