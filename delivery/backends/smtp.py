"""SMTP backend (smtplib): one message per SMTP transaction, connections reused.

- ONE message per transaction (MAIL FROM / RCPT TO / DATA each), so every recipient gets its
  own result: a 2xx reply is sent (provider id: the queue id of the 250 reply, "queued as
  ABC123" or "id=..."), 4xx temporary, 5xx permanent; the server's text is kept.
- The connection dropping AFTER the message data was sent but before the server replied:
  `ambiguous=True` (it may have been delivered; marketing sends are not repeated).
- The connection dropping between messages (or a pooled connection the server closed while
  idle): reconnect once and go on with that message.
- Connections outlive a batch: close() returns a healthy connection to a per-process pool keyed
  by the backend's pool_key (the provider account and its updated_at; or the settings entry), up
  to `pool_size` idle connections, dropped after 60 s idle; open() takes one from there first.
- Rate limit: `rate_per_second` (0 = unlimited) is the provider's speed, kept on the instance as
  `rate`; the backend does not wait for it itself. The mailings dispatch applies it before each
  chunk through mailings.throttle (a token bucket shared by every worker through Redis, with
  back-off on 421/451), so the limit holds across processes and a slow provider never parks a
  worker inside send_many.
- TLS: "starttls" (587), "implicit" (465), "none" (25, or a local relay).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any

from delivery import netpolicy
from delivery.backends import FieldSpec, KindSpec
from delivery.backends.base import BaseBackend, DeliveryError, OutboundMessage, SendResult

IDLE_SECONDS = 60.0
_QUEUE_ID = re.compile(r"(?:queued as|id=)\s*([A-Za-z0-9._@<>-]+)", re.IGNORECASE)
_LEADING_DOT = re.compile(rb"(?m)^\.")

_pool_lock = threading.Lock()
_pool: dict[str, list[tuple[smtplib.SMTP, float]]] = {}


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        with contextlib.suppress(OSError):
            conn.close()


def pool_clear() -> None:
    """Close every pooled connection (tests; worker shutdown)."""
    with _pool_lock:
        conns = [c for entries in _pool.values() for c, _ in entries]
        _pool.clear()
    for conn in conns:
        _quit(conn)


def _text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(text.split())}".strip()


_SAFE_ADDRESS = re.compile(r"[^\x00-\x20<>\x7f-\U0010ffff]+@[^\x00-\x20<>\x7f-\U0010ffff]+")


def _pipelinable(conn: smtplib.SMTP, message: OutboundMessage) -> bool:
    """The server offers PIPELINING and both addresses are plain ASCII without spaces, brackets or
    line breaks (anything else takes smtplib's own quoting, command by command)."""
    return (conn.has_extn("pipelining") and _SAFE_ADDRESS.fullmatch(message.envelope_from or "") is not None
            and _SAFE_ADDRESS.fullmatch(message.to) is not None)


def _envelope(message: OutboundMessage) -> bytes:
    return f"MAIL FROM:<{message.envelope_from}>\r\nRCPT TO:<{message.to}>\r\nDATA\r\n".encode("ascii")


class _Dropped(Exception):
    """The connection went away; `sent`: after the message data was handed over."""

    def __init__(self, error: str, *, sent: bool) -> None:
        super().__init__(error)
        self.sent = sent


class _Guarded(smtplib.SMTP):
    """Connects only to a checked public address (delivery.netpolicy); TLS still checks the
    certificate against the host name (smtplib keeps it in `_host`)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        return super()._get_socket(netpolicy.checked_address(host, port), port, timeout)  # type: ignore[misc]


class _GuardedSMTP(_Guarded):
    pass


class _GuardedSMTPSSL(_Guarded, smtplib.SMTP_SSL):
    pass


class SmtpBackend(BaseBackend):
    channel = "email"
    # An account's own provider (delivery.backends.backend_for_provider): its host must be public.
    # The relay of settings (often localhost) is the operator's.
    restricted = False

    def __init__(
        self,
        host: str = "localhost",
        port: int = 25,
        username: str = "",
        password: str = "",
        tls: str = "starttls",
        verify_tls: bool = True,
        timeout: float = 30,
        pool_size: int = 2,
        rate_per_second: float = 0,
        local_hostname: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if tls not in ("starttls", "implicit", "none"):
            raise DeliveryError(f"Unknown TLS mode {tls!r}: starttls, implicit or none.", permanent=True)
        self.host, self.port = host, int(port)
        self.username, self.password = username or "", password or ""
        self.tls, self.verify_tls = tls, verify_tls
        self.timeout, self.pool_size = float(timeout), int(pool_size)
        self.rate = float(rate_per_second or 0)  # applied by the caller (see the module docstring)
        self.local_hostname = local_hostname or None
        self.pool_key = f"{host}:{port}:{username}:{tls}"  # get_backend sets a provider-specific key
        self.conn: smtplib.SMTP | None = None

    # --- connections -------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def connect(self) -> smtplib.SMTP:
        """A new authenticated connection. Raises DeliveryError (permanent when retrying the
        same settings cannot help: authentication refused, STARTTLS not offered)."""
        where = f"{self.host}:{self.port}"
        conn: smtplib.SMTP | None = None
        try:
            if self.tls == "implicit":
                ssl_class = _GuardedSMTPSSL if self.restricted else smtplib.SMTP_SSL
                conn = ssl_class(self.host, self.port, self.local_hostname, timeout=self.timeout,
                                 context=self._context())
            else:
                plain_class = _GuardedSMTP if self.restricted else smtplib.SMTP
                conn = plain_class(self.host, self.port, self.local_hostname, timeout=self.timeout)
            conn.ehlo_or_helo_if_needed()
            if self.tls == "starttls":
                conn.starttls(context=self._context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password)
            return conn
        except smtplib.SMTPAuthenticationError as exc:
            self._discard(conn)
            raise DeliveryError(f"{where} refused the login: {_text(exc.smtp_code, exc.smtp_error)}", permanent=True) from exc
        except smtplib.SMTPNotSupportedError as exc:
            self._discard(conn)
            raise DeliveryError(f"{where} does not support this: {exc}", permanent=True) from exc
        except ssl.SSLCertVerificationError as exc:
            self._discard(conn)
            raise DeliveryError(f"{where}: the TLS certificate is not valid: {exc.verify_message}", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            self._discard(conn)
            raise DeliveryError(f"{where} refused the connection: {_text(exc.smtp_code, exc.smtp_error)}",
                                permanent=exc.smtp_code >= 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._discard(conn)
            raise DeliveryError(f"Cannot connect to {where}: {exc or type(exc).__name__}") from exc

    @staticmethod
    def _discard(conn: smtplib.SMTP | None) -> None:
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def _pool_slot(self) -> str:
        """The pool key plus everything the connection depends on, so a connection made with
        other settings or credentials is never handed out (the password only as a hash)."""
        secret = hashlib.sha256(self.password.encode()).hexdigest()[:16]
        return "|".join((self.pool_key, self.host, str(self.port), self.tls, str(self.verify_tls),
                         self.username, secret, self.local_hostname or ""))

    def open(self) -> None:
        if self.conn is not None:
            return
        now = time.monotonic()
        stale: list[smtplib.SMTP] = []
        with _pool_lock:
            entries = _pool.get(self._pool_slot(), []) if self.pool_size > 0 else []
            while entries:
                conn, last = entries.pop()
                if now - last <= IDLE_SECONDS:
                    self.conn = conn
                    break
                stale.append(conn)
        for conn in stale:
            _quit(conn)
        if self.conn is None:
            self.conn = self.connect()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if self.pool_size > 0 and conn.sock is not None:
            with _pool_lock:
                entries = _pool.setdefault(self._pool_slot(), [])
                if len(entries) < self.pool_size:
                    entries.append((conn, time.monotonic()))
                    return
        _quit(conn)

    def check(self) -> str:
        """Connect, EHLO, STARTTLS/AUTH as configured, QUIT. Raises DeliveryError."""
        conn = self.connect()
        features = sorted(k.upper() for k in (conn.esmtp_features or {}))
        _quit(conn)
        auth = ", authenticated" if self.username else ""
        return f"Connected to {self.host}:{self.port} ({self.tls}{auth}; {', '.join(features[:6])})."

    # --- sending -----------------------------------------------------------------------------

    def _transaction(self, conn: smtplib.SMTP, message: OutboundMessage, *, envelope_sent: bool = False,
                     follow: OutboundMessage | None = None) -> tuple[SendResult, bool]:
        """One MAIL/RCPT/DATA. Returns the result for a reply, and whether `follow`'s envelope went
        out behind this message's data; raises _Dropped when the connection goes away.

        With a server that offers PIPELINING (RFC 2920) the three commands go in one write and
        their replies are read together, and the next message's envelope rides behind this one's
        data (message content may open a command group): one round trip a message instead of four,
        which is most of what SMTP costs on a fast relay. `envelope_sent`: this message's envelope
        already went out that way behind the previous message."""
        sent = False
        follow_sent = False
        try:
            if _pipelinable(conn, message):
                if not envelope_sent:
                    conn.send(_envelope(message))
                replies = [conn.getreply() for _ in range(3)]
                (mail_code, _), (rcpt_code, _), (code, reply) = replies
                if mail_code != 250 or rcpt_code not in (250, 251) or code != 354:
                    if code == 354:  # a server that took DATA without a recipient: do not send, start over
                        raise _Dropped("the server accepted DATA after refusing the envelope", sent=False)
                    bad_code, bad_reply = next(r for r in replies if r[0] not in (250, 251))
                    return self._refused(conn, message, bad_code, bad_reply), False
            else:
                code, reply = conn.mail(message.envelope_from)
                if code != 250:
                    return self._refused(conn, message, code, reply), False
                code, reply = conn.rcpt(message.to)
                if code not in (250, 251):
                    return self._refused(conn, message, code, reply), False
                code, reply = conn.docmd("DATA")
                if code != 354:
                    return self._refused(conn, message, code, reply), False
            data = message.raw
            if data[:1] == b"." or b"\n." in data:
                data = _LEADING_DOT.sub(b"..", data)
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            data += b".\r\n"
            if follow is not None and _pipelinable(conn, follow):
                data += _envelope(follow)
                follow_sent = True
            conn.send(data)
            sent = True
            code, reply = conn.getreply()
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Dropped(str(exc) or type(exc).__name__, sent=sent) from exc
        if code == 250:
            found = _QUEUE_ID.search(reply.decode("utf-8", "replace"))
            return SendResult(ref=message.ref, ok=True, provider_id=found.group(1) if found else ""), follow_sent
        if code == 421 and follow_sent:
            raise _Dropped(_text(code, reply), sent=True)  # closing, with the next envelope unanswered
        return self._refused(conn, message, code, reply, reset=False), follow_sent

    def _refused(self, conn: smtplib.SMTP, message: OutboundMessage, code: int, reply: bytes,
                 *, reset: bool = True) -> SendResult:
        if code == 421:  # the server is closing the connection
            raise _Dropped(_text(code, reply), sent=False)
        if reset:
            try:
                conn.rset()
            except (smtplib.SMTPException, OSError):
                self._discard(conn)
                self.conn = None  # broken: the next message reconnects
        return SendResult.failed(message.ref, _text(code, reply), permanent=500 <= code < 600)

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """One SendResult per message, in order. Raises DeliveryError only when the first
        connection cannot be made (nothing was sent)."""
        self.open()
        results: list[SendResult] = []
        ahead = False  # this message's envelope went out behind the previous message's data
        for index, message in enumerate(messages):
            retried = False
            follow = messages[index + 1] if index + 1 < len(messages) else None
            while True:
                try:
                    if self.conn is None:
                        self.conn = self.connect()
                        ahead = False
                    result, ahead = self._transaction(self.conn, message, envelope_sent=ahead, follow=follow)
                    results.append(result)
                    break
                except _Dropped as drop:
                    self._discard(self.conn)
                    self.conn = None
                    ahead = False
                    if drop.sent:
                        results.append(SendResult.failed(
                            message.ref, f"Connection lost after the message was sent, before the reply: {drop}",
                            ambiguous=True))
                        break
                    if retried:
                        results.append(SendResult.failed(message.ref, f"Connection lost: {drop}"))
                        break
                    retried = True  # reconnect once for this message
                except DeliveryError as exc:
                    # Reconnecting failed mid-batch: the rest cannot go now.
                    results.extend(SendResult.failed(m.ref, exc.message, permanent=exc.permanent)
                                   for m in messages[index:])
                    return results
        return results


KIND = KindSpec(
    kind="smtp",
    label="SMTP relay",
    channels=("email",),
    backend="delivery.backends.smtp.SmtpBackend",
    help="Any SMTP relay: your own MTA or a provider's SMTP endpoint.",
    fields=(
        FieldSpec("host", "Host", required=True, help="e.g. smtp.example.net"),
        FieldSpec("port", "Port", type="int", default=587, min_value=1, max_value=65535),
        FieldSpec("tls", "TLS", type="choice", default="starttls",
                  choices=(("starttls", "STARTTLS (587)"), ("implicit", "TLS (465)"), ("none", "None (25)"))),
        FieldSpec("verify_tls", "Verify the TLS certificate", type="bool", default=True),
        FieldSpec("username", "User name"),
        FieldSpec("password", "Password", secret=True),
        FieldSpec("pool_size", "Connections kept open", type="int", default=2, min_value=0, max_value=20),
        FieldSpec("rate_per_second", "Messages per second (0 = no limit)", type="float", default=0,
                  min_value=0, max_value=10000),
        FieldSpec("timeout", "Timeout (seconds)", type="int", default=30, min_value=1, max_value=300),
        FieldSpec("local_hostname", "EHLO name", help="Leave empty for this machine's name."),
    ),
)
