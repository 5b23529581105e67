"""Bounces, complaints and tracking feedback (being written by the FEEDBACK helper; this is the
empty starting point)."""

from __future__ import annotations

from typing import Any


def on_tracking_events(events: list[Any]) -> None:
    return None
