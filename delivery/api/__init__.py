"""The delivery part of /api/v1/: sending domains (list, add with a DKIM key, read with the DNS
records to publish, verify DNS)."""

from __future__ import annotations

from delivery.api.routes import router

__all__ = ["router"]
