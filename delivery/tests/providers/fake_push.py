"""Emulators of push services: a web push service (RFC 8030/8291/8292) and FCM HTTP v1.

The web push service holds subscriptions made like a browser does (a P-256 key pair and a
16-byte auth secret per subscription), checks the VAPID token on every push and DECRYPTS the
body, so a test sees what the subscriber's browser would show.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from delivery.tests.providers._jwt import BadToken, verify_jwt
from delivery.tests.providers._server import Reply, Request
from delivery.tests.providers.fake_sms import Faults


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscriber:
    key: ec.EllipticCurvePrivateKey
    auth: bytes
    received: list[dict[str, Any]] = field(default_factory=list)
    gone: bool = False


@dataclass
class WebPushService:
    """A push service at {url}/push/<id>. `application_server_key`: the VAPID public key the
    subscriptions were made with (a push with another key is refused with 403)."""

    url: str = ""
    application_server_key: str = ""
    max_body: int = 4096
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    pushes: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def subscribe(self) -> dict[str, Any]:
        """A new subscription as PushSubscription.toJSON() gives it."""
        sub_id = secrets.token_hex(8)
        key = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        self.subscribers[sub_id] = Subscriber(key=key, auth=auth)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": f"{self.url}/push/{sub_id}",
            "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
        }

    def subscriber(self, endpoint: str) -> Subscriber:
        return self.subscribers[endpoint.rsplit("/", 1)[1]]

    def _vapid(self, request: Request) -> dict[str, Any]:
        match = re.fullmatch(r"vapid t=([^,]+),\s*k=(.+)", request.headers.get("authorization", ""))
        if not match:
            raise BadToken("missing VAPID authorization")
        token, key = match.groups()
        if self.application_server_key and key != self.application_server_key:
            raise PermissionError("the VAPID key does not match the subscription's applicationServerKey")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        _, claims = verify_jwt(token, public)
        if claims.get("aud") != self.url:
            raise BadToken(f"aud {claims.get('aud')!r} is not this push service")
        if not 0 < claims.get("exp", 0) - time.time() <= 24 * 3600:
            raise BadToken("exp must be within 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise BadToken("sub must be a mailto: or https: contact")
        return claims

    def __call__(self, request: Request) -> Reply:
        if request.method != "POST" or not request.path.startswith("/push/"):
            return Reply(404, "not found")
        try:
            claims = self._vapid(request)
        except BadToken as exc:
            return Reply(401, f"unauthorized: {exc}")
        except PermissionError as exc:
            return Reply(403, str(exc))
        fault = self.faults.take()
        if fault:
            return fault
        subscriber = self.subscribers.get(request.path.rsplit("/", 1)[1])
        if subscriber is None:
            return Reply(404, "push subscription not found")
        if subscriber.gone:
            return Reply(410, "push subscription has unsubscribed or expired")
        if len(request.body) > self.max_body:
            return Reply(413, "payload too large")
        if request.headers.get("content-encoding") != "aes128gcm":
            return Reply(400, "unsupported content-encoding")
        plaintext = http_ece.decrypt(
            request.body, private_key=subscriber.key, auth_secret=subscriber.auth, version="aes128gcm"
        )
        message = json.loads(plaintext)
        subscriber.received.append(message)
        push_id = f"m{len(self.pushes) + 1}"
        self.pushes.append(
            {
                "id": push_id,
                "message": message,
                "claims": claims,
                "ttl": request.headers.get("ttl"),
                "urgency": request.headers.get("urgency"),
            }
        )
        return Reply(201, b"", {"Location": f"{self.url}/message/{push_id}"})


def fcm_error(
    status: int,
    rpc_status: str,
    message: str,
    *,
    fcm_code: str = "",
    violations: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append(
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        )
    if violations:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations})
    return Reply(
        status,
        {"error": {"code": status, "message": message, "status": rpc_status, "details": details}},
        headers or {},
    )


def make_service_account(project_id: str, token_uri: str) -> tuple[dict[str, str], rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"cdp-sender@{project_id}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    return account, key


FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:\-]{20,}$")


@dataclass
class FcmEmulator:
    """Google's OAuth token endpoint (/token) and FCM HTTP v1 (/v1/projects/<p>/messages:send)."""

    url: str = ""
    project_id: str = "acme-app"
    public_key: rsa.RSAPublicKey | None = None
    client_email: str = ""
    key_id: str = ""
    expires_in: int = 3599
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    assertions: list[tuple[dict, dict]] = field(default_factory=list)
    unregistered: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __call__(self, request: Request) -> Reply:
        if request.path == "/token" and request.method == "POST":
            return self._token(request)
        if request.path == f"/v1/projects/{self.project_id}/messages:send" and request.method == "POST":
            return self._send(request)
        return fcm_error(404, "NOT_FOUND", f"Requested entity was not found: {request.path}")

    def _token(self, request: Request) -> Reply:
        form = request.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"})
        assert self.public_key is not None
        try:
            header, claims = verify_jwt(form.get("assertion", ""), self.public_key)
        except BadToken:
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        self.assertions.append((header, claims))
        if (
            header.get("kid") != self.key_id
            or claims.get("iss") != self.client_email
            or claims.get("aud") != f"{self.url}/token"
            or claims.get("scope") != "https://www.googleapis.com/auth/firebase.messaging"
            or not 0 < claims.get("exp", 0) - claims.get("iat", 0) <= 3600
            or abs(claims.get("iat", 0) - time.time()) > 300
        ):
            return Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT: claims"})
        token = f"ya29.{secrets.token_urlsafe(16)}"
        self.issued.append(token)
        return Reply(200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})

    def _send(self, request: Request) -> Reply:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.issued or token in self.revoked:
            return fcm_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. "
                "Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            )
        fault = self.faults.take()
        if fault:
            return fault
        message = request.json().get("message") or {}
        device = message.get("token", "")
        if not FCM_TOKEN.match(device):
            return fcm_error(
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                fcm_code="INVALID_ARGUMENT",
                violations=[{"field": "message.token", "description": "Invalid registration token"}],
            )
        if device in self.unregistered:
            return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", fcm_code="UNREGISTERED")
        data = message.get("data") or {}
        if any(not isinstance(value, str) for value in data.values()):
            return fcm_error(
                400,
                "INVALID_ARGUMENT",
                "Invalid value at 'message.data': not a string",
                fcm_code="INVALID_ARGUMENT",
                violations=[{"field": "message.data", "description": "Invalid value"}],
            )
        self.messages.append(message)
        return Reply(200, {"name": f"projects/{self.project_id}/messages/0:{next(self._ids)}"})
