from __future__ import annotations

app_name = "mailings"

urlpatterns: list = []
