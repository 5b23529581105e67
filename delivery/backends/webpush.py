"""Web push backend (RFC 8030 push, RFC 8291 message encryption, RFC 8292 VAPID) on pywebpush.

A message goes to `OutboundMessage.to` (the subscription's endpoint URL on the browser
vendor's push service) encrypted for meta["keys"] {"p256dh", "auth"} (aes128gcm). The payload
is the JSON {title, body, icon, image, url} (empty fields left out) the site's service worker
shows. Requests go through one `requests.Session` (pywebpush's transport) kept open from
`open()` to `close()`; VAPID headers are signed once per push service origin and reused
until an hour before they expire.

Options: vapid_private_key (SECRET; base64url raw or PEM, see delivery.vapid),
vapid_public_key (the applicationServerKey, shown to copy into the site's JS; derived from
the private key when absent), vapid_subject (mailto: or https: contact for push services),
ttl (seconds the push service keeps an undelivered message, default 86400), urgency
(very-low | low | normal | high), timeout.

Error mapping: 200/201/202 -> ok (provider id: the Location of the push message resource);
404/410 -> permanent + deactivate (the subscription expired or was removed); 413 -> permanent
(payload too large; also refused locally before sending past 3,993 bytes); 429 -> temporary
with Retry-After, and the other messages for the same push service in the batch are not
attempted; 5xx -> temporary; other 4xx (400, 401/403 VAPID rejected) -> permanent; a
subscription whose keys are missing or malformed -> permanent + deactivate, nothing sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from py_vapid import Vapid02, VapidException
from pywebpush import WebPusher, WebPushException

from delivery import netpolicy
from delivery.backends import FieldSpec, KindSpec, _http
from delivery.backends.base import BaseBackend, DeliveryError, OutboundMessage, SendResult
from delivery.vapid import VapidKeyError, load_private_key, public_key_text

DEFAULT_TTL = 86400
URGENCIES = ("very-low", "low", "normal", "high")
# RFC 8291: a push service must accept 4,096 bytes of encrypted record; aes128gcm spends 86
# on its header, 16 on the tag and 1 on the padding delimiter.
MAX_PAYLOAD = 4096 - 86 - 16 - 1
VAPID_LIFETIME = 12 * 3600
VAPID_REFRESH_MARGIN = 3600
# requests' errors for a URL it cannot use (some are also ValueErrors: caught before those).
BAD_ENDPOINT = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
)
PAYLOAD_FIELDS = ("title", "body", "icon", "image", "url", "badge", "tag", "data")

KIND = KindSpec(
    kind="webpush",
    label="Web push (VAPID)",
    channels=("webpush",),
    backend="delivery.backends.webpush.WebPushBackend",
    help="Browser push through the browsers' push services, signed with your VAPID key.",
    fields=(
        FieldSpec(
            "vapid_private_key",
            "VAPID private key",
            required=True,
            secret=True,
            help="Use 'Generate VAPID keys'",
        ),
        FieldSpec("vapid_public_key", "VAPID public key (applicationServerKey)"),
        FieldSpec("vapid_subject", "Contact (mailto: or https: URL)", required=True),
        FieldSpec("ttl", "Time to live (seconds)", type="int", default=DEFAULT_TTL),
        FieldSpec(
            "urgency", "Urgency", type="choice", default="normal", choices=tuple((u, u) for u in URGENCIES)
        ),
        FieldSpec("timeout", "Timeout (seconds)", type="float", default=_http.DEFAULT_TIMEOUT),
    ),
)


def _origin(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the request never left (connect timeout, refused, DNS): safe to resend."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.exceptions.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


class WebPushBackend(BaseBackend):
    """Web push through pywebpush with VAPID (see the module docstring)."""

    channel = "webpush"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        try:
            self.vapid = Vapid02(private_key=load_private_key(str(options.get("vapid_private_key") or "")))
        except VapidKeyError as exc:
            raise DeliveryError(f"Web push: {exc}", permanent=True) from exc
        self.public_key = public_key_text(self.vapid.private_key)
        configured = options.get("vapid_public_key")
        if configured and configured != self.public_key:
            raise DeliveryError(
                "Web push: the VAPID public key does not belong to the private key", permanent=True
            )
        self.subject = str(options.get("vapid_subject") or "")
        if not self.subject.startswith(("mailto:", "https:")):
            raise DeliveryError("Web push: vapid_subject must be a mailto: or https: URL", permanent=True)
        self.ttl = int(options.get("ttl") if options.get("ttl") is not None else DEFAULT_TTL)
        self.urgency = str(options.get("urgency") or "normal")
        if self.urgency not in URGENCIES:
            raise DeliveryError(f"Web push: unknown urgency {self.urgency!r}", permanent=True)
        timeout = float(options.get("timeout") or _http.DEFAULT_TIMEOUT)
        self.timeout = (min(timeout, _http.DEFAULT_CONNECT_TIMEOUT), timeout)
        self.session: requests.Session | None = None
        self._vapid_headers: dict[str, tuple[float, dict[str, str]]] = {}
        self._throttled: dict[str, float | None] = {}

    def open(self) -> None:
        if self.session is None:
            self.session = requests.Session()
            self.session.headers["User-Agent"] = _http.USER_AGENT
            verify = self.options.get("verify")
            if verify not in (None, "", True):
                self.session.verify = verify if isinstance(verify, str) else bool(verify)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def check(self) -> str:
        """Web push has no account to log in to: this proves the key pair and the contact
        are usable by signing a VAPID token. Raises DeliveryError."""
        try:
            self._vapid_for("https://push.example")
        except VapidException as exc:
            raise DeliveryError(f"Web push: cannot sign VAPID claims: {exc}", permanent=True) from exc
        return f"VAPID key ready; applicationServerKey {self.public_key}"

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        self.open()
        self._throttled = {}
        return [self._send_one(message) for message in messages]

    def payload(self, message: OutboundMessage) -> bytes:
        """The JSON the service worker receives (empty fields left out)."""
        data = {key: message.payload[key] for key in PAYLOAD_FIELDS if message.payload.get(key)}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    def _vapid_for(self, origin: str) -> dict[str, str]:
        now = time.time()
        cached = self._vapid_headers.get(origin)
        if cached and cached[0] - VAPID_REFRESH_MARGIN > now:
            return cached[1]
        expires = int(now) + VAPID_LIFETIME
        # Raises VapidException for an origin py_vapid will not sign for (an unusual host form).
        headers = self.vapid.sign({"aud": origin, "sub": self.subject, "exp": expires})
        self._vapid_headers[origin] = (expires, headers)
        return headers

    def _send_one(self, message: OutboundMessage) -> SendResult:
        assert self.session is not None
        origin = _origin(message.to)
        if not origin.startswith(("https://", "http://")) or not urlsplit(message.to).netloc:
            return SendResult.failed(
                message.ref, f"not a push endpoint: {message.to[:200]}", permanent=True, deactivate=True
            )
        parts = urlsplit(message.to)
        try:
            netpolicy.checked_address(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        except DeliveryError as exc:  # an endpoint on a private address (SSRF): not a push service
            return SendResult.failed(message.ref, f"not a push endpoint: {exc}", permanent=True, deactivate=True)
        except (OSError, ValueError, UnicodeError):
            pass  # does not resolve (now): the request fails as any unreachable push service does
        if origin in self._throttled:
            return SendResult.failed(
                message.ref, f"not attempted: {origin} is rate limiting", retry_after=self._throttled[origin]
            )
        data = self.payload(message)
        if len(data) > MAX_PAYLOAD:
            return SendResult.failed(
                message.ref,
                f"payload too large: {len(data)} bytes (web push allows {MAX_PAYLOAD})",
                permanent=True,
            )
        keys = message.meta.get("keys") or {}
        try:
            pusher = WebPusher({"endpoint": message.to, "keys": keys}, requests_session=self.session)
            headers = {**self._vapid_for(origin), "Urgency": self.urgency}
            response = pusher.send(data, headers, ttl=self.ttl, timeout=self.timeout)
        except requests.RequestException as exc:
            if isinstance(exc, BAD_ENDPOINT):
                return SendResult.failed(
                    message.ref, f"not a push endpoint: {exc}", permanent=True, deactivate=True
                )
            if _not_sent(exc):
                return SendResult.failed(message.ref, f"could not connect: {type(exc).__name__}: {exc}")
            return SendResult.failed(
                message.ref, f"no reply from the push service: {type(exc).__name__}: {exc}", ambiguous=True
            )
        except VapidException as exc:
            return SendResult.failed(
                message.ref, f"cannot sign VAPID claims for {origin}: {exc}", permanent=True
            )
        except (WebPushException, ValueError, TypeError) as exc:
            # Missing or malformed p256dh/auth: this subscription can never be encrypted for.
            text = exc.message if isinstance(exc, WebPushException) else str(exc)
            return SendResult.failed(
                message.ref, f"bad subscription keys: {text}", permanent=True, deactivate=True
            )
        assert isinstance(response, requests.Response)
        return self._result(message, origin, response)

    def _result(self, message: OutboundMessage, origin: str, response: requests.Response) -> SendResult:
        status = response.status_code
        if status in (200, 201, 202):
            return SendResult(ref=message.ref, ok=True, provider_id=response.headers.get("Location", ""))
        error = f"HTTP {status}: {(response.text.strip() or response.reason or '')[: _http.ERROR_TEXT_LIMIT]}"
        if status in (404, 410):
            return SendResult.failed(message.ref, error, permanent=True, deactivate=True)
        if _http.is_temporary_status(status):
            retry_after = _http.parse_retry_after(response.headers.get("Retry-After"))
            if status == 429:
                self._throttled[origin] = retry_after
            return SendResult.failed(message.ref, error, retry_after=retry_after)
        return SendResult.failed(message.ref, error, permanent=True)
