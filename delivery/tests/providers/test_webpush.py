"""The web push backend against a loopback push service that decrypts what it receives."""

from __future__ import annotations

import pytest

from delivery.backends import DeliveryError, OutboundMessage
from delivery.backends.webpush import WebPushBackend
from delivery.tests.providers._server import Reply
from delivery.tests.providers.fake_push import WebPushService
from delivery.vapid import generate_vapid_keys


@pytest.fixture
def push(serve):
    keys = generate_vapid_keys()
    service = WebPushService(application_server_key=keys.public_key)
    server = serve(service)
    service.url = server.url

    def make(**options) -> WebPushBackend:
        defaults = {
            "vapid_private_key": keys.private_key,
            "vapid_public_key": keys.public_key,
            "vapid_subject": "mailto:push@acme.example",
        }
        return WebPushBackend(**{**defaults, **options})

    return service, server, make


def notification(subscription: dict, ref: str = "L1", **payload) -> OutboundMessage:
    payload = payload or {
        "title": "Sale",
        "body": "30% off until Sunday",
        "icon": "https://acme.example/i.png",
        "image": "",
        "url": "https://acme.example/sale",
    }
    return OutboundMessage(
        channel="webpush",
        to=subscription["endpoint"],
        ref=ref,
        payload=payload,
        meta={"keys": subscription["keys"]},
    )


def test_it_encrypts_the_payload_for_the_subscriber_and_signs_vapid(push):
    service, server, make = push
    first, second = service.subscribe(), service.subscribe()
    with make(ttl=3600, urgency="high") as backend:
        results = backend.send_many(
            [notification(first, "L1"), notification(second, "L2", title="Only a title")]
        )

    assert [r.ok for r in results] == [True, True]
    assert results[0].provider_id == f"{server.url}/message/m1"
    # The push service decrypted each body with that subscriber's private key and auth secret.
    assert service.subscriber(first["endpoint"]).received == [
        {
            "title": "Sale",
            "body": "30% off until Sunday",
            "icon": "https://acme.example/i.png",
            "url": "https://acme.example/sale",
        }
    ]
    assert service.subscriber(second["endpoint"]).received == [{"title": "Only a title"}]
    push_record = service.pushes[0]
    assert push_record["claims"]["aud"] == server.url
    assert push_record["claims"]["sub"] == "mailto:push@acme.example"
    assert (push_record["ttl"], push_record["urgency"]) == ("3600", "high")
    assert server.requests[0].client_port == server.requests[1].client_port


def test_a_payload_for_one_subscriber_cannot_be_read_with_another_subscribers_keys(push):
    import http_ece

    service, server, make = push
    first, second = service.subscribe(), service.subscribe()
    with make() as backend:
        backend.send_many([notification(first)])

    other = service.subscriber(second["endpoint"])
    with pytest.raises(http_ece.ECEException):
        http_ece.decrypt(
            server.requests[0].body, private_key=other.key, auth_secret=other.auth, version="aes128gcm"
        )


@pytest.mark.parametrize("gone", ["expired", "unknown"])
def test_it_deactivates_a_subscription_the_push_service_no_longer_knows(push, gone):
    service, _, make = push
    subscription = service.subscribe()
    if gone == "expired":
        service.subscriber(subscription["endpoint"]).gone = True
    else:
        subscription["endpoint"] = subscription["endpoint"].rsplit("/", 1)[0] + "/nobody"
    with make() as backend:
        [result] = backend.send_many([notification(subscription)])

    assert not result.ok and result.permanent and result.deactivate
    assert result.error.startswith("HTTP 410" if gone == "expired" else "HTTP 404")


def test_it_fails_a_payload_the_push_service_finds_too_large_permanently(push):
    service, _, make = push
    service.max_body = 200
    with make() as backend:
        [result] = backend.send_many([notification(service.subscribe(), body="x" * 300)])

    assert not result.ok and result.permanent and not result.deactivate
    assert result.error == "HTTP 413: payload too large"


def test_it_refuses_a_payload_over_the_web_push_limit_without_sending(push):
    service, server, make = push
    with make() as backend:
        [result] = backend.send_many([notification(service.subscribe(), body="x" * 4000)])

    assert not result.ok and result.permanent and "payload too large" in result.error
    assert server.requests == []


def test_it_honours_429_and_skips_the_rest_for_that_push_service_only(push, serve):
    service, _, make = push
    other_service = WebPushService(application_server_key=service.application_server_key)
    other_server = serve(other_service)
    other_service.url = other_server.url
    service.faults.fail_next(Reply(429, "slow down", {"Retry-After": "120"}))
    subscriptions = [service.subscribe(), other_service.subscribe(), service.subscribe()]
    with make() as backend:
        throttled, elsewhere, skipped = backend.send_many([notification(s) for s in subscriptions])

    assert (throttled.ok, throttled.permanent, throttled.retry_after) == (False, False, 120)
    assert elsewhere.ok
    assert (skipped.ok, skipped.retry_after) == (False, 120) and skipped.error.startswith("not attempted")
    assert len(service.pushes) == 0 and len(other_service.pushes) == 1


def test_it_treats_a_push_service_outage_as_temporary(push):
    service, _, make = push
    service.faults.fail_next(Reply(503, "unavailable", {"Retry-After": "30"}))
    with make() as backend:
        failed, sent = backend.send_many(
            [notification(service.subscribe()), notification(service.subscribe())]
        )

    assert not failed.ok and not failed.permanent and not failed.deactivate and failed.retry_after == 30
    assert sent.ok


def test_a_vapid_key_the_subscription_was_not_made_with_is_refused_permanently(push):
    service, _, make = push
    other = generate_vapid_keys()
    with make(vapid_private_key=other.private_key, vapid_public_key=other.public_key) as backend:
        [result] = backend.send_many([notification(service.subscribe())])

    assert not result.ok and result.permanent and not result.deactivate
    assert result.error.startswith("HTTP 403")


def test_a_subscription_with_missing_or_broken_keys_is_deactivated_without_a_request(push):
    service, server, make = push
    broken = service.subscribe()
    broken["keys"] = {"p256dh": "AAAA", "auth": broken["keys"]["auth"]}
    missing = service.subscribe()
    missing["keys"] = {}
    with make() as backend:
        results = backend.send_many([notification(broken), notification(missing)])

    assert [(r.ok, r.permanent, r.deactivate) for r in results] == [(False, True, True)] * 2
    assert server.requests == []


def test_an_endpoint_that_is_not_a_url_is_deactivated_without_a_request(push):
    service, server, make = push
    subscription = service.subscribe()
    subscription["endpoint"] = "push-subscription-42"
    with make() as backend:
        [result] = backend.send_many([notification(subscription)])
    assert not result.ok and result.permanent and result.deactivate
    assert server.requests == []


def test_it_reports_an_unreachable_push_service_as_temporary_and_not_ambiguous(push, closed_port_url):
    _, _, make = push
    service = WebPushService(url=closed_port_url)
    subscription = service.subscribe()
    with make() as backend:
        [result] = backend.send_many([notification(subscription)])

    assert not result.ok and not result.permanent and not result.ambiguous
    assert result.error.startswith("could not connect")


def test_it_refuses_keys_that_do_not_belong_together_or_a_bad_subject():
    keys, other = generate_vapid_keys(), generate_vapid_keys()
    with pytest.raises(DeliveryError, match="does not belong"):
        WebPushBackend(
            vapid_private_key=keys.private_key,
            vapid_public_key=other.public_key,
            vapid_subject="mailto:a@b.example",
        )
    with pytest.raises(DeliveryError, match="vapid_subject"):
        WebPushBackend(vapid_private_key=keys.private_key, vapid_subject="ops@acme.example")
    assert (
        WebPushBackend(vapid_private_key=keys.private_key, vapid_subject="mailto:a@b.example")
        .check()
        .endswith(keys.public_key)
    )


def test_a_connection_dropped_before_the_reply_is_ambiguous(push):
    service, _, make = push
    service.faults.fail_next(Reply(0))
    with make() as backend:
        dropped, sent = backend.send_many(
            [notification(service.subscribe()), notification(service.subscribe())]
        )

    assert not dropped.ok and dropped.ambiguous and not dropped.permanent
    assert sent.ok
