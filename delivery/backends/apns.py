"""Apple Push Notification service backend: HTTP/2 with token-based (.p8 key) auth.

One HTTP/2 connection (httpx, http2=True) carries the batch: POST {api_base}/3/device/{token}
with `authorization: bearer <ES256 JWT {iss: team_id, iat}, kid key_id>`, apns-topic (the
app's bundle id), apns-push-type alert, apns-priority, apns-expiration, and the JSON
{"aps": {"alert": {title, body}, "sound", "mutable-content"}, "url", "image", data...}.
200 + the apns-id header is the provider id. The provider token is signed once per worker
(keyed by team, key id and key) and reused for 50 minutes (Apple refuses tokens older than an
hour and rate-limits refreshing more often than every 20 minutes).

Messages whose meta["platform"] names another platform ("android", "web") are refused
without a request: their tokens are not APNs tokens, and Apple's BadDeviceToken would
deactivate a subscription that is fine on its own platform.

Options: team_id, key_id, private_key (SECRET: the .p8 file's PEM), topic (bundle id; a
message's meta["topic"] overrides it, for a team with several apps), environment (production | sandbox) or api_base (tests:
loopback), priority (10 immediate | 5 power-saving), ttl (seconds; 0 = deliver now or never),
sound, timeout.

Error mapping (Apple replies {"reason": ...}):
- 410 Unregistered, 400 BadDeviceToken: permanent + deactivate;
- 400 DeviceTokenNotForTopic, other 400s, 413 PayloadTooLarge: permanent;
- 403 ExpiredProviderToken: the provider token is re-signed once and the message retried;
  403 InvalidProviderToken / MissingProviderToken / other 403: DeliveryError (permanent) for
  the batch (the key, key id or team id is wrong);
- 429 TooManyRequests (too many for that device), 500, 503 (ServiceUnavailable, Shutdown):
  temporary, with Retry-After when given.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from delivery.backends import FieldSpec, KindSpec, _http
from delivery.backends.base import DeliveryError, OutboundMessage, SendResult

ENDPOINTS = {
    "production": "https://api.push.apple.com",
    "sandbox": "https://api.sandbox.push.apple.com",
}
TOKEN_LIFETIME = 50 * 60
DEACTIVATE_REASONS = frozenset({"Unregistered", "BadDeviceToken"})
# A well-formed token that names no device: check() posts to it to test the credentials.
CHECK_DEVICE = "0" * 64

KIND = KindSpec(
    kind="apns",
    label="Apple Push Notification service",
    channels=("mobilepush",),
    backend="delivery.backends.apns.ApnsBackend",
    help="iOS push over HTTP/2 with a token signing key (.p8).",
    fields=(
        FieldSpec("team_id", "Team ID", required=True),
        FieldSpec("key_id", "Key ID", required=True),
        FieldSpec("private_key", "Auth key (.p8 content)", type="text", required=True, secret=True),
        FieldSpec("topic", "Bundle id (apns-topic)", required=True),
        FieldSpec(
            "environment",
            "Environment",
            type="choice",
            default="production",
            choices=(("production", "Production"), ("sandbox", "Sandbox (development builds)")),
        ),
        FieldSpec(
            "priority",
            "Priority",
            type="choice",
            default="10",
            choices=(("10", "10: immediately"), ("5", "5: power-saving")),
        ),
        FieldSpec("ttl", "Time to live (seconds, 0 = now or never)", type="int", default=86400),
        FieldSpec("sound", "Sound", default="default"),
        FieldSpec("api_base", "API base URL (overrides the environment)", type="url"),
        FieldSpec("timeout", "Timeout (seconds)", type="float", default=_http.DEFAULT_TIMEOUT),
    ),
)

# (team_id, key_id, key fingerprint) -> (jwt, issued_at): per worker process.
_TOKENS: dict[tuple[str, str, str], tuple[str, float]] = {}
_TOKENS_LOCK = threading.Lock()


class ApnsBackend(_http.HttpBackend):
    """iOS push through APNs over HTTP/2 (see the module docstring)."""

    channel = "mobilepush"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.team_id = str(options.get("team_id") or "")
        self.key_id = str(options.get("key_id") or "")
        self.topic = str(options.get("topic") or "")
        if not (self.team_id and self.key_id and self.topic):
            raise DeliveryError("APNs: team_id, key_id and topic are required", permanent=True)
        pem = str(options.get("private_key") or "").strip()
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise DeliveryError(f"APNs: unreadable .p8 key: {exc}", permanent=True) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise DeliveryError("APNs: the auth key must be a P-256 (.p8) key", permanent=True)
        self.key = key
        self._cache_key = (self.team_id, self.key_id, hashlib.sha256(pem.encode()).hexdigest()[:16])
        environment = str(options.get("environment") or "production")
        if environment not in ENDPOINTS:
            raise DeliveryError(f"APNs: unknown environment {environment!r}", permanent=True)
        self.base = str(options.get("api_base") or ENDPOINTS[environment]).rstrip("/")
        self.priority = str(options.get("priority") or "10")
        self.ttl = int(options.get("ttl") if options.get("ttl") is not None else 86400)

    def provider_token(self, *, refresh: bool = False) -> str:
        """The ES256 provider token, re-signed after TOKEN_LIFETIME or when `refresh`."""
        now = time.time()
        with _TOKENS_LOCK:
            cached = _TOKENS.get(self._cache_key)
            if cached and not refresh and now - cached[1] < TOKEN_LIFETIME:
                return cached[0]
            token = _http.jwt_encode({"iss": self.team_id, "iat": int(now)}, self.key, kid=self.key_id)
            _TOKENS[self._cache_key] = (token, now)
            return token

    def client_options(self) -> dict[str, Any]:
        return {"http2": True}  # APNs speaks HTTP/2 only

    def check(self) -> str:
        """Post to a device token that names no device: Apple answers 403 when the key, key
        id or team is wrong, and a device error otherwise. Raises DeliveryError."""
        self.open()
        message = OutboundMessage(channel=self.channel, to=CHECK_DEVICE, payload={"title": "check"})
        try:
            response = self._post(message, self.provider_token())
        except httpx.HTTPError as exc:
            raise DeliveryError(f"APNs: cannot reach {self.base}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 403:
            raise DeliveryError(f"APNs: credentials refused: {_reason(response)}", permanent=True)
        if response.status_code >= 500:
            raise DeliveryError(f"APNs: HTTP {response.status_code}: {_reason(response)}")
        return f"APNs accepted the token of team {self.team_id}, key {self.key_id} ({self.base})"

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        payload = message.payload
        alert = {key: payload[key] for key in ("title", "body") if payload.get(key)}
        aps: dict[str, Any] = {"alert": alert}
        if self.options.get("sound", "default"):
            aps["sound"] = self.options.get("sound", "default")
        if payload.get("image"):
            # A notification service extension downloads the image.
            aps["mutable-content"] = 1
        body: dict[str, Any] = {"aps": aps}
        for key in ("url", "image"):
            if payload.get(key):
                body[key] = payload[key]
        for key, value in (payload.get("data") or {}).items():
            if key != "aps":
                body.setdefault(str(key), value)
        return body

    def headers(self, message: OutboundMessage, token: str) -> dict[str, str]:
        expiration = 0 if self.ttl == 0 else int(time.time()) + self.ttl
        return {
            "authorization": f"bearer {token}",
            "apns-topic": str(message.meta.get("topic") or self.topic),
            "apns-push-type": "alert",
            "apns-priority": self.priority,
            "apns-expiration": str(expiration),
        }

    def _post(self, message: OutboundMessage, token: str) -> httpx.Response:
        assert self.client is not None
        return self.client.post(
            f"{self.base}/3/device/{message.to}",
            content=json.dumps(self.body(message), ensure_ascii=False, separators=(",", ":")).encode(),
            headers=self.headers(message, token),
        )

    def _send_one(self, message: OutboundMessage) -> SendResult:
        platform = message.meta.get("platform")
        if platform and platform != "ios":
            return SendResult.failed(
                message.ref, f"APNs sends to iOS devices only, not {platform}", permanent=True
            )
        try:
            response = self._post(message, self.provider_token())
            if response.status_code == 403 and _reason(response) == "ExpiredProviderToken":
                response = self._post(message, self.provider_token(refresh=True))
        except httpx.HTTPError as exc:
            abort = _http.unreachable(exc)
            if abort:
                raise abort from exc
            return _http.transport_failure(message.ref, exc)
        if response.status_code == 200:
            return SendResult(ref=message.ref, ok=True, provider_id=response.headers.get("apns-id", ""))
        reason = _reason(response)
        if response.status_code == 403:
            raise _http.BatchAbort(f"APNs: provider token refused: {reason}", permanent=True)
        return _http.status_failure(message.ref, response, reason, deactivate=reason in DEACTIVATE_REASONS)


def _reason(response: httpx.Response) -> str:
    body = _http.json_or_none(response)
    if isinstance(body, dict) and body.get("reason"):
        return str(body["reason"])
    return _http.response_text(response)
