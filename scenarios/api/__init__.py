"""The scenarios part of /api/v1/: scenarios (list, create, change, delete, activate, pause,
resume, stop), letting profiles in through an API entry, the participants, the per-step report,
and export / import as JSON."""

from __future__ import annotations

from scenarios.api.routes import router

__all__ = ["router"]
