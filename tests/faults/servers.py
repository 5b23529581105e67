"""Loopback servers the fault tests put between the platform and the world.

- `FaultSmtp`: an aiosmtpd server that answers per recipient domain or address with a 4xx
  (421/451), a 5xx (550), or drops the connection after DATA, optionally slows every message
  down, and records every message it accepted (with the ledger ref of its Message-ID and the
  arrival time), so a test can count duplicates and say what arrived when.
- `TcpProxy`: a TCP forwarder on loopback that can be taken down (connections refused), brought
  back on the same port, cut (every open connection closed) or stalled (bytes held): placed
  between a worker and PostgreSQL, or between the test process and Redis.
- `RecordingHttp`: a loopback HTTP server that records every request: templates point their
  remote CSS and images at it, so a test proves nothing fetched them (F14).

Every wait here is bounded (socket timeouts, thread joins with a timeout).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.ports import free_port, on_a_free_port

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>]+)>", re.IGNORECASE | re.MULTILINE)


def ref_of(raw: bytes) -> str:
    """The ledger ref ("L123") of a message delivery.mime made: the Message-ID's part before the
    last dot of its local part (delivery.mime.make_message_id), or "" when there is none."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    if not found:
        return ""
    local = found.group(1).decode("ascii", "replace").partition("@")[0]
    ref, dot, _ = local.rpartition(".")
    return ref if dot else ""


@dataclass
class Rule:
    """How the server answers a recipient: `match` is a domain ("slow.example.net") or an address;
    `action` "451", "421", "550" (at RCPT) or "drop" (after DATA: the message arrived, the reply
    never does); `times` how many times per address (None: always)."""

    match: str
    action: str
    times: int | None = None


@dataclass
class Arrival:
    ref: str
    rcpt: str
    at: float  # time.time() when the server got the whole message
    dropped: bool  # the connection was cut instead of answering (the sender cannot know)
    raw: bytes = b""


@dataclass
class FaultSmtp:
    """The fault SMTP server (start() / stop(), or a context manager)."""

    host: str = "127.0.0.1"
    port: int = 0  # the free port start() found
    rules: list[Rule] = field(default_factory=list)
    delay_s: float = 0.0  # per accepted message: keeps a run going long enough to act during it
    keep_raw: bool = False
    arrivals: list[Arrival] = field(default_factory=list)
    answers: list[tuple[str, str, float]] = field(default_factory=list)  # (rcpt, code, time) of refusals
    lock: threading.Lock = field(default_factory=threading.Lock)
    _applied: Counter[tuple[str, str]] = field(default_factory=Counter)
    _controller: Any = None

    # --- rules ---------------------------------------------------------------------------------

    def _rule_for(self, rcpt: str, actions: tuple[str, ...]) -> Rule | None:
        domain = rcpt.rpartition("@")[2].lower()
        for rule in self.rules:
            if rule.action not in actions or rule.match.lower() not in (rcpt.lower(), domain):
                continue
            key = (rule.match, rcpt.lower())
            if rule.times is not None and self._applied[key] >= rule.times:
                continue
            self._applied[key] += 1
            return rule
        return None

    # --- the aiosmtpd handler -----------------------------------------------------------------------

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list) -> str:
        with self.lock:
            rule = self._rule_for(address, ("421", "451", "550"))
            if rule is not None:
                self.answers.append((address.lower(), rule.action, time.time()))
        if rule is not None:
            text = {"421": "421 4.7.0 Try again later, closing connection",
                    "451": "451 4.7.1 Greylisted, try again later",
                    "550": "550 5.1.1 No such user here"}[rule.action]
            return text
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        rcpt = (envelope.rcpt_tos or [""])[0].lower()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        with self.lock:
            drop = self._rule_for(rcpt, ("drop",)) is not None
            self.arrivals.append(Arrival(ref=ref_of(raw), rcpt=rcpt, at=time.time(), dropped=drop,
                                         raw=raw if self.keep_raw else b""))
        if drop:
            # The data arrived; the reply never leaves: the sender's outcome is unknown.
            server.transport.abort()
            await asyncio.sleep(0)
        return "250 2.0.0 Ok: queued"

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> FaultSmtp:
        from aiosmtpd.controller import Controller

        def on(port: int) -> Controller:
            controller = Controller(self, hostname=self.host, port=port, ready_timeout=30)
            controller.start()
            self.port = port
            return controller

        self._controller = on_a_free_port(on)
        return self

    def stop(self) -> None:
        if self._controller is not None:
            with contextlib.suppress(Exception):
                self._controller.stop()
            self._controller = None

    def __enter__(self) -> FaultSmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what arrived -------------------------------------------------------------------------------

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def count_by_ref(self) -> Counter[str]:
        return Counter(a.ref for a in self.snapshot())

    def duplicates(self) -> dict[str, int]:
        return {ref: n for ref, n in self.count_by_ref().items() if n > 1}

    def wait_for(self, count: int, timeout: float) -> int:
        """Wait (bounded) until at least `count` messages arrived; returns how many did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = len(self.arrivals)
            if n >= count:
                return n
            time.sleep(0.05)
        return len(self.arrivals)


class TcpProxy:
    """Forward 127.0.0.1:<port> to target host:port, with faults: `down()` (close the listener
    and every connection: new ones are refused), `up()` (listen again on the same port), `cut()`
    (close the open connections, keep listening), `stall(True)` (hold bytes both ways)."""

    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._holder: socket.socket | None = None  # the port while down (see down())
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stalled = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0

    def url_for(self, url: str) -> str:
        """`url` ("redis://127.0.0.1:6379/6") with its host and port swapped for this proxy's."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # --- lifecycle ---------------------------------------------------------------------------------

    def up(self) -> TcpProxy:
        if self._listener is not None:
            return self
        listener, self._holder = self._holder, None
        if listener is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept_loop, name=f"proxy:{self.port}", daemon=True)
        self._thread.start()
        return self

    start = up

    def down(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
            # The port stays ours while down: bound, not listening (connections are refused, as
            # with nobody there), so no other socket takes it before up() listens on it again.
            holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                holder.bind(("127.0.0.1", self.port))
                self._holder = holder
            except OSError:
                holder.close()
        self.cut()

    def stop(self) -> None:
        """Down for good: the port is let go."""
        self.down()
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def stall(self, on: bool = True) -> None:
        if on:
            self._stalled.set()
        else:
            self._stalled.clear()

    # --- forwarding --------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self.accepted += 1
            for s in (client, upstream):
                s.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self._stalled.is_set() and not self._stop.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                for s in (src, dst):
                    if s in self._conns:
                        self._conns.remove(s)
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


class RecordingHttp:
    """A loopback HTTP server that answers every GET/POST/HEAD with a small body (CSS for *.css, a
    1x1 GIF otherwise) and records each request (method, path, time.time()): a template points at
    it, and `hits` proves whether anything (the platform, a worker, a browser) fetched it."""

    GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingHttp:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        recorder = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a client that connects and says nothing does not hold a thread forever

            def _answer(self) -> None:
                with recorder.lock:
                    recorder.hits.append((self.command, self.path, time.time()))
                css = self.path.split("?", 1)[0].endswith(".css")
                body = b"body { background: url(/from-css.gif) }" if css else recorder.GIF
                self.send_response(200)
                self.send_header("Content-Type", "text/css" if css else "image/gif")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"recording-http:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def snapshot(self) -> list[tuple[str, str, float]]:
        with self.lock:
            return list(self.hits)

    def __enter__(self) -> RecordingHttp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
