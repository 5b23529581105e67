"""The segment pages (signed-in team members): the list per database, the builder, a segment's page
with its members and runs, the explainer, and the profile card's segment actions."""

from __future__ import annotations

from django.urls import path

from segments.views import card, edit, explain, segments

app_name = "segments"

urlpatterns = [
    path("segments/", segments.segment_list, name="list"),
    path("segments/new/", edit.segment_create, name="create"),
    path("segments/<int:pk>/", segments.segment_detail, name="detail"),
    path("segments/<int:pk>/edit/", edit.segment_edit, name="edit"),
    path("segments/<int:pk>/delete/", segments.segment_delete, name="delete"),
    path("segments/<int:pk>/duplicate/", segments.segment_duplicate, name="duplicate"),
    path("segments/<int:pk>/recalculate/", segments.segment_recalculate, name="recalculate"),
    path("segments/<int:pk>/export/", segments.segment_export, name="export"),
    path("segments/<int:pk>/members/add/", segments.members_add, name="members_add"),
    path("segments/<int:pk>/members/remove/", segments.members_remove, name="members_remove"),
    path("segments/<int:pk>/runs/<int:run>/", segments.run_detail, name="run"),
    path("segments/<int:pk>/explain/", explain.segment_explain, name="explain"),
    path("databases/<slug:db>/profiles/<int:pk>/segments/", card.card_membership, name="card_membership"),
]
