"""A small SMTP listener for the bounce domain (aiosmtpd): receives DSNs, feedback reports and
List-Unsubscribe mail and hands each message to a callback, once.

Like the rest of `mailings.bounces` it knows nothing of the database: `handle(raw)` is the
caller's (`manage.py process_bounces --listen` passes one that parses and applies). The listener
adds the envelope recipients as `X-Original-To` headers, as a delivery agent writing a Maildir
would, so the VERP address is found even when the report's own headers do not carry it. The
callback runs in a worker thread (it talks to the database; aiosmtpd's loop must not block).
A message is acknowledged with 250 only after the callback returned; when it raises, the
answer is a 451 and the sending server tries again later, so a message is never lost, and the
callback being idempotent makes the retry harmless.

Recipients: with `domains` given, only addresses at those domains are accepted (550 for the
rest: this is not an open relay, it delivers nowhere).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from mailings.bounces.parse import MAX_PARSE_BYTES

log = logging.getLogger("mailings.bounces")

Handle = Callable[[bytes], Any]


def with_envelope(raw: bytes, recipients: Iterable[str]) -> bytes:
    """`raw` with an X-Original-To header per envelope recipient put in front."""
    head = b"".join(b"X-Original-To: " + r.encode("utf-8", "replace").replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
                    for r in recipients)
    return head + raw


class _Handler:
    def __init__(self, listener: BounceListener) -> None:
        self.listener = listener

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        domains = self.listener.domains
        if domains and address.rpartition("@")[2].lower() not in domains:
            return "550 5.1.1 No such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = with_envelope(envelope.original_content or envelope.content or b"", envelope.rcpt_tos)
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(None, self.listener.deliver, raw)
        except Exception:
            log.exception("bounces: the listener could not apply a message; asking the sender to retry")
            return "451 4.3.0 Temporary failure, try again later"
        log.info("bounces: received a message: %s", outcome)
        return "250 2.0.0 Message accepted"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        with self.listener._cond:
            self.listener.quits += 1
            self.listener._cond.notify_all()
        return "221 Bye"


class BounceListener:
    """`start()` listens on host:port in a background thread; `stop()` ends it. `received`
    counts the messages handed to `handle`; `wait(n, timeout)` waits until n were."""

    def __init__(self, handle: Handle, *, host: str = "127.0.0.1", port: int = 2525,
                 domains: Iterable[str] = (), data_size_limit: int = MAX_PARSE_BYTES) -> None:
        self.handle = handle
        self.host, self.port = host, port
        self.domains = frozenset(d.lower().lstrip("@") for d in domains if d)
        self.data_size_limit = data_size_limit
        self.received = 0
        self.quits = 0  # sessions that ended with QUIT (their replies were all sent)
        self.outcomes: list[Any] = []
        self._cond = threading.Condition()
        self._controller: Any = None

    def deliver(self, raw: bytes) -> Any:
        """Hand one message to the callback (called in a worker thread); count it once it returned."""
        outcome = self.handle(raw)
        with self._cond:
            self.received += 1
            self.outcomes.append(outcome)
            self._cond.notify_all()
        return outcome

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port,
                                      data_size_limit=self.data_size_limit, ready_timeout=10.0)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait(self, count: int = 1, timeout: float | None = None) -> bool:
        """Whether `count` messages were handled before `timeout` seconds (None: wait for ever)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.received >= count, timeout=timeout)

    def wait_quit(self, count: int = 1, timeout: float | None = None) -> bool:
        """Whether `count` sessions ended with QUIT before `timeout` seconds: stop after this, not
        right after a message was handled, so its 250 reaches the sender."""
        with self._cond:
            return self._cond.wait_for(lambda: self.quits >= count, timeout=timeout)

    def __enter__(self) -> BounceListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
