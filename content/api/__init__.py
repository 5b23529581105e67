"""The templates part of /api/v1/: list, create, read, change (new versions), render and test-send."""

from __future__ import annotations

from content.api.routes import router

__all__ = ["router"]
