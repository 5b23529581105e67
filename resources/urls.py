"""The team's pages: resources, a profile's subscriptions (card tab actions), suppressions.

Each area keeps its routes in its own module; they share the "resources" namespace.
"""

from __future__ import annotations

from django.urls import include, path

app_name = "resources"

urlpatterns = [
    path("", include("resources.urls_admin")),
    path("", include("resources.urls_card")),
]
