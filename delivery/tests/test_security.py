"""Security regressions of the delivery app: an account cannot make the server connect to
loopback, private or metadata addresses (SSRF) through its provider settings or a push endpoint."""

from __future__ import annotations

import pytest

from accounts.access import Actor
from delivery import mime, netpolicy
from delivery.backends import DeliveryError, OutboundMessage, _http, get_backend
from delivery.backends.smtp import SmtpBackend
from delivery.backends.webpush import WebPushBackend
from delivery.services import provider_account_check, provider_account_create
from delivery.tests.providers._server import LoopbackServer, Reply
from delivery.vapid import generate_vapid_keys

SYSTEM = Actor.system()


@pytest.fixture(autouse=True)
def _no_private_hosts(settings) -> None:
    settings.DELIVERY_ALLOW_PRIVATE_HOSTS = False  # the multi-tenant default (conftest lifts it for emulators)


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                                "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "224.0.0.1"])  # noqa: S104
def test_private_and_reserved_addresses_are_not_public(ip):
    assert not netpolicy.is_public(ip)


def test_public_addresses_are_public():
    assert netpolicy.is_public("93.184.216.34") and netpolicy.is_public("2606:2800:220:1:248:1893:25c8:1946")


def test_one_address_check_serves_every_caller_with_its_own_private_policy(settings):
    """delivery.netpolicy.checked_address is the only check: the provider backends follow the
    delivery setting, the scenario webhook step passes its own policy (the scenario's)."""
    for host in ("127.0.0.1", "[::1]", "::ffff:10.0.0.1", "localhost"):
        with pytest.raises(netpolicy.PrivateAddress, match="private or reserved address") as exc:
            netpolicy.checked_address(host, 80)
        assert exc.value.permanent
    assert netpolicy.checked_address("93.184.216.34", 443) == "93.184.216.34"
    assert netpolicy.checked_address("[2606:2800:220:1:248:1893:25c8:1946]", 443) == "2606:2800:220:1:248:1893:25c8:1946"
    assert netpolicy.checked_address("127.0.0.1", 80, private_ok=True) == "127.0.0.1"
    settings.DELIVERY_ALLOW_PRIVATE_HOSTS = True
    assert netpolicy.checked_address("127.0.0.1", 80) == "127.0.0.1"
    with pytest.raises(netpolicy.PrivateAddress):  # a caller's own "no" stands whatever the setting
        netpolicy.checked_address("127.0.0.1", 80, private_ok=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://localhost:9/", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:127.0.0.1]:9/", "http://2130706433:9/"])
def test_the_http_client_refuses_private_addresses_before_connecting(url):
    with _http.http_client({}) as client, pytest.raises(DeliveryError) as exc:
        client.get(url)
    assert exc.value.permanent
    assert "private or reserved address" in str(exc.value)


def test_an_http_sms_check_url_on_loopback_is_not_fetched(acme):
    # A tenant admin's "test connection" must not probe (or read) services inside the network.
    seen = []

    def app(request):
        seen.append(request)
        return Reply(200, {"internal": "secret"})

    with LoopbackServer(app) as server:
        provider = provider_account_create(
            account=acme, channel="sms", kind="http_sms", name="GW", actor=SYSTEM,
            data={"url": f"{server.url}/send", "check_url": f"{server.url}/admin"})
        with pytest.raises(DeliveryError) as exc:
            provider_account_check(provider=provider)
    assert "private or reserved address" in str(exc.value)
    assert seen == []


def test_an_accounts_smtp_relay_on_loopback_is_refused(acme, smtp_server):
    provider = provider_account_create(
        account=acme, channel="email", kind="smtp", name="Relay", actor=SYSTEM,
        data={"host": "127.0.0.1", "port": str(smtp_server.port), "tls": "none"})
    backend = get_backend("email", provider=provider)
    with pytest.raises(DeliveryError) as exc:
        backend.open()
    assert exc.value.permanent
    assert "private or reserved address" in str(exc.value)


def test_the_operators_own_relay_from_settings_may_be_local(smtp_server):
    backend = SmtpBackend(host="127.0.0.1", port=smtp_server.port, tls="none")
    backend.open()
    backend.close()


def test_a_push_endpoint_on_a_private_address_is_not_posted_to():
    backend = WebPushBackend(vapid_private_key=generate_vapid_keys().private_key, vapid_subject="mailto:ops@example.com")
    with backend:
        [result] = backend.send_many([OutboundMessage(
            channel="webpush", to="https://169.254.169.254/latest/meta-data/", ref="R1",
            payload={"title": "t"}, meta={"keys": {"p256dh": "x", "auth": "y"}})])
    assert not result.ok and result.permanent and result.deactivate
    assert "private or reserved address" in result.error


# --- the wire format: no header or SMTP command injection ---------------------------------------


@pytest.mark.parametrize("address", ["a\x00b@example.com", "ab@example.com\x00", "a\x0bb@example.com",
                                     "a\x7fb@example.com", "ab@exa\x0cmple.com", "a@b.com\nBcc: c@d.com"])
def test_addresses_with_control_characters_are_refused(address):
    with pytest.raises(mime.AddressError):
        mime.encode_address(address)


def test_an_extra_header_name_cannot_end_in_a_line_break():
    with pytest.raises(ValueError, match="Not a header name"):
        mime.build_email(from_name="", from_addr="news@example.com", to="a@example.com", subject="s", html="<p>x</p>",
                         text="x", message_id="<1@example.com>", headers={"X-Tag\n": "v"})


def test_header_values_keep_to_one_line():
    built = mime.build_email(
        from_name="Shop\r\nBcc: evil@example.com", from_addr="news@example.com", to="a@example.com",
        subject="Hi\r\nBcc: evil@example.com", html="<p>x</p>", text="x", message_id="<1@example.com>",
        list_unsubscribe_https="https://example.com/u\r\nBcc: evil@example.com",
        headers={"X-Tag": "v\r\nBcc: evil@example.com"})
    head = built.header_bytes().decode()
    assert "\nBcc:" not in head and "\r\nBcc" not in head
    assert all(line.startswith((" ", "\t")) or ":" in line for line in head.split("\r\n") if line)
