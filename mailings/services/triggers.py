"""Trigger mailings (being written by the TRIGGERS-API helper; this is the empty starting point)."""

from __future__ import annotations

from typing import Any


def interesting_types() -> frozenset[str]:
    return frozenset()


def on_events(events: list[Any]) -> None:
    return None


def on_confirmation(subscription: Any) -> None:
    return None
