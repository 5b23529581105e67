"""URL patterns of the event types and the history settings (included by history/urls.py)."""

from __future__ import annotations

from django.urls import path

from history.views import settings, types

urlpatterns = [
    path("history/types/", types.type_list, name="types"),
    path("history/types/new/", types.type_create, name="type_create"),
    path("history/types/<str:name>/", types.type_detail, name="type_detail"),
    path("history/types/<str:name>/delete/", types.type_delete, name="type_delete"),
    path("history/settings/", settings.history_settings, name="settings"),
    path("history/settings/cleanup/", settings.history_cleanup, name="settings_cleanup"),
]
