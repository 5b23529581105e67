from __future__ import annotations

from django.urls import path

from profiles.views import databases, imports, profiles

app_name = "profiles"

urlpatterns = [
    # Databases and their schema
    path("databases/", databases.database_list, name="database_list"),
    path("databases/new/", databases.database_create_view, name="database_create"),
    path("databases/<slug:db>/settings/", databases.database_settings, name="database_settings"),
    path("databases/<slug:db>/delete/", databases.database_delete_view, name="database_delete"),
    path("databases/<slug:db>/fields/new/", databases.field_create, name="field_create"),
    path("databases/<slug:db>/fields/reorder/", databases.field_reorder, name="field_reorder"),
    path("databases/<slug:db>/fields/<slug:name>/", databases.field_edit, name="field_edit"),
    path("databases/<slug:db>/fields/<slug:name>/remove/", databases.field_remove_view, name="field_remove"),
    # Profiles
    path("databases/<slug:db>/", profiles.profile_list, name="profile_list"),
    path("databases/<slug:db>/export/", profiles.profile_export, name="profile_export"),
    path("databases/<slug:db>/profiles/new/", profiles.profile_create_view, name="profile_create"),
    path("databases/<slug:db>/profiles/<int:pk>/", profiles.profile_detail, name="profile_detail"),
    path("databases/<slug:db>/profiles/<int:pk>/merge/", profiles.profile_merge_view, name="profile_merge"),
    path("databases/<slug:db>/profiles/<int:pk>/erase/", profiles.profile_erase_view, name="profile_erase"),
    # Imports
    path("databases/<slug:db>/imports/", imports.import_list, name="import_list"),
    path("databases/<slug:db>/imports/new/", imports.import_upload, name="import_upload"),
    path("databases/<slug:db>/imports/<int:pk>/", imports.import_detail, name="import_detail"),
    path("databases/<slug:db>/imports/<int:pk>/errors.csv", imports.import_errors, name="import_errors"),
]
