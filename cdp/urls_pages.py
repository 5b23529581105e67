"""Every route but the /api/v1/ API: the site's pages, admin, ops, public and tracking routes.

cdp.urls serves these behind the API. A Celery worker reverses with this URLconf alone
(cdp.celery: links in messages, invitations, exports): the same paths and names, without
importing the API's routers and their pydantic schemas, which a worker never serves or
reverses (~15 MB of a worker's memory, issue 8)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from cdp import views
from cdp.ops import views as ops_views

admin.site.site_header = "CDP administration (superusers)"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", ops_views.healthz, name="healthz"),
    path("", include("cdp.ops.urls")),
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
