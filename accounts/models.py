"""Tenants, people and their roles, API tokens, the audit trail and background jobs.

Every tenant row carries `account`; querysets that views, tasks and the API use go through
`.for_account(account)`.
"""

from __future__ import annotations

import hashlib
import secrets
import zoneinfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone as tz

from accounts.permissions import Perm, Role, role_has

TIMEZONE_CHOICES = sorted((n, n.replace("_", " ")) for n in zoneinfo.available_timezones() if "/" in n or n == "UTC")


def hash_secret(raw: str) -> str:
    """SHA-256 hex of a high-entropy secret (tokens, invitation keys). Never store the raw value."""
    return hashlib.sha256(raw.encode()).hexdigest()


class AccountQuerySet(models.QuerySet["Account"]):
    def for_user(self, user: User) -> AccountQuerySet:
        return self.filter(memberships__user=user).order_by("name", "id")


class Account(models.Model):
    """A tenant: one business. Everything it owns points here."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    timezone = models.CharField(max_length=64, default="UTC", choices=TIMEZONE_CHOICES)
    language = models.CharField(max_length=8, default="en", choices=settings.LANGUAGES)
    default_phone_region = models.CharField(
        max_length=2,
        default="US",
        validators=[RegexValidator(r"^[A-Z]{2}$", "Use a two-letter ISO 3166 country code, such as DE.")],
        help_text="Two-letter country code used to read phone numbers written without +country code.",
    )
    created_at = models.DateTimeField(default=tz.now, editable=False)

    objects = AccountQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username or "")


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in. Belongs to accounts through Membership; e-mail is the login."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May use the Django admin (superusers only).")
    date_joined = models.DateTimeField(default=tz.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.full_name or self.email

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return (self.full_name.split(" ")[0] if self.full_name else self.email.split("@")[0]) or self.email

    @property
    def initials(self) -> str:
        parts = [p for p in (self.full_name or self.email).replace("@", " ").replace(".", " ").split() if p]
        return "".join(p[0] for p in parts[:2]).upper() or "?"


class TenantQuerySet(models.QuerySet):
    """Base queryset for rows that belong to an account."""

    def for_account(self, account: Account) -> TenantQuerySet:
        return self.filter(account=account)


class MembershipQuerySet(TenantQuerySet):
    def owners(self) -> MembershipQuerySet:
        return self.filter(role=Role.OWNER)


class Membership(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MARKETER)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "user"], name="membership_unique_user")]
        indexes = [models.Index(fields=["user", "account"], name="membership_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}) in {self.account}"

    def can(self, perm: Perm) -> bool:
        return role_has(self.role, perm)


class InvitationQuerySet(TenantQuerySet):
    def pending(self) -> InvitationQuerySet:
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=tz.now())


class Invitation(models.Model):
    """An e-mailed offer to join an account with a role. The link carries a secret we keep only hashed."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    key_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=tz.now, editable=False)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "email"], name="invitation_account_email_idx")]

    def __str__(self) -> str:
        return f"Invitation of {self.email} to {self.account}"

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= tz.now():
            return "expired"
        return "pending"

    @staticmethod
    def new_key() -> str:
        return secrets.token_urlsafe(32)


class ApiTokenQuerySet(TenantQuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=tz.now())
        )


class ApiToken(models.Model):
    """A bearer token for the REST API: one account, one role. Only its SHA-256 is stored."""

    PREFIX = "cdp_"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MARKETER)
    token_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=16, help_text="The token's first characters, to recognise it.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=tz.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    create_profiles = models.BooleanField(
        default=False, help_text="Events naming an unknown profile create it (otherwise they are refused)."
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests a minute; empty means the platform default."
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @classmethod
    def generate(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > tz.now())

    def can(self, perm: Perm) -> bool:
        return role_has(self.role, perm)


class AuditEvent(models.Model):
    """Who did what to which object, when and from where. Written by services in their transaction."""

    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_label = models.CharField(max_length=200, blank=True, help_text="Who, as shown even after deletion.")
    verb = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=tz.now, db_index=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="audit_account_time_idx"),
            models.Index(fields=["account", "verb", "-created_at"], name="audit_account_verb_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label or 'system'} {self.verb} {self.target_label}".strip()

    @property
    def verb_label(self) -> str:
        from accounts.audit import verb_label

        return verb_label(self.verb)


class Job(models.Model):
    """A long operation (import, export, rebuild, send) that a task advances and a page watches."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=64)
    title = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    progress = models.BigIntegerField(default=0)
    total = models.BigIntegerField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    result_file = models.FileField(upload_to="jobs/%Y/%m/", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=tz.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="job_account_time_idx"),
            models.Index(fields=["state", "heartbeat_at"], name="job_state_heartbeat_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("accounts:job_detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED

    @property
    def percent(self) -> int | None:
        if self.state == self.State.SUCCEEDED:
            return 100
        if not self.total:
            return None
        return max(0, min(100, int(self.progress * 100 / self.total)))

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or tz.now()
        return (end - self.started_at).total_seconds()


class IdempotencyKey(models.Model):
    """The first response to a POST that carried an `Idempotency-Key`, replayed on retries."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=tz.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="idempotency_unique_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return self.key


class LoginAttempt(models.Model):
    """One sign-in attempt, kept for the lockout window (and a little longer for the audit)."""

    email = models.CharField(max_length=254)
    ip = models.GenericIPAddressField(null=True, blank=True)
    succeeded = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=tz.now)

    class Meta:
        indexes = [
            models.Index(fields=["email", "-created_at"], name="login_attempt_email_idx"),
            models.Index(fields=["ip", "-created_at"], name="login_attempt_ip_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.email} {'ok' if self.succeeded else 'failed'} {self.created_at:%Y-%m-%d %H:%M}"
