"""The channel backend contract (STYLE.md, "Channel backends"): how a message leaves.

A backend holds no business rules: consent, caps and quiet hours live in mailings. It gets
messages that are fully built (an e-mail is its signed wire bytes), sends them over one open
connection, and answers one `SendResult` per message, in order.

Errors:
- a failure of one message is that message's `SendResult(ok=False, ...)`, never an exception,
  so the rest of the batch still goes;
- a failure of the whole batch before anything was sent (cannot connect, bad credentials)
  raises `DeliveryError`; `permanent=True` when retrying cannot help (authentication refused,
  a provider account that is misconfigured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class DeliveryError(Exception):
    """A batch-level delivery failure. `permanent`: retrying the same thing cannot succeed."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(slots=True)
class OutboundMessage:
    """One message to one address, ready for the wire.

    ref: the caller's reference (the ledger row, e.g. "L12345"); it comes back in the result.
    to: the address on the channel: e-mail address, E.164 phone, push endpoint or device
        token, Telegram chat id.
    raw / envelope_from: e-mail only: the complete (DKIM-signed) RFC 5322 bytes and the
        envelope sender (the VERP Return-Path).
    payload: the other channels' content: sms {"text", "sender"}; webpush {"title", "body",
        "icon", "image", "url"}; mobilepush the same plus {"data"}; telegram {"text",
        "parse_mode", "buttons": [[{"text", "url"}]]}.
    meta: the subscription's channel details: webpush {"keys": {"p256dh", "auth"}},
        mobilepush {"platform": "android"|"ios", "app"}, telegram {"chat_name"}...
    """

    channel: str
    to: str
    ref: str = ""
    raw: bytes = b""
    envelope_from: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SendResult:
    """What happened to one message.

    ok: the provider accepted it (provider_id is its id for the message when it gives one).
    permanent: for a failure, retrying cannot help (5xx, invalid number, unknown token).
    deactivate: the address is gone (web push 404/410, FCM UNREGISTERED, APNs 410, Telegram
        403): the caller marks the subscription so nothing is sent there again.
    ambiguous: it may have been delivered (the connection dropped after the message was
        handed over): marketing sends are not repeated.
    retry_after: seconds the provider asked us to wait before trying again (rate limited).
    error: the provider's own message, kept verbatim (trimmed) for the person reading the log.
    """

    ref: str
    ok: bool
    provider_id: str = ""
    error: str = ""
    permanent: bool = False
    deactivate: bool = False
    ambiguous: bool = False
    retry_after: float | None = None

    @classmethod
    def failed(cls, ref: str, error: str, *, permanent: bool = False, **kw: Any) -> SendResult:
        return cls(ref=ref, ok=False, error=error[:1000], permanent=permanent, **kw)


class BaseBackend:
    """One backend instance per batch (or per worker for connection reuse): `open()` once,
    `send_many()` any number of times, `close()` at the end. Also a context manager."""

    channel: str = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def open(self) -> None:
        """Connect (and authenticate) ahead of sending. Raises DeliveryError."""

    def close(self) -> None:
        """Release the connection. Never raises."""

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        raise NotImplementedError

    def __enter__(self) -> BaseBackend:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
