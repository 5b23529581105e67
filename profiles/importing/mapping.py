"""Columns to fields: auto-mapping, option checks, per-column cell converters and the import plan."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from profiles.fieldtypes import (
    CONVERTERS,
    MAX_STRING,
    MAX_TEXT,
    FieldType,
    FieldValueError,
    is_empty,
    to_boolean,
    to_date,
    to_datetime,
    to_email,
    to_timezone,
)
from profiles.importing.reading import _NAME_RE, ImportMappingError
from profiles.models import (
    Field,
    ProfileDatabase,
)
from profiles.services import Schema

# --- mapping -------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    return re.sub(r"[\s_\-.]+", "", str(text)).casefold()


def writable_fields(database: ProfileDatabase) -> list[Field]:
    return [f for f in database.fields.all() if not f.read_only]


def auto_mapping(headers: list[str], fields: list[Field]) -> dict[int, str]:
    """Column index -> field name, for headers equal to a field's name or label (case, spaces,
    _ - and . ignored); a field is taken by its first matching column only."""
    by_key: dict[str, str] = {}
    for f in fields:
        by_key.setdefault(normalise(f.name), f.name)
        by_key.setdefault(normalise(f.label), f.name)
    out: dict[int, str] = {}
    for i, h in enumerate(headers):
        name = by_key.get(normalise(h))
        if name and name not in out.values():
            out[i] = name
    return out


@dataclass
class Options:
    mapping: dict[int, str]
    match_key: str
    mode: str = "upsert"
    clear_empty: bool = False
    skip_erased: bool = True
    # What higher apps do with the imported profiles, keyed by their IMPORT_HANDLERS name, e.g.
    # {"subscribe": {"resource": 3, "channel": "email", "status": "subscribed"}}.
    extra: dict[str, Any] = field(default_factory=dict)


def check_options(database: ProfileDatabase, headers: list[str], options: Options, fields: list[Field] | None = None) -> list[str]:
    """What keeps this mapping from running (empty list: it can run)."""
    fields = fields if fields is not None else writable_fields(database)
    names = {f.name: f for f in fields}
    problems = []
    if options.mode not in ("upsert", "insert", "update"):
        problems.append(f"Unknown mode {options.mode!r}: use upsert, insert or update.")
    if options.match_key not in database.match_keys:
        problems.append(f"{options.match_key!r} is not a match key of this database (match keys: {', '.join(database.match_keys)}).")
    seen: dict[str, int] = {}
    for idx, name in sorted(options.mapping.items()):
        if not 0 <= idx < len(headers):
            problems.append(f"Column {idx + 1} does not exist in the file.")
        elif name not in names:
            problems.append(f"{headers[idx]!r} maps to {name!r}, which is not a field you can import into.")
        elif name in seen:
            problems.append(f"{headers[seen[name]]!r} and {headers[idx]!r} both map to {names[name].label}; pick one.")
        else:
            seen[name] = idx
    if options.match_key in names and options.match_key not in seen:
        label = names[options.match_key].label
        problems.append(f"No column maps to {label}, the match key: map the column that holds it, or pick another match key.")
    if not seen:
        problems.append("No column is mapped to a field.")
    if options.extra:
        from profiles.importing.hooks import check_extra

        problems += check_extra(database, options.extra)
    return problems


# --- converting cells ----------------------------------------------------------------------------

Conv = Callable[[Any], Any]


def converter(sch: Schema, f: Field) -> Conv:
    """raw cell -> stored value (None for empty); raises FieldValueError. Same results as
    `Schema.convert`, with fast paths for the common shapes of CSV text."""
    ctx = sch.contexts.get(f.name, sch.ctx)
    official = to_timezone if f.name == "timezone" else CONVERTERS[f.type]

    def slow(raw: Any) -> Any:
        if is_empty(raw):
            return None
        return official(raw, ctx)

    if f.name == "timezone":
        return slow
    t = f.type
    if t in (FieldType.LIST, FieldType.JSON):

        def conv_json(raw: Any) -> Any:
            value = slow(raw)
            if value is not None and "\\u0000" in json.dumps(value):
                raise FieldValueError("contains a NUL character")  # the database cannot store it
            return value

        return conv_json
    if t in (FieldType.STRING, FieldType.TEXT):
        limit = MAX_STRING if t == FieldType.STRING else MAX_TEXT

        def conv(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if not v:
                    return None
                if len(v) <= limit and "\x00" not in v:
                    return v
            return slow(raw)

        return conv
    if t == FieldType.EMAIL:

        def conv_email(raw: Any) -> Any:
            if raw.__class__ is str and raw and not raw.isspace():
                return to_email(raw, ctx)
            return slow(raw)

        return conv_email
    if t == FieldType.INTEGER:

        def conv_int(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if not v:
                    return None
                if len(v) < 19 and v.isdigit() and v.isascii():
                    return int(v)
            return slow(raw)

        return conv_int
    if t == FieldType.DATE:

        def conv_date(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if not v:
                    return None
                if len(v) == 10 and v[4] == "-" and v[7] == "-" and v.isascii():
                    try:
                        date.fromisoformat(v)
                        return v
                    except ValueError:
                        pass
                return to_date(v, ctx)
            return slow(raw)

        return conv_date
    if t == FieldType.DATETIME:

        def conv_datetime(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if not v:
                    return None
                # Already canonical ("2024-05-01T10:30:00Z", years 1000-2999): valid means unchanged.
                if len(v) == 20 and v[10] == "T" and v[19] == "Z" and v[0] in "12" and v.isascii():
                    try:
                        datetime.fromisoformat(v)
                        return v
                    except ValueError:
                        pass
                return to_datetime(v, ctx)
            return slow(raw)

        return conv_datetime
    # Phones: to_phone has its own fast path for numbers already in E.164.
    if t == FieldType.BOOLEAN:
        words = {w: to_boolean(w, ctx) for w in ("true", "false", "yes", "no", "1", "0", "t", "f", "y", "n")}

        def conv_bool(raw: Any) -> Any:
            if raw.__class__ is str:
                value = words.get(raw.strip().lower())
                if value is not None:
                    return value
            return slow(raw)

        return conv_bool
    if t == FieldType.ENUM:
        choices = frozenset(ctx.choices)

        def conv_enum(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if v in choices:
                    return v
            return slow(raw)

        return conv_enum
    return slow


@dataclass
class Column:
    index: int  # in the file
    header: str
    field: Field
    conv: Conv


@dataclass
class Plan:
    """What goes where: the mapped columns, in staging order, and the match key's position."""

    database: ProfileDatabase
    sch: Schema
    options: Options
    columns: list[Column]
    key: int  # position in columns

    @classmethod
    def build(cls, database: ProfileDatabase, headers: list[str], options: Options) -> Plan:
        sch = Schema.load(database)
        fields = [f for f in sch.fields.values() if not f.read_only]
        problems = check_options(database, headers, options, fields)
        if problems:
            raise ImportMappingError(problems)
        columns = [
            Column(idx, headers[idx], sch.fields[name], converter(sch, sch.fields[name]))
            for idx, name in sorted(options.mapping.items())
        ]
        for c in columns:
            if not _NAME_RE.match(c.field.name):
                raise ImportMappingError([f"The field name {c.field.name!r} cannot be imported."])
        key = next(i for i, c in enumerate(columns) if c.field.name == options.match_key)
        return cls(database, sch, options, columns, key)

    @property
    def key_field(self) -> Field:
        return self.columns[self.key].field

    def header_of(self, name: str) -> str:
        return next((c.header for c in self.columns if c.field.name == name), name)


