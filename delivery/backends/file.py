"""File backend (the embedded default): writes what it would send, so people can look at it.

Layout under `directory` (settings.DELIVERY_OUTBOX_DIR, default VAR_DIR/outbox):
    <account id>/<YYYY-MM-DD>/<time_ns>-<random>.eml     one e-mail (the signed wire bytes)
    <account id>/<YYYY-MM-DD>/<time_ns>-<random>.json    one message of another channel
    <account id>/index.jsonl                             one line per message, append-only
An index line: {"id": "<date>/<file>", "at": ISO time, "channel", "to", "subject", "ref",
"size"}. Messages sent without a known account go under "_". delivery.outbox reads the index
backwards page by page, so listing never scans the directory.

Lines are appended with one write() on an O_APPEND descriptor: concurrent workers do not
interleave lines (they are far below the size a local file system writes atomically).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from django.conf import settings

from delivery.backends import KindSpec
from delivery.backends.base import BaseBackend, DeliveryError, OutboundMessage, SendResult

INDEX = "index.jsonl"


def account_dir(directory: str | Path, account_id: int | None) -> Path:
    return Path(directory) / (str(account_id) if account_id else "_")


def _summary(message: OutboundMessage) -> str:
    if message.channel == "email":
        head = message.raw.split(b"\r\n\r\n", 1)[0]
        subject = BytesHeaderParser(policy=default_policy).parsebytes(head + b"\r\n\r\n").get("subject", "")
        return str(subject)
    payload = message.payload
    return str(payload.get("title") or payload.get("text") or payload.get("body") or "")


class FileBackend(BaseBackend):
    local = True  # nothing leaves the machine

    def __init__(self, directory: str | None = None, **options: Any) -> None:
        # `directory` comes from settings only (the file kind has no such field).
        super().__init__(**options)
        self.directory = Path(directory or getattr(settings, "DELIVERY_OUTBOX_DIR", settings.VAR_DIR / "outbox"))
        self.account_id: int | None = None  # set by delivery.backends.get_backend

    def open(self) -> None:
        try:
            account_dir(self.directory, self.account_id).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"Cannot write the outbox at {self.directory}: {exc}") from exc

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        base = account_dir(self.directory, self.account_id)
        results = []
        lines = []
        for message in messages:
            now = datetime.now(UTC)
            day = now.strftime("%Y-%m-%d")
            ext = "eml" if message.channel == "email" else "json"
            name = f"{time.time_ns()}-{os.urandom(4).hex()}.{ext}"
            if message.channel == "email":
                data = message.raw
            else:
                data = json.dumps({"channel": message.channel, "to": message.to, "ref": message.ref,
                                   "payload": message.payload, "meta": message.meta}, ensure_ascii=False,
                                  indent=2).encode()
            try:
                (base / day).mkdir(parents=True, exist_ok=True)
                (base / day / name).write_bytes(data)
            except OSError as exc:
                results.append(SendResult.failed(message.ref, f"Cannot write the outbox: {exc}"))
                continue
            lines.append(json.dumps({
                "id": f"{day}/{name}", "at": now.isoformat(timespec="seconds"), "channel": message.channel,
                "to": message.to, "subject": _summary(message)[:200], "ref": message.ref, "size": len(data),
            }, ensure_ascii=False) + "\n")
            results.append(SendResult(ref=message.ref, ok=True, provider_id=f"{day}/{name}"))
        if lines:
            fd = os.open(base / INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                for line in lines:
                    os.write(fd, line.encode())
            finally:
                os.close(fd)
        return results

    def check(self) -> str:
        self.open()
        return f"Writes messages to {self.directory}."


KIND = KindSpec(
    kind="file", label="File (outbox)", channels=("email", "sms", "webpush", "mobilepush", "telegram"),
    backend="delivery.backends.file.FileBackend",
    # No directory field: an account must not choose where the server writes files.
    fields=(),
    help="Writes messages to the outbox instead of sending them.",
)
