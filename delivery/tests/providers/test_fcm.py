"""The FCM HTTP v1 backend against a loopback emulator of Google's token endpoint and FCM."""

from __future__ import annotations

import json

import pytest

from delivery.backends import DeliveryError, OutboundMessage
from delivery.backends.fcm import FcmBackend
from delivery.tests.providers.fake_push import FcmEmulator, fcm_error, make_service_account

DEVICE = "fGx3n2KpQ0e:APA91bH-device-token-0001"


@pytest.fixture
def fcm(serve):
    emulator = FcmEmulator()
    server = serve(emulator)
    emulator.url = server.url
    account, key = make_service_account(emulator.project_id, f"{server.url}/token")
    emulator.public_key = key.public_key()
    emulator.client_email = account["client_email"]
    emulator.key_id = account["private_key_id"]

    def make(**options) -> FcmBackend:
        return FcmBackend(**{"service_account": json.dumps(account), "api_base": server.url, **options})

    return emulator, server, make


def push(to: str = DEVICE, ref: str = "L1", platform: str = "android", **payload) -> OutboundMessage:
    payload = payload or {
        "title": "Order shipped",
        "body": "Arrives Tuesday",
        "image": "https://acme.example/p.png",
        "url": "https://acme.example/orders/7",
        "data": {"order": 7},
    }
    return OutboundMessage(channel="mobilepush", to=to, ref=ref, payload=payload, meta={"platform": platform})


def test_it_gets_a_token_with_a_signed_assertion_and_sends_the_message(fcm):
    emulator, server, make = fcm
    with make(ttl=600, android_channel_id="orders") as backend:
        results = backend.send_many([push(ref="L1"), push(ref="L2", platform="web")])

    assert [r.ok for r in results] == [True, True]
    assert [r.provider_id for r in results] == [
        "projects/acme-app/messages/0:1",
        "projects/acme-app/messages/0:2",
    ]
    # One assertion, verified with the service account's public key, for the whole batch.
    [(header, claims)] = emulator.assertions
    assert header == {"alg": "RS256", "typ": "JWT", "kid": emulator.key_id}
    assert claims["iss"] == emulator.client_email and claims["exp"] - claims["iat"] == 3600
    sends = [r for r in server.requests if r.path.endswith("messages:send")]
    assert {r.headers["authorization"] for r in sends} == {f"Bearer {emulator.issued[0]}"}
    android, web = emulator.messages
    assert android == {
        "token": DEVICE,
        "notification": {
            "title": "Order shipped",
            "body": "Arrives Tuesday",
            "image": "https://acme.example/p.png",
        },
        "data": {"order": "7", "url": "https://acme.example/orders/7"},
        "android": {"priority": "high", "ttl": "600s", "notification": {"channel_id": "orders"}},
        "fcm_options": {"analytics_label": "L1"},
    }
    assert web["webpush"] == {
        "fcm_options": {"link": "https://acme.example/orders/7"},
        "headers": {"TTL": "600"},
    }


def test_it_reuses_the_cached_token_across_batches_until_near_expiry(fcm):
    emulator, _, make = fcm
    with make() as backend:
        backend.send_many([push()])
    with make() as backend:
        backend.send_many([push()])
    assert len(emulator.issued) == 1

    emulator.expires_in = 200  # under the 5-minute margin: every batch fetches a fresh one
    with make() as backend:
        backend.check()
        backend.send_many([push()])
    assert len(emulator.issued) == 3


def test_it_deactivates_an_unregistered_token(fcm):
    emulator, _, make = fcm
    emulator.unregistered.add(DEVICE)
    with make() as backend:
        [result] = backend.send_many([push()])

    assert not result.ok and result.permanent and result.deactivate
    assert result.error == "HTTP 404: UNREGISTERED: Requested entity was not found."


def test_a_404_without_fcms_verdict_does_not_deactivate(fcm):
    _, _, make = fcm
    with make(project_id="wrong-project") as backend:
        [result] = backend.send_many([push()])

    assert not result.ok and result.permanent and not result.deactivate
    assert "NOT_FOUND" in result.error


def test_it_deactivates_a_malformed_token_but_not_a_bad_payload(fcm):
    _, _, make = fcm
    with make() as backend:
        (bad_token,) = backend.send_many([push(to="not a token")])
    assert not bad_token.ok and bad_token.permanent and bad_token.deactivate
    assert "INVALID_ARGUMENT: The registration token is not a valid FCM registration token" in bad_token.error

    with make() as backend:
        backend.body = lambda message: {"message": {"token": DEVICE, "data": {"n": 1}}}  # type: ignore[method-assign]
        [bad_payload] = backend.send_many([push()])
    assert not bad_payload.ok and bad_payload.permanent and not bad_payload.deactivate


def test_it_stops_the_batch_on_quota_exceeded_with_the_retry_after(fcm):
    emulator, _, make = fcm
    emulator.faults.fail_next(
        fcm_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded",
            fcm_code="QUOTA_EXCEEDED",
            headers={"Retry-After": "60"},
        )
    )
    with make() as backend:
        results = backend.send_many([push(ref="L1"), push(ref="L2")])

    assert [(r.ok, r.permanent, r.retry_after) for r in results] == [(False, False, 60.0)] * 2
    assert "QUOTA_EXCEEDED" in results[0].error and results[1].error.startswith("not attempted")
    assert emulator.messages == []


def test_it_treats_unavailable_as_temporary_and_carries_on(fcm):
    emulator, _, make = fcm
    emulator.faults.fail_next(
        fcm_error(
            503,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            fcm_code="UNAVAILABLE",
            headers={"Retry-After": "10"},
        )
    )
    with make() as backend:
        failed, sent = backend.send_many([push(ref="L1"), push(ref="L2")])

    assert not failed.ok and not failed.permanent and failed.retry_after == 10
    assert sent.ok


def test_it_refreshes_a_revoked_token_once_and_retries_the_message(fcm):
    emulator, _, make = fcm
    with make() as backend:
        backend.send_many([push()])
        emulator.revoked.add(emulator.issued[0])
        [result] = backend.send_many([push(ref="L2")])

    assert result.ok
    assert len(emulator.issued) == 2 and len(emulator.messages) == 2


def test_it_raises_when_a_fresh_token_is_refused_too(fcm):
    emulator, _, make = fcm
    emulator.faults.fail_next(
        fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), times=2
    )
    with make() as backend, pytest.raises(DeliveryError) as caught:
        backend.send_many([push()])

    assert caught.value.permanent
    assert "UNAUTHENTICATED" in caught.value.message
    assert len(emulator.issued) == 2


def test_a_third_party_auth_error_fails_the_message_without_refreshing(fcm):
    emulator, _, make = fcm
    emulator.faults.fail_next(
        fcm_error(
            401,
            "UNAUTHENTICATED",
            "Auth error from APNS or Web Push Service",
            fcm_code="THIRD_PARTY_AUTH_ERROR",
        )
    )
    with make() as backend:
        failed, sent = backend.send_many([push(platform="ios"), push()])

    assert not failed.ok and failed.permanent and not failed.deactivate
    assert sent.ok and len(emulator.issued) == 1


def test_a_service_account_google_refuses_is_a_permanent_error(fcm):
    emulator, _, make = fcm
    _, other_key = make_service_account("acme-app", "unused")
    emulator.public_key = other_key.public_key()  # Google no longer knows this key
    with make() as backend, pytest.raises(DeliveryError) as caught:
        backend.check()
    assert caught.value.permanent and "Invalid JWT Signature." in caught.value.message


def test_its_check_fetches_a_token(fcm):
    emulator, _, make = fcm
    with make() as backend:
        assert backend.check() == f"FCM: access token issued for {emulator.client_email} (project acme-app)"
    assert len(emulator.issued) == 1


def test_it_refuses_an_unusable_service_account():
    with pytest.raises(DeliveryError, match="not JSON"):
        FcmBackend(service_account="{")
    with pytest.raises(DeliveryError, match="private_key"):
        FcmBackend(service_account={"client_email": "a@b"})
