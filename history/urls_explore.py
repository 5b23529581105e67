"""URL patterns (included by history/urls.py): the event explorer and the profile card's timeline rows."""

from __future__ import annotations

from django.urls import path

from history.views import explorer, timeline

urlpatterns = [
    path("history/", explorer.event_list, name="events"),
    path("history/events/<int:pk>/", explorer.event_detail, name="event_detail"),
    path("databases/<slug:db>/profiles/<int:pk>/history/", timeline.timeline_rows, name="timeline"),
]
