"""API: the token's account, its members, invitations, the audit log and jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status

from accounts.access import Actor
from accounts.models import Invitation, Job
from accounts.permissions import Perm, Role
from accounts.selectors import audit_event_list, invitation_list_pending, job_list, membership_list
from accounts.services import AccountError, invitation_create, invitation_revoke
from cdp.api.auth import require
from cdp.api.errors import ApiError, ErrorOut
from cdp.api.pagination import CursorPage, paginate
from cdp.api.types import Email

router = Router(tags=["account"])

ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut, 429: ErrorOut}

RoleName = Literal["owner", "admin", "marketer", "analyst"]


class TokenOut(Schema):
    name: str
    role: RoleName


class AccountOut(Schema):
    id: int
    name: str
    slug: str
    timezone: str
    language: str
    default_phone_region: str
    created_at: datetime
    token: TokenOut


class MemberOut(Schema):
    id: int
    email: str
    full_name: str
    role: RoleName
    joined_at: datetime


class InvitationIn(Schema):
    email: Email
    role: RoleName = "marketer"


class InvitationOut(Schema):
    id: int
    email: str
    role: RoleName
    state: Literal["pending", "accepted", "revoked", "expired"]
    created_at: datetime
    expires_at: datetime


class AuditEventOut(Schema):
    id: int
    created_at: datetime
    actor: str = Field(alias="actor_label")
    verb: str
    target_type: str
    target_id: str
    target: str = Field(alias="target_label")
    data: dict
    ip: str | None


class JobOut(Schema):
    id: int
    kind: str
    title: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: int
    total: int | None
    percent: int | None
    message: str
    error: str
    result: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _member_out(m) -> dict:
    return {"id": m.pk, "email": m.user.email, "full_name": m.user.full_name, "role": m.role, "joined_at": m.created_at}


@router.get("/account", response={200: AccountOut, **ERRORS}, summary="The token's account")
def account_get(request: HttpRequest) -> dict:
    token = request.auth
    a = token.account
    return {
        "id": a.pk, "name": a.name, "slug": a.slug, "timezone": a.timezone, "language": a.language,
        "default_phone_region": a.default_phone_region, "created_at": a.created_at,
        "token": {"name": token.name, "role": token.role},
    }


@router.get("/account/members", response={200: CursorPage[MemberOut], **ERRORS}, summary="List members")
def member_list_api(request: HttpRequest, cursor: str | None = None, limit: int | None = None) -> dict:
    require(request, Perm.MEMBERS_VIEW)
    page = paginate(membership_list(account=request.auth.account), cursor=cursor, limit=limit)
    page["items"] = [_member_out(m) for m in page["items"]]
    return page


@router.get("/account/invitations", response={200: CursorPage[InvitationOut], **ERRORS}, summary="List pending invitations")
def invitation_list_api(request: HttpRequest, cursor: str | None = None, limit: int | None = None) -> dict:
    require(request, Perm.MEMBERS_VIEW)
    return paginate(invitation_list_pending(account=request.auth.account), cursor=cursor, limit=limit)


@router.post("/account/invitations", response={201: InvitationOut, **ERRORS}, summary="Invite a member by e-mail")
def invitation_create_api(request: HttpRequest, payload: InvitationIn) -> Status:
    require(request, Perm.MEMBERS_MANAGE)
    try:
        invitation = invitation_create(
            account=request.auth.account, email=payload.email, role=Role(payload.role), actor=Actor.from_request(request)
        )
    except AccountError as exc:
        raise ApiError(409, str(exc), details=[{"loc": ["email"], "message": str(exc)}]) from exc
    return Status(201, invitation)


@router.delete("/account/invitations/{invitation_id}", response={200: InvitationOut, **ERRORS}, summary="Revoke an invitation")
def invitation_revoke_api(request: HttpRequest, invitation_id: int) -> Invitation:
    require(request, Perm.MEMBERS_MANAGE)
    invitation = get_object_or_404(Invitation.objects.for_account(request.auth.account), pk=invitation_id)
    try:
        return invitation_revoke(invitation=invitation, actor=Actor.from_request(request))
    except AccountError as exc:
        raise ApiError(409, str(exc)) from exc


class AuditFilter(Schema):
    verb: str = ""
    q: str = ""


@router.get("/audit-events", tags=["audit"], response={200: CursorPage[AuditEventOut], **ERRORS}, summary="Read the audit log")
def audit_list_api(
    request: HttpRequest, filters: Query[AuditFilter], cursor: str | None = None, limit: int | None = None
) -> dict:
    require(request, Perm.AUDIT_VIEW)
    qs = audit_event_list(account=request.auth.account, q=filters.q, verb=filters.verb)
    return paginate(qs, cursor=cursor, limit=limit)


@router.get("/jobs", tags=["jobs"], response={200: CursorPage[JobOut], **ERRORS}, summary="List background jobs")
def job_list_api(request: HttpRequest, cursor: str | None = None, limit: int | None = None) -> dict:
    require(request, Perm.JOBS_VIEW)
    return paginate(job_list(account=request.auth.account), cursor=cursor, limit=limit)


@router.get("/jobs/{job_id}", tags=["jobs"], response={200: JobOut, **ERRORS}, summary="A background job's progress")
def job_get_api(request: HttpRequest, job_id: int) -> Job:
    require(request, Perm.JOBS_VIEW)
    return get_object_or_404(Job.objects.for_account(request.auth.account), pk=job_id)
