"""Generic HTTP SMS backend: one configurable adapter for the many SMS gateways whose API is
"send a request with the number and the text, get an id back".

Options (non-secret unless said):
- url: the send endpoint; method: POST (default) | PUT | GET.
- body_format: json (default) | form | query (GET-style gateways: fields in the query string).
- to_field / text_field / sender_field: the field names (defaults "to", "text", "from");
  sender: the default sender id when the message has none (payload["sender"] wins);
  extra_fields: a JSON object merged into every request (e.g. {"type": "unicode"}).
- auth: none | bearer | basic | header; username (basic); header_name (header);
  secret (SECRET): the bearer token, basic password or header value.
- message_id_path: dotted path to the provider's id in the JSON reply ("messages.0.id").
- error_path: dotted path to the provider's error text ("error.message"), else the body.
- error_code_path + deactivate_codes: where the provider's error code is, and the codes that
  mean the number is gone (comma separated): such a failure is permanent + deactivate.
- success_codes: comma separated HTTP statuses that mean accepted (default "200,201,202").
- check_url: a URL that answers 2xx to an authenticated GET (the gateway's balance or account
  endpoint); "test connection" (check()) calls it.
- timeout, verify (TLS: CA bundle path or false; tests only).

Error mapping: success code -> ok; 401/403 -> the credentials are wrong: DeliveryError
(permanent) for the batch; 408/425/429/5xx -> temporary with Retry-After (429 also stops the
batch: the rest get "not attempted" with the same retry_after); other statuses -> permanent,
+ deactivate when the error code is in deactivate_codes.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from delivery.backends import FieldSpec, KindSpec, _http
from delivery.backends.base import DeliveryError, OutboundMessage, SendResult

KIND = KindSpec(
    kind="http_sms",
    label="HTTP SMS gateway (generic)",
    channels=("sms",),
    backend="delivery.backends.http_sms.HttpSmsBackend",
    help="Any gateway that takes the number and the text in a JSON, form or query request.",
    fields=(
        FieldSpec("url", "Send URL", type="url", required=True),
        FieldSpec(
            "method",
            "HTTP method",
            type="choice",
            default="POST",
            choices=(("POST", "POST"), ("PUT", "PUT"), ("GET", "GET")),
        ),
        FieldSpec(
            "body_format",
            "Body format",
            type="choice",
            default="json",
            choices=(("json", "JSON body"), ("form", "Form body"), ("query", "Query string")),
        ),
        FieldSpec("to_field", "Field for the phone number", default="to"),
        FieldSpec("text_field", "Field for the text", default="text"),
        FieldSpec("sender_field", "Field for the sender id", default="from"),
        FieldSpec("sender", "Default sender id"),
        FieldSpec("extra_fields", "Extra fields (JSON object)", type="json"),
        FieldSpec(
            "auth",
            "Authentication",
            type="choice",
            default="none",
            choices=(
                ("none", "None"),
                ("bearer", "Bearer token"),
                ("basic", "Basic (username + password)"),
                ("header", "Custom header"),
            ),
        ),
        FieldSpec("username", "Username (basic auth)"),
        FieldSpec("header_name", "Header name (header auth)"),
        FieldSpec("secret", "Token / password / header value", secret=True),
        FieldSpec(
            "message_id_path", "Message id path in the JSON reply", help='Dotted, e.g. "messages.0.id"'
        ),
        FieldSpec("error_path", "Error text path in the JSON reply"),
        FieldSpec("error_code_path", "Error code path in the JSON reply"),
        FieldSpec("deactivate_codes", "Error codes meaning the number is gone", help="Comma separated"),
        FieldSpec("success_codes", "Success HTTP statuses", default="200,201,202"),
        FieldSpec(
            "check_url",
            "Check URL (GET, for 'test connection')",
            type="url",
            help="An endpoint that needs the credentials, e.g. the balance",
        ),
        FieldSpec("timeout", "Timeout (seconds)", type="float", default=_http.DEFAULT_TIMEOUT),
    ),
)

AUTH_ERRORS = frozenset({401, 403})


def _codes(value: Any, default: str) -> frozenset[str]:
    return frozenset(part.strip() for part in str(value or default).split(",") if part.strip())


class HttpSmsBackend(_http.HttpBackend):
    """SMS through a configurable HTTP gateway (see the module docstring for the options)."""

    channel = "sms"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not options.get("url"):
            raise DeliveryError("HTTP SMS: the 'url' option is required", permanent=True)
        self.method = str(options.get("method") or "POST").upper()
        self.body_format = str(options.get("body_format") or "json")
        if self.body_format not in ("json", "form", "query"):
            raise DeliveryError(f"HTTP SMS: unknown body_format {self.body_format!r}", permanent=True)
        if self.method == "GET":
            self.body_format = "query"
        extra = options.get("extra_fields") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except ValueError as exc:
                raise DeliveryError(f"HTTP SMS: extra_fields is not JSON: {exc}", permanent=True) from exc
        if not isinstance(extra, dict):
            raise DeliveryError("HTTP SMS: extra_fields must be a JSON object", permanent=True)
        self.extra_fields: dict[str, Any] = extra
        self.success_codes = {int(code) for code in _codes(options.get("success_codes"), "200,201,202")}
        self.deactivate_codes = _codes(options.get("deactivate_codes"), "")
        self.secret = str(options.get("secret") or "")

    def _auth(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        kind = str(self.options.get("auth") or "none")
        if kind == "bearer":
            return {"Authorization": f"Bearer {self.secret}"}, None
        if kind == "basic":
            return {}, (str(self.options.get("username") or ""), self.secret)
        if kind == "header":
            name = str(self.options.get("header_name") or "")
            if not name:
                raise DeliveryError("HTTP SMS: header auth needs 'header_name'", permanent=True)
            return {name: self.secret}, None
        if kind != "none":
            raise DeliveryError(f"HTTP SMS: unknown auth {kind!r}", permanent=True)
        return {}, None

    def client_options(self) -> dict[str, Any]:
        headers, basic = self._auth()
        return {"headers": headers, "auth": basic}

    def check(self) -> str:
        """GET check_url with the credentials; 2xx proves them. Raises DeliveryError."""
        url = self.options.get("check_url")
        if not url:
            return "No check URL configured: the credentials are tested by the first send."
        self.open()
        assert self.client is not None
        try:
            response = self.client.get(url)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"HTTP SMS: cannot reach {url}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(
                f"HTTP SMS: HTTP {response.status_code}: {_http.response_text(response, secret=self.secret)}",
                permanent=response.status_code in AUTH_ERRORS,
            )
        return f"The gateway answered HTTP {response.status_code}"

    def fields(self, message: OutboundMessage) -> dict[str, Any]:
        """The request fields for one message (the extra fields, then the mapped ones)."""
        fields = dict(self.extra_fields)
        fields[self.options.get("to_field") or "to"] = message.to
        fields[self.options.get("text_field") or "text"] = message.payload.get("text", "")
        sender = message.payload.get("sender") or self.options.get("sender")
        if sender:
            fields[self.options.get("sender_field") or "from"] = sender
        return fields

    def _send_one(self, message: OutboundMessage) -> SendResult:
        assert self.client is not None
        fields = self.fields(message)
        kwargs: dict[str, Any] = {}
        if self.body_format == "json":
            kwargs["json"] = fields
        elif self.body_format == "form":
            kwargs["data"] = {key: str(value) for key, value in fields.items()}
        else:
            kwargs["params"] = {key: str(value) for key, value in fields.items()}
        try:
            response = self.client.request(self.method, self.options["url"], **kwargs)
        except httpx.HTTPError as exc:
            abort = _http.unreachable(exc, secret=self.secret)
            if abort:
                raise abort from exc
            return _http.transport_failure(message.ref, exc, secret=self.secret)
        body = _http.json_or_none(response)
        if response.status_code in self.success_codes:
            provider_id = ""
            if self.options.get("message_id_path"):
                found = _http.dotted_get(body, self.options["message_id_path"])
                provider_id = "" if found is None else str(found)
            return SendResult(ref=message.ref, ok=True, provider_id=provider_id)
        return self._failure(message, response, body)

    def _failure(self, message: OutboundMessage, response: httpx.Response, body: Any) -> SendResult:
        error = ""
        if self.options.get("error_path"):
            found = _http.dotted_get(body, self.options["error_path"])
            error = "" if found is None else str(found)
        error = error or _http.response_text(response, secret=self.secret)
        code = ""
        if self.options.get("error_code_path"):
            found = _http.dotted_get(body, self.options["error_code_path"])
            code = "" if found is None else str(found)
            if code:
                error = f"{error} (code {code})"
        if response.status_code in AUTH_ERRORS:
            raise _http.BatchAbort(
                f"HTTP SMS: credentials refused: HTTP {response.status_code}: {error}", permanent=True
            )
        result = _http.status_failure(
            message.ref, response, error, deactivate=bool(code) and code in self.deactivate_codes
        )
        if response.status_code == 429:
            # The gateway throttles the account, not this number: the rest would be refused too.
            raise _http.BatchAbort(result.error, retry_after=result.retry_after, result=result)
        return result
