"""Twilio Programmable Messaging (SMS) backend: the Messages API.

POST {api_base}/2010-04-01/Accounts/{account_sid}/Messages.json, form body To, Body and From
(or MessagingServiceSid), HTTP basic auth account_sid:auth_token (or api_key_sid:secret).
The reply's "sid" ("SM...") is the provider id.

Options: account_sid, auth_token (SECRET; the API key secret when api_key_sid is set),
api_key_sid (optional), from_number or messaging_service_sid (one is required; a message's
payload["sender"] overrides from_number), status_callback (URL Twilio posts delivery
statuses to), api_base (default https://api.twilio.com; tests point it at loopback), timeout.

Error mapping (Twilio replies {"code", "message", "more_info", "status"}):
- 21211 invalid 'To' number, 21614 not a mobile number, 21610 the recipient replied STOP:
  permanent + deactivate (the number will never take a message from us again);
- other 4xx (21408 region not enabled, 21606 bad 'From'...): permanent, Twilio's text kept;
- 401 (20003: authentication): DeliveryError(permanent) for the batch;
- 429 (20429) and 5xx: temporary with Retry-After; a 429 also stops the batch.
"""

from __future__ import annotations

from typing import Any

import httpx

from delivery.backends import FieldSpec, KindSpec, _http
from delivery.backends.base import DeliveryError, OutboundMessage, SendResult

DEFAULT_API_BASE = "https://api.twilio.com"
# The 'To' is not a valid phone number / not a mobile number / has opted out (STOP).
DEACTIVATE_CODES = frozenset({21211, 21614, 21610})

KIND = KindSpec(
    kind="twilio",
    label="Twilio SMS",
    channels=("sms",),
    backend="delivery.backends.twilio.TwilioBackend",
    help="Twilio Programmable Messaging.",
    fields=(
        FieldSpec("account_sid", "Account SID", required=True),
        FieldSpec("auth_token", "Auth token (or API key secret)", required=True, secret=True),
        FieldSpec("api_key_sid", "API key SID (optional)"),
        FieldSpec("from_number", "From number (E.164)"),
        FieldSpec("messaging_service_sid", "Messaging service SID", help="Used instead of a from number"),
        FieldSpec("status_callback", "Status callback URL", type="url"),
        FieldSpec("api_base", "API base URL", type="url", default=DEFAULT_API_BASE),
        FieldSpec("timeout", "Timeout (seconds)", type="float", default=_http.DEFAULT_TIMEOUT),
    ),
)


class TwilioBackend(_http.HttpBackend):
    """SMS through Twilio's Messages API (see the module docstring)."""

    channel = "sms"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.account_sid = str(options.get("account_sid") or "")
        self.auth_token = str(options.get("auth_token") or "")
        if not self.account_sid or not self.auth_token:
            raise DeliveryError("Twilio: account_sid and auth_token are required", permanent=True)
        if not options.get("from_number") and not options.get("messaging_service_sid"):
            raise DeliveryError("Twilio: set a from_number or a messaging_service_sid", permanent=True)
        base = str(options.get("api_base") or DEFAULT_API_BASE).rstrip("/")
        self.account_url = f"{base}/2010-04-01/Accounts/{self.account_sid}"

    def client_options(self) -> dict[str, Any]:
        user = str(self.options.get("api_key_sid") or self.account_sid)
        return {"auth": (user, self.auth_token)}

    def check(self) -> str:
        """Fetch the account: proves the credentials. Raises DeliveryError."""
        self.open()
        assert self.client is not None
        try:
            response = self.client.get(f"{self.account_url}.json")
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Twilio: cannot reach the API: {exc}") from exc
        body = _http.json_or_none(response) or {}
        if response.status_code != 200:
            raise DeliveryError(
                f"Twilio: HTTP {response.status_code}: {self._error(response, body)}",
                permanent=response.status_code in (401, 403, 404),
            )
        return f"Twilio account {body.get('friendly_name') or self.account_sid} ({body.get('status', '?')})"

    def form(self, message: OutboundMessage) -> dict[str, str]:
        form = {"To": message.to, "Body": str(message.payload.get("text", ""))}
        sender = message.payload.get("sender") or self.options.get("from_number")
        if self.options.get("messaging_service_sid") and not message.payload.get("sender"):
            form["MessagingServiceSid"] = str(self.options["messaging_service_sid"])
        else:
            form["From"] = str(sender)
        if self.options.get("status_callback"):
            form["StatusCallback"] = str(self.options["status_callback"])
        return form

    def _send_one(self, message: OutboundMessage) -> SendResult:
        assert self.client is not None
        try:
            response = self.client.post(f"{self.account_url}/Messages.json", data=self.form(message))
        except httpx.HTTPError as exc:
            abort = _http.unreachable(exc)
            if abort:
                raise abort from exc
            return _http.transport_failure(message.ref, exc)
        body = _http.json_or_none(response) or {}
        if response.status_code in (200, 201):
            return SendResult(ref=message.ref, ok=True, provider_id=str(body.get("sid", "")))
        error = self._error(response, body)
        if response.status_code == 401:
            raise _http.BatchAbort(f"Twilio: authentication failed: {error}", permanent=True)
        code = body.get("code")
        result = _http.status_failure(
            message.ref, response, error, deactivate=response.status_code < 500 and code in DEACTIVATE_CODES
        )
        if response.status_code == 429:
            raise _http.BatchAbort(result.error, retry_after=result.retry_after, result=result)
        return result

    @staticmethod
    def _error(response: httpx.Response, body: dict[str, Any]) -> str:
        if isinstance(body, dict) and body.get("message"):
            code = body.get("code")
            return f"{body['message']} (code {code})" if code else str(body["message"])
        return _http.response_text(response)
