"""Console backend: prints each message (e-mail as its wire text, others as JSON) to a stream
(stdout by default). For development and `manage.py` experiments."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from delivery.backends import KindSpec
from delivery.backends.base import BaseBackend, OutboundMessage, SendResult

_lock = threading.Lock()


class ConsoleBackend(BaseBackend):
    local = True

    def __init__(self, stream: IO[str] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.stream = stream or sys.stdout

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        results = []
        with _lock:  # messages of parallel threads do not interleave
            for message in messages:
                if message.channel == "email":
                    text = message.raw.decode("utf-8", "replace").replace("\r\n", "\n")
                    self.stream.write(f"MAIL FROM:<{message.envelope_from}> RCPT TO:<{message.to}>\n{text}\n")
                else:
                    self.stream.write(json.dumps({"channel": message.channel, "to": message.to, "ref": message.ref,
                                                  "payload": message.payload}, ensure_ascii=False) + "\n")
                self.stream.write("-" * 79 + "\n")
                results.append(SendResult(ref=message.ref, ok=True))
            self.stream.flush()
        return results

    def check(self) -> str:
        return "Prints messages to the console."


KIND = KindSpec(
    kind="console", label="Console", channels=("email", "sms", "webpush", "mobilepush", "telegram"),
    backend="delivery.backends.console.ConsoleBackend", fields=(), help="Prints messages; for development.",
)
