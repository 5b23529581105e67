"""The team's pages for resources and suppression lists (included into the "resources" namespace)."""

from __future__ import annotations

from django.urls import path

from resources.views import resources, suppressions

urlpatterns = [
    path("resources/", resources.resource_list, name="list"),
    path("resources/new/", resources.resource_create_view, name="create"),
    path("resources/<slug:slug>/", resources.resource_detail, name="detail"),
    path("resources/<slug:slug>/settings/", resources.resource_settings, name="settings"),
    path("resources/<slug:slug>/rotate-key/", resources.resource_rotate_key, name="rotate_key"),
    path("resources/<slug:slug>/delete/", resources.resource_delete_view, name="delete"),
    path("suppressions/", suppressions.suppression_list, name="suppression_list"),
    path("suppressions/<int:pk>/remove/", suppressions.suppression_remove_view, name="suppression_remove"),
    path("suppressions/import/", suppressions.suppression_import, name="suppression_import"),
    path("suppressions/import/<int:pk>/", suppressions.suppression_import_detail, name="suppression_import_detail"),
    path("suppressions/export.csv", suppressions.suppression_export, name="suppression_export"),
]
