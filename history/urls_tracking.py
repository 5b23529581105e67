"""Tracking endpoints, mounted at "t/". Paths are in every sent message: keep them stable."""

from __future__ import annotations

from django.urls import path

from history.views import collect, tracking

app_name = "tracking"

urlpatterns = [
    path("o/<str:token>.gif", tracking.open_pixel, name="open"),
    path("c/<str:token>", tracking.click, name="click"),
    # The website snippet (static/js/cdp-track.js) posts here; the key is a resource's public key.
    path("collect/<str:key>", collect.collect, name="collect"),
]
