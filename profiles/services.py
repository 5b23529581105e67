"""Writes on profile databases, fields and profiles. Atomic, audited, keyword-only.

Errors a person can fix are `ProfileError` (one message) or `ProfileValidationError` (a
message per field name).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account, AuditEvent
from profiles import schema
from profiles.fieldtypes import (
    CONVERTERS,
    Context,
    FieldType,
    FieldValueError,
    can_convert_all,
    is_empty,
    to_timezone,
)
from profiles.models import (
    RESERVED_NAMES,
    SYSTEM_FIELDS,
    WRITABLE_SYSTEM_FIELDS,
    ErasedIdentity,
    Field,
    Profile,
    ProfileChange,
    ProfileDatabase,
)

FIELD_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_CUSTOM_FIELDS = 500


class ProfileError(Exception):
    """A request that breaks a rule (duplicate slug, last match key...)."""


class ProfileValidationError(ProfileError):
    """Values that do not fit their fields: `errors` maps field name -> reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


# Higher apps register handlers in AppConfig.ready(): merge moves their rows from the source
# profile to the target; erasure removes or anonymises their rows of a profile.
MERGE_HANDLERS: list[Callable[[Profile, Profile], None]] = []
ERASURE_HANDLERS: list[Callable[[Profile], None]] = []


# --- databases -----------------------------------------------------------------------------------


def _unique_db_slug(account: Account, name: str) -> str:
    base = slugify(name)[:50] or "database"
    slug, n = base, 1
    while ProfileDatabase.objects.filter(account=account, slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def database_create(
    *, account: Account, name: str, actor: Actor, slug: str = "", description: str = "", match_keys: list[str] | None = None
) -> ProfileDatabase:
    slug = slug or _unique_db_slug(account, name)
    if ProfileDatabase.objects.filter(account=account, slug=slug).exists():
        raise ProfileError(f"A database with the slug {slug!r} already exists.")
    match_keys = match_keys or ["email"]
    for key in match_keys:
        if key not in ("email", "phone"):
            raise ProfileError(f"{key!r} cannot be a match key of a new database: use email or phone, then add unique fields.")
    database = ProfileDatabase.objects.create(
        account=account, name=name.strip(), slug=slug, description=description, match_keys=match_keys
    )
    Field.objects.bulk_create(
        [
            Field(
                database=database,
                name=f["name"],
                label=f["label"],
                type=f["type"],
                unique=f.get("unique", False),
                choices=f.get("choices", []),
                read_only=f.get("read_only", False),
                is_system=True,
                position=i,
            )
            for i, f in enumerate(SYSTEM_FIELDS)
        ]
    )
    audit_log(account=account, actor=actor, verb="database.created", target=database)
    return database


@transaction.atomic
def database_update(
    *, database: ProfileDatabase, actor: Actor, name: str | None = None, description: str | None = None,
    match_keys: list[str] | None = None,
) -> ProfileDatabase:
    changes: dict[str, Any] = {}
    if name is not None and name.strip() != database.name:
        changes["name"] = {"from": database.name, "to": name.strip()}
        database.name = name.strip()
    if description is not None and description != database.description:
        changes["description"] = {"from": database.description, "to": description}
        database.description = description
    if match_keys is not None and match_keys != database.match_keys:
        if not match_keys:
            raise ProfileError("A database needs at least one match key.")
        fields = {f.name: f for f in database.fields.all()}
        for key in match_keys:
            f = fields.get(key)
            if f is None:
                raise ProfileError(f"There is no field {key!r}.")
            if not f.unique:
                raise ProfileError(f"{f.label} cannot be a match key: mark it unique first.")
        changes["match_keys"] = {"from": database.match_keys, "to": match_keys}
        database.match_keys = match_keys
    if changes:
        database.save()
        audit_log(account=database.account, actor=actor, verb="database.updated", target=database, data=changes)
    return database


@transaction.atomic
def database_delete(*, database: ProfileDatabase, actor: Actor) -> None:
    audit_log(account=database.account, actor=actor, verb="database.deleted", target=database,
              data={"profiles": Profile.objects.filter(database=database).count()})
    for f in database.fields.custom():
        schema.index_drop(f)
        schema.unique_index_drop(f)
    database.delete()


# --- fields --------------------------------------------------------------------------------------


def field_context(database: ProfileDatabase, f: Field | None = None) -> Context:
    account = database.account
    return Context(region=account.default_phone_region, tz=account.tzinfo, choices=tuple(f.choices) if f else ())


def _clean_choices(field_type: str, choices: Iterable[str] | None) -> list[str]:
    if field_type != FieldType.ENUM:
        return []
    out: list[str] = []
    for c in choices or []:
        c = str(c).strip()
        if c and c not in out:
            out.append(c)
    if not out:
        raise ProfileValidationError({"choices": "List the allowed values, one per line."})
    if len(out) > 500:
        raise ProfileValidationError({"choices": "At most 500 values."})
    return out


@transaction.atomic
def field_add(
    *, database: ProfileDatabase, name: str, label: str, type: str, actor: Actor, required: bool = False,
    unique: bool = False, indexed: bool = False, choices: list[str] | None = None, default: Any = None,
) -> Field:
    name = name.strip().lower()
    errors: dict[str, str] = {}
    if not FIELD_NAME_RE.match(name):
        errors["name"] = "Use lowercase letters, digits and _ (start with a letter, at most 64)."
    elif name in RESERVED_NAMES:
        errors["name"] = f"{name!r} is reserved."
    elif Field.objects.filter(database=database, name=name).exists():
        errors["name"] = f"The database already has a field {name!r}."
    if type not in FieldType.values:
        errors["type"] = f"Unknown type {type!r}."
    if unique and type in (FieldType.LIST, FieldType.JSON, FieldType.BOOLEAN, FieldType.TEXT):
        errors["unique"] = f"A {FieldType(type).label.lower()} field cannot be unique."
    if errors:
        raise ProfileValidationError(errors)
    if Field.objects.filter(database=database, is_system=False).count() >= MAX_CUSTOM_FIELDS:
        raise ProfileError(f"A database can have at most {MAX_CUSTOM_FIELDS} custom fields.")
    clean_choices = _clean_choices(type, choices)
    stored_default = None
    if not is_empty(default):
        try:
            stored_default = CONVERTERS[type](default, field_context(database, Field(choices=clean_choices)))
        except FieldValueError as exc:
            raise ProfileValidationError({"default": str(exc)}) from None
    position = (Field.objects.filter(database=database).aggregate(m=Max("position"))["m"] or 0) + 1
    f = Field.objects.create(
        database=database, name=name, label=label.strip() or name.replace("_", " ").capitalize(), type=type,
        required=required, unique=unique, indexed=indexed or unique, choices=clean_choices, default=stored_default,
        position=position,
    )
    if f.indexed:
        schema.index_create(f)
    if unique:
        schema.unique_index_create(f)
    audit_log(account=database.account, actor=actor, verb="field.added", target=f, target_label=f"{database.name}: {f.label}",
              data={"name": name, "type": type})
    return f


def _duplicates_exist(f: Field) -> bool:
    from django.db.models import Count
    from django.db.models.fields.json import KT

    return (
        Profile.objects.filter(database_id=f.database_id, data__has_key=f.name)
        .values(v=KT(f"data__{f.name}"))
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .exists()
    )


@transaction.atomic
def field_update(
    *, field: Field, actor: Actor, label: str | None = None, required: bool | None = None, indexed: bool | None = None,
    unique: bool | None = None, choices: list[str] | None = None, type: str | None = None,
) -> Field:
    """Change a field. A type change is refused when a stored value would not convert."""
    f = Field.objects.select_for_update().select_related("database__account").get(pk=field.pk)
    changes: dict[str, Any] = {}
    if label is not None and label.strip() and label.strip() != f.label:
        changes["label"] = {"from": f.label, "to": label.strip()}
        f.label = label.strip()
    if f.is_system and any(v is not None for v in (required, indexed, unique, type)) and (
        (type is not None and type != f.type) or (unique is not None and unique != f.unique)
    ):
        raise ProfileError(f"{f.label} is a system field: only its label can change.")
    if type is not None and type != f.type:
        if type not in FieldType.values:
            raise ProfileValidationError({"type": f"Unknown type {type!r}."})
        new_choices = _clean_choices(type, choices if choices is not None else f.choices)
        ctx = field_context(f.database, Field(choices=new_choices))
        values = list(
            Profile.objects.filter(database_id=f.database_id, data__has_key=f.name)
            .values_list(f"data__{f.name}", flat=True)
            .iterator(chunk_size=5000)
        )
        ok, why = can_convert_all(type, values, ctx)
        if not ok:
            raise ProfileValidationError({"type": f"Cannot change {f.label} to {FieldType(type).label}: a stored value {why}."})
        try:
            with transaction.atomic():
                _convert_stored_values(f, type, ctx)
        except IntegrityError:
            raise ProfileValidationError(
                {"type": f"Cannot change {f.label} to {FieldType(type).label}: some values would become equal, and the field is unique."}
            ) from None
        changes["type"] = {"from": f.type, "to": type}
        f.type = type
        f.choices = new_choices
    elif choices is not None and f.type == FieldType.ENUM:
        new_choices = _clean_choices(f.type, choices)
        removed = set(f.choices) - set(new_choices)
        if removed:
            in_use = Profile.objects.filter(database_id=f.database_id, **{f"data__{f.name}__in": list(removed)}).exists()
            if in_use:
                raise ProfileValidationError(
                    {"choices": f"Profiles still hold {', '.join(sorted(removed))}: change them before removing the value."}
                )
        if new_choices != f.choices:
            changes["choices"] = {"from": f.choices, "to": new_choices}
            f.choices = new_choices
    if required is not None and required != f.required:
        changes["required"] = {"from": f.required, "to": required}
        f.required = required
    if unique is not None and unique != f.unique and not f.is_system:
        if unique:
            if _duplicates_exist(f):
                raise ProfileValidationError({"unique": f"Some profiles share a value of {f.label}: make them distinct first."})
            schema.unique_index_create(f)
        else:
            if f.name in f.database.match_keys:
                raise ProfileError(f"{f.label} is a match key: remove it from the match keys first.")
            schema.unique_index_drop(f)
        changes["unique"] = {"from": f.unique, "to": unique}
        f.unique = unique
    if indexed is not None and indexed != f.indexed and not f.is_system:
        schema.index_create(f) if indexed else schema.index_drop(f)
        changes["indexed"] = {"from": f.indexed, "to": indexed}
        f.indexed = indexed
    if changes:
        f.save()
        audit_log(account=f.database.account, actor=actor, verb="field.updated", target=f,
                  target_label=f"{f.database.name}: {f.label}", data=changes)
    return f


def _convert_stored_values(f: Field, new_type: str, ctx: Context) -> None:
    converter = CONVERTERS[new_type]
    batch: list[Profile] = []
    qs = Profile.objects.filter(database_id=f.database_id, data__has_key=f.name).only("id", "data")
    for p in qs.iterator(chunk_size=2000):
        old = p.data.get(f.name)
        new = None if old is None else converter(old, ctx)
        if new != old:
            p.data[f.name] = new
            batch.append(p)
        if len(batch) >= 2000:
            Profile.objects.bulk_update(batch, ["data"])
            batch.clear()
    if batch:
        Profile.objects.bulk_update(batch, ["data"])


@transaction.atomic
def fields_reorder(*, database: ProfileDatabase, names: list[str], actor: Actor) -> None:
    fields = {f.name: f for f in database.fields.all()}
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise ProfileValidationError({"order": f"Unknown fields: {', '.join(unknown)}"})
    ordered = names + [n for n in fields if n not in names]
    for i, n in enumerate(ordered):
        fields[n].position = i
    Field.objects.bulk_update(fields.values(), ["position"])
    audit_log(account=database.account, actor=actor, verb="fields.reordered", target=database, data={"order": ordered})


@transaction.atomic
def field_remove(*, field: Field, actor: Actor) -> Any:
    """Remove a custom field now; its stored values are removed by a background job.

    Returns the Job. Raises ProfileError for system fields and match keys.
    """
    from accounts.jobs import job_create
    from profiles.tasks import field_values_remove_task

    f = Field.objects.select_related("database__account").get(pk=field.pk)
    if f.is_system:
        raise ProfileError(f"{f.label} is a system field and cannot be removed.")
    if f.name in f.database.match_keys:
        raise ProfileError(f"{f.label} is a match key: remove it from the match keys first.")
    database = f.database
    schema.index_drop(f)
    schema.unique_index_drop(f)
    job = job_create(
        account=database.account, kind="profiles.field_remove", title=f"Remove values of “{f.label}” from {database.name}",
        created_by=actor.user, params={"database_id": database.pk, "field": f.name},
    )
    audit_log(account=database.account, actor=actor, verb="field.removed", target=f,
              target_label=f"{database.name}: {f.label}", data={"name": f.name, "type": f.type})
    f.delete()
    field_values_remove_task.delay_on_commit(job.pk)
    return job


def field_values_remove(*, database_id: int, name: str, progress: Callable[[int], None] | None = None) -> int:
    """Strip `name` from every profile's data, in batches (re-runnable). Returns rows changed."""
    if Field.objects.filter(database_id=database_id, name=name).exists():
        return 0  # re-added meanwhile: keep the values
    total = 0
    while True:
        ids = list(
            Profile.objects.filter(database_id=database_id, data__has_key=name).values_list("id", flat=True)[:5000]
        )
        if not ids:
            return total
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        f'UPDATE "{Profile._meta.db_table}" SET data = data - %s WHERE id = ANY(%s)',  # noqa: S608
                        [name, ids],
                    )
            else:
                rows = list(Profile.objects.filter(id__in=ids).only("id", "data"))
                for p in rows:
                    p.data.pop(name, None)
                Profile.objects.bulk_update(rows, ["data"])
        total += len(ids)
        if progress:
            progress(total)


# --- profiles ------------------------------------------------------------------------------------


@dataclass
class Schema:
    """A database's fields, loaded once per operation (a batch, an import)."""

    database: ProfileDatabase
    fields: dict[str, Field]
    ctx: Context
    contexts: dict[str, Context] = field(default_factory=dict)

    @classmethod
    def load(cls, database: ProfileDatabase) -> Schema:
        fields = {f.name: f for f in database.fields.all()}
        base = field_context(database)
        contexts = {
            n: Context(region=base.region, tz=base.tz, choices=tuple(f.choices)) for n, f in fields.items() if f.choices
        }
        return cls(database=database, fields=fields, ctx=base, contexts=contexts)

    def convert(self, name: str, raw: Any) -> Any:
        f = self.fields[name]
        if is_empty(raw):
            return None
        if name == "timezone":
            return to_timezone(raw, self.ctx)
        return CONVERTERS[f.type](raw, self.contexts.get(name, self.ctx))

    def writable(self) -> list[Field]:
        return [f for f in self.fields.values() if not f.read_only]


def clean_values(sch: Schema, values: dict[str, Any], *, clear_empty: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """Convert incoming values. Returns (clean, errors); clean maps name -> stored value or None (clear)."""
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, raw in values.items():
        f = sch.fields.get(name)
        if f is None:
            errors[name] = "there is no such field in this database"
            continue
        if f.read_only:
            errors[name] = "is read-only"
            continue
        try:
            value = sch.convert(name, raw)
        except FieldValueError as exc:
            errors[name] = str(exc)
            continue
        if value is None and not clear_empty:
            continue
        if value is None and f.required:
            errors[name] = "is required"
            continue
        clean[name] = value
    return clean, errors


def _get(profile: Profile, name: str) -> Any:
    if name in WRITABLE_SYSTEM_FIELDS:
        v = getattr(profile, name)
        if name == "birthday" and v is not None:
            return v.isoformat()
        return v if v != "" else None
    return profile.data.get(name)


def _set(profile: Profile, name: str, value: Any) -> None:
    if name in WRITABLE_SYSTEM_FIELDS:
        if name in ("email", "phone"):
            setattr(profile, name, value)
        elif name == "birthday":
            from datetime import date

            setattr(profile, name, date.fromisoformat(value) if value else None)
        else:
            setattr(profile, name, value or "")
    elif value is None:
        profile.data.pop(name, None)
    else:
        profile.data[name] = value


def apply_values(profile: Profile, clean: dict[str, Any]) -> dict[str, list[Any]]:
    """Set values on an unsaved/locked profile; returns {name: [old, new]} of what changed."""
    diff: dict[str, list[Any]] = {}
    for name, value in clean.items():
        old = _get(profile, name)
        if old != value:
            diff[name] = [old, value]
            _set(profile, name, value)
    return diff


def _missing_required(sch: Schema, profile: Profile) -> dict[str, str]:
    return {f.name: "is required" for f in sch.fields.values() if f.required and _get(profile, f.name) in (None, "", [])}


def _defaults(sch: Schema, profile: Profile) -> None:
    for f in sch.fields.values():
        if f.default is not None and _get(profile, f.name) is None:
            _set(profile, f.name, f.default)


def erased_hash(database: ProfileDatabase, key: str, value: Any) -> str:
    return hashlib.sha256(f"{database.erasure_salt}:{key}:{value}".encode()).hexdigest()


def is_erased(database: ProfileDatabase, key: str, value: Any) -> bool:
    return ErasedIdentity.objects.filter(database=database, key_hash=erased_hash(database, key, value)).exists()


def _match_filter(key: str, value: Any) -> dict[str, Any]:
    return {key: value} if key in WRITABLE_SYSTEM_FIELDS else {f"data__{key}": value}


@dataclass
class UpsertResult:
    profile: Profile | None
    created: bool = False
    changed: dict[str, list[Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: str = ""

    @property
    def status(self) -> str:
        if self.errors:
            return "failed"
        if self.skipped:
            return "skipped"
        if self.created:
            return "created"
        return "updated" if self.changed else "unchanged"


def profile_upsert(
    *, database: ProfileDatabase, values: dict[str, Any], actor: Actor, match: str | None = None,
    mode: str = "upsert", clear_empty: bool = False, source: str = "api", sch: Schema | None = None,
) -> UpsertResult:
    """Create or update the profile whose `match` key (default: the database's first) equals the value's.

    mode: "upsert" | "insert" (only create) | "update" (only update). Never raises for bad values:
    the result carries per-field errors. Erased people (by match key) are skipped.
    """
    sch = sch or Schema.load(database)
    match = match or database.default_match_key
    if match not in database.match_keys:
        return UpsertResult(None, errors={"match": f"{match!r} is not a match key of this database"})
    clean, errors = clean_values(sch, values, clear_empty=clear_empty)
    if errors:
        return UpsertResult(None, errors=errors)
    key_value = clean.get(match)
    if key_value is None:
        return UpsertResult(None, errors={match: "is required to find the profile (the match key)"})
    if is_erased(database, match, key_value):
        return UpsertResult(None, skipped="erased (data-protection request)")
    try:
        with transaction.atomic():
            existing = (
                Profile.objects.select_for_update().filter(database=database, **_match_filter(match, key_value)).first()
            )
            if existing is None:
                if mode == "update":
                    return UpsertResult(None, skipped="no profile with this match key (update only)")
                profile = Profile(account_id=database.account_id, database=database)
                _defaults(sch, profile)
                diff = apply_values(profile, clean)
                missing = _missing_required(sch, profile)
                if missing:
                    return UpsertResult(None, errors=missing)
                profile.save()
                return UpsertResult(profile, created=True, changed=diff)
            if mode == "insert":
                return UpsertResult(existing, skipped="a profile with this match key exists (add only)")
            diff = apply_values(existing, clean)
            if diff:
                existing.updated_at = timezone.now()
                existing.save()
                ProfileChange.objects.create(
                    account_id=database.account_id, profile=existing, changes=diff, source=source, actor_label=actor.label
                )
            return UpsertResult(existing, changed=diff)
    except IntegrityError as exc:
        return UpsertResult(None, errors={_conflict_field(exc, clean, database.pk): "another profile already has this value"})


def _conflict_field(exc: IntegrityError, clean: dict[str, Any], database_id: int | None = None) -> str:
    text = str(exc)
    # A unique custom field first (its index name is known; the message may quote the field name,
    # which can contain "email"), then the e-mail and phone columns.
    for f in Field.objects.filter(database_id=database_id, unique=True, is_system=False, name__in=list(clean)):
        if schema._index_name(f, "uq") in text:
            return f.name
    for name in ("email", "phone"):
        if name in text and name in clean:
            return name
    return next(iter(clean), "profile")


@transaction.atomic
def profile_update(*, profile: Profile, values: dict[str, Any], actor: Actor, source: str = "ui") -> dict[str, list[Any]]:
    """Edit one profile's fields (empty clears). Raises ProfileValidationError."""
    database = profile.database
    sch = Schema.load(database)
    clean, errors = clean_values(sch, values, clear_empty=True)
    if errors:
        raise ProfileValidationError(errors)
    locked = Profile.objects.select_for_update().get(pk=profile.pk)
    diff = apply_values(locked, clean)
    for key in database.match_keys:
        if key in diff and diff[key][1] is None and all(_get(locked, k) is None for k in database.match_keys):
            raise ProfileValidationError({key: "a profile needs at least one match key"})
    if not diff:
        return {}
    locked.updated_at = timezone.now()
    try:
        with transaction.atomic():
            locked.save()
    except IntegrityError as exc:
        raise ProfileValidationError({_conflict_field(exc, clean, database.pk): "another profile already has this value"}) from None
    ProfileChange.objects.create(account_id=locked.account_id, profile=locked, changes=diff, source=source, actor_label=actor.label)
    audit_log(account=database.account, actor=actor, verb="profile.updated", target=locked,
              target_label=f"#{locked.pk}", data={"fields": sorted(diff)})
    profile.__dict__.update({k: v for k, v in locked.__dict__.items() if not k.startswith("_")})
    return diff


@transaction.atomic
def profile_create(*, database: ProfileDatabase, values: dict[str, Any], actor: Actor, source: str = "ui") -> Profile:
    """Create one profile (UI). Raises ProfileValidationError (also for an existing match key)."""
    sch = Schema.load(database)
    clean, errors = clean_values(sch, values, clear_empty=False)
    if errors:
        raise ProfileValidationError(errors)
    if all(clean.get(k) is None for k in database.match_keys):
        raise ProfileValidationError({database.default_match_key: "is required (a match key)"})
    profile = Profile(account_id=database.account_id, database=database)
    _defaults(sch, profile)
    apply_values(profile, clean)
    missing = _missing_required(sch, profile)
    if missing:
        raise ProfileValidationError(missing)
    try:
        with transaction.atomic():
            profile.save()
    except IntegrityError as exc:
        raise ProfileValidationError({_conflict_field(exc, clean, database.pk): "another profile already has this value"}) from None
    audit_log(account=database.account, actor=actor, verb="profile.created", target=profile, target_label=f"#{profile.pk}")
    return profile


@transaction.atomic
def profile_merge(*, target: Profile, source: Profile, actor: Actor) -> Profile:
    """Merge `source` into `target`: target keeps its values, fills its gaps from source; every
    row referencing source (change history here, and what later apps register) moves to target;
    source is deleted. Audited. Raises ProfileError for profiles of different databases."""
    if target.pk == source.pk:
        raise ProfileError("A profile cannot be merged into itself.")
    if target.database_id != source.database_id:
        raise ProfileError("Only profiles of the same database can be merged.")
    target, source = (
        Profile.objects.select_for_update().get(pk=target.pk),
        Profile.objects.select_for_update().get(pk=source.pk),
    )
    filled: dict[str, list[Any]] = {}
    for name in WRITABLE_SYSTEM_FIELDS:
        if _get(target, name) in (None, "") and _get(source, name) not in (None, ""):
            filled[name] = [None, _get(source, name)]
    for name, value in source.data.items():
        if name not in target.data:
            filled[name] = [None, value]
    source_unique = {"email": source.email, "phone": source.phone}
    unique_custom = set(
        Field.objects.filter(database_id=source.database_id, unique=True, is_system=False).values_list("name", flat=True)
    )
    # Free source's unique keys (columns and unique custom fields) before target takes them.
    Profile.objects.filter(pk=source.pk).update(
        email=None, phone=None, data={k: v for k, v in source.data.items() if k not in unique_custom}
    )
    for name, (_, value) in filled.items():
        _set(target, name, source_unique.get(name, value) if name in source_unique else value)
    target.created_at = min(target.created_at, source.created_at)
    target.updated_at = timezone.now()
    target.save()
    for handler in MERGE_HANDLERS:
        handler(target, source)
    ProfileChange.objects.filter(profile=source).update(profile=target)
    ProfileChange.objects.create(
        account_id=target.account_id, profile=target, changes=filled,
        source=f"merge:{source.pk}", actor_label=actor.label,
    )
    audit_log(account=target.account, actor=actor, verb="profile.merged", target=target, target_label=f"#{target.pk}",
              data={"merged": source.pk, "filled": sorted(filled)})
    source.delete()
    return target


@transaction.atomic
def profile_erase(*, profile: Profile, actor: Actor) -> None:
    """Erase a person (data-protection request): delete the profile and everything other apps
    keep of it, keeping only salted hashes of its match keys so imports can skip them later.
    Audit entries that named the profile lose the name."""
    database = profile.database
    profile = Profile.objects.select_for_update().get(pk=profile.pk)
    hashes = set()
    for key in set(database.match_keys) | {"email", "phone"}:
        value = _get(profile, key)
        if value not in (None, ""):
            hashes.add(erased_hash(database, key, value))
    ErasedIdentity.objects.bulk_create(
        [ErasedIdentity(database=database, key_hash=h) for h in hashes], ignore_conflicts=True
    )
    for handler in ERASURE_HANDLERS:
        handler(profile)
    AuditEvent.objects.filter(target_type="profiles.profile", target_id=str(profile.pk)).update(target_label=f"#{profile.pk} (erased)")
    pk = profile.pk
    profile.delete()
    audit_log(account=database.account, actor=actor, verb="profile.erased", target_label=f"#{pk}",
              data={"database": database.slug, "profile_id": pk})


def profile_find(*, database: ProfileDatabase, key: str, value: Any) -> Profile | None:
    """Look a profile up by a match key (the value is normalised like an import would)."""
    sch = Schema.load(database)
    if key not in database.match_keys and key not in ("email", "phone"):
        raise ProfileValidationError({key: "is not a match key of this database"})
    try:
        clean = sch.convert(key, value)
    except FieldValueError as exc:
        raise ProfileValidationError({key: str(exc)}) from None
    if clean is None:
        return None
    return Profile.objects.filter(database=database, **_match_filter(key, clean)).first()
