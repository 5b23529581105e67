"""Routes of the operations endpoints (mounted at the root by cdp/urls.py; /healthz keeps its
un-namespaced name "healthz" there)."""

from __future__ import annotations

from django.urls import path

from cdp.ops import views

app_name = "ops"

urlpatterns = [
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("ops/status", views.status_page, name="status"),
]
