"""The template pages (signed-in team members): templates and their editor with the sandboxed
preview, versions (compare, restore), links, "send a test", and fragments."""

from __future__ import annotations

from django.urls import path

from content.views import editor, fragments, preview, templates, testsend, versions

app_name = "content"

urlpatterns = [
    path("templates/", templates.template_list, name="template_list"),
    path("templates/new/", templates.template_create, name="template_create"),
    path("templates/<int:pk>/", editor.template_detail, name="template_detail"),
    path("templates/<int:pk>/check/", editor.template_check, name="template_check"),
    path("templates/<int:pk>/profiles/", editor.template_profiles, name="template_profiles"),
    path("templates/<int:pk>/preview/", preview.template_preview, name="template_preview"),
    path("templates/<int:pk>/settings/", templates.template_settings, name="template_settings"),
    path("templates/<int:pk>/archive/", templates.template_archive, name="template_archive"),
    path("templates/<int:pk>/duplicate/", templates.template_duplicate, name="template_duplicate"),
    path("templates/<int:pk>/delete/", templates.template_delete, name="template_delete"),
    path("templates/<int:pk>/versions/", versions.template_versions, name="template_versions"),
    path("templates/<int:pk>/compare/", versions.version_compare, name="version_compare"),
    path("templates/<int:pk>/versions/<int:version>/restore/", versions.version_restore, name="version_restore"),
    path("templates/<int:pk>/links/", versions.template_links, name="template_links"),
    path("templates/<int:pk>/test/", testsend.template_test_send, name="template_test_send"),
    path("fragments/", fragments.fragment_list, name="fragment_list"),
    path("fragments/new/", fragments.fragment_create, name="fragment_create"),
    path("fragments/<int:pk>/", fragments.fragment_edit, name="fragment_edit"),
    path("fragments/<int:pk>/delete/", fragments.fragment_delete, name="fragment_delete"),
]
