from __future__ import annotations

app_name = "scenarios"

urlpatterns: list = []
