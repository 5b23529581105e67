"""URL patterns (included by history/urls.py)."""

from __future__ import annotations

urlpatterns: list = []
