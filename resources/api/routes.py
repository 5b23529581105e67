"""API: resources, a profile's subscriptions and consent ledger, subscribing by match key, and
the suppression list (issue 4, item 10).

Conventions as in profiles/api.py and cdp/api/__init__.py: `require()` per operation, objects looked
up through `.for_account()` (another account's object is a 404), writes through resources.services
with the token as the actor and `Via(source="api")`, so every status or category change lands in
the consent ledger as actor "token", source "api". Path objects (`{resource}`, `{db}`) are resolved
while the path is validated, before the body is read.

Errors: an unknown object is 404; a value that does not fit (an address for its channel, an unknown
channel, category or status, a transition the rules refuse) is 422 with `details[].loc` naming the
field in the body (`["address"]`, `["items", 3, "value"]`); a person erased on a data-protection
request is 409 `erased`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Status
from pydantic import (
    ValidationError,
)

from accounts.access import Actor
from accounts.permissions import Perm
from cdp.api.auth import require
from cdp.api.errors import ERRORS, ApiError
from cdp.api.pagination import CursorPage, paginate
from cdp.api.types import slug_ref
from profiles.api import DatabaseRef, invalid_values, profile_or_404
from profiles.models import Profile, ProfileDatabase
from profiles.services import Schema as FieldSchema
from profiles.services import profile_upsert
from resources.addresses import AddressError, normalise_address, profile_address
from resources.api.schemas import (
    MAX_BATCH,
    Address,
    ChannelName,
    ConsentOut,
    ResourceDetailOut,
    ResourceIn,
    ResourceOut,
    ResourcePatch,
    SubscribeIn,
    SubscribeOut,
    SubscriptionFilter,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
    SuppressionBatchOut,
    SuppressionCheckOut,
    SuppressionFilter,
    SuppressionIn,
    SuppressionItemIn,
    SuppressionOut,
)
from resources.models import SYSTEM_STATUSES, ConsentRecord, Resource, Subscription, Suppression
from resources.selectors import profile_ledger, resource_counts, suppression_for
from resources.services import (
    ResourceError,
    ResourceValidationError,
    Via,
    clean_address,
    guess_kind,
    resource_create,
    resource_delete,
    resource_rotate_public_key,
    resource_update,
    subscription_create,
    subscription_delete,
    subscription_subscribe,
    subscription_update,
    suppression_add,
    suppression_remove,
)

router = Router()

RESOURCES = ["resources"]
SUBSCRIPTIONS = ["subscriptions"]
SUPPRESSIONS = ["suppressions"]

# --- {resource} in the path -----------------------------------------------------------------------


ResourceRef = slug_ref(Resource, what="resource", example="shop-news", related=("account", "database"))



# --- helpers --------------------------------------------------------------------------------------


def _resource_out(r: Resource, *, counts: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.pk, "name": r.name, "slug": r.slug, "database": r.database.slug, "description": r.description,
        "channels": r.channels, "categories": r.categories, "double_opt_in": r.double_opt_in,
        "preference_visible_fields": r.preference_visible_fields, "preference_editable_fields": r.preference_editable_fields,
        "language": r.language, "public_key": r.public_key, "subscribe_enabled": r.subscribe_enabled,
        "subscribe_redirect_url": r.subscribe_redirect_url, "created_at": r.created_at, "updated_at": r.updated_at,
    }
    if counts:
        out["counts"] = resource_counts(r)
    return out


def _subscription_out(s: Subscription) -> dict[str, Any]:
    return {
        "id": s.pk, "profile": s.profile_id, "resource": s.resource.slug, "channel": s.channel, "address": s.address,
        "status": s.status, "reason": s.reason, "suspended_until": s.suspended_until, "opted_out": s.opted_out,
        "priority": s.priority, "meta": s.meta, "source": s.source, "confirmed_at": s.confirmed_at,
        "created_at": s.created_at, "changed_at": s.changed_at, "updated_at": s.updated_at,
    }


def _consent_out(c: ConsentRecord) -> dict[str, Any]:
    return {
        "id": c.pk, "resource": c.resource.slug, "subscription": c.subscription_id, "channel": c.channel,
        "address": c.address, "action": c.action, "old_status": c.old_status, "new_status": c.new_status,
        "old_categories": c.old_categories, "new_categories": c.new_categories, "actor_type": c.actor_type,
        "actor_label": c.actor_label, "source": c.source, "reason": c.reason, "ip": c.ip, "user_agent": c.user_agent,
        "created_at": c.created_at,
    }


def _suppression_out(s: Suppression) -> dict[str, Any]:
    return {
        "id": s.pk, "kind": s.kind, "channel": s.channel, "value": s.value, "reason": s.reason, "note": s.note,
        "source": s.source, "created_by_label": s.created_by_label, "created_at": s.created_at,
    }


def _refused(exc: ResourceError, *, field: str = "status", what: str = "Nothing was changed") -> ApiError:
    """A 422 for a service's refusal: per field for a ResourceValidationError, else on `field` (a transition)."""
    if isinstance(exc, ResourceValidationError):
        return invalid_values(exc.errors, what=what)
    return ApiError(422, str(exc), details=[{"loc": [field], "message": str(exc), "type": "invalid_transition"}])


def _body_resource(request: HttpRequest, slug: str, *, loc: tuple[str, ...] = ("resource",)) -> Resource:
    resource = Resource.objects.for_account(request.auth.account).select_related("database").filter(slug=slug).first()
    if resource is None:
        raise ApiError(404, f"There is no resource {slug!r} in this account.",
                       details=[{"loc": list(loc), "message": "no such resource in this account", "type": "not_found"}])
    return resource


def _subscription(request: HttpRequest, profile: Profile, subscription_id: int) -> Subscription:
    sub = (
        Subscription.objects.for_account(request.auth.account).select_related("resource")
        .filter(profile=profile, pk=subscription_id).first()
    )
    if sub is None:
        raise ApiError(404, f"The profile {profile.pk} has no subscription {subscription_id}.")
    return sub


def _aware(value: datetime | None, request: HttpRequest) -> datetime | None:
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value, request.auth.account.tzinfo)
    return value


def _default_address(profile: Profile, channel: str, address: Address | None) -> Address:
    if address is not None and str(address).strip():
        return address
    own = profile_address(channel, profile.email, profile.phone)
    if own is None:
        own_field = {"email": "e-mail address", "sms": "phone number"}.get(channel)
        message = (f"give the address: the profile has no {own_field}" if own_field
                   else f"give the address: a {channel} subscription has no default address")
        raise ApiError(422, f"address: {message}.", details=[{"loc": ["address"], "message": message, "type": "missing"}])
    return own


def _force_needs_reason(force: bool, reason: str, old_status: str | None, new_status: str | None) -> None:
    if force and old_status in SYSTEM_STATUSES and new_status not in (None, old_status) and not reason.strip():
        message = "say why the address may receive messages again (e.g. how the person renewed consent)"
        raise ApiError(422, f"reason: {message}.", details=[{"loc": ["reason"], "message": message, "type": "missing"}])


# --- resources ------------------------------------------------------------------------------------


@router.get("/resources", tags=RESOURCES, response={200: CursorPage[ResourceOut], **ERRORS}, summary="List resources")
def resource_list_api(request: HttpRequest, cursor: str | None = None, limit: int | None = None) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    page = paginate(Resource.objects.for_account(request.auth.account).select_related("database"), cursor=cursor, limit=limit)
    page["items"] = [_resource_out(r) for r in page["items"]]
    return page


@router.post("/resources", tags=RESOURCES, response={201: ResourceDetailOut, **ERRORS}, summary="Create a resource")
def resource_create_api(request: HttpRequest, payload: ResourceIn) -> Status:
    """A resource is where the profiles of one database receive messages: its channels, subscription
    categories and double opt-in. An unknown database is 404 (`loc: ["database"]`); a slug in use or
    a value that does not fit is 422 naming the field."""
    require(request, Perm.CHANNELS_MANAGE)
    database = ProfileDatabase.objects.for_account(request.auth.account).filter(slug=payload.database).first()
    if database is None:
        raise ApiError(404, f"There is no profile database {payload.database!r} in this account.",
                       details=[{"loc": ["database"], "message": "no such database in this account", "type": "not_found"}])
    values = payload.dict(exclude={"database"}, exclude_unset=True)
    if payload.slug is None:
        values.pop("slug", None)
    values["name"] = payload.name
    try:
        resource = resource_create(account=request.auth.account, database=database, values=values,
                                   actor=Actor.from_request(request))
    except ResourceValidationError as exc:
        raise invalid_values(exc.errors, what="The resource cannot be created") from exc
    return Status(201, _resource_out(resource, counts=True))


@router.get("/resources/{slug:resource}", tags=RESOURCES, response={200: ResourceDetailOut, **ERRORS},
            summary="A resource, with subscription counts per channel and status")
def resource_get_api(request: HttpRequest, resource: ResourceRef) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return _resource_out(resource, counts=True)


@router.patch("/resources/{slug:resource}", tags=RESOURCES, response={200: ResourceDetailOut, **ERRORS},
              summary="Change a resource's settings")
def resource_update_api(request: HttpRequest, resource: ResourceRef, payload: ResourcePatch) -> dict:
    """Only the fields sent change. A channel that still has subscriptions cannot be removed (422,
    `loc: ["channels"]`); removing a channel also removes it from double_opt_in."""
    require(request, Perm.CHANNELS_MANAGE)
    values = {k: v for k, v in payload.dict(exclude_unset=True).items() if v is not None}
    try:
        resource_update(resource=resource, values=values, actor=Actor.from_request(request))
    except ResourceValidationError as exc:
        raise invalid_values(exc.errors, what="The resource was not changed") from exc
    return _resource_out(resource, counts=True)


@router.post("/resources/{slug:resource}/rotate-key", tags=RESOURCES, response={200: ResourceDetailOut, **ERRORS},
             summary="Replace the key of the public subscribe endpoint")
def resource_rotate_key_api(request: HttpRequest, resource: ResourceRef) -> dict:
    """Forms and scripts that post with the old key get 404 from then on. Audited."""
    require(request, Perm.CHANNELS_MANAGE)
    resource_rotate_public_key(resource=resource, actor=Actor.from_request(request))
    return _resource_out(resource, counts=True)


@router.delete("/resources/{slug:resource}", tags=RESOURCES, response={204: None, **ERRORS},
               summary="Delete a resource with its subscriptions")
def resource_delete_api(request: HttpRequest, resource: ResourceRef) -> Status:
    """Deletes the resource, its subscriptions and their consent ledger; audited with the number of
    subscriptions. To stop messages but keep people's choices, unsubscribe or disable channels instead."""
    require(request, Perm.CHANNELS_MANAGE)
    try:
        resource_delete(resource=resource, actor=Actor.from_request(request))
    except ResourceValidationError as exc:  # mailings or scenarios still use it
        raise ApiError(409, "; ".join(exc.errors.values())) from exc
    return Status(204, None)


@router.post("/resources/{slug:resource}/subscribe", tags=SUBSCRIPTIONS,
             response={200: SubscribeOut, 201: SubscribeOut, **ERRORS},
             summary="Subscribe a profile by its match key, creating the profile if needed")
def resource_subscribe_api(request: HttpRequest, resource: ResourceRef, payload: SubscribeIn) -> Status:
    """Finds the profile in the resource's database by a match key (creating it, or updating it with
    `profile`'s values), then creates the subscription at `address` or moves the existing one to
    `status`. 201 when the subscription was created, 200 when it existed. All or nothing: when the
    subscription is refused, a profile this request would have created is not kept either.

    A person erased on a data-protection request is not created again: 409 `erased`. An address
    that bounced, complained or was blocked is subscribed again only with `force` and a `reason`.
    Safe to retry with an `Idempotency-Key`."""
    require(request, Perm.DATA_EDIT)
    database = resource.database
    values = dict(payload.profile)
    match = payload.match
    if isinstance(match, dict):
        if len(match) != 1:
            raise ApiError(422, "match: give one match key and its value, e.g. {\"email\": \"alice@example.com\"}.",
                           details=[{"loc": ["match"], "message": "one key and its value", "type": "invalid_value"}])
        (match, value), = match.items()
        values[match] = value
    if not values:
        message = f"give the profile's match key, e.g. {{\"{database.default_match_key}\": ...}}"
        raise ApiError(422, f"match: {message}.", details=[{"loc": ["match"], "message": message, "type": "missing"}])
    actor, via = Actor.from_request(request), Via.from_request(request, "api")
    sch = FieldSchema.load(database)
    with transaction.atomic():
        result = profile_upsert(database=database, values=values, match=match, sch=sch, actor=actor)
        if result.status == "failed":
            raise invalid_values(result.errors, prefix=("profile",), what="The profile does not fit")
        if result.status == "skipped" or result.profile is None:
            raise ApiError(409, "This person was erased on a data-protection request; nothing was stored.", code="erased",
                           details=[{"loc": ["match"], "message": result.skipped, "type": "erased"}])
        profile = result.profile
        address = _default_address(profile, payload.channel, payload.address)
        try:
            if payload.force:
                clean = clean_address(resource, payload.channel, address)
                old = Subscription.objects.filter(resource=resource, channel=payload.channel, address=clean) \
                    .values_list("status", flat=True).first()
                _force_needs_reason(payload.force, payload.reason, old, payload.status)
            sub, created = subscription_subscribe(
                profile=profile, resource=resource, channel=payload.channel, address=address, actor=actor, via=via,
                status=payload.status, opted_out=payload.opted_out, confirmed=payload.confirmed, force=payload.force,
                reason=payload.reason,
            )
        except ResourceError as exc:
            raise _refused(exc, what="Nothing was stored") from exc
    sub.resource = resource
    body = {
        "profile": {"id": profile.pk, "database": database.slug, "status": result.status},
        "profile_created": result.created, "subscription_created": created, "subscription": _subscription_out(sub),
    }
    return Status(201 if created else 200, body)


# --- a profile's subscriptions and ledger ---------------------------------------------------------

_PROFILE_PATH = "/databases/{slug:db}/profiles/{int:profile_id}"


@router.get(f"{_PROFILE_PATH}/subscriptions", tags=SUBSCRIPTIONS, response={200: CursorPage[SubscriptionOut], **ERRORS},
            summary="A profile's subscriptions")
def subscription_list_api(
    request: HttpRequest, db: DatabaseRef, profile_id: int, filters: Query[SubscriptionFilter],
    cursor: str | None = None, limit: int | None = None,
) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    profile = profile_or_404(request, db, profile_id)
    qs = Subscription.objects.for_account(request.auth.account).filter(profile=profile).select_related("resource")
    if filters.resource is not None:
        qs = qs.filter(resource=_body_resource(request, filters.resource, loc=("query", "resource")))
    if filters.channel is not None:
        qs = qs.filter(channel=filters.channel)
    if filters.status is not None:
        qs = qs.filter(status=filters.status)
    page = paginate(qs, cursor=cursor, limit=limit)
    page["items"] = [_subscription_out(s) for s in page["items"]]
    return page


@router.post(f"{_PROFILE_PATH}/subscriptions", tags=SUBSCRIPTIONS, response={201: SubscriptionOut, **ERRORS},
             summary="Add a subscription to a profile")
def subscription_create_api(request: HttpRequest, db: DatabaseRef, profile_id: int, payload: SubscriptionIn) -> Status:
    """On a channel with double opt-in the new subscription is `unconfirmed` (its confirmation goes
    out) unless `confirmed` is true. An address this profile already has on the resource and channel,
    or one another profile holds, is 422 `loc: ["address"]` (a push token moves to this profile)."""
    require(request, Perm.DATA_EDIT)
    profile = profile_or_404(request, db, profile_id)
    resource = _body_resource(request, payload.resource)
    address = _default_address(profile, payload.channel, payload.address)
    try:
        sub = subscription_create(
            profile=profile, resource=resource, channel=payload.channel, address=address, actor=Actor.from_request(request),
            via=Via.from_request(request, "api"), status=payload.status, opted_out=payload.opted_out, priority=payload.priority,
            meta=payload.meta, confirmed=payload.confirmed, reason=payload.reason,
        )
    except ResourceError as exc:
        raise _refused(exc, what="The subscription was not added") from exc
    sub.resource = resource
    return Status(201, _subscription_out(sub))


@router.patch(f"{_PROFILE_PATH}/subscriptions/{{int:subscription_id}}", tags=SUBSCRIPTIONS,
              response={200: SubscriptionOut, **ERRORS}, summary="Change a subscription's status, categories or priority")
def subscription_update_api(
    request: HttpRequest, db: DatabaseRef, profile_id: int, subscription_id: int, payload: SubscriptionPatch
) -> dict:
    """Status changes follow the allowed transitions and are written to the consent ledger; a refused
    transition is 422 `loc: ["status"]` and changes nothing. Leaving bounced, complained or blocked
    needs `force: true` and a `reason`. Pausing (suspended) needs `until` in the future."""
    require(request, Perm.DATA_EDIT)
    sub = _subscription(request, profile_or_404(request, db, profile_id), subscription_id)
    if payload.until is not None and payload.status != "suspended":
        message = "only a pause (status suspended) has an end"
        raise ApiError(422, f"until: {message}.", details=[{"loc": ["until"], "message": message, "type": "invalid_value"}])
    _force_needs_reason(payload.force, payload.reason, sub.status, payload.status)
    try:
        subscription_update(
            subscription=sub, actor=Actor.from_request(request), via=Via.from_request(request, "api"), status=payload.status,
            reason=payload.reason, until=_aware(payload.until, request), force=payload.force, opted_out=payload.opted_out,
            priority=payload.priority, meta=payload.meta,
        )
    except ResourceError as exc:
        raise _refused(exc) from exc
    sub.refresh_from_db()
    return _subscription_out(sub)


@router.delete(f"{_PROFILE_PATH}/subscriptions/{{int:subscription_id}}", tags=SUBSCRIPTIONS,
               response={204: None, **ERRORS}, summary="Delete a subscription")
def subscription_delete_api(request: HttpRequest, db: DatabaseRef, profile_id: int, subscription_id: int) -> Status:
    """For a wrong address or an old device; the ledger keeps a "deleted" record. To stop messages
    to a person, prefer PATCH with status unsubscribed: a deleted address can be subscribed again
    without a trace of the opt-out."""
    require(request, Perm.DATA_EDIT)
    sub = _subscription(request, profile_or_404(request, db, profile_id), subscription_id)
    subscription_delete(subscription=sub, actor=Actor.from_request(request), via=Via.from_request(request, "api"))
    return Status(204, None)


@router.get(f"{_PROFILE_PATH}/consent", tags=SUBSCRIPTIONS, response={200: CursorPage[ConsentOut], **ERRORS},
            summary="A profile's consent ledger, newest first")
def consent_list_api(request: HttpRequest, db: DatabaseRef, profile_id: int, cursor: str | None = None,
                     limit: int | None = None) -> dict:
    """Every status and category change of the profile's subscriptions: who (team member, API
    token, subscriber, system), from where (source, IP, user agent), old and new."""
    require(request, Perm.ACCOUNT_VIEW)
    profile = profile_or_404(request, db, profile_id)
    page = paginate(profile_ledger(profile, limit=None), cursor=cursor, limit=limit)
    page["items"] = [_consent_out(c) for c in page["items"]]
    return page


# --- suppressions ---------------------------------------------------------------------------------


@router.get("/suppressions", tags=SUPPRESSIONS, response={200: CursorPage[SuppressionOut], **ERRORS},
            summary="List the suppression list, newest first")
def suppression_list_api(request: HttpRequest, filters: Query[SuppressionFilter], cursor: str | None = None,
                         limit: int | None = None) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    qs = Suppression.objects.for_account(request.auth.account)
    if filters.kind is not None:
        qs = qs.filter(kind=filters.kind)
    q = (filters.q or "").strip().lower()
    if q:
        qs = qs.filter(value__startswith=q)
    page = paginate(qs, cursor=cursor, limit=limit)
    page["items"] = [_suppression_out(s) for s in page["items"]]
    return page


def _add_one(request: HttpRequest, actor: Actor, item: SuppressionItemIn | SuppressionIn) -> tuple[Suppression, bool]:
    value = str(item.value)
    return suppression_add(account=request.auth.account, kind=item.kind or guess_kind(value), value=value, actor=actor,
                           reason=item.reason, note=item.note, source="api")


@router.post("/suppressions", tags=SUPPRESSIONS,
             response={200: SuppressionOut | SuppressionBatchOut, 201: SuppressionOut, **ERRORS},
             summary=f"Add an address, domain or phone to the suppression list (or up to {MAX_BATCH:,})")
def suppression_add_api(request: HttpRequest, payload: SuppressionIn) -> Status:
    """One: `{kind?, value, reason?, note?}` answers the entry, 201 when added, 200 when it was
    listed already (unchanged). A batch: `{"items": [...]}` adds each item on its own: a bad item
    fails alone (its `errors` name the field, `loc: ["items", index, field]`), the others are kept;
    the answer lists every item in order. No message is planned for a suppressed address."""
    require(request, Perm.CHANNELS_MANAGE)
    actor = Actor.from_request(request)
    if payload.items is None:
        try:
            row, created = _add_one(request, actor, payload)
        except ResourceValidationError as exc:
            raise invalid_values(exc.errors, what="The suppression was not added") from exc
        return Status(201 if created else 200, _suppression_out(row))
    if len(payload.items) > MAX_BATCH:
        message = f"A batch holds at most {MAX_BATCH:,} items; this one has {len(payload.items):,}. Send the rest in another request."
        raise ApiError(422, message, details=[{"loc": ["items"], "message": f"at most {MAX_BATCH} items", "type": "too_long"}])
    counts = dict.fromkeys(("created", "existing", "failed"), 0)
    results = []
    for i, raw in enumerate(payload.items):
        out: dict[str, Any] = {"index": i, "errors": []}
        try:
            item = SuppressionItemIn.model_validate(raw)
            row, created = _add_one(request, actor, item)
        except ValidationError as exc:
            out["status"] = "failed"
            out["errors"] = [{"loc": ["items", i, *e["loc"]], "message": e["msg"], "type": e["type"]} for e in exc.errors()]
        except ResourceValidationError as exc:
            out["status"] = "failed"
            out["errors"] = [{"loc": ["items", i, k], "message": v, "type": "invalid_value"} for k, v in exc.errors.items()]
        else:
            out.update(status="created" if created else "existing", id=row.pk, value=row.value)
        counts[out["status"]] += 1
        results.append(out)
    return Status(200, {"results": results, **counts})


@router.get("/suppressions/check", tags=SUPPRESSIONS, response={200: SuppressionCheckOut, **ERRORS},
            summary="Is an address suppressed, and why")
def suppression_check_api(request: HttpRequest, channel: ChannelName, address: str) -> dict:
    """The same check mailings run before sending: an e-mail address is suppressed by its own entry or
    its domain's, a phone by its number. Channels without suppression lists (push, Telegram) are
    never suppressed."""
    require(request, Perm.ACCOUNT_VIEW)
    account = request.auth.account
    try:
        clean = normalise_address(channel, address, region=account.default_phone_region or "")
    except AddressError as exc:
        raise ApiError(422, f"address: {exc}.", details=[{"loc": ["query", "address"], "message": str(exc),
                                                          "type": "invalid_value"}]) from exc
    hit = suppression_for(account.pk, channel, clean)
    return {"channel": channel, "address": clean, "suppressed": hit is not None,
            "suppression": _suppression_out(hit) if hit is not None else None}


@router.delete("/suppressions/{int:suppression_id}", tags=SUPPRESSIONS, response={204: None, **ERRORS},
               summary="Remove an entry from the suppression list")
def suppression_delete_api(request: HttpRequest, suppression_id: int) -> Status:
    require(request, Perm.CHANNELS_MANAGE)
    row = Suppression.objects.for_account(request.auth.account).filter(pk=suppression_id).first()
    if row is None:
        raise ApiError(404, f"There is no suppression {suppression_id} in this account.")
    suppression_remove(suppression=row, actor=Actor.from_request(request))
    return Status(204, None)
