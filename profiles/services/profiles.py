"""Profiles: convert values, create, upsert, edit with history, merge, erase, find."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import AuditEvent
from profiles import schema
from profiles.fieldtypes import (
    CONVERTERS,
    Context,
    FieldValueError,
    is_empty,
    to_timezone,
)
from profiles.models import (
    WRITABLE_SYSTEM_FIELDS,
    ErasedIdentity,
    Field,
    Profile,
    ProfileChange,
    ProfileDatabase,
)
from profiles.services.databases import ProfileError, ProfileValidationError, field_context

# Higher apps register handlers in AppConfig.ready(): merge moves their rows from the source
# profile to the target; erasure removes or anonymises their rows of a profile.
MERGE_HANDLERS: list[Callable[[Profile, Profile], None]] = []
ERASURE_HANDLERS: list[Callable[[Profile], None]] = []


# --- profiles ------------------------------------------------------------------------------------


def lock_database_writes(database_id: int) -> None:
    """Take the database's bulk-write lock for the rest of the transaction (PostgreSQL; SQLite has
    one writer anyway). Imports hold it while they write; erasure and merge take it too, so they
    wait for a running import instead of racing it (an import that had read a profile could
    otherwise write to it, or re-create an erased person, after the erasure committed)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"profiles.import:{database_id}"])


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
    lock_database_writes(target.database_id)
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
    lock_database_writes(database.pk)
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


@dataclass
class KeyLookup:
    """What `profiles_by_key` found: ids by (normalised) key value, the values it created, and
    why the others have no profile (bad value, erased, cannot be created)."""

    ids: dict[Any, int] = field(default_factory=dict)
    created: set[Any] = field(default_factory=set)
    errors: dict[Any, str] = field(default_factory=dict)


def profiles_by_key(
    *, database: ProfileDatabase, key: str, raw_values: list[Any], create: bool = False, sch: Schema | None = None,
) -> tuple[KeyLookup, dict[Any, Any]]:
    """Set-based lookup of many profiles by one match key (or "id"); with `create`, profiles for
    the values not found are created (just the key; erased people are never re-created).

    Returns (lookup, normalised value by raw value); a raw value that does not convert maps to
    None and its reason is in lookup.errors under the raw value. One query per call to find, one
    INSERT .. ON CONFLICT DO NOTHING and one query to create (concurrent creators of the same
    key meet at the unique index and both end with the one profile)."""
    out = KeyLookup()
    norm: dict[Any, Any] = {}
    if key == "id":
        for raw in raw_values:
            if (isinstance(raw, int) and not isinstance(raw, bool)) or (isinstance(raw, str) and raw.strip().isdigit()):
                norm[raw] = int(raw)
            else:
                norm[raw] = None
                out.errors[raw] = "a profile id is a whole number"
        wanted = {v for v in norm.values() if v is not None}
        out.ids = {i: i for i in Profile.objects.filter(database=database, id__in=wanted).values_list("id", flat=True)}
        for v in wanted - out.ids.keys():
            out.errors[v] = f"no profile #{v} in this database"
        return out, norm
    if key not in database.match_keys and key not in ("email", "phone"):
        raise ProfileValidationError({key: "is not a match key of this database"})
    if sch is None and key in ("email", "phone"):
        # E-mail and phone are system fields whose conversion needs only the account's region:
        # no need to load the schema unless profiles are to be created.
        convert = CONVERTERS[key]
        ctx = field_context(database)

        def to_value(raw: Any) -> Any:
            return None if is_empty(raw) else convert(raw, ctx)
    else:
        sch = sch or Schema.load(database)

        def to_value(raw: Any) -> Any:
            return sch.convert(key, raw)
    for raw in raw_values:
        if raw in norm:
            continue
        try:
            value = to_value(raw)
        except FieldValueError as exc:
            norm[raw], out.errors[raw] = None, str(exc)
            continue
        except TypeError:
            norm[raw], out.errors[raw] = None, "expected a text value"
            continue
        norm[raw] = value
        if value is None:
            out.errors[raw] = "is empty"
    wanted = {v for v in norm.values() if v is not None}
    column = key if key in WRITABLE_SYSTEM_FIELDS else f"data__{key}"
    if wanted:
        out.ids = _ids_by_key(database.pk, key, column, wanted)
    missing = wanted - out.ids.keys()
    if not missing:
        return out, norm
    if not create:
        for v in missing:
            out.errors[v] = "no profile with this key (this token may not create profiles)"
        return out, norm
    hashes = {erased_hash(database, key, v): v for v in missing}
    for h in ErasedIdentity.objects.filter(database=database, key_hash__in=list(hashes)).values_list("key_hash", flat=True):
        v = hashes[h]
        missing.discard(v)
        out.errors[v] = "this person was erased (data-protection request) and is not re-created"
    if not missing:
        return out, norm
    sch = sch or Schema.load(database)
    template = Profile(account_id=database.account_id, database=database)
    _defaults(sch, template)
    absent = _missing_required(sch, template)
    absent.pop(key, None)
    if absent:
        why = "cannot create the profile: the database requires " + ", ".join(sorted(absent))
        for v in missing:
            out.errors[v] = why
        return out, norm
    now = timezone.now()
    new = []
    for v in missing:
        p = Profile(account_id=database.account_id, database=database, data=dict(template.data),
                    created_at=now, updated_at=now)
        for name in WRITABLE_SYSTEM_FIELDS:
            if name not in ("email", "phone"):
                setattr(p, name, getattr(template, name))
        _set(p, key, v)
        new.append(p)
    with transaction.atomic():
        Profile.objects.bulk_create(new, ignore_conflicts=True, batch_size=500)
    found = _ids_by_key(database.pk, key, column, missing)
    out.ids.update(found)
    out.created = set(found) & missing
    for v in missing - found.keys():
        out.errors[v] = "could not create the profile"
    return out, norm


def _ids_by_key(database_id: int, key: str, column: str, values: set[Any]) -> dict[Any, int]:
    """{key value: profile id} for the values that have a profile. On PostgreSQL the e-mail and
    phone columns are matched with one array parameter (= ANY), not one placeholder per value."""
    if connection.vendor == "postgresql" and key in ("email", "phone"):
        with connection.cursor() as cur:
            cur.execute(f"SELECT {key}, id FROM profiles_profile WHERE database_id = %s AND {key} = ANY(%s)",  # noqa: S608
                        [database_id, list(values)])
            return dict(cur.fetchall())
    return dict(Profile.objects.filter(database_id=database_id, **{f"{column}__in": values}).values_list(column, "id"))
