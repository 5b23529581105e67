"""Login rate limiting with lockout, kept in the database so every web process agrees.

An e-mail address is locked after LOGIN_FAILURE_LIMIT failures inside the window, and an IP
address after four times as many (password spraying across many addresses). A success
clears the e-mail's count. The lock ends when the window has passed since the last failure.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from accounts.models import LoginAttempt


def _window() -> timedelta:
    return timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def _locked_for(failures_qs, limit: int) -> int:
    since = timezone.now() - _window()
    recent = failures_qs.filter(created_at__gte=since)
    stats = recent.aggregate(last=Max("created_at"))
    if stats["last"] is None or recent[:limit].count() < limit:
        return 0
    remaining = (stats["last"] + _window() - timezone.now()).total_seconds()
    return max(1, int(remaining))


def lockout_seconds(*, email: str, ip: str | None) -> int:
    """Seconds until this e-mail (or IP) may try again; 0 when not locked."""
    email = email.strip().lower()
    limit = settings.LOGIN_FAILURE_LIMIT
    last_success = (
        LoginAttempt.objects.filter(email=email, succeeded=True).order_by("-created_at").values_list("created_at", flat=True).first()
    )
    by_email = LoginAttempt.objects.filter(email=email, succeeded=False)
    if last_success is not None:
        by_email = by_email.filter(created_at__gt=last_success)
    seconds = _locked_for(by_email, limit)
    if ip:
        seconds = max(seconds, _locked_for(LoginAttempt.objects.filter(ip=ip, succeeded=False), limit * 4))
    return seconds


def login_attempt_record(*, email: str, ip: str | None, succeeded: bool) -> None:
    LoginAttempt.objects.create(email=email.strip().lower()[:254], ip=ip, succeeded=succeeded)


def login_attempts_purge() -> int:
    cutoff = timezone.now() - max(_window() * 4, timedelta(days=1))
    deleted, _ = LoginAttempt.objects.filter(created_at__lt=cutoff).delete()
    return deleted
