"""The SMTP backend against a real SMTP server on loopback (aiosmtpd), including its failures."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from delivery.backends import DeliveryError, OutboundMessage
from delivery.backends.smtp import SmtpBackend
from delivery.mime import build_email
from tests.ports import free_port, on_a_free_port


@dataclass
class Relay:
    """What the server saw, and how it should misbehave."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    connections: int = 0
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: dict[str, str] = field(default_factory=dict)
    drop_after_data: set[str] = field(default_factory=set)
    drop_next_mail: bool = False
    pipelining: bool = False  # advertise RFC 2920 PIPELINING (aiosmtpd reads pipelined commands in order)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.relay.lock:
            if not getattr(session, "counted", False):
                session.counted = True
                self.relay.connections += 1
        session.host_name = hostname
        if self.relay.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.relay.drop_next_mail:
            self.relay.drop_next_mail = False
            server.transport.abort()
            return "421 closing"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.relay.rcpt_replies:
            return self.relay.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        to = envelope.rcpt_tos[0]
        if to in self.relay.drop_after_data:
            with self.relay.lock:
                self.relay.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            server.transport.abort()
            return "250 never heard"
        if to in self.relay.data_replies:
            return self.relay.data_replies[to]
        with self.relay.lock:
            self.relay.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            n = len(self.relay.received)
        return f"250 2.0.0 Ok: queued as Q{n:04d}"


def self_signed(tmp_path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


@pytest.fixture
def serve():
    controllers = []

    def start(*, pipelining: bool = False, **kwargs) -> Relay:
        def on(port: int) -> tuple[Relay, Controller]:
            relay = Relay(port=port, pipelining=pipelining)
            controller = Controller(Handler(relay), hostname=relay.host, port=relay.port, **kwargs)
            controller.start()
            return relay, controller

        relay, controller = on_a_free_port(on)
        controllers.append(controller)
        return relay

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture(params=["one command at a time", "pipelining"])
def relay(serve, request) -> Relay:
    """Every behaviour holds whether the server offers PIPELINING (MAIL, RCPT and DATA in one write)."""
    return serve(pipelining=request.param == "pipelining")


def message(to: str, ref: str) -> OutboundMessage:
    built = build_email(from_name="Shop", from_addr="news@shop.example", to=to, subject=f"For {to}",
                        html="<p>Hi</p>", text=".leading dot line\nHi", message_id=f"<{ref}.x@shop.example>",
                        return_path=f"b+{ref}.mac@bounces.shop.example")
    return OutboundMessage(channel="email", to=to, ref=ref, raw=bytes(built), envelope_from=built.envelope_from)


def backend(relay: Relay, **kw) -> SmtpBackend:
    options = {"host": relay.host, "port": relay.port, "tls": "none", "timeout": 5, **kw}
    b = SmtpBackend(**options)
    b.pool_key = f"test:{relay.port}"
    return b


def test_each_message_goes_in_its_own_transaction_with_the_queue_id(relay):
    with backend(relay) as b:
        results = b.send_many([message("a@example.com", "L1"), message("b@example.com", "L2")])

    assert [(r.ref, r.ok, r.provider_id) for r in results] == [("L1", True, "Q0001"), ("L2", True, "Q0002")]
    assert [(frm, tos) for frm, tos, _ in relay.received] == [
        ("b+L1.mac@bounces.shop.example", ["a@example.com"]), ("b+L2.mac@bounces.shop.example", ["b@example.com"])]
    assert relay.connections == 1
    assert b"\r\n.leading dot line" in relay.received[0][2]  # the dot-stuffing was undone by the server


def test_4xx_is_temporary_and_5xx_permanent_with_the_servers_text_and_the_rest_still_goes(relay):
    relay.rcpt_replies["full@example.com"] = "452 4.2.2 Mailbox full"
    relay.rcpt_replies["gone@example.com"] = "550 5.1.1 User unknown"
    relay.data_replies["spam@example.com"] = "554 5.7.1 Message rejected as spam"
    with backend(relay) as b:
        results = b.send_many([message(a, f"L{n}") for n, a in enumerate(
            ["full@example.com", "gone@example.com", "spam@example.com", "ok@example.com"])])

    assert [(r.ok, r.permanent) for r in results] == [(False, False), (False, True), (False, True), (True, False)]
    assert results[0].error == "452 4.2.2 Mailbox full"
    assert results[1].error == "550 5.1.1 User unknown"
    assert results[2].error == "554 5.7.1 Message rejected as spam"
    assert [tos for _, tos, _ in relay.received] == [["ok@example.com"]]
    assert relay.connections == 1  # RSET after a refusal, the same connection goes on


def test_a_connection_lost_after_data_is_ambiguous_and_the_batch_goes_on(relay):
    relay.drop_after_data.add("maybe@example.com")
    with backend(relay) as b:
        results = b.send_many([message("maybe@example.com", "L1"), message("next@example.com", "L2")])

    assert results[0].ambiguous and not results[0].ok and not results[0].permanent
    assert results[1].ok
    assert relay.connections == 2


def test_a_connection_dropped_between_messages_is_reconnected_once(relay):
    with backend(relay) as b:
        assert b.send_many([message("a@example.com", "L1")])[0].ok
        relay.drop_next_mail = True
        results = b.send_many([message("b@example.com", "L2"), message("c@example.com", "L3")])

    assert all(r.ok and not r.ambiguous for r in results)
    assert [tos[0] for _, tos, _ in relay.received] == ["a@example.com", "b@example.com", "c@example.com"]
    assert relay.connections == 2


def test_connections_are_pooled_across_batches_and_backend_instances(relay):
    for n in range(3):
        with backend(relay) as b:
            assert b.send_many([message(f"p{n}@example.com", f"L{n}")])[0].ok

    assert relay.connections == 1
    with backend(relay, pool_size=0) as b:
        b.send_many([message("x@example.com", "LX")])
    with backend(relay, pool_size=0) as b:
        b.send_many([message("y@example.com", "LY")])
    assert relay.connections == 3  # the pooled one, then one new connection per unpooled batch


def test_an_unreachable_relay_raises_before_anything_is_sent():
    b = SmtpBackend(host="127.0.0.1", port=free_port(), tls="none", timeout=2)

    with pytest.raises(DeliveryError, match="Cannot connect") as info:
        b.send_many([message("a@example.com", "L1")])
    assert not info.value.permanent


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_with_the_right_password_sends_and_a_wrong_one_is_a_permanent_error(serve):
    def authenticator(server, session, envelope, mechanism, auth_data):
        given = (auth_data.login, auth_data.password) if isinstance(auth_data, LoginPassword) else ()
        ok = tuple(v.decode() if isinstance(v, bytes) else v for v in given) == ("shop", "s3cret")
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535

    relay = serve(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    with backend(relay, username="shop", password="s3cret") as b:
        assert b.send_many([message("a@example.com", "L1")])[0].ok
    with pytest.raises(DeliveryError, match="refused the login: 535") as info:
        backend(relay, username="shop", password="wrong").open()
    assert info.value.permanent


def test_starttls_upgrades_the_connection_and_an_untrusted_certificate_is_refused(serve, tmp_path):
    relay = serve(tls_context=self_signed(tmp_path), require_starttls=True)

    with backend(relay, tls="starttls", verify_tls=False) as b:
        assert isinstance(b.conn.sock, ssl.SSLSocket)
        assert b.send_many([message("a@example.com", "L1")])[0].ok
    with pytest.raises(DeliveryError, match="certificate") as info:
        backend(relay, tls="starttls", verify_tls=True).open()
    assert info.value.permanent


def test_implicit_tls_works(serve, tmp_path):
    relay = serve(ssl_context=self_signed(tmp_path))

    with backend(relay, tls="implicit", verify_tls=False) as b:
        assert b.send_many([message("a@example.com", "L1")])[0].ok


def test_check_reports_the_connection(relay):
    assert backend(relay).check().startswith(f"Connected to 127.0.0.1:{relay.port} (none")


def test_the_rate_is_kept_for_the_dispatch_and_not_waited_for(relay):
    # The provider's rate is shared by every worker, so mailings.throttle applies it (Redis token
    # bucket; mailings/tests/test_dispatch.py tests the spacing); one backend waiting on its own
    # would let N workers send N times the rate.
    start = time.monotonic()
    with backend(relay, rate_per_second=10) as b:
        results = b.send_many([message(f"p{n}@example.com", f"L{n}") for n in range(15)])
    assert all(r.ok for r in results) and b.rate == 10.0
    assert time.monotonic() - start < 1.0  # ~30 ms; waiting for the rate would take 1.4 s


def test_an_unknown_tls_mode_is_refused():
    with pytest.raises(DeliveryError, match="Unknown TLS mode"):
        SmtpBackend(host="h", tls="ssl3")


def test_it_pipelines_the_envelope_only_when_the_server_offers_it_and_the_addresses_are_plain(serve):
    from delivery.backends.smtp import _pipelinable

    for offered in (False, True):
        relay = serve(pipelining=offered)
        with backend(relay) as b:
            [result] = b.send_many([message("anna@example.com", "L1")])
            assert result.ok
            assert _pipelinable(b.conn, message("anna@example.com", "L2")) is offered
            ok = message("anna@example.com", "L3")
            for bad in ("anna maria@example.com", "anna@example.com>\r\nRCPT TO:<x@y.z", "änna@example.com"):
                raw = OutboundMessage(channel="email", to=bad, ref="L4", raw=ok.raw, envelope_from=ok.envelope_from)
                assert not _pipelinable(b.conn, raw)  # smtplib's own quoting, command by command
