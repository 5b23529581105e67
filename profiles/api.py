"""API: profile databases, their typed fields, and profiles (issue 3).

Paths name a database by its slug (`/databases/{db}/...`). `{db}` is resolved while the path is
validated (`DatabaseRef`), so another account's database, or none, is a 404 before the body is
read: the answer to an outsider never depends on what they sent. Everything else follows
cdp/api/__init__.py: `require()` per operation, writes through profiles.services with the token
as the actor, the common error shape, cursor pagination for lists.

Values go through the field types (profiles.fieldtypes), exactly as imports and forms do; a value
that does not fit is a 422 whose details name the field (`loc` is the JSON path in the body, e.g.
`["fields", "email"]` or `["items", 3, "email"]`) and say why.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from django.db import IntegrityError
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field as F
from ninja import Query, Router, Schema, Status
from pydantic import ConfigDict, StringConstraints

from accounts.access import Actor
from accounts.api import JobOut
from accounts.permissions import Perm
from cdp.api.auth import require
from cdp.api.errors import ERRORS, ApiError, ErrorDetail
from cdp.api.pagination import CursorPage, paginate
from cdp.api.types import slug_ref
from profiles.fieldtypes import FieldType, FieldValueError
from profiles.models import WRITABLE_SYSTEM_FIELDS, Field, Profile, ProfileDatabase
from profiles.services import (
    ProfileError,
    ProfileValidationError,
    database_create,
    database_delete,
    database_update,
    field_add,
    field_remove,
    field_update,
    fields_reorder,
    profile_erase,
    profile_find,
    profile_merge,
    profile_update,
    profile_upsert,
)
from profiles.services import Schema as FieldSchema

router = Router()

DATABASES = ["profile databases"]
PROFILES = ["profiles"]
MAX_BATCH = 1000

FieldTypeName = Literal[
    "string", "text", "integer", "decimal", "boolean", "date", "datetime", "email", "phone", "enum", "list", "json"
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=60)]


# --- {db} in the path -----------------------------------------------------------------------------


DatabaseRef = slug_ref(ProfileDatabase, what="profile database", example="customers")


# --- schemas --------------------------------------------------------------------------------------


class FieldOut(Schema):
    name: str
    label: str
    type: FieldTypeName
    required: bool
    unique: bool
    indexed: bool
    choices: list[str]
    default: Any = None
    position: int
    is_system: bool
    read_only: bool


class FieldListOut(Schema):
    items: list[FieldOut] = F(description="All fields in their order (a schema is small: not paged).")


class DatabaseIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Shop customers", "match_keys": ["email"]}]})

    name: Name
    slug: Slug | None = F(None, description="Made from the name when left out; used in every URL of the database.")
    description: str = F("", max_length=5000)
    match_keys: list[Literal["email", "phone"]] = F(
        ["email"], min_length=1, max_length=2,
        description="Fields that identify a profile, the first is the default. Custom unique fields can be added later.",
    )


class DatabasePatch(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Customers", "match_keys": ["email", "customer_id"]}]})

    name: Name | None = None
    description: str | None = F(None, max_length=5000)
    match_keys: list[str] | None = F(None, description="Field names; each must be a unique field.")


class DatabaseOut(Schema):
    id: int
    name: str
    slug: str
    description: str
    match_keys: list[str]
    created_at: datetime
    updated_at: datetime


class DatabaseDetailOut(DatabaseOut):
    fields: list[FieldOut]


class FieldIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "tier", "label": "Loyalty tier", "type": "enum", "choices": ["bronze", "silver", "gold"]},
        {"name": "customer_id", "type": "string", "unique": True},
    ]})

    name: str = F(..., max_length=64, description="Lowercase letters, digits and _, starting with a letter.")
    label: str = F("", max_length=200)
    type: FieldTypeName = "string"
    required: bool = False
    unique: bool = False
    indexed: bool = False
    choices: list[str] = F([], description="The allowed values of an enum field.")
    default: Any = F(None, description="Set on new profiles that do not bring a value.")


class FieldPatch(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"label": "Tier"}, {"type": "integer"}]})

    label: str | None = F(None, max_length=200)
    type: FieldTypeName | None = F(None, description="Refused when a stored value would not convert.")
    required: bool | None = None
    unique: bool | None = None
    indexed: bool | None = None
    choices: list[str] | None = None


class FieldOrderIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"order": ["email", "tier", "first_name"]}]})

    order: list[str] = F(..., min_length=1, description="Field names in the new order; fields left out follow.")


class ProfileOut(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 42, "database": "customers", "email": "alice@example.com", "phone": "+4930123456",
        "first_name": "Alice", "last_name": "Liddell", "birthday": "1990-05-04", "gender": "female",
        "timezone": "Europe/Berlin", "fields": {"tier": "gold", "points": 120},
        "created_at": "2026-01-02T10:00:00Z", "updated_at": "2026-01-03T09:30:00Z",
    }]})

    id: int
    database: str = F(description="The database's slug.")
    email: str | None
    phone: str | None = F(description="E.164.")
    first_name: str | None
    last_name: str | None
    birthday: date | None
    gender: str | None
    timezone: str | None
    fields: dict[str, Any] = F(description="Custom fields that hold a value, in schema order.")
    created_at: datetime
    updated_at: datetime


_VALUES = (
    "Field name -> value. System fields (email, phone, first_name, last_name, birthday, gender, timezone) "
    "and custom fields alike; values are converted like an import converts them."
)


class UpsertIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"fields": {"email": "Alice@Example.com", "first_name": "Alice", "tier": "gold"}},
        {"match": "phone", "fields": {"phone": "+49 30 123456", "points": 10}},
    ]})

    match: str | None = F(None, description="The match key to find the profile by; the database's first by default.")
    fields: dict[str, Any] = F(..., min_length=1, description=_VALUES + " Empty values leave stored ones unchanged.")


class UpsertOut(Schema):
    status: Literal["created", "updated", "unchanged"]
    changed: list[str] = F(description="Names of the fields this request changed.")
    profile: ProfileOut


class ProfilePatch(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"fields": {"last_name": "Smith", "tier": None}}]})

    fields: dict[str, Any] = F(..., min_length=1, description=_VALUES + " An empty value or null clears the field.")


class BatchIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "match": "email", "mode": "upsert",
        "items": [{"email": "alice@example.com", "tier": "gold"}, {"email": "bob@example.com", "first_name": "Bob"}],
    }]})

    match: str | None = F(None, description="The match key for every item; the database's first by default.")
    mode: Literal["upsert", "insert", "update"] = F(
        "upsert", description="upsert: create or update; insert: only create new; update: only change existing."
    )
    items: list[dict[str, Any]] = F(
        ..., min_length=1, json_schema_extra={"maxItems": MAX_BATCH},
        description=f"Up to {MAX_BATCH:,} objects of field name -> value, each like `fields` of a single upsert.",
    )


class BatchItemOut(Schema):
    index: int
    status: Literal["created", "updated", "unchanged", "failed", "skipped"]
    id: int | None = None
    errors: list[ErrorDetail] = []
    reason: str = F("", description="Why a skipped item was skipped.")


class BatchOut(Schema):
    results: list[BatchItemOut]
    created: int
    updated: int
    unchanged: int
    failed: int
    skipped: int


class MergeIn(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"target": 42, "source": 57}]})

    target: int = F(..., description="The profile that stays; it keeps its values and fills its gaps from source.")
    source: int = F(..., description="The profile merged away (deleted); its history moves to target.")


class ProfileFilter(Schema):
    email: str | None = F(None, description="Exact e-mail address, normalised like a lookup.")
    phone: str | None = F(None, description="Exact phone number, normalised like a lookup.")
    q: str | None = F(None, max_length=200, description="Prefix of the e-mail address, first or last name.")
    updated_since: datetime | None = F(None, description="Changed at or after this moment.")


# --- helpers --------------------------------------------------------------------------------------


def _custom_names(sch: FieldSchema) -> list[str]:
    return [f.name for f in sch.fields.values() if not f.is_system]


def _profile_out(p: Profile, database: ProfileDatabase, custom: list[str]) -> dict[str, Any]:
    # Only the schema's current fields: a removed field's values linger until its cleanup job ran.
    return {
        "id": p.pk, "database": database.slug, "email": p.email, "phone": p.phone,
        "first_name": p.first_name or None, "last_name": p.last_name or None, "birthday": p.birthday,
        "gender": p.gender or None, "timezone": p.timezone or None,
        "fields": {n: p.data[n] for n in custom if n in p.data},
        "created_at": p.created_at, "updated_at": p.updated_at,
    }


def _database_out(database: ProfileDatabase, *, with_fields: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": database.pk, "name": database.name, "slug": database.slug, "description": database.description,
        "match_keys": database.match_keys, "created_at": database.created_at, "updated_at": database.updated_at,
    }
    if with_fields:
        out["fields"] = list(database.fields.all())
    return out


def invalid_values(errors: dict[str, str], *, prefix: tuple[str | int, ...] = (), what: str = "Some values do not fit") -> ApiError:
    """A 422 whose details name each field (at `prefix` in the body) and the reason."""
    details = [
        {"loc": [*prefix, name] if name != "match" else ["match"], "message": reason, "type": "invalid_value"}
        for name, reason in errors.items()
    ]
    summary = "; ".join(f"{name}: {reason.rstrip('.')}" for name, reason in errors.items())
    return ApiError(422, f"{what}: {summary}.", details=details)


def profile_or_404(request: HttpRequest, database: ProfileDatabase, profile_id: int, *, loc: str = "") -> Profile:
    profile = Profile.objects.for_account(request.auth.account).filter(database=database, pk=profile_id).first()
    if profile is None:
        details = [{"loc": [loc], "message": "no such profile in this database", "type": "not_found"}] if loc else []
        raise ApiError(404, f"There is no profile {profile_id} in the database {database.slug!r}.", details=details)
    profile.database = database  # already loaded, with its account
    return profile


def _field(database: ProfileDatabase, name: str) -> Field:
    f = Field.objects.filter(database=database, name=name).first()
    if f is None:
        raise ApiError(404, f"The database {database.slug!r} has no field {name!r}.")
    return f


def _query_invalid(param: str, reason: str) -> ApiError:
    return ApiError(422, f"{param}: {reason}.", details=[{"loc": ["query", param], "message": reason, "type": "invalid_value"}])


def _converted(sch: FieldSchema, name: str, raw: str, param: str) -> Any:
    try:
        value = sch.convert(name, raw)
    except FieldValueError as exc:
        raise _query_invalid(param, str(exc)) from None
    if value is None:
        raise _query_invalid(param, "give a value to match")
    return value


def _filter_profiles(request: HttpRequest, qs: QuerySet[Profile], sch: FieldSchema, filters: ProfileFilter) -> QuerySet[Profile]:
    if filters.email is not None:
        qs = qs.filter(email=_converted(sch, "email", filters.email, "email"))
    if filters.phone is not None:
        qs = qs.filter(phone=_converted(sch, "phone", filters.phone, "phone"))
    q = (filters.q or "").strip()
    if q:
        qs = qs.filter(Q(email__startswith=q.lower()) | Q(first_name__istartswith=q) | Q(last_name__istartswith=q))
    if filters.updated_since is not None:
        since = filters.updated_since
        if timezone.is_naive(since):
            since = timezone.make_aware(since, sch.ctx.tz)
        # In UTC: Python accepts offsets PostgreSQL does not (+19:40); the instant is the same.
        qs = qs.filter(updated_at__gte=since.astimezone(UTC))
    for param, raw in request.GET.items():
        if not param.startswith("field."):
            continue
        name = param.removeprefix("field.")
        f = sch.fields.get(name)
        if f is None:
            raise _query_invalid(param, "there is no such field in this database")
        if f.type in (FieldType.LIST, FieldType.JSON) or f.read_only:
            raise _query_invalid(param, f"cannot filter by a {f.get_type_display().lower()} field here; use a segment")
        value = _converted(sch, name, raw, param)
        qs = qs.filter(**({name: value} if name in WRITABLE_SYSTEM_FIELDS else {f"data__{name}": value}))
    return qs


# --- databases ------------------------------------------------------------------------------------


@router.get("/databases", tags=DATABASES, response={200: CursorPage[DatabaseOut], **ERRORS}, summary="List profile databases")
def database_list_api(request: HttpRequest, cursor: str | None = None, limit: int | None = None) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return paginate(ProfileDatabase.objects.for_account(request.auth.account), cursor=cursor, limit=limit)


@router.post("/databases", tags=DATABASES, response={201: DatabaseDetailOut, **ERRORS}, summary="Create a profile database")
def database_create_api(request: HttpRequest, payload: DatabaseIn) -> Status:
    require(request, Perm.DATABASES_MANAGE)
    try:
        database = database_create(
            account=request.auth.account, name=payload.name, slug=payload.slug or "", description=payload.description,
            match_keys=list(dict.fromkeys(payload.match_keys)), actor=Actor.from_request(request),
        )
    except (ProfileError, IntegrityError) as exc:
        message = str(exc) if isinstance(exc, ProfileError) else "A database with this slug already exists."
        raise ApiError(409, message, details=[{"loc": ["slug"], "message": message}]) from exc
    return Status(201, _database_out(database, with_fields=True))


@router.get("/databases/{slug:db}", tags=DATABASES, response={200: DatabaseDetailOut, **ERRORS},
            summary="A profile database and its fields")
def database_get_api(request: HttpRequest, db: DatabaseRef) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return _database_out(db, with_fields=True)


@router.patch("/databases/{slug:db}", tags=DATABASES, response={200: DatabaseDetailOut, **ERRORS},
              summary="Rename a database, change its description or match keys")
def database_update_api(request: HttpRequest, db: DatabaseRef, payload: DatabasePatch) -> dict:
    require(request, Perm.DATABASES_MANAGE)
    try:
        match_keys = list(dict.fromkeys(payload.match_keys)) if payload.match_keys is not None else None
        database_update(database=db, name=payload.name, description=payload.description, match_keys=match_keys,
                        actor=Actor.from_request(request))
    except ProfileError as exc:  # only match keys can be refused
        raise ApiError(422, str(exc), details=[{"loc": ["match_keys"], "message": str(exc)}]) from exc
    return _database_out(db, with_fields=True)


@router.delete("/databases/{slug:db}", tags=DATABASES, response={204: None, **ERRORS},
               summary="Delete a database with all its profiles")
def database_delete_api(request: HttpRequest, db: DatabaseRef) -> Status:
    require(request, Perm.DATABASES_MANAGE)
    try:
        database_delete(database=db, actor=Actor.from_request(request))
    except ProfileError as exc:  # still used by resources, mailings or scenarios
        raise ApiError(409, str(exc)) from exc
    return Status(204, None)


# --- fields ---------------------------------------------------------------------------------------


@router.get("/databases/{slug:db}/fields", tags=DATABASES, response={200: FieldListOut, **ERRORS},
            summary="A database's fields, in order")
def field_list_api(request: HttpRequest, db: DatabaseRef) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return {"items": list(db.fields.all())}


@router.post("/databases/{slug:db}/fields", tags=DATABASES, response={201: FieldOut, **ERRORS}, summary="Add a field")
def field_add_api(request: HttpRequest, db: DatabaseRef, payload: FieldIn) -> Status:
    require(request, Perm.DATABASES_MANAGE)
    try:
        f = field_add(
            database=db, name=payload.name, label=payload.label, type=payload.type, required=payload.required,
            unique=payload.unique, indexed=payload.indexed, choices=payload.choices, default=payload.default,
            actor=Actor.from_request(request),
        )
    except ProfileValidationError as exc:
        raise invalid_values(exc.errors, what="The field cannot be added") from exc
    except ProfileError as exc:
        raise ApiError(409, str(exc)) from exc
    return Status(201, f)


@router.patch("/databases/{slug:db}/fields", tags=DATABASES, response={200: FieldListOut, **ERRORS},
              summary="Reorder the fields")
def fields_reorder_api(request: HttpRequest, db: DatabaseRef, payload: FieldOrderIn) -> dict:
    require(request, Perm.DATABASES_MANAGE)
    try:
        fields_reorder(database=db, names=list(dict.fromkeys(payload.order)), actor=Actor.from_request(request))
    except ProfileValidationError as exc:
        raise invalid_values(exc.errors, what="The fields cannot be reordered") from exc
    return {"items": list(db.fields.all())}


@router.patch("/databases/{slug:db}/fields/{slug:name}", tags=DATABASES, response={200: FieldOut, **ERRORS},
              summary="Change a field: label, type, flags, choices")
def field_update_api(request: HttpRequest, db: DatabaseRef, name: str, payload: FieldPatch) -> Field:
    """A type change converts the stored values, and is refused (422, `loc: ["type"]`) with the first
    value that would not convert."""
    require(request, Perm.DATABASES_MANAGE)
    f = _field(db, name)
    try:
        return field_update(field=f, label=payload.label, type=payload.type, required=payload.required,
                            unique=payload.unique, indexed=payload.indexed, choices=payload.choices,
                            actor=Actor.from_request(request))
    except ProfileValidationError as exc:
        raise invalid_values(exc.errors, what="The field was not changed") from exc
    except ProfileError as exc:
        raise ApiError(409, str(exc)) from exc


@router.delete("/databases/{slug:db}/fields/{slug:name}", tags=DATABASES, response={202: JobOut, **ERRORS},
               summary="Remove a field")
def field_remove_api(request: HttpRequest, db: DatabaseRef, name: str) -> Status:
    """The field goes at once; its stored values are removed by the background job this answers
    (follow it at /jobs/{id}). System fields and match keys cannot be removed (409)."""
    require(request, Perm.DATABASES_MANAGE)
    try:
        job = field_remove(field=_field(db, name), actor=Actor.from_request(request))
    except ProfileError as exc:
        raise ApiError(409, str(exc)) from exc
    job.refresh_from_db()  # the job may have run already (eager workers)
    return Status(202, job)


# --- profiles -------------------------------------------------------------------------------------


@router.get("/databases/{slug:db}/profiles", tags=PROFILES, response={200: CursorPage[ProfileOut], **ERRORS},
            summary="List profiles, newest first")
def profile_list_api(
    request: HttpRequest, db: DatabaseRef, filters: Query[ProfileFilter], cursor: str | None = None, limit: int | None = None
) -> dict:
    """Filters combine with AND. Besides the ones below, `field.<name>=<value>` matches a field's value
    exactly, converted by the field's type (`field.tier=gold`, `field.points=10`, `field.vip=yes`)."""
    require(request, Perm.ACCOUNT_VIEW)
    sch = FieldSchema.load(db)
    qs = _filter_profiles(request, Profile.objects.for_account(request.auth.account).in_database(db), sch, filters)
    page = paginate(qs, cursor=cursor, limit=limit)
    custom = _custom_names(sch)
    page["items"] = [_profile_out(p, db, custom) for p in page["items"]]
    return page


@router.post("/databases/{slug:db}/profiles", tags=PROFILES, response={200: UpsertOut, 201: UpsertOut, **ERRORS},
             summary="Create or update a profile by its match key")
def profile_upsert_api(request: HttpRequest, db: DatabaseRef, payload: UpsertIn) -> Status:
    """201 when the profile was created, 200 when it existed (`status` says whether it changed).
    Values that do not fit are a 422 naming each field. A person erased on a data-protection
    request is not created again: 409 `erased`."""
    require(request, Perm.DATA_EDIT)
    sch = FieldSchema.load(db)
    result = profile_upsert(database=db, values=payload.fields, match=payload.match, sch=sch,
                            actor=Actor.from_request(request))
    if result.status == "failed":
        raise invalid_values(result.errors, prefix=("fields",))
    if result.status == "skipped" or result.profile is None:
        raise ApiError(409, "This person was erased on a data-protection request; the profile is not created again.",
                       code="erased", details=[{"loc": ["fields", payload.match or db.default_match_key],
                                                "message": result.skipped, "type": "erased"}])
    body = {"status": result.status, "changed": sorted(result.changed),
            "profile": _profile_out(result.profile, db, _custom_names(sch))}
    return Status(201 if result.created else 200, body)


@router.post("/databases/{slug:db}/profiles/batch", tags=PROFILES, response={200: BatchOut, **ERRORS},
             summary=f"Create or update up to {MAX_BATCH:,} profiles")
def profile_batch_api(request: HttpRequest, db: DatabaseRef, payload: BatchIn) -> dict:
    """Each item is stored on its own: a bad item fails alone (its `errors` name the field, with
    `loc: ["items", index, field]`) and the others are kept. The answer lists every item in order.
    Items that repeat a match key apply in order (the last wins). Very large items can hit the
    request-size limit before 1,000: then send fewer per request."""
    require(request, Perm.DATA_EDIT)
    if len(payload.items) > MAX_BATCH:
        message = f"A batch holds at most {MAX_BATCH:,} items; this one has {len(payload.items):,}. Send the rest in another request."
        raise ApiError(422, message, details=[{"loc": ["items"], "message": f"at most {MAX_BATCH} items", "type": "too_long"}])
    if payload.match is not None and payload.match not in db.match_keys:
        raise invalid_values({"match": f"{payload.match!r} is not a match key of this database"}, what="The batch cannot run")
    sch = FieldSchema.load(db)
    actor = Actor.from_request(request)
    counts = dict.fromkeys(("created", "updated", "unchanged", "failed", "skipped"), 0)
    results = []
    for i, values in enumerate(payload.items):
        r = profile_upsert(database=db, values=values, match=payload.match, mode=payload.mode, sch=sch, actor=actor)
        counts[r.status] += 1
        results.append({
            "index": i, "status": r.status, "id": r.profile.pk if r.profile is not None else None,
            "errors": [{"loc": ["items", i, name], "message": reason, "type": "invalid_value"} for name, reason in r.errors.items()],
            "reason": r.skipped,
        })
    return {"results": results, **counts}


@router.get("/databases/{slug:db}/profiles/lookup", tags=PROFILES, response={200: ProfileOut, **ERRORS},
            summary="Find a profile by a match key")
def profile_lookup_api(request: HttpRequest, db: DatabaseRef, email: str | None = None, phone: str | None = None) -> dict:
    """Give exactly one key: `?email=`, `?phone=` or another match key of the database (`?customer_id=`).
    The value is normalised like an import's (`?email= Alice@Example.COM ` finds alice@example.com)."""
    require(request, Perm.ACCOUNT_VIEW)
    keys = list(request.GET)
    if len(keys) != 1:
        raise ApiError(422, "Give exactly one match key to look the profile up by, e.g. ?email=alice@example.com.",
                       details=[{"loc": ["query"], "message": "exactly one match key", "type": "invalid_query"}])
    key = keys[0]
    try:
        profile = profile_find(database=db, key=key, value=request.GET[key])
    except ProfileValidationError as exc:
        raise _query_invalid(key, exc.errors.get(key, str(exc))) from exc
    if profile is None:
        raise ApiError(404, f"There is no profile with this {key} in the database {db.slug!r}.")
    return _profile_out(profile, db, _custom_names(FieldSchema.load(db)))


@router.post("/databases/{slug:db}/profiles/merge", tags=PROFILES, response={200: ProfileOut, **ERRORS},
             summary="Merge one profile into another")
def profile_merge_api(request: HttpRequest, db: DatabaseRef, payload: MergeIn) -> dict:
    require(request, Perm.DATA_EDIT)
    target = profile_or_404(request, db, payload.target, loc="target")
    source = profile_or_404(request, db, payload.source, loc="source")
    try:
        merged = profile_merge(target=target, source=source, actor=Actor.from_request(request))
    except ProfileError as exc:
        raise ApiError(422, str(exc), details=[{"loc": ["source"], "message": str(exc)}]) from exc
    return _profile_out(merged, db, _custom_names(FieldSchema.load(db)))


@router.get("/databases/{slug:db}/profiles/{int:profile_id}", tags=PROFILES, response={200: ProfileOut, **ERRORS},
            summary="A profile")
def profile_get_api(request: HttpRequest, db: DatabaseRef, profile_id: int) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return _profile_out(profile_or_404(request, db, profile_id), db, _custom_names(FieldSchema.load(db)))


@router.patch("/databases/{slug:db}/profiles/{int:profile_id}", tags=PROFILES, response={200: ProfileOut, **ERRORS},
              summary="Change a profile's fields")
def profile_update_api(request: HttpRequest, db: DatabaseRef, profile_id: int, payload: ProfilePatch) -> dict:
    require(request, Perm.DATA_EDIT)
    profile = profile_or_404(request, db, profile_id)
    try:
        profile_update(profile=profile, values=payload.fields, source="api", actor=Actor.from_request(request))
    except ProfileValidationError as exc:
        raise invalid_values(exc.errors, prefix=("fields",)) from exc
    return _profile_out(profile, db, _custom_names(FieldSchema.load(db)))


@router.delete("/databases/{slug:db}/profiles/{int:profile_id}", tags=PROFILES, response={204: None, **ERRORS},
               summary="Erase a profile (data-protection request)")
def profile_erase_api(request: HttpRequest, db: DatabaseRef, profile_id: int) -> Status:
    """Deletes the profile and what other apps keep of it. Salted hashes of its match keys remain,
    so a later upsert or import of the same person is skipped (409 `erased` for a single upsert)."""
    require(request, Perm.DATA_EDIT)
    profile_erase(profile=profile_or_404(request, db, profile_id), actor=Actor.from_request(request))
    return Status(204, None)
