"""The APNs backend against a loopback HTTP/2-over-TLS emulator of Apple's provider API."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from delivery.backends import DeliveryError, OutboundMessage
from delivery.backends.apns import ApnsBackend
from delivery.tests.providers.fake_apns import ApnsEmulator, apns_error

PHONE = "a" * 64
TABLET = "b" * 64


def p8() -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key


@pytest.fixture
def apns(serve_h2, certificate):
    pem, key = p8()
    emulator = ApnsEmulator(
        public_key=key.public_key(), devices={PHONE: "com.acme.app", TABLET: "com.acme.app"}
    )
    server = serve_h2(emulator)

    def make(**options) -> ApnsBackend:
        defaults = {
            "team_id": emulator.team_id,
            "key_id": emulator.key_id,
            "private_key": pem,
            "topic": "com.acme.app",
            "api_base": server.url,
            "verify": str(certificate[0]),
        }
        return ApnsBackend(**{**defaults, **options})

    return emulator, server, make


def alert(to: str = PHONE, ref: str = "L1", **payload) -> OutboundMessage:
    payload = payload or {
        "title": "Back in stock",
        "body": "Your size is back",
        "url": "https://acme.example/p/1",
        "image": "https://acme.example/p/1.jpg",
        "data": {"product": 1},
    }
    return OutboundMessage(channel="mobilepush", to=to, ref=ref, payload=payload, meta={"platform": "ios"})


def test_it_sends_over_one_http2_connection_with_a_verified_es256_token(apns):
    emulator, server, make = apns
    with make(ttl=600, priority="5") as backend:
        results = backend.send_many([alert(PHONE, "L1"), alert(TABLET, "L2")])

    assert [r.ok for r in results] == [True, True]
    assert [r.provider_id for r in results] == [n["id"] for n in emulator.notifications]
    assert {r.http_version for r in server.requests} == {"HTTP/2"}
    assert {r.alpn for r in server.requests} == {"h2"}
    assert server.connections == 1
    header, claims = emulator.tokens_seen[0]
    assert header["alg"] == "ES256" and header["kid"] == emulator.key_id
    assert claims["iss"] == emulator.team_id and abs(claims["iat"] - time.time()) < 60
    sent = emulator.notifications[0]
    assert sent["body"] == {
        "aps": {
            "alert": {"title": "Back in stock", "body": "Your size is back"},
            "sound": "default",
            "mutable-content": 1,
        },
        "url": "https://acme.example/p/1",
        "image": "https://acme.example/p/1.jpg",
        "product": 1,
    }
    headers = sent["headers"]
    assert (headers["apns-topic"], headers["apns-push-type"], headers["apns-priority"]) == (
        "com.acme.app",
        "alert",
        "5",
    )
    assert 590 <= int(headers["apns-expiration"]) - time.time() <= 600


def test_it_reuses_the_provider_token_across_batches(apns):
    _, server, make = apns
    with make() as backend:
        backend.send_many([alert()])
    with make() as backend:
        backend.send_many([alert()])

    first, second = (request.headers["authorization"] for request in server.requests)
    assert first == second


@pytest.mark.parametrize(
    ("device", "reason", "status"), [(TABLET, "Unregistered", 410), ("c" * 64, "BadDeviceToken", 400)]
)
def test_it_deactivates_a_token_apple_does_not_know(apns, device, reason, status):
    emulator, _, make = apns
    emulator.unregistered.add(TABLET)
    with make() as backend:
        gone, sent = backend.send_many([alert(device), alert(PHONE)])

    assert not gone.ok and gone.permanent and gone.deactivate
    assert gone.error == f"HTTP {status}: {reason}"
    assert sent.ok


def test_a_token_for_another_app_is_permanent_without_deactivating(apns):
    emulator, _, make = apns
    emulator.devices[TABLET] = "com.acme.other"
    with make() as backend:
        [result] = backend.send_many([alert(TABLET)])
    assert not result.ok and result.permanent and not result.deactivate
    assert result.error == "HTTP 400: DeviceTokenNotForTopic"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "TooManyRequests"), (500, "InternalServerError"), (503, "ServiceUnavailable")],
)
def test_it_treats_throttling_and_outages_as_temporary(apns, status, reason):
    emulator, _, make = apns
    emulator.faults.fail_next(apns_error(status, reason))
    with make() as backend:
        failed, sent = backend.send_many([alert(PHONE), alert(TABLET)])

    assert not failed.ok and not failed.permanent and not failed.deactivate
    assert failed.error == f"HTTP {status}: {reason}"
    assert sent.ok


def test_it_fails_a_payload_too_large_permanently(apns):
    _, _, make = apns
    with make() as backend:
        [result] = backend.send_many([alert(body="x" * 5000)])
    assert not result.ok and result.permanent and result.error == "HTTP 413: PayloadTooLarge"


def test_it_resigns_an_expired_provider_token_once_and_retries(apns):
    emulator, server, make = apns
    with make() as backend:
        backend.send_many([alert()])
        first_token = server.requests[0].headers["authorization"].removeprefix("bearer ")
        emulator.expired.add(first_token)  # Apple now considers the cached token expired
        [result] = backend.send_many([alert(TABLET)])

    assert result.ok
    expired_try, retry = server.requests[1:]
    assert expired_try.headers["authorization"] == f"bearer {first_token}"
    assert retry.headers["authorization"] != expired_try.headers["authorization"]
    assert [n["device"] for n in emulator.notifications] == [PHONE, TABLET]


def test_it_raises_a_permanent_error_when_apple_refuses_the_key(apns):
    _, _, make = apns
    other_pem, _ = p8()
    with make(private_key=other_pem) as backend, pytest.raises(DeliveryError) as caught:
        backend.send_many([alert()])
    assert caught.value.permanent and "InvalidProviderToken" in caught.value.message

    with make(private_key=other_pem) as backend, pytest.raises(DeliveryError):
        backend.check()


def test_its_check_posts_to_a_device_that_does_not_exist(apns):
    emulator, server, make = apns
    with make() as backend:
        assert "accepted the token" in backend.check()
    assert server.requests[-1].path == "/3/device/" + "0" * 64
    assert emulator.notifications == []


def test_an_http1_only_client_cannot_talk_to_the_emulator(apns, certificate):
    import httpx

    _, server, _ = apns
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=_context(certificate[0])) as client:
        client.post(f"{server.url}/3/device/{PHONE}", content=b"{}")


def _context(cafile):
    import ssl

    return ssl.create_default_context(cafile=str(cafile))


def test_it_refuses_tokens_of_other_platforms_without_asking_apple(apns):
    _, server, make = apns
    android = OutboundMessage(
        channel="mobilepush",
        to="fcm-token:APA91b",
        ref="L9",
        payload={"title": "Hi"},
        meta={"platform": "android"},
    )
    with make() as backend:
        [result] = backend.send_many([android])

    assert not result.ok and result.permanent and not result.deactivate
    assert server.requests == []


def test_a_message_topic_overrides_the_default_bundle_id(apns):
    emulator, _, make = apns
    emulator.devices[TABLET] = "com.acme.other"
    message = alert(TABLET)
    message.meta["topic"] = "com.acme.other"
    with make() as backend:
        [result] = backend.send_many([message])
    assert result.ok and emulator.notifications[0]["headers"]["apns-topic"] == "com.acme.other"


def test_it_refuses_a_key_that_is_not_p256():
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(DeliveryError, match="P-256"):
        ApnsBackend(team_id="T", key_id="K", topic="com.acme.app", private_key=pem)
