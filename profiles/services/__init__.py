"""Writes on profile databases, fields and profiles. Atomic, audited, keyword-only.

Errors a person can fix are `ProfileError` (one message) or `ProfileValidationError` (a
message per field name).

Modules: databases (databases and fields), profiles (profile writes and lookups).
"""

from __future__ import annotations

from profiles.services.databases import (  # noqa: F401
    FIELD_NAME_RE,
    MAX_CUSTOM_FIELDS,
    ProfileError,
    ProfileValidationError,
    database_create,
    database_delete,
    database_update,
    field_add,
    field_context,
    field_remove,
    field_update,
    field_values_remove,
    fields_reorder,
)
from profiles.services.profiles import (  # noqa: F401
    ERASURE_HANDLERS,
    MERGE_HANDLERS,
    KeyLookup,
    Schema,
    UpsertResult,
    _conflict_field,
    _get,
    _set,
    apply_values,
    clean_values,
    erased_hash,
    is_erased,
    lock_database_writes,
    profile_create,
    profile_erase,
    profile_find,
    profile_merge,
    profile_update,
    profile_upsert,
    profiles_by_key,
)
