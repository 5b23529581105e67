"""API: message templates (issue 7, item 7).

`{template_id}` is resolved through the token's account while the path is validated: another
account's template is a 404 whatever was sent. Every token reads and renders; creating, changing
and test-sending need the content permission (marketers and up).

A template's own mistakes are a 422 whose details name the place: `loc` is
["versions", "<channel>", "<part>"] on a write, ["template", "<part>"] on a render, with the `part`
and `line` repeated as keys of the detail.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Field as F
from ninja import Query, Router, Schema, Status

from accounts.access import Actor
from accounts.permissions import Perm
from cdp.api.auth import require
from cdp.api.errors import ERRORS, ApiError, ErrorOut
from cdp.api.pagination import CursorPage, paginate
from cdp.api.types import MAX_ID, id_ref
from content import rendering, services
from content.api.schemas import (
    ChannelName,
    KindName,
    RenderIn,
    RenderOut,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
    TemplateSummaryOut,
    TestSendIn,
    TestSendOut,
    VersionsIn,
)
from content.models import Template, TemplateVersion
from content.rendering import RenderError
from delivery.backends.base import DeliveryError
from profiles.models import Profile, ProfileDatabase
from resources.models import Subscription

router = Router()

TEMPLATES = ["templates"]


TemplateRef = id_ref(Template, what="template", example=7, related=("database",))


# --- errors ---------------------------------------------------------------------------------------


def _part_loc(part: str) -> list[str | int]:
    """ "buttons[0][1].url" -> ["buttons", 0, 1, "url"]."""
    return [int(p) if p.isdigit() else p for p in re.split(r"\.|\[(\d+)\]", part or "") if p]


def _template_error(exc: Exception, what: str, loc: list[str | int]) -> ApiError:
    """A service's or the renderer's refusal as a 422 naming the part (and line) at `loc` + part."""
    details: list[dict[str, Any]] = []
    if isinstance(exc, RenderError):
        details.append({"loc": [*loc, *_part_loc(exc.part)], "message": exc.message,
                        "type": "template_error", "part": exc.part or "", "line": exc.line})
    elif isinstance(getattr(exc, "errors", None), list) and all(
            isinstance(e, tuple) and len(e) == 3 for e in exc.errors):  # type: ignore[attr-defined]
        # content.services.ContentError: (part, line, message) per problem.
        for part, line, message in exc.errors:  # type: ignore[attr-defined]
            details.append({"loc": [*loc, *_part_loc(part)], "message": message, "type": "invalid_value",
                            "part": part or "", "line": line})
    elif isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        for part, messages in exc.message_dict.items():
            part = "" if part == "__all__" else part
            for m in messages:
                details.append({"loc": [*loc, *_part_loc(part)], "message": m, "type": "invalid_value",
                                "part": part, "line": None})
    else:
        messages = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
        details.extend({"loc": loc, "message": m, "type": "invalid_value", "part": "", "line": None} for m in messages)
    summary = "; ".join(
        (f"{d['part']}" + (f" line {d['line']}" if d["line"] else "") + f": {d['message']}") if d["part"]
        else d["message"] for d in details)
    return ApiError(422, f"{what}: {summary.rstrip('.')}.", details=details)


def _database(account: Any, slug: str | None) -> ProfileDatabase | None:
    if slug is None:
        return None
    db = ProfileDatabase.objects.for_account(account).filter(slug=slug).first()
    if db is None:
        raise ApiError(422, f"database: there is no profile database {slug!r} in this account.",
                       details=[{"loc": ["database"], "message": f"no database {slug!r}", "type": "not_found"}])
    return db


# --- output ---------------------------------------------------------------------------------------


def _version_out(v: TemplateVersion) -> dict[str, Any]:
    return {"id": v.pk, "channel": v.channel, "number": v.number, "data": v.data, "links": v.links or [],
            "lint": v.lint or [], "size": v.size, "note": v.note, "created_at": v.created_at,
            "created_by": v.created_by.email if v.created_by_id else None}


def _summary(t: Template, channels: list[str]) -> dict[str, Any]:
    return {"id": t.pk, "name": t.name, "kind": t.kind, "database": t.database.slug if t.database_id else None,
            "description": t.description, "channels": channels, "archived": t.archived_at is not None,
            "created_at": t.created_at, "updated_at": t.updated_at}


def _template_out(t: Template) -> dict[str, Any]:
    t = Template.objects.select_related("database").get(pk=t.pk)
    current = list(TemplateVersion.objects.filter(template=t, is_current=True).select_related("created_by")
                   .order_by("channel"))
    return {**_summary(t, [v.channel for v in current]), "versions": {v.channel: _version_out(v) for v in current}}


# --- list and create ------------------------------------------------------------------------------


class TemplateFilter(Schema):
    q: str = F("", max_length=100, description="Part of the name.")
    channel: ChannelName | None = F(None, description="Only templates with a saved version on this channel.")
    kind: KindName | None = None
    archived: bool = F(False, description="true: the archived templates instead.")


@router.get("/templates", tags=TEMPLATES, response={200: CursorPage[TemplateSummaryOut], **ERRORS},
            summary="List templates, newest first")
def template_list_api(request: HttpRequest, filters: Query[TemplateFilter], cursor: str | None = None,
                      limit: int | None = None) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    qs: QuerySet[Template] = Template.objects.for_account(request.auth.account).select_related("database")
    qs = qs.filter(archived_at__isnull=not filters.archived)
    if filters.q.strip():
        qs = qs.filter(name__icontains=filters.q.strip())
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.channel:
        qs = qs.filter(pk__in=TemplateVersion.objects.filter(channel=filters.channel, is_current=True)
                       .values("template_id"))
    page = paginate(qs, cursor=cursor, limit=limit)
    ids = [t.pk for t in page["items"]]
    channels: dict[int, list[str]] = {}
    for tid, ch in (TemplateVersion.objects.filter(template_id__in=ids, is_current=True)
                    .order_by("channel").values_list("template_id", "channel")):
        channels.setdefault(tid, []).append(ch)
    page["items"] = [_summary(t, channels.get(t.pk, [])) for t in page["items"]]
    return page


def _save_versions(template: Template, versions: VersionsIn | None, note: str, actor: Actor) -> None:
    for channel, data in (versions.given() if versions else {}).items():
        try:
            services.template_version_save(template=template, channel=channel, data=data, actor=actor, note=note)
        except (ValidationError, RenderError) as exc:
            raise _template_error(exc, f"The {channel} version was not saved", ["versions", channel]) from exc


@router.post("/templates", tags=TEMPLATES, response={201: TemplateOut, **ERRORS}, summary="Create a template")
def template_create_api(request: HttpRequest, payload: TemplateIn) -> Status:
    """With `versions`, a first version per channel is saved too, all or nothing: a part a channel
    requires that is missing, a template syntax error or a part over its size limit is a 422 whose
    `loc` is ["versions", channel, part] (and `line` the line in the part)."""
    require(request, Perm.CONTENT_EDIT)
    actor = Actor.from_request(request)
    database = _database(request.auth.account, payload.database)
    _name_conflict(request.auth.account, payload.name)
    with transaction.atomic():
        try:
            template = services.template_create(account=request.auth.account, name=payload.name, database=database,
                                                kind=payload.kind, description=payload.description, actor=actor)
        except ValidationError as exc:
            raise _template_error(exc, "The template was not created", []) from exc
        _save_versions(template, payload.versions, payload.note, actor)
    return Status(201, _template_out(template))


def _name_conflict(account: Any, name: str, exclude: int | None = None) -> None:
    """409 when another template of the account has the name (the service refuses it too, as a 422,
    should two requests race)."""
    qs = Template.objects.for_account(account).filter(name=name.strip())
    if exclude is not None:
        qs = qs.exclude(pk=exclude)
    if qs.exists():
        raise ApiError(409, f"name: another template is called “{name.strip()}”.", code="conflict",
                       details=[{"loc": ["name"], "message": "already used in this account", "type": "conflict"}])


# --- one template ---------------------------------------------------------------------------------


@router.get("/templates/{int:template_id}", tags=TEMPLATES, response={200: TemplateOut, **ERRORS},
            summary="A template with its current version per channel")
def template_get_api(request: HttpRequest, template_id: TemplateRef) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return _template_out(template_id)


@router.patch("/templates/{int:template_id}", tags=TEMPLATES, response={200: TemplateOut, **ERRORS},
              summary="Change a template, or save new versions")
def template_update_api(request: HttpRequest, template_id: TemplateRef, payload: TemplatePatch) -> dict:
    """Only the keys sent change. Each channel under `versions` becomes a new current version (the
    old ones stay in the history); all or nothing."""
    require(request, Perm.CONTENT_EDIT)
    actor = Actor.from_request(request)
    sent = payload.model_fields_set
    fields: dict[str, Any] = {k: getattr(payload, k) for k in ("name", "kind", "description")
                              if k in sent and getattr(payload, k) is not None}
    if "database" in sent:
        fields["database"] = _database(request.auth.account, payload.database)
    if "name" in fields:
        _name_conflict(request.auth.account, fields["name"], exclude=template_id.pk)
    with transaction.atomic():
        if fields:
            try:
                services.template_update(template=template_id, actor=actor, **fields)
            except ValidationError as exc:
                raise _template_error(exc, "The template was not changed", []) from exc
        _save_versions(template_id, payload.versions, payload.note, actor)
    return _template_out(template_id)


def _profile(template: Template, profile_id: int | None) -> Profile | None:
    if profile_id is None:
        return None
    qs = Profile.objects.for_account(template.account)
    if template.database_id:
        qs = qs.filter(database_id=template.database_id)
    profile = qs.filter(pk=profile_id).first() if profile_id <= MAX_ID else None
    if profile is None:
        where = f"in {template.database.name}" if template.database_id else "in this account"
        raise ApiError(422, f"profile_id: there is no profile {profile_id} {where}.",
                       details=[{"loc": ["profile_id"], "message": f"no profile {profile_id} {where}",
                                 "type": "not_found"}])
    return profile


def _version(template: Template, channel: str, number: int | None) -> TemplateVersion:
    qs = TemplateVersion.objects.filter(template=template, channel=channel)
    version = qs.filter(number=number).first() if number is not None else qs.filter(is_current=True).first()
    if version is None:
        if number is not None:
            raise ApiError(422, f"version: the {channel} of this template has no version {number}.",
                           details=[{"loc": ["version"], "message": f"no {channel} version {number}",
                                     "type": "not_found"}])
        raise ApiError(409, f"The template has no saved {channel} version yet.", code="no_version",
                       details=[{"loc": ["channel"], "message": f"no {channel} version", "type": "not_found"}])
    return version


def _context(template: Template, channel: str, profile: Profile | None, data: dict[str, Any] | None) -> dict:
    subscription = None
    if profile is not None:
        subscription = (Subscription.objects.for_account(template.account).filter(profile=profile, channel=channel)
                        .select_related("resource").order_by("priority", "id").first())
    return rendering.context_for(account=template.account, profile=profile, subscription=subscription,
                                 resource=subscription.resource if subscription else None, data=data or {})


@router.post("/templates/{int:template_id}/render", tags=TEMPLATES, response={200: RenderOut, **ERRORS},
             summary="Render a template for a profile or given data")
def template_render_api(request: HttpRequest, template_id: TemplateRef, payload: RenderIn) -> dict:
    """Renders the channel's current version (or `version`, a version number) as a profile would
    get it (`profile_id`), or with `data` only. Nothing is sent or stored. A template that cannot
    be rendered (an error in a part, a refused construct, a time or size limit) is a 422 with the
    part and line: `{"loc": ["template", "html"], "part": "html", "line": 3, "message": ...}`."""
    require(request, Perm.ACCOUNT_VIEW)
    template = template_id
    profile = _profile(template, payload.profile_id)
    version = _version(template, payload.channel, payload.version)
    try:
        rendered = rendering.compiled(version).render(_context(template, payload.channel, profile, payload.data))
    except RenderError as exc:
        raise _template_error(exc, "The template cannot be rendered", ["template"]) from exc
    return {"channel": payload.channel, "version": version.number, "parts": dict(rendered.parts)}


@router.post("/templates/{int:template_id}/test-send", tags=TEMPLATES, response={200: TestSendOut, **ERRORS, 502: ErrorOut},
             summary="Send the current version to one address, as a test")
def template_test_send_api(request: HttpRequest, template_id: TemplateRef, payload: TestSendIn) -> dict:
    """Renders the channel's current version (for `profile_id`, or with `data`) and sends it to
    `address` through the account's real provider. The answer says whether the provider accepted
    it (`provider_id`) or refused it (`error`, `permanent`). 409 `no_version` when the channel has
    no saved version; 422 for a template that cannot be rendered; 502 when the provider could not be
    reached or is not configured."""
    require(request, Perm.CONTENT_EDIT)
    from delivery.services import test_send

    template = template_id
    profile = _profile(template, payload.profile_id)
    version = _version(template, payload.channel, None)
    try:
        result = test_send(account=request.auth.account, version=version, address=payload.address, profile=profile,
                           data=payload.data, actor=Actor.from_request(request))
    except RenderError as exc:
        raise _template_error(exc, "The template cannot be rendered", ["template"]) from exc
    except ValidationError as exc:
        raise _template_error(exc, "The test was not sent", []) from exc
    except DeliveryError as exc:
        raise ApiError(502, f"The test was not sent: {exc.message}", code="delivery_failed",
                       details=[{"loc": [], "message": exc.message,
                                 "type": "permanent" if exc.permanent else "temporary"}]) from exc
    return {"ok": result.ok, "version": version.number, "provider_id": result.provider_id, "error": result.error,
            "permanent": result.permanent}
