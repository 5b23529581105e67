from __future__ import annotations

import copy
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import views as auth_views
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import lockout
from accounts.access import Actor, account_required, client_ip
from accounts.audit import VERBS, audit_log
from accounts.forms import (
    AccountSettingsForm,
    ApiTokenForm,
    InvitationSignupForm,
    InviteForm,
    LoginForm,
    RoleForm,
)
from accounts.middleware import SESSION_KEY
from accounts.models import Account, ApiToken, Invitation, Job, Membership
from accounts.permissions import ROLE_DESCRIPTIONS, Perm, Role
from accounts.selectors import (
    api_token_list,
    audit_event_list,
    invitation_list_pending,
    job_list,
    membership_list,
)
from accounts.services import (
    AccountError,
    account_update,
    api_token_create,
    api_token_revoke,
    audit_export_start,
    invitation_accept,
    invitation_by_key,
    invitation_create,
    invitation_resend,
    invitation_revoke,
    membership_change_role,
    membership_remove,
    user_create_from_invitation,
)
from cdp.forms import StyledFormMixin
from cdp.tables import Column, EmptyState, Filter, Table

# --- signing in and out ------------------------------------------------------------------------


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("dashboard")


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request))
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"].lower()
        ip = client_ip(request)
        wait = lockout.lockout_seconds(email=email, ip=ip)
        if wait:
            minutes = max(1, round(wait / 60))
            form.add_error(None, f"Too many failed sign-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}.")
            status = 429
        else:
            user = authenticate(request, username=email, password=form.cleaned_data["password"])
            lockout.login_attempt_record(email=email, ip=ip, succeeded=user is not None)
            if user is not None:
                login(request, user)
                _audit_auth(request, user, "auth.login")
                return redirect(_safe_next(request))
            if lockout.lockout_seconds(email=email, ip=ip):
                _audit_auth(request, None, "auth.locked_out", email=email)
            form.add_error(None, "That e-mail and password do not match an active user.")
            status = 401
    return render(request, "accounts/login.html", {"form": form, "next": request.GET.get("next", "")}, status=status)


def _audit_auth(request: HttpRequest, user, verb: str, email: str = "") -> None:
    """Auth events go to the audit log of every account the person belongs to."""
    from accounts.models import User

    if user is None and email:
        user = User.objects.filter(email__iexact=email).first()
    if user is None:
        return
    actor = Actor(user=user, ip=client_ip(request))
    for account_id in Membership.objects.filter(user=user).values_list("account_id", flat=True):
        audit_log(account=Account(pk=account_id), actor=actor, verb=verb, target=user, target_label="")


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        _audit_auth(request, request.user, "auth.logout")
    logout(request)
    messages.success(request, "You are signed out.")
    return redirect("accounts:login")


class _StyledPasswordChangeForm(StyledFormMixin, auth_forms.PasswordChangeForm):
    pass


class _StyledPasswordResetForm(StyledFormMixin, auth_forms.PasswordResetForm):
    pass


class _StyledSetPasswordForm(StyledFormMixin, auth_forms.SetPasswordForm):
    pass


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    form_class = _StyledPasswordChangeForm
    success_url = reverse_lazy("dashboard")

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        response = super().form_valid(form)
        _audit_auth(self.request, self.request.user, "auth.password_changed")
        messages.success(self.request, "Your password is changed.")
        return response


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/email/password_reset.txt"
    subject_template_name = "accounts/email/password_reset_subject.txt"
    form_class = _StyledPasswordResetForm
    success_url = reverse_lazy("accounts:password_reset_done")

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        from django.conf import settings

        # Links point at SITE_URL, not at whatever Host header the request carried.
        scheme, _, domain = settings.SITE_URL.partition("://")
        form.save(
            domain_override=domain,
            use_https=scheme == "https",
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            request=self.request,
            extra_email_context={"site_name": settings.SITE_NAME, "site_url": settings.SITE_URL},
        )
        return redirect(self.success_url)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    form_class = _StyledSetPasswordForm
    success_url = reverse_lazy("accounts:login")
    post_reset_login = False

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        response = super().form_valid(form)
        _audit_auth(self.request, form.user, "auth.password_reset")
        messages.success(self.request, "Your password is set. Sign in with it.")
        return response


@require_GET
def password_reset_done(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/password_reset_done.html")


@require_GET
def no_account(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("accounts:login")
    if request.membership is not None:
        return redirect("dashboard")
    return render(request, "accounts/no_account.html")


@require_POST
@account_required(None)
def account_switch(request: HttpRequest) -> HttpResponse:
    membership = get_object_or_404(Membership, user=request.user, account_id=request.POST.get("account"))
    request.session[SESSION_KEY] = membership.account_id
    Membership.objects.filter(pk=membership.pk).update(last_seen_at=timezone.now())
    messages.success(request, f"Switched to {membership.account.name}.")
    return redirect("dashboard")


# --- account settings --------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_SETTINGS)
def account_settings(request: HttpRequest) -> HttpResponse:
    # The form validates a copy (a ModelForm writes into its instance), so the service still
    # sees the stored values and records what changed.
    form = AccountSettingsForm(request.POST or None, instance=copy.copy(request.account))
    if request.method == "POST" and form.is_valid():
        account_update(
            account=request.account,
            actor=Actor.from_request(request),
            **{f: form.cleaned_data[f] for f in form.Meta.fields},
        )
        messages.success(request, "Account settings saved.")
        return redirect("accounts:settings")
    return render(request, "accounts/account_settings.html", {"form": form, "section": "settings"})


# --- members -----------------------------------------------------------------------------------


def _member_table(request: HttpRequest) -> Table:
    return Table(
        request,
        membership_list(account=request.account),
        id="members",
        columns=[
            Column("Member", sort="user__email"),
            Column("Role", sort="role"),
            Column("Joined", sort="created_at"),
            Column("", classes="text-end"),
        ],
        search_fields=["user__email", "user__full_name"],
        search_placeholder="Search by name or e-mail",
        filters=[Filter("role", "All roles", Role.choices)],
        default_sort="user__email",
        row_template="accounts/_member_row.html",
        empty=EmptyState("No members match", "Try another search or role.", icon="people"),
    )


def _member_page(request: HttpRequest, table: Table, invite_form: InviteForm, status: int = 200) -> HttpResponse:
    pending = invitation_list_pending(account=request.account)
    context = {
        "table": table,
        "invite_form": invite_form,
        "invite_open": invite_form.is_bound,
        "role_choices": RoleForm(actor_role=request.membership.role).fields["role"].choices,
        "invitations": pending[:100],
        "invitation_count": pending.count(),
        "role_descriptions": [(Role(r).label, d) for r, d in ROLE_DESCRIPTIONS.items()],
        "section": "members",
    }
    return render(request, "accounts/member_list.html", context, status=status)


@require_GET
@account_required(Perm.MEMBERS_VIEW)
def member_list(request: HttpRequest) -> HttpResponse:
    table = _member_table(request)
    if table.is_partial_request:
        return render(request, "components/table.html", {"table": table})
    return _member_page(request, table, InviteForm(actor_role=request.membership.role))


@require_POST
@account_required(Perm.MEMBERS_MANAGE)
def member_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST, actor_role=request.membership.role)
    if form.is_valid():
        try:
            invitation = invitation_create(
                account=request.account,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=Actor.from_request(request),
            )
        except AccountError as exc:
            form.add_error("email", str(exc))
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect("accounts:members")
    return _member_page(request, _member_table(request), form, status=400)


@require_POST
@account_required(Perm.MEMBERS_MANAGE)
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.for_account(request.account).select_related("user"), pk=pk)
    form = RoleForm(request.POST, actor_role=request.membership.role)
    if not form.is_valid():
        messages.error(request, "Choose a role you are allowed to grant.")
    else:
        try:
            membership_change_role(membership=membership, role=form.cleaned_data["role"], actor=Actor.from_request(request))
        except AccountError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{membership.user.email} is now {Role(form.cleaned_data['role']).label}.")
    return redirect("accounts:members")


@require_POST
@account_required(None)
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.for_account(request.account).select_related("user"), pk=pk)
    leaving = membership.user_id == request.user.pk
    if not leaving and not request.membership.can(Perm.MEMBERS_MANAGE):
        raise Http404
    try:
        membership_remove(membership=membership, actor=Actor.from_request(request))
    except AccountError as exc:
        messages.error(request, str(exc))
        return redirect("accounts:members" if not leaving else "dashboard")
    if leaving:
        request.session.pop(SESSION_KEY, None)
        messages.success(request, f"You left {membership.account.name}.")
        return redirect("dashboard")
    messages.success(request, f"{membership.user.email} was removed from the account.")
    return redirect("accounts:members")


@require_POST
@account_required(Perm.MEMBERS_MANAGE)
def invitation_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    invitation = get_object_or_404(Invitation.objects.for_account(request.account), pk=pk)
    actor = Actor.from_request(request)
    try:
        if action == "resend":
            invitation_resend(invitation=invitation, actor=actor)
            messages.success(request, f"Invitation sent to {invitation.email} again.")
        elif action == "revoke":
            invitation_revoke(invitation=invitation, actor=actor)
            messages.success(request, f"Invitation for {invitation.email} revoked.")
        else:
            raise Http404
    except AccountError as exc:
        messages.error(request, str(exc))
    return redirect("accounts:members")


@require_http_methods(["GET", "POST"])
def invitation_accept_view(request: HttpRequest, key: str) -> HttpResponse:
    """Public page behind the e-mailed link: sign up (new person) or join (signed-in person)."""
    invitation = invitation_by_key(key)
    if invitation is None or invitation.state != "pending":
        state = invitation.state if invitation else "invalid"
        return render(request, "accounts/invitation_invalid.html", {"state": state}, status=404 if state == "invalid" else 410)
    from accounts.models import User

    existing = User.objects.filter(email__iexact=invitation.email).first()
    context: dict = {"invitation": invitation, "existing": existing}
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                membership = invitation_accept(invitation=invitation, user=request.user, actor=Actor.from_request(request))
            except AccountError as exc:
                messages.error(request, str(exc))
                return redirect(request.path)
            request.session[SESSION_KEY] = membership.account_id
            messages.success(request, f"Welcome to {membership.account.name}.")
            return redirect("dashboard")
        return render(request, "accounts/invitation_accept.html", context)
    if existing is not None:
        return render(request, "accounts/invitation_accept.html", context)
    form = InvitationSignupForm(request.POST or None, email=invitation.email)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_create_from_invitation(
                invitation=invitation,
                full_name=form.cleaned_data["full_name"],
                password=form.cleaned_data["password1"],
                actor=Actor(ip=client_ip(request)),
            )
        except AccountError as exc:
            form.add_error(None, str(exc))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_KEY] = invitation.account_id
            messages.success(request, f"Welcome to {invitation.account.name}, {user.get_short_name()}.")
            return redirect("dashboard")
    context["form"] = form
    return render(request, "accounts/invitation_accept.html", context)


# --- API tokens --------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@account_required(Perm.API_TOKENS_MANAGE)
def api_token_list_view(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST or None, actor_role=request.membership.role)
    new_token = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            try:
                token, raw = api_token_create(
                    account=request.account,
                    name=form.cleaned_data["name"],
                    role=form.cleaned_data["role"],
                    actor=Actor.from_request(request),
                    expires_at=timezone.now() + timedelta(days=int(days)) if days else None,
                    create_profiles=form.cleaned_data["create_profiles"],
                )
            except AccountError as exc:
                form.add_error("role", str(exc))
                status = 400
            else:
                # Shown once, on this response only (no redirect, so it never lands in a URL or a session).
                new_token = {"token": token, "raw": raw}
                form = ApiTokenForm(actor_role=request.membership.role)
        else:
            status = 400
    tokens = api_token_list(account=request.account)
    context = {"form": form, "tokens": tokens, "new_token": new_token, "section": "api_tokens", "now": timezone.now()}
    response = render(request, "accounts/api_token_list.html", context, status=status)
    if new_token:
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@account_required(Perm.API_TOKENS_MANAGE)
def api_token_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken.objects.for_account(request.account), pk=pk)
    api_token_revoke(token=token, actor=Actor.from_request(request))
    messages.success(request, f"Token “{token.name}” revoked. Requests with it now get 401.")
    return redirect("accounts:api_tokens")


# --- audit log ---------------------------------------------------------------------------------


def _verb_filter_choices() -> list[tuple[str, str]]:
    return [(verb, label[:1].upper() + label[1:]) for verb, label in sorted(VERBS.items(), key=lambda kv: kv[1])]


@require_GET
@account_required(Perm.AUDIT_VIEW)
def audit_log_view(request: HttpRequest) -> HttpResponse:
    table = Table(
        request,
        audit_event_list(account=request.account).select_related("actor"),
        id="audit",
        columns=[Column("When", sort="created_at"), Column("Who"), Column("What"), Column("Details"), Column("IP")],
        search_fields=["actor_label", "target_label", "verb"],
        search_placeholder="Search people, objects, actions",
        filters=[Filter("verb", "All actions", _verb_filter_choices())],
        default_sort="-created_at",
        per_page=50,
        row_template="accounts/_audit_row.html",
        empty=EmptyState("No audit events", "Actions people take in this account appear here.", icon="journal-text"),
    )
    if table.is_partial_request:
        return render(request, "components/table.html", {"table": table})
    return render(request, "accounts/audit_log.html", {"table": table, "section": "audit"})


@require_POST
@account_required(Perm.AUDIT_VIEW)
def audit_export(request: HttpRequest) -> HttpResponse:
    filters = {k: request.POST.get(k, "")[:200] for k in ("q", "verb") if request.POST.get(k)}
    job = audit_export_start(account=request.account, actor=Actor.from_request(request), filters=filters)
    return redirect(job)


# --- jobs --------------------------------------------------------------------------------------


@require_GET
@account_required(Perm.JOBS_VIEW)
def job_list_view(request: HttpRequest) -> HttpResponse:
    table = Table(
        request,
        job_list(account=request.account),
        id="jobs",
        columns=[Column("Job", sort="title"), Column("State"), Column("Progress"), Column("Started by"), Column("Created", sort="created_at")],
        filters=[Filter("state", "All states", Job.State.choices)],
        search_fields=["title", "kind"],
        search_placeholder="Search jobs",
        default_sort="-created_at",
        row_template="accounts/_job_row.html",
        empty=EmptyState("No background jobs yet", "Imports, exports and rebuilds you start show their progress here.", icon="hourglass-split"),
    )
    if table.is_partial_request:
        return render(request, "components/table.html", {"table": table})
    return render(request, "accounts/job_list.html", {"table": table, "section": "jobs"})


@require_GET
@account_required(Perm.JOBS_VIEW)
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(job_list(account=request.account), pk=pk)
    if request.htmx and request.htmx.target == f"job-{job.pk}":
        return render(request, "components/job_progress.html", {"job": job})
    return render(request, "accounts/job_detail.html", {"job": job, "section": "jobs"})


@require_GET
@account_required(Perm.JOBS_VIEW)
def job_download(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.for_account(request.account), pk=pk)
    if job.state != Job.State.SUCCEEDED or not job.result_file:
        raise Http404("This job has no file to download.")
    name = job.result_file.name.rsplit("/", 1)[-1]
    return FileResponse(job.result_file.open("rb"), as_attachment=True, filename=name)
