"""Thin Celery tasks: take ids, call services, safe to run twice."""

from __future__ import annotations

import csv
import io
import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts import jobs, lockout
from accounts.models import IdempotencyKey, Invitation
from accounts.selectors import audit_event_list
from accounts.services import invitation_issue_key
from cdp.spreadsheets import formula_safe

log = logging.getLogger(__name__)


@shared_task(autoretry_for=(OSError,), retry_backoff=5, retry_backoff_max=300, max_retries=8)
def invitation_send_task(invitation_id: int) -> None:
    """E-mail the invitation link. Retries on network errors; a used or revoked invitation is skipped."""
    issued = invitation_issue_key(invitation_id=invitation_id)
    if issued is None:
        log.info("invitation %s is no longer pending; not sent", invitation_id)
        return
    invitation, key = issued
    link = settings.SITE_URL + reverse("accounts:invitation_accept", args=[key])
    context = {
        "invitation": invitation,
        "account": invitation.account,
        "inviter": invitation.invited_by,
        "link": link,
        "site_name": settings.SITE_NAME,
        "role": invitation.get_role_display(),
        "expires_days": settings.INVITATION_TTL_DAYS,
    }
    inviter = invitation.invited_by.get_full_name() if invitation.invited_by else "A colleague"
    message = EmailMultiAlternatives(
        subject=f"{inviter} invited you to {invitation.account.name} on {settings.SITE_NAME}",
        body=render_to_string("accounts/email/invitation.txt", context),
        to=[invitation.email],
    )
    message.attach_alternative(render_to_string("accounts/email/invitation.html", context), "text/html")
    message.send()


@shared_task
def audit_export_task(job_id: int) -> None:
    job = jobs.job_claim(job_id=job_id)
    if job is None:
        return
    with jobs.job_failing(job):
        qs = audit_event_list(account=job.account, q=job.params.get("q", ""), verb=job.params.get("verb", ""))
        total = qs.count()
        jobs.job_progress(job=job, progress=0, total=total, message=f"Writing {total:,} events")
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["time_utc", "actor", "action", "verb", "target", "target_type", "target_id", "ip", "data"])
        done = 0
        for event in qs.order_by("-created_at", "-id").iterator(chunk_size=2000):
            writer.writerow([
                event.created_at.isoformat(), event.actor_label, event.verb_label, event.verb,
                formula_safe(event.target_label), event.target_type, event.target_id, event.ip or "", event.data,
            ])
            done += 1
            if done % 2000 == 0:
                jobs.job_progress(job=job, progress=done)
        name = f"audit-{job.account.slug}-{timezone.now():%Y%m%d-%H%M%S}.csv"
        jobs.job_succeed(
            job=job,
            result={"rows": done},
            message=f"{done:,} events exported",
            file=ContentFile(buffer.getvalue().encode("utf-8-sig"), name=name),
        )


@shared_task
def jobs_sweep_task() -> None:
    jobs.jobs_sweep()


@shared_task
def housekeeping_task() -> None:
    """Purge what has outlived its use: idempotency keys, login attempts, stale invitations."""
    now = timezone.now()
    IdempotencyKey.objects.filter(created_at__lt=now - timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)).delete()
    lockout.login_attempts_purge()
    Invitation.objects.filter(accepted_at__isnull=True, expires_at__lt=now - timedelta(days=90)).delete()
