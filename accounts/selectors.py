"""Reads shared by views, tasks and the API."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import Account, ApiToken, AuditEvent, Invitation, Job, Membership


def membership_list(*, account: Account) -> QuerySet[Membership]:
    return Membership.objects.for_account(account).select_related("user")


def invitation_list_pending(*, account: Account) -> QuerySet[Invitation]:
    return Invitation.objects.for_account(account).pending().select_related("invited_by")


def api_token_list(*, account: Account) -> QuerySet[ApiToken]:
    return ApiToken.objects.for_account(account).select_related("created_by")


def audit_event_list(*, account: Account, q: str = "", verb: str = "") -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.for_account(account)
    if verb:
        qs = qs.filter(Q(verb=verb) | Q(verb__startswith=verb.rstrip(".") + ".")) if verb.endswith(".") else qs.filter(verb=verb)
    for term in q.split():
        qs = qs.filter(Q(actor_label__icontains=term) | Q(target_label__icontains=term) | Q(verb__icontains=term))
    return qs


def job_list(*, account: Account) -> QuerySet[Job]:
    return Job.objects.for_account(account).select_related("created_by")
