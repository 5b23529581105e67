"""The resources part of /api/v1/: resources, subscriptions, the consent ledger, suppressions."""

from __future__ import annotations

from resources.api.routes import router

__all__ = ["router"]
