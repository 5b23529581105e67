"""An emulator of the Telegram Bot API (getMe, sendMessage) with Telegram's error replies."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from delivery.tests.providers._server import Reply, Request
from delivery.tests.providers.fake_sms import Faults

HTML_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "span",
    "tg-spoiler",
    "tg-emoji",
    "blockquote",
}


def telegram_error(code: int, description: str, **parameters: Any) -> Reply:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Reply(code, body)


class _TagCheck(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.unsupported: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS and self.unsupported is None:
            self.unsupported = tag


@dataclass
class TelegramEmulator:
    token: str = "123456789:AAH-bot-token-secret"
    chats: set[str] = field(default_factory=lambda: {"1001", "1002", "1003"})
    blocked: set[str] = field(default_factory=set)
    deactivated: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    _ids: Any = field(default_factory=lambda: itertools.count(100))

    def throttle(self, retry_after: int, times: int = 1) -> None:
        self.faults.fail_next(
            telegram_error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after),
            times,
        )

    def __call__(self, request: Request) -> Reply:
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", request.path)
        if not match:
            return telegram_error(404, "Not Found")
        token, method = match.groups()
        if token != self.token:
            return telegram_error(401, "Unauthorized")
        if method == "getMe":
            return Reply(
                200,
                {
                    "ok": True,
                    "result": {
                        "id": 123456789,
                        "is_bot": True,
                        "first_name": "Acme",
                        "username": "acme_news_bot",
                    },
                },
            )
        if method != "sendMessage":
            return telegram_error(404, "Not Found: method not found")
        fault = self.faults.take()
        if fault:
            return fault
        body = request.json()
        chat = str(body.get("chat_id", ""))
        if chat in self.blocked:
            return telegram_error(403, "Forbidden: bot was blocked by the user")
        if chat in self.deactivated:
            return telegram_error(403, "Forbidden: user is deactivated")
        if chat not in self.chats:
            return telegram_error(400, "Bad Request: chat not found")
        text = body.get("text") or ""
        if not text:
            return telegram_error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return telegram_error(400, "Bad Request: message is too long")
        if body.get("parse_mode") == "HTML":
            check = _TagCheck()
            check.feed(text)
            if check.unsupported:
                return telegram_error(
                    400, f'Bad Request: can\'t parse entities: Unsupported start tag "{check.unsupported}"'
                )
        message_id = next(self._ids)
        self.sent.append({**body, "message_id": message_id})
        return Reply(
            200,
            {
                "ok": True,
                "result": {
                    "message_id": message_id,
                    "chat": {"id": int(chat)},
                    "date": 1700000000,
                    "text": text,
                },
            },
        )
