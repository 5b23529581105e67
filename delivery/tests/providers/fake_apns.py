"""An emulator of APNs' provider API (HTTP/2, token auth), run on `H2Server`."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from delivery.tests.providers._jwt import BadToken, verify_jwt
from delivery.tests.providers._server import Reply, Request
from delivery.tests.providers.fake_sms import Faults

DEVICE_TOKEN = re.compile(r"^[0-9a-fA-F]{64}$")


def apns_error(status: int, reason: str, **extra: Any) -> Reply:
    return Reply(status, {"reason": reason, **extra}, {"apns-id": str(uuid.uuid4()).upper()})


@dataclass
class ApnsEmulator:
    """POST /3/device/<token>. Provider tokens are verified with the team's key; a token in
    `expired` (or older than an hour) gets 403 ExpiredProviderToken."""

    team_id: str = "TEAM123456"
    key_id: str = "KEY1234567"
    topic: str = "com.acme.app"
    public_key: ec.EllipticCurvePublicKey | None = None
    expired: set[str] = field(default_factory=set)
    devices: dict[str, str] = field(default_factory=dict)  # token -> topic
    unregistered: set[str] = field(default_factory=set)
    tokens_seen: list[tuple[dict, dict]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def __call__(self, request: Request) -> Reply:
        if request.method != "POST" or not request.path.startswith("/3/device/"):
            return apns_error(404, "BadPath")
        auth = request.headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return apns_error(403, "MissingProviderToken")
        assert self.public_key is not None
        try:
            header, claims = verify_jwt(auth.removeprefix("bearer "), self.public_key)
        except BadToken:
            return apns_error(403, "InvalidProviderToken")
        self.tokens_seen.append((header, claims))
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return apns_error(403, "InvalidProviderToken")
        if auth.removeprefix("bearer ") in self.expired or time.time() - claims.get("iat", 0) > 3600:
            return apns_error(403, "ExpiredProviderToken")
        fault = self.faults.take()
        if fault:
            return fault
        device = request.path.removeprefix("/3/device/")
        if not DEVICE_TOKEN.match(device):
            return apns_error(400, "BadDeviceToken")
        if device in self.unregistered:
            return apns_error(410, "Unregistered", timestamp=int(time.time() * 1000))
        if device not in self.devices:
            return apns_error(400, "BadDeviceToken")
        if request.headers.get("apns-topic") != self.devices[device]:
            return apns_error(400, "DeviceTokenNotForTopic")
        if request.headers.get("apns-push-type") not in ("alert", "background"):
            return apns_error(400, "InvalidPushType")
        if len(request.body) > 4096:
            return apns_error(413, "PayloadTooLarge")
        body = json.loads(request.body)
        if "aps" not in body:
            return apns_error(400, "PayloadEmpty")
        apns_id = str(uuid.uuid4()).upper()
        self.notifications.append(
            {"device": device, "id": apns_id, "body": body, "headers": dict(request.headers)}
        )
        return Reply(200, b"", {"apns-id": apns_id})
