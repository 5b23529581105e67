"""The segments part of /api/v1/: segments of a database (list, create, change, delete), live counts,
recalculation, members (static segments changed by id or match key), the explainer and the runs."""

from __future__ import annotations

from segments.api.routes import router

__all__ = ["router"]
