"""The scenario pages: the list, a new one, import; a scenario's editor page with its step panel
(palette, step forms, move, delete), publishing and the lifecycle; participants and paths; the
report; a profile's trips."""

from __future__ import annotations

from django.urls import path

from scenarios.views import editor, participants, scenarios

app_name = "scenarios"

urlpatterns = [
    path("scenarios/", scenarios.scenario_list, name="list"),
    path("scenarios/new/", scenarios.scenario_create, name="create"),
    path("scenarios/import/", scenarios.scenario_import, name="import"),
    path("scenarios/profiles/<int:profile_id>/", participants.profile_trips, name="profile_trips"),
    path("scenarios/<int:pk>/", editor.scenario_detail, name="detail"),
    path("scenarios/<int:pk>/settings/", scenarios.scenario_settings, name="settings"),
    path("scenarios/<int:pk>/export/", scenarios.scenario_export, name="export"),
    path("scenarios/<int:pk>/delete/", scenarios.scenario_delete, name="delete"),
    path("scenarios/<int:pk>/draft/", editor.draft_create, name="draft"),
    path("scenarios/<int:pk>/steps/new/", editor.step_palette, name="palette"),
    path("scenarios/<int:pk>/steps/add/", editor.step_add_view, name="step_add"),
    path("scenarios/<int:pk>/steps/<slug:key>/", editor.step_edit, name="step_edit"),
    path("scenarios/<int:pk>/steps/<slug:key>/move/", editor.step_move_view, name="step_move"),
    path("scenarios/<int:pk>/steps/<slug:key>/delete/", editor.step_delete_view, name="step_delete"),
    path("scenarios/<int:pk>/activate/", scenarios.scenario_activate, name="activate"),
    path("scenarios/<int:pk>/publish/", scenarios.scenario_publish, name="publish"),
    path("scenarios/<int:pk>/pause/", scenarios.scenario_pause, name="pause"),
    path("scenarios/<int:pk>/resume/", scenarios.scenario_resume, name="resume"),
    path("scenarios/<int:pk>/stop/", scenarios.scenario_stop, name="stop"),
    path("scenarios/<int:pk>/participants/", participants.participant_list, name="participants"),
    path("scenarios/<int:pk>/participants/<int:participation_id>/", participants.participation_detail,
         name="participation"),
    path("scenarios/<int:pk>/report/", participants.scenario_report, name="report"),
]
