"""Telegram Bot API backend: sendMessage to a chat id.

POST {api_base}/bot{token}/sendMessage with {chat_id, text, parse_mode (HTML | MarkdownV2),
reply_markup: {"inline_keyboard": [[{"text", "url"}]]} from payload["buttons"],
link_preview_options: {"is_disabled": true} (the current name of disable_web_page_preview)}.
The provider id is result.message_id. The bot token is part of every URL, so it is blanked
out of every error text this backend produces.

Options: bot_token (SECRET), parse_mode (default for messages without one: HTML),
link_previews (default false), max_wait (seconds a 429 may make us wait, default 30),
api_base (default https://api.telegram.org; tests: loopback), timeout.

Error mapping (Telegram replies {"ok": false, "error_code", "description", "parameters"}):
- 429: wait parameters.retry_after when it is <= max_wait and send the same message once
  more; a longer wait or a second 429 is a temporary failure with retry_after, and the rest of
  the batch is not attempted (Telegram's limits are per bot);
- 403 (bot was blocked by the user, user is deactivated, bot was kicked): permanent +
  deactivate;
- 400 "chat not found": permanent + deactivate; other 400 (can't parse entities, message is
  too long...): permanent with Telegram's description;
- 401 / 404 (the token is wrong or revoked): DeliveryError(permanent) for the batch;
- 5xx: temporary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from delivery.backends import FieldSpec, KindSpec, _http
from delivery.backends.base import DeliveryError, OutboundMessage, SendResult

DEFAULT_API_BASE = "https://api.telegram.org"
DEFAULT_MAX_WAIT = 30.0
PARSE_MODES = ("HTML", "MarkdownV2")

KIND = KindSpec(
    kind="telegram",
    label="Telegram bot",
    channels=("telegram",),
    backend="delivery.backends.telegram.TelegramBackend",
    help="Messages from a bot created with @BotFather.",
    fields=(
        FieldSpec("bot_token", "Bot token", required=True, secret=True, help="From @BotFather"),
        FieldSpec(
            "parse_mode",
            "Default formatting",
            type="choice",
            default="HTML",
            choices=tuple((m, m) for m in PARSE_MODES),
        ),
        FieldSpec("link_previews", "Show link previews", type="bool", default=False),
        FieldSpec("max_wait", "Longest rate-limit wait (seconds)", type="float", default=DEFAULT_MAX_WAIT),
        FieldSpec("api_base", "API base URL", type="url", default=DEFAULT_API_BASE),
        FieldSpec("timeout", "Timeout (seconds)", type="float", default=_http.DEFAULT_TIMEOUT),
    ),
)


class TelegramBackend(_http.HttpBackend):
    """Telegram messages from a bot (see the module docstring).

    `sleep` is how a 429 waits (injectable so tests do not sleep).
    """

    channel = "telegram"

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep, **options: Any) -> None:
        super().__init__(**options)
        self.token = str(options.get("bot_token") or "")
        if not self.token:
            raise DeliveryError("Telegram: bot_token is required", permanent=True)
        base = str(options.get("api_base") or DEFAULT_API_BASE).rstrip("/")
        self.bot_url = f"{base}/bot{self.token}"
        self.max_wait = float(
            options.get("max_wait") if options.get("max_wait") is not None else DEFAULT_MAX_WAIT
        )
        self.sleep = sleep

    def _call(self, method: str, body: dict[str, Any] | None = None) -> httpx.Response:
        assert self.client is not None
        return self.client.post(f"{self.bot_url}/{method}", json=body or {})

    def get_me(self) -> dict[str, Any]:
        """The bot's own user object (getMe). Raises DeliveryError."""
        self.open()
        try:
            response = self._call("getMe")
        except httpx.HTTPError as exc:
            raise DeliveryError(
                _http.redact(f"Telegram: cannot reach the Bot API: {type(exc).__name__}: {exc}", self.token)
            ) from exc
        body = _http.json_or_none(response) or {}
        if response.status_code != 200 or not body.get("ok"):
            raise DeliveryError(
                f"Telegram: HTTP {response.status_code}: {self._description(response, body)}",
                permanent=response.status_code in (401, 404),
            )
        return dict(body["result"])

    def check(self) -> str:
        """getMe: proves the token. Raises DeliveryError."""
        me = self.get_me()
        return f"Telegram bot @{me.get('username', '?')} ({me.get('first_name', '')})"

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        """The sendMessage parameters for one message."""
        payload = message.payload
        body: dict[str, Any] = {"chat_id": message.to, "text": payload.get("text", "")}
        parse_mode = payload.get("parse_mode") or self.options.get("parse_mode") or "HTML"
        if parse_mode in PARSE_MODES:
            body["parse_mode"] = parse_mode
        buttons = [
            [
                {"text": str(button["text"]), "url": str(button["url"])}
                for button in row
                if button.get("text") and button.get("url")
            ]
            for row in payload.get("buttons") or []
        ]
        buttons = [row for row in buttons if row]
        if buttons:
            body["reply_markup"] = {"inline_keyboard": buttons}
        if not self.options.get("link_previews"):
            body["link_preview_options"] = {"is_disabled": True}
        return body

    def _send_one(self, message: OutboundMessage) -> SendResult:
        body = self.body(message)
        response = self._post(message, body)
        if isinstance(response, SendResult):
            return response
        if response.status_code == 429:
            wait = self._retry_after(response)
            if wait is not None and wait <= self.max_wait:
                self.sleep(wait)
                response = self._post(message, body)
                if isinstance(response, SendResult):
                    return response
        return self._result(message, response)

    def _post(self, message: OutboundMessage, body: dict[str, Any]) -> httpx.Response | SendResult:
        try:
            return self._call("sendMessage", body)
        except httpx.HTTPError as exc:
            abort = _http.unreachable(exc, secret=self.token)
            if abort:
                raise abort from exc
            return _http.transport_failure(message.ref, exc, secret=self.token)

    def _result(self, message: OutboundMessage, response: httpx.Response) -> SendResult:
        body = _http.json_or_none(response) or {}
        status = response.status_code
        if status == 200 and body.get("ok"):
            return SendResult(
                ref=message.ref, ok=True, provider_id=str((body.get("result") or {}).get("message_id", ""))
            )
        description = self._description(response, body)
        error = f"HTTP {status}: {description}"
        if status == 429:
            retry_after = self._retry_after(response)
            raise _http.BatchAbort(
                error,
                retry_after=retry_after,
                result=SendResult.failed(message.ref, error, retry_after=retry_after),
            )
        if status in (401, 404):
            raise _http.BatchAbort(f"Telegram: the bot token was refused: {error}", permanent=True)
        if status == 403:
            return SendResult.failed(message.ref, error, permanent=True, deactivate=True)
        if status == 400:
            gone = "chat not found" in description.lower()
            return SendResult.failed(message.ref, error, permanent=True, deactivate=gone)
        return _http.status_failure(message.ref, response, description)

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        body = _http.json_or_none(response)
        parameters = body.get("parameters") if isinstance(body, dict) else None
        if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):
            return float(parameters["retry_after"])
        return _http.parse_retry_after(response.headers.get("retry-after"))

    def _description(self, response: httpx.Response, body: dict[str, Any]) -> str:
        if isinstance(body, dict) and body.get("description"):
            return _http.redact(str(body["description"]), self.token)
        return _http.response_text(response, secret=self.token)
