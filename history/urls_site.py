"""The website tracking setup page (included by history/urls.py into the "history" namespace)."""

from __future__ import annotations

from django.urls import path

from history.views import site

urlpatterns = [
    path("history/tracking/", site.site_tracking, name="site_tracking"),
    path("history/tracking/<slug:slug>/events/", site.site_tracking_events, name="site_tracking_events"),
]
