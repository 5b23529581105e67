"""Loopback ports for the test servers (SMTP sinks, relays, listeners)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A port nothing listens on now. Free when asked, not when bound: see `on_a_free_port`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_a_free_port(start: Callable[[int], T], *, attempts: int = 5) -> T:
    """start(port) on a free port; on another if that one was taken meanwhile (OSError: another
    process bound it between `free_port` and `start`), up to `attempts` ports."""
    for attempt in range(attempts):
        try:
            return start(free_port())
        except OSError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
