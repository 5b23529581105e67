"""Firebase Cloud Messaging backend: the HTTP v1 API with a service account.

Auth: OAuth 2.0 JWT-bearer grant. An RS256 JWT {iss: client_email, scope: firebase.messaging,
aud: token_uri, iat, exp: iat+3600} signed with the service account's private key (with
`cryptography`) is POSTed to the account's token_uri; the access token is cached per worker
(keyed by client, key id and token_uri) until 5 minutes before it expires, so batches in one
worker share it.

Send: POST {api_base}/v1/projects/{project_id}/messages:send with
{"message": {"token", "notification": {title, body, image}, "data": {str: str},
"android" | "webpush" | "apns" options by meta["platform"]}}; the reply's "name"
("projects/p/messages/0:123") is the provider id.

Options: service_account (SECRET: the JSON key file's content), project_id (default: the
service account's), api_base (default https://fcm.googleapis.com), ttl (seconds),
android_priority (normal | high), android_channel_id, timeout.

Error mapping (google.rpc status + FcmError errorCode):
- UNREGISTERED (404): permanent + deactivate;
- INVALID_ARGUMENT (400) about message.token: permanent + deactivate (a malformed token never
  becomes valid); other INVALID_ARGUMENT: permanent, the message kept;
- SENDER_ID_MISMATCH (403), THIRD_PARTY_AUTH_ERROR (401, the APNs/web push credentials in
  the Firebase project): permanent;
- 401 otherwise: the access token is refreshed once and the message retried; a second 401 is
  a DeliveryError for the batch (permanent);
- QUOTA_EXCEEDED (429): temporary with Retry-After, the batch stops; UNAVAILABLE (503),
  INTERNAL (500): temporary with Retry-After;
- the token endpoint refusing the assertion (invalid_grant...): DeliveryError(permanent).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from delivery.backends import FieldSpec, KindSpec, _http
from delivery.backends.base import DeliveryError, OutboundMessage, SendResult

DEFAULT_API_BASE = "https://fcm.googleapis.com"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
ASSERTION_LIFETIME = 3600
# Refresh this long before the access token expires so no request carries a stale token.
TOKEN_MARGIN = 300
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

KIND = KindSpec(
    kind="fcm",
    label="Firebase Cloud Messaging (HTTP v1)",
    channels=("mobilepush",),
    backend="delivery.backends.fcm.FcmBackend",
    help="Android (and iOS/web through Firebase) push with a service account key.",
    fields=(
        FieldSpec("service_account", "Service account key (JSON)", type="text", required=True, secret=True),
        FieldSpec("project_id", "Project id (default: the service account's)"),
        FieldSpec("ttl", "Time to live (seconds)", type="int"),
        FieldSpec(
            "android_priority",
            "Android priority",
            type="choice",
            default="high",
            choices=(("normal", "Normal"), ("high", "High")),
        ),
        FieldSpec("android_channel_id", "Android notification channel"),
        FieldSpec("api_base", "API base URL", type="url", default=DEFAULT_API_BASE),
        FieldSpec("timeout", "Timeout (seconds)", type="float", default=_http.DEFAULT_TIMEOUT),
    ),
)

# (client_email, private_key_id, token_uri) -> (access_token, expires_at): per worker process.
_TOKENS: dict[tuple[str, str, str], tuple[str, float]] = {}
_TOKENS_LOCK = threading.Lock()


def _service_account(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise DeliveryError(f"FCM: the service account is not JSON: {exc}", permanent=True) from exc
    if not isinstance(value, dict):
        raise DeliveryError("FCM: the service account must be a JSON object", permanent=True)
    missing = [key for key in ("client_email", "private_key") if not value.get(key)]
    if missing:
        raise DeliveryError(f"FCM: the service account lacks {', '.join(missing)}", permanent=True)
    return value


class FcmBackend(_http.HttpBackend):
    """Mobile (and web) push through FCM HTTP v1 (see the module docstring)."""

    channel = "mobilepush"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        account = _service_account(options.get("service_account"))
        self.client_email = str(account["client_email"])
        self.key_id = str(account.get("private_key_id") or "")
        self.token_uri = str(account.get("token_uri") or DEFAULT_TOKEN_URI)
        try:
            key = serialization.load_pem_private_key(str(account["private_key"]).encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise DeliveryError(f"FCM: unreadable private key: {exc}", permanent=True) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DeliveryError("FCM: the service account key must be RSA", permanent=True)
        self.key = key
        self.project_id = str(options.get("project_id") or account.get("project_id") or "")
        if not self.project_id:
            raise DeliveryError("FCM: no project_id", permanent=True)
        base = str(options.get("api_base") or DEFAULT_API_BASE).rstrip("/")
        self.send_url = f"{base}/v1/projects/{self.project_id}/messages:send"

    # --- access token -------------------------------------------------------------------

    @property
    def _cache_key(self) -> tuple[str, str, str]:
        return (self.client_email, self.key_id, self.token_uri)

    def assertion(self, now: float | None = None) -> str:
        """The signed JWT sent to the token endpoint."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        return _http.jwt_encode(claims, self.key, kid=self.key_id or None)

    def access_token(self, *, refresh: bool = False) -> str:
        """A valid access token, from the worker's cache unless `refresh` or near expiry.

        Raises DeliveryError (permanent when Google refuses the service account).
        """
        now = time.time()
        with _TOKENS_LOCK:
            cached = _TOKENS.get(self._cache_key)
            if cached and not refresh and cached[1] - TOKEN_MARGIN > now:
                return cached[0]
        assert self.client is not None
        try:
            response = self.client.post(
                self.token_uri,
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": self.assertion(now),
                },
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"FCM: cannot reach the token endpoint: {type(exc).__name__}: {exc}") from exc
        body = _http.json_or_none(response) or {}
        if response.status_code != 200 or not body.get("access_token"):
            detail = body.get("error_description") or body.get("error") or _http.response_text(response)
            raise DeliveryError(
                f"FCM: token endpoint refused the service account: HTTP {response.status_code}: {detail}",
                permanent=not _http.is_temporary_status(response.status_code),
            )
        token = str(body["access_token"])
        with _TOKENS_LOCK:
            _TOKENS[self._cache_key] = (token, now + float(body.get("expires_in") or 3600))
        return token

    # --- lifecycle ----------------------------------------------------------------------

    def check(self) -> str:
        """Fetch a fresh access token: proves the service account. Raises DeliveryError."""
        self.open()
        self.access_token(refresh=True)
        return f"FCM: access token issued for {self.client_email} (project {self.project_id})"

    # --- one message --------------------------------------------------------------------

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        """The messages:send request body for one message."""
        payload = message.payload
        notification = {key: payload[key] for key in ("title", "body", "image") if payload.get(key)}
        data = {
            str(key): value if isinstance(value, str) else json.dumps(value)
            for key, value in (payload.get("data") or {}).items()
        }
        if payload.get("url"):
            data.setdefault("url", str(payload["url"]))
        body: dict[str, Any] = {"token": message.to, "notification": notification}
        if data:
            body["data"] = data
        platform = message.meta.get("platform")
        ttl = self.options.get("ttl")
        if platform == "web":
            webpush: dict[str, Any] = {}
            if payload.get("icon"):
                webpush["notification"] = {"icon": payload["icon"]}
            if payload.get("url"):
                webpush["fcm_options"] = {"link": payload["url"]}
            if ttl is not None:
                webpush["headers"] = {"TTL": str(int(ttl))}
            if webpush:
                body["webpush"] = webpush
        elif platform == "ios":
            if payload.get("image"):
                body["apns"] = {
                    "payload": {"aps": {"mutable-content": 1}},
                    "fcm_options": {"image": payload["image"]},
                }
        else:
            android: dict[str, Any] = {"priority": str(self.options.get("android_priority") or "high")}
            if ttl is not None:
                android["ttl"] = f"{int(ttl)}s"
            notification_options = {}
            if self.options.get("android_channel_id"):
                notification_options["channel_id"] = str(self.options["android_channel_id"])
            if payload.get("icon"):
                notification_options["icon"] = str(payload["icon"])
            if notification_options:
                android["notification"] = notification_options
            body["android"] = android
        if message.ref:
            body["fcm_options"] = {"analytics_label": message.ref[:50]}
        return {"message": body}

    def _post(self, message: OutboundMessage, token: str) -> httpx.Response:
        assert self.client is not None
        return self.client.post(
            self.send_url, json=self.body(message), headers={"Authorization": f"Bearer {token}"}
        )

    def _send_one(self, message: OutboundMessage) -> SendResult:
        try:
            token = self.access_token()
            response = self._post(message, token)
            if response.status_code == 401 and _error_code(response) != "THIRD_PARTY_AUTH_ERROR":
                # A token revoked or expired early: fetch a new one and try once more.
                response = self._post(message, self.access_token(refresh=True))
                if response.status_code == 401:
                    raise _http.BatchAbort(
                        f"FCM: access token refused: {_error_text(response)}", permanent=True
                    )
        except DeliveryError as exc:
            raise _http.BatchAbort(exc.message, permanent=exc.permanent) from exc
        except httpx.HTTPError as exc:
            abort = _http.unreachable(exc)
            if abort:
                raise abort from exc
            return _http.transport_failure(message.ref, exc)
        if response.status_code == 200:
            body = _http.json_or_none(response) or {}
            return SendResult(ref=message.ref, ok=True, provider_id=str(body.get("name", "")))
        return self._failure(message, response)

    def _failure(self, message: OutboundMessage, response: httpx.Response) -> SendResult:
        code = _error_code(response)
        error = _error_text(response)
        deactivate = code == "UNREGISTERED" or (
            code == "INVALID_ARGUMENT" and "message.token" in _violated_fields(response)
        )
        # Only FCM's own verdict on the token deactivates: a bare 404 may be a wrong project id
        # or api_base, which must not switch off every subscription in the batch.
        result = _http.status_failure(message.ref, response, error, deactivate=deactivate)
        if response.status_code == 429:
            raise _http.BatchAbort(result.error, retry_after=result.retry_after, result=result)
        return result


def _error(response: httpx.Response) -> dict[str, Any]:
    body = _http.json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_code(response: httpx.Response) -> str:
    """The FcmError errorCode when given, else the google.rpc status ("INVALID_ARGUMENT")."""
    error = _error(response)
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("@type") == FCM_ERROR_TYPE and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error.get("status") or "")


def _violated_fields(response: httpx.Response) -> set[str]:
    fields = set()
    for detail in _error(response).get("details") or []:
        for violation in (detail.get("fieldViolations") or []) if isinstance(detail, dict) else []:
            fields.add(str(violation.get("field", "")))
    return fields


def _error_text(response: httpx.Response) -> str:
    error = _error(response)
    code = _error_code(response)
    if error.get("message"):
        return f"{code}: {error['message']}" if code else str(error["message"])
    return _http.response_text(response)
