from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("password/change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", views.password_reset_done, name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("no-account/", views.no_account, name="no_account"),
    path("account/switch/", views.account_switch, name="switch"),
    path("invite/<str:key>/", views.invitation_accept_view, name="invitation_accept"),
    path("settings/account/", views.account_settings, name="settings"),
    path("settings/members/", views.member_list, name="members"),
    path("settings/members/invite/", views.member_invite, name="member_invite"),
    path("settings/members/<int:pk>/role/", views.member_role, name="member_role"),
    path("settings/members/<int:pk>/remove/", views.member_remove, name="member_remove"),
    path("settings/invitations/<int:pk>/<str:action>/", views.invitation_action, name="invitation_action"),
    path("settings/api-tokens/", views.api_token_list_view, name="api_tokens"),
    path("settings/api-tokens/<int:pk>/revoke/", views.api_token_revoke_view, name="api_token_revoke"),
    path("settings/audit/", views.audit_log_view, name="audit"),
    path("settings/audit/export/", views.audit_export, name="audit_export"),
    path("jobs/", views.job_list_view, name="jobs"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:pk>/download/", views.job_download, name="job_download"),
]
