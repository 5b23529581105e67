"""The mailing pages (signed-in team members): the list, the wizard, a mailing's page with its live
progress, its report and recipient log with exports, the calendar and the sending policies."""

from __future__ import annotations

from django.urls import path

from mailings.views import calendar, mailings, policies, reports, wizard

app_name = "mailings"

urlpatterns = [
    path("mailings/", mailings.mailing_list, name="list"),
    path("mailings/new/", wizard.mailing_create, name="create"),
    path("mailings/calendar/", calendar.mailing_calendar, name="calendar"),
    path("mailings/policies/", policies.policy_list, name="policies"),
    path("mailings/policies/clear/", policies.policy_clear, name="policy_clear"),
    path("mailings/<int:pk>/", mailings.mailing_detail, name="detail"),
    path("mailings/<int:pk>/progress/", mailings.mailing_progress, name="progress"),
    path("mailings/<int:pk>/edit/<slug:step>/", wizard.mailing_edit, name="edit"),
    path("mailings/<int:pk>/audience/", wizard.audience_preview, name="audience_preview"),
    path("mailings/<int:pk>/test/", wizard.mailing_test_send, name="test_send"),
    path("mailings/<int:pk>/launch/", mailings.mailing_launch, name="launch"),
    path("mailings/<int:pk>/pause/", mailings.mailing_pause, name="pause"),
    path("mailings/<int:pk>/resume/", mailings.mailing_resume, name="resume"),
    path("mailings/<int:pk>/cancel/", mailings.mailing_cancel, name="cancel"),
    path("mailings/<int:pk>/duplicate/", mailings.mailing_duplicate, name="duplicate"),
    path("mailings/<int:pk>/delete/", mailings.mailing_delete, name="delete"),
    path("mailings/<int:pk>/report/", reports.mailing_report, name="report"),
    path("mailings/<int:pk>/recipients/", reports.recipient_log, name="recipients"),
    path("mailings/<int:pk>/explain/", reports.recipient_explain, name="explain"),
    path("mailings/<int:pk>/export/<slug:what>/", reports.mailing_export, name="export"),
]
