"""Public pages for subscribers: no login, signed tokens (see resources.tokens)."""

from __future__ import annotations

app_name = "public"

urlpatterns: list = []
