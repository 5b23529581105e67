"""Emulators of SMS provider APIs: a generic JSON/form gateway and Twilio's Messages API.

They behave like the real services for what the backends rely on: authentication, number
validation, opted-out recipients, rate limiting and outages, with the providers' own error
bodies. Faults are queued with `fail_next(reply, times)`.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field

from delivery.tests.providers._server import Reply, Request

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass
class Faults:
    queued: list[Reply] = field(default_factory=list)

    def fail_next(self, reply: Reply, times: int = 1) -> None:
        self.queued.extend([reply] * times)

    def take(self) -> Reply | None:
        return self.queued.pop(0) if self.queued else None


@dataclass
class GenericGateway:
    """A typical gateway: POST /api/sms {"phone", "message", "sender"} with a bearer token
    (JSON, form or GET query); replies {"data": {"messages": [{"id"}]}} or
    {"error": {"code", "message"}}."""

    token: str = "gw-token"
    accepted: list[dict[str, str]] = field(default_factory=list)
    blacklisted: set[str] = field(default_factory=set)
    faults: Faults = field(default_factory=Faults)

    def __call__(self, request: Request) -> Reply:
        if request.path not in ("/api/sms", "/api/balance"):
            return Reply(404, {"error": {"code": "NOT_FOUND", "message": "no such route"}})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"error": {"code": "AUTH", "message": "invalid API token"}})
        if request.path == "/api/balance":
            return Reply(200, {"balance": 12.5})
        fault = self.faults.take()
        if fault:
            return fault
        if request.method == "GET":
            fields = request.query
        elif request.headers.get("content-type", "").startswith("application/json"):
            fields = request.json()
        else:
            fields = request.form()
        phone, text = str(fields.get("phone", "")), str(fields.get("message", ""))
        if not E164.match(phone):
            return Reply(400, {"error": {"code": "NUMBER_INVALID", "message": f"invalid number {phone}"}})
        if phone in self.blacklisted:
            return Reply(400, {"error": {"code": "BLACKLISTED", "message": "recipient opted out"}})
        if not text:
            return Reply(400, {"error": {"code": "EMPTY", "message": "message is empty"}})
        message_id = f"gw-{len(self.accepted) + 1}"
        self.accepted.append({**{k: str(v) for k, v in fields.items()}, "id": message_id})
        return Reply(200, {"data": {"messages": [{"id": message_id, "status": "accepted"}]}})


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        headers or {},
    )


@dataclass
class TwilioEmulator:
    """Twilio's Messages API (2010-04-01) for one account."""

    account_sid: str = "AC" + "a" * 32
    auth_token: str = "twilio-auth-token"
    opted_out: set[str] = field(default_factory=set)
    messages: list[dict[str, str]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def __call__(self, request: Request) -> Reply:
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        if not self._authorized(request):
            return twilio_error(401, 20003, "Authenticate")
        if request.method == "GET" and request.path == f"{base}.json":
            return Reply(200, {"sid": self.account_sid, "friendly_name": "Acme SMS", "status": "active"})
        if request.method != "POST" or request.path != f"{base}/Messages.json":
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        fault = self.faults.take()
        if fault:
            return fault
        form = request.form()
        to = form.get("To", "")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if not form.get("Body"):
            return twilio_error(400, 21602, "Message body is required.")
        if not E164.match(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.opted_out:
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        sid = "SM" + uuid.uuid4().hex
        self.messages.append({**form, "sid": sid})
        return Reply(
            201,
            {
                "sid": sid,
                "status": "queued",
                "to": to,
                "from": form.get("From"),
                "body": form["Body"],
                "account_sid": self.account_sid,
            },
        )
