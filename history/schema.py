"""Property schemas of event types: validating a schema an admin writes, and checking (and
converting) an event's properties against it.

A schema is a list of {"name", "type", "required", "choices"?}. Declared properties are converted
with the profile field converters (`profiles.fieldtypes`), so "19.99" for a decimal is stored as
the number 19.99 and a datetime as UTC ISO text, and segments compare them as their type.
Properties a schema does not declare are kept as sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from history.models import PropertyType
from profiles.fieldtypes import CONVERTERS, Context, FieldValueError, is_empty

PROPERTY_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MAX_PROPERTIES_IN_SCHEMA = 100
MAX_CHOICES = 200


class SchemaError(ValueError):
    """A property schema an admin wrote that cannot be used; `errors` maps "properties[i].key" to why."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def clean_schema(raw: Any) -> list[dict[str, Any]]:
    """A schema as stored, or SchemaError saying which entry is wrong and why."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise SchemaError({"properties": "must be a list of {name, type, required}"})
    if len(raw) > MAX_PROPERTIES_IN_SCHEMA:
        raise SchemaError({"properties": f"at most {MAX_PROPERTIES_IN_SCHEMA} properties"})
    errors: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"properties[{i}]"
        if not isinstance(item, dict):
            errors[where] = "must be an object with name and type"
            continue
        name = str(item.get("name") or "").strip()
        type_ = str(item.get("type") or "string").strip()
        if not PROPERTY_NAME_RE.match(name):
            errors[f"{where}.name"] = f"{name!r} is not a property name (letters, digits, _; at most 63)"
            continue
        if name in seen:
            errors[f"{where}.name"] = f"{name!r} appears twice"
            continue
        seen.add(name)
        if type_ not in PropertyType.values:
            errors[f"{where}.type"] = f"{type_!r} is not a type (one of {', '.join(PropertyType.values)})"
            continue
        entry: dict[str, Any] = {"name": name, "type": type_, "required": bool(item.get("required"))}
        if type_ == PropertyType.ENUM:
            choices = item.get("choices") or []
            if isinstance(choices, str):
                choices = [c.strip() for c in choices.split(",")]
            choices = [str(c).strip() for c in choices if str(c).strip()]
            if not choices:
                errors[f"{where}.choices"] = "list the allowed values"
                continue
            if len(choices) > MAX_CHOICES:
                errors[f"{where}.choices"] = f"at most {MAX_CHOICES} values"
                continue
            entry["choices"] = list(dict.fromkeys(choices))
        out.append(entry)
    if errors:
        raise SchemaError(errors)
    return out


@dataclass(frozen=True)
class _Prop:
    name: str
    convert: Callable[[Any, Context], Any]
    required: bool
    ctx: Context


class CompiledSchema:
    """A schema ready to check many events (converters and contexts looked up once)."""

    __slots__ = ("props",)

    def __init__(self, schema: list[dict[str, Any]], ctx: Context) -> None:
        self.props = [
            _Prop(p["name"], CONVERTERS[p["type"]], bool(p.get("required")),
                  Context(region=ctx.region, tz=ctx.tz, choices=tuple(p.get("choices") or ())) if p.get("choices") else ctx)
            for p in schema
        ]

    def check(self, properties: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """(converted properties, errors by property name). Undeclared properties pass as sent."""
        if not self.props:
            return properties, {}
        out = dict(properties)
        errors: dict[str, str] = {}
        for p in self.props:
            raw = properties.get(p.name)
            if raw is None or is_empty(raw):
                if p.required:
                    errors[p.name] = "is required"
                elif p.name in out:
                    out.pop(p.name)
                continue
            try:
                out[p.name] = p.convert(raw, p.ctx)
            except FieldValueError as exc:
                errors[p.name] = str(exc)
        return out, errors
