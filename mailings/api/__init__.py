"""The mailings part of /api/v1/: mailings (list, create, change, launch, pause, resume, cancel),
their audience preview, report and recipient log, and the trigger endpoints (one profile, or up to
1,000 in bulk)."""

from __future__ import annotations

from mailings.api.routes import router

__all__ = ["router"]
