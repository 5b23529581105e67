from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from cdp import views
from cdp.api.errors import api_not_found
from cdp.api.v1 import api
from cdp.ops import views as ops_views

admin.site.site_header = "CDP administration (superusers)"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", ops_views.healthz, name="healthz"),
    path("", include("cdp.ops.urls")),
    path("api/v1/", api.urls),
    re_path(r"^api/v1/(?P<path>[\s\S]*)$", api_not_found, name="api_not_found"),  # [\s\S]: paths with %0A too
    path("django-admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("profiles.urls")),
    path("", include("resources.urls")),
    path("", include("history.urls")),
    path("", include("segments.urls")),
    path("", include("content.urls")),
    path("", include("delivery.urls")),
    path("", include("mailings.urls")),
    path("", include("scenarios.urls")),
    path("p/", include("resources.urls_public")),
    path("t/", include("history.urls_tracking")),
]
