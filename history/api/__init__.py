"""The history part of /api/v1/: sending events (one or a batch), a profile's events, event types."""

from __future__ import annotations

from history.api.routes import router

__all__ = ["router"]
