"""Profile databases and their fields: create, change, reorder, remove (values in the background)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max, ProtectedError, RestrictedError
from django.utils.text import slugify

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from cdp.protect import used_by
from profiles import schema
from profiles.fieldtypes import (
    CONVERTERS,
    Context,
    FieldType,
    FieldValueError,
    can_convert_all,
    is_empty,
)
from profiles.models import (
    RESERVED_NAMES,
    SYSTEM_FIELDS,
    Field,
    Profile,
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
    """Delete the database with its profiles. Raises ProfileError (naming them) while resources,
    mailings or scenarios of higher apps still use it (their PROTECT references)."""
    custom = list(database.fields.custom())  # their indexes go once the rows are gone
    try:
        with transaction.atomic():
            audit_log(account=database.account, actor=actor, verb="database.deleted", target=database,
                      data={"profiles": Profile.objects.filter(database=database).count()})
            database.delete()
    except (ProtectedError, RestrictedError) as exc:
        raise ProfileError(f"“{database.name}” is {used_by(exc)}; delete or move them first.") from exc
    for f in custom:
        schema.index_drop(f)
        schema.unique_index_drop(f)


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


