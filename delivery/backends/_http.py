"""Shared pieces of the HTTP provider backends (SMS, push, Telegram).

- `http_client()`: one `httpx.Client` per backend instance, opened in `open()` and kept until
  `close()`, so a batch reuses its connections (keep-alive, or one HTTP/2 connection for APNs).
- `parse_retry_after()`: the Retry-After header as seconds (delta-seconds or an HTTP date).
- `status_failure()`: the default mapping of an HTTP status to a `SendResult` failure:
  408/425/429/5xx are temporary, every other 4xx is permanent.
- `transport_failure()`: an `httpx` transport error mapped to a failure; an error after the
  request may have reached the provider is *ambiguous* (it may have been delivered).
- `send_each()`: the per-message loop every backend shares; a `BatchAbort` raised by a
  backend (bad credentials, provider unreachable, provider-wide rate limit) ends the batch:
  with nothing sent yet it becomes a `DeliveryError` (the base contract), otherwise the
  messages not attempted get a temporary "not attempted" result, in order.
- `jwt_encode()`: compact JWS for the providers that authenticate with a signed JWT
  (FCM's OAuth assertion RS256, APNs' provider token ES256) using `cryptography`.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpcore
import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from delivery import netpolicy
from delivery.backends.base import BaseBackend, DeliveryError, OutboundMessage, SendResult
from delivery.vapid import b64url

# Seconds. Providers answer in well under a second; a slow one must not hold a worker long.
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
# The longest provider text kept in an error (SendResult.failed trims at 1,000 too).
ERROR_TEXT_LIMIT = 500
USER_AGENT = "cdp-delivery/1"

TEMPORARY_STATUSES = frozenset({408, 425, 429})


class BatchAbort(Exception):
    """Raised by a backend's per-message send when the rest of the batch cannot go either.

    `result` is the result for the message being sent when it happened (None: use a
    temporary failure with `message`); `permanent` is what a batch-level `DeliveryError`
    says; `retry_after` is copied onto the messages not attempted.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        result: SendResult | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.result = result


def ssl_verify(value: Any) -> bool | ssl.SSLContext:
    """The `verify` option: True (system CAs, the default), False, or a CA bundle path (a
    private CA; the loopback emulators' self-signed certificate in tests)."""
    if value in (None, "", True, "true", "1"):
        return True
    if value in (False, "false", "0"):
        return False
    return ssl.create_default_context(cafile=str(value))


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses `netpolicy.checked_address`
    passed (TLS still checks the certificate against the host name: httpcore passes the origin's
    name to start_tls). `private_ok`: as checked_address (default: the delivery setting). A
    private address raises netpolicy.PrivateAddress, which httpx lets through unchanged; a name
    that does not resolve is a ConnectError like any other. Here, not in delivery.netpolicy,
    which the SMTP backend imports: workers that never speak HTTP do not load httpcore."""

    def __init__(self, *, private_ok: bool | None = None) -> None:
        self.private_ok = private_ok

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        try:
            address = netpolicy.checked_address(host, port, private_ok=self.private_ok)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return super().connect_tcp(address, port, timeout, local_address, socket_options)


def guard(client: httpx.Client, *, private_ok: bool | None = None) -> httpx.Client:
    """`client` with its connections checked by GuardedBackend. httpx has no public hook for the
    socket layer: this swaps httpcore's backend of the client's connection pool."""
    client._transport._pool._network_backend = GuardedBackend(private_ok=private_ok)  # type: ignore[attr-defined]
    return client


def http_client(
    options: dict[str, Any],
    *,
    http2: bool = False,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | tuple[str, str] | None = None,
) -> httpx.Client:
    """A client with the backend's timeout (option `timeout`, seconds) and TLS settings."""
    timeout = float(options.get("timeout") or DEFAULT_TIMEOUT)
    client = httpx.Client(
        http2=http2,
        timeout=httpx.Timeout(timeout, connect=min(timeout, DEFAULT_CONNECT_TIMEOUT)),
        verify=ssl_verify(options.get("verify")),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        auth=auth,
        follow_redirects=False,
    )
    # Connections go only to public addresses (delivery.netpolicy: no SSRF through api_base or
    # a gateway URL).
    return guard(client)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP date; None when
    absent or unreadable (never negative)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def response_text(response: httpx.Response, *, secret: str = "") -> str:
    """The provider's reply body as text for an error message, trimmed; `secret` (a token
    that appears in URLs, like Telegram's) is blanked out wherever it appears."""
    text = response.text.strip() or response.reason_phrase
    return redact(text[:ERROR_TEXT_LIMIT], secret)


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def json_or_none(response: httpx.Response) -> Any:
    """The reply parsed as JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def is_temporary_status(status: int) -> bool:
    return status in TEMPORARY_STATUSES or status >= 500


def status_failure(ref: str, response: httpx.Response, error: str, *, deactivate: bool = False) -> SendResult:
    """A failure for an HTTP error reply: temporary for 408/425/429/5xx (with the provider's
    Retry-After), permanent for the other statuses."""
    temporary = is_temporary_status(response.status_code)
    return SendResult.failed(
        ref,
        f"HTTP {response.status_code}: {error}",
        permanent=not temporary,
        deactivate=deactivate,
        retry_after=parse_retry_after(response.headers.get("retry-after")) if temporary else None,
    )


# Errors raised before the request could have reached the provider: safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def transport_failure(ref: str, exc: httpx.HTTPError, *, secret: str = "") -> SendResult:
    """A failure for a transport error. Connect errors: temporary, not sent. Errors after the
    request was (maybe partly) written: temporary and ambiguous, the provider may have
    accepted the message, so a marketing send is not repeated."""
    detail = redact(f"{type(exc).__name__}: {exc}", secret)
    if isinstance(exc, _NOT_SENT):
        return SendResult.failed(ref, f"could not connect: {detail}")
    return SendResult.failed(ref, f"no reply from the provider: {detail}", ambiguous=True)


def unreachable(exc: httpx.HTTPError, *, secret: str = "") -> BatchAbort | None:
    """A BatchAbort when the provider cannot be reached at all (the rest would fail the same
    way, each after a connect timeout), else None."""
    if isinstance(exc, _NOT_SENT):
        return BatchAbort(redact(f"provider unreachable: {type(exc).__name__}: {exc}", secret))
    return None


def send_each(
    messages: Sequence[OutboundMessage], send_one: Callable[[OutboundMessage], SendResult]
) -> list[SendResult]:
    """One result per message, in order; see the module docstring for `BatchAbort`.

    Raises DeliveryError when the very first message hits a BatchAbort.
    """
    results: list[SendResult] = []
    for index, message in enumerate(messages):
        try:
            results.append(send_one(message))
        except BatchAbort as abort:
            if not results and abort.result is None:
                raise DeliveryError(abort.message, permanent=abort.permanent) from abort
            results.append(
                abort.result or SendResult.failed(message.ref, abort.message, retry_after=abort.retry_after)
            )
            results.extend(
                SendResult.failed(rest.ref, f"not attempted: {abort.message}", retry_after=abort.retry_after)
                for rest in messages[index + 1 :]
            )
            break
    return results


def dotted_get(data: Any, path: str) -> Any:
    """`data` followed along a dotted path ("messages.0.id"); list items by index. None when
    any step is missing."""
    current = data
    for step in path.split("."):
        if isinstance(current, dict):
            current = current.get(step)
        elif isinstance(current, list) and step.lstrip("-").isdigit():
            index = int(step)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            return None
        if current is None:
            return None
    return current


def jwt_encode(
    claims: dict[str, Any],
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    kid: str | None = None,
) -> str:
    """A compact JWS: RS256 for an RSA key, ES256 (raw r||s, RFC 7518 3.4) for a P-256 key."""
    if isinstance(key, rsa.RSAPrivateKey):
        alg = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        alg = "ES256"
    else:
        raise ValueError("JWT signing needs an RSA or a P-256 private key")
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    ).encode("ascii")
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input.decode("ascii") + "." + b64url(signature)


class HttpBackend(BaseBackend):
    """A backend that talks to its provider through one httpx client, kept open from open() to
    close() (so a batch reuses its connections), and sends message by message with `_send_one`
    through `send_each`. Subclasses say how the client is made in `client_options()`."""

    client: httpx.Client | None = None

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for `http_client` (auth, headers, http2). Raises DeliveryError."""
        return {}

    def open(self) -> None:
        if self.client is None:
            self.client = http_client(self.options, **self.client_options())

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        self.open()
        return send_each(messages, self._send_one)

    def _send_one(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError
