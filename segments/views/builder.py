"""The condition builder: the catalogue a database offers (fields by type, event types visible to
the account, resources, other segments) and the tree turned into what the templates render, one
node context per condition, with the core's error shown at the node its path names.

Nothing here decides what is valid: operators offered per type come from the core when it
exports them, and the core's `ConditionError` has the last word on save and on each live count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from history.models import EventType
from profiles.fieldtypes import FieldType
from profiles.models import Field, ProfileDatabase
from resources.models import Channel, Resource, Status
from segments.forms import (
    DAYS_OPERATORS,
    LIST_OPERATORS,
    NO_VALUE_OPERATORS,
    TreeTypes,
    field_name,
    node_path,
)
from segments.models import Segment

# The order operators are offered in (the first is a new row's); the core decides which apply.
FALLBACK_OPERATORS: dict[str, list[str]] = {
    FieldType.STRING: ["eq", "ne", "contains", "not_contains", "starts_with", "in", "not_in", "empty", "set"],
    FieldType.TEXT: ["contains", "not_contains", "eq", "ne", "starts_with", "in", "not_in", "empty", "set"],
    FieldType.EMAIL: ["eq", "ne", "contains", "not_contains", "starts_with", "in", "not_in", "empty", "set"],
    FieldType.PHONE: ["eq", "ne", "starts_with", "contains", "not_contains", "in", "not_in", "empty", "set"],
    FieldType.INTEGER: ["eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in", "empty", "set"],
    FieldType.DECIMAL: ["eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in", "empty", "set"],
    FieldType.BOOLEAN: ["eq", "ne", "empty", "set"],
    FieldType.DATE: ["eq", "ne", "before", "after", "gte", "lte", "between", "in_last_days", "in_next_days",
                     "anniversary_in_days", "empty", "set"],
    FieldType.DATETIME: ["before", "after", "gte", "lte", "between", "in_last_days", "in_next_days", "empty", "set"],
    FieldType.ENUM: ["eq", "ne", "in", "not_in", "empty", "set"],
    FieldType.LIST: ["list_contains", "empty", "set"],
    FieldType.JSON: ["set", "empty"],
}

OPERATOR_LABELS = {
    "eq": "is", "ne": "is not", "contains": "contains", "not_contains": "does not contain",
    "starts_with": "starts with", "in": "is one of", "not_in": "is none of", "gt": "is more than",
    "gte": "is at least", "lt": "is less than", "lte": "is at most", "between": "is between",
    "empty": "is empty", "set": "is set", "in_last_days": "in the last … days", "in_next_days": "in the next … days",
    "anniversary_in_days": "anniversary within … days", "before": "is before", "after": "is after",
    "list_contains": "contains",
}
# Numbers read better with "more/less than"; dates with before/after; booleans with "is".
_TYPE_LABELS = {
    (FieldType.DATE, "eq"): "is on", (FieldType.DATE, "ne"): "is not on",
    (FieldType.DATE, "gte"): "is on or after", (FieldType.DATE, "lte"): "is on or before",
    (FieldType.DATETIME, "gte"): "is on or after", (FieldType.DATETIME, "lte"): "is on or before",
}

COUNT_OPS = [("exists", "at least once"), ("not_exists", "never"), ("at_least", "at least"), ("at_most", "at most")]
WINDOWS = [("", "at any time"), ("last_days", "in the last"), ("between", "between"), ("since", "since")]
NODE_KINDS = [("field", "Profile field", "person-vcard"), ("event", "Action (event)", "activity"),
              ("subscription", "Subscription", "envelope-check"), ("segment", "Another segment", "diagram-3"),
              ("sample", "Random sample", "shuffle"), ("group", "Group (AND / OR)", "braces")]


def type_operators(field_type: str) -> list[str]:
    """The operators a field (or event property) of this type offers: the core's list
    (`segments.conditions.OPERATORS`), in our order, the first being a new row's. Dates show
    before/after (the core's aliases of lt/gt) rather than "less/more than"."""
    from segments import conditions

    allowed = list(conditions.OPERATORS.get(field_type, ()))
    if field_type in (FieldType.DATE, FieldType.DATETIME):
        allowed = [o for o in allowed if o not in ("gt", "lt")]
    known = [o for o in FALLBACK_OPERATORS.get(field_type, []) if o in allowed]
    return known + [o for o in allowed if o not in known]


def operator_label(op: str, field_type: str = "") -> str:
    return _TYPE_LABELS.get((field_type, op), OPERATOR_LABELS.get(op, op.replace("_", " ")))


def value_widget(field_type: str, operator: str, choices: list[str] | None = None) -> str:
    """Which input a value gets: none, days, enum, enum_multi, bool, number, decimal, date, datetime, list, text."""
    if operator in NO_VALUE_OPERATORS or not operator:
        return "none"
    if operator in DAYS_OPERATORS:
        return "days"
    if field_type == FieldType.ENUM and choices:
        return "enum_multi" if operator in LIST_OPERATORS else "enum"
    if operator in LIST_OPERATORS:
        return "list"
    if field_type == FieldType.BOOLEAN:
        return "bool"
    if field_type == FieldType.INTEGER:
        return "number"
    if field_type == FieldType.DECIMAL:
        return "decimal"
    if field_type in (FieldType.DATE, FieldType.DATETIME):
        return "date"
    return "text"


def display_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(display_value(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Catalogue:
    """What the builder offers for one database (loaded once per request: a handful of queries)."""

    database: ProfileDatabase
    fields: dict[str, Field]
    event_types: dict[str, EventType]
    resources: dict[int, Resource]
    segments: dict[int, Segment]
    this_segment: Segment | None = None
    _field_groups: list[tuple[str, list[Field]]] = field(default_factory=list)

    @classmethod
    def load(cls, request: HttpRequest, database: ProfileDatabase, segment: Segment | None = None) -> Catalogue:
        fields = {f.name: f for f in database.fields.all()}
        types = {t.name: t for t in EventType.objects.visible_to(request.account).order_by("account_id", "name")}
        resources = {r.pk: r for r in Resource.objects.for_account(request.account).filter(database=database)}
        others = Segment.objects.for_account(request.account).filter(database=database).order_by("name", "id")
        if segment is not None and segment.pk:
            others = others.exclude(pk=segment.pk)
        return cls(database=database, fields=fields, event_types=types, resources=resources,
                   segments={s.pk: s for s in others}, this_segment=segment)

    def types(self) -> TreeTypes:
        return TreeTypes(
            fields={n: f.type for n, f in self.fields.items()},
            properties={n: {p["name"]: p.get("type", "string") for p in (t.properties or []) if isinstance(p, dict)}
                        for n, t in self.event_types.items()},
        )

    @property
    def field_groups(self) -> list[tuple[str, list[Field]]]:
        if not self._field_groups:
            system = [f for f in self.fields.values() if f.is_system]
            custom = [f for f in self.fields.values() if not f.is_system]
            self._field_groups = [g for g in (("Custom fields", custom), ("System fields", system)) if g[1]]
        return self._field_groups

    @property
    def event_groups(self) -> list[tuple[str, list[EventType]]]:
        custom = [t for t in self.event_types.values() if not t.is_system]
        system = [t for t in self.event_types.values() if t.is_system]
        return [g for g in (("Your event types", custom), ("System", system)) if g[1]]

    @property
    def channels(self) -> list[tuple[str, str]]:
        return list(Channel.choices)

    @property
    def event_channels(self) -> list[tuple[str, str]]:
        """The channels an event may carry (the history's), labelled."""
        from history.services.ingest import CHANNELS

        labels = {**dict(Channel.choices), "web": "Website", "app": "App"}
        return [(c, labels.get(c, c)) for c in sorted(CHANNELS, key=lambda c: (c not in labels, c)) if c]

    @property
    def statuses(self) -> list[tuple[str, str]]:
        return list(Status.choices)


# --- the tree as node contexts ----------------------------------------------------------------------


_ATTR_INPUTS = {
    "field": "field", "operator": "operator", "value": "value", "value2": "value2", "event": "event",
    "count": "count_n", "count.n": "count_n", "count.op": "count_op", "window": "window",
    "window.last_days": "last_days", "window.from": "from", "window.to": "to", "window.since": "since",
    "resource": "resource", "channel": "channel", "statuses": "statuses", "category": "category",
    "segment": "segment", "percent": "percent", "where.mailing_id": "mailing", "where.link_id": "link",
    "where.template_id": "template", "where.channel": "w_channel", "items": "items",
}
_NODE_PART = re.compile(r"^((?:items\[\d+\](?:\.|$))*)(.*)$")


def split_error_path(path: str) -> tuple[str, str]:
    """"items[2].items[0].value" -> ("items[2].items[0]", "value"); "items[1].where.properties[0].value"
    -> ("items[1]", "where.properties[0].value")."""
    m = _NODE_PART.match(path or "")
    node = (m.group(1) if m else "").rstrip(".")
    return node, (m.group(2) if m else path)


def input_of(attr: str) -> str:
    """The form attribute of a node to mark invalid for an error's attribute path, or ""."""
    m = re.match(r"^where\.properties\[(\d+)\]\.(name|operator|value)", attr)
    if m:
        return f"prop[{m.group(1)}].{m.group(2)}"
    m = re.match(r"^(value2?)\[\d+\]$", attr)
    if m:
        return m.group(1)
    return _ATTR_INPUTS.get(attr, "")


@dataclass
class TreeErrors:
    """The core's errors (path -> message) by the node they belong to."""

    by_node: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @classmethod
    def of(cls, errors: dict[str, str] | None) -> TreeErrors:
        out = cls()
        for path, message in (errors or {}).items():
            node, attr = split_error_path(path)
            out.by_node.setdefault(node, []).append((input_of(attr), message))
        return out

    def at(self, path: str) -> list[tuple[str, str]]:
        return self.by_node.get(path, [])

    def __bool__(self) -> bool:
        return bool(self.by_node)


def dom_id(path: str) -> str:
    return "node-" + (re.sub(r"[^0-9]+", "-", path).strip("-") or "root")


def build_nodes(tree: dict[str, Any], cat: Catalogue, errors: TreeErrors | None = None,
                hints: dict[str, str] | None = None) -> dict[str, Any]:
    """The root group's context (children nested) for `segments/_node.html`; `hints` are the live
    count's notes on unfinished conditions, by path."""
    root = _node(tree, (), cat, errors or TreeErrors())
    if hints:
        for node in node_paths(root):
            node["hint"] = hints.get(node["path"], "")
    return root


def _base(node: dict[str, Any], indexes: tuple[int, ...], errors: TreeErrors) -> dict[str, Any]:
    path = node_path(indexes)
    mine = errors.at(path)
    return {
        "path": path,
        "prefix": field_name(path, ""),
        "id": dom_id(path),
        "depth": len(indexes),
        "kind": node.get("type") if isinstance(node, dict) else "",
        "errors": [message for _, message in mine],
        "invalid": {name for name, _ in mine if name},
        "raw": node,
    }


def _node(node: Any, indexes: tuple[int, ...], cat: Catalogue, errors: TreeErrors) -> dict[str, Any]:
    if not isinstance(node, dict):
        node = {"type": "unknown"}
    ctx = _base(node, indexes, errors)
    kind = ctx["kind"]
    if kind == "group":
        items = node.get("items") if isinstance(node.get("items"), list) else []
        ctx.update(op="or" if node.get("op") == "or" else "and", negate=bool(node.get("negate")),
                   children=[_node(child, (*indexes, i), cat, errors) for i, child in enumerate(items)],
                   can_nest=len(indexes) < 5, kinds=NODE_KINDS if len(indexes) < 5 else NODE_KINDS[:-1])
    elif kind == "field":
        ctx.update(_field_ctx(node, cat))
        ctx.update(value_name=ctx["prefix"] + "value", value2_name=ctx["prefix"] + "value2",
                   bad_value="value" in ctx["invalid"], bad_value2="value2" in ctx["invalid"])
    elif kind == "event":
        ctx.update(_event_ctx(node, cat))
        for i, prop in enumerate(ctx["props"]):
            prefix = f"{ctx['prefix']}prop[{i}]."
            prop.update(prefix=prefix, value_name=prefix + "value",
                        bad_name=f"prop[{i}].name" in ctx["invalid"], bad_operator=f"prop[{i}].operator" in ctx["invalid"],
                        bad_value=f"prop[{i}].value" in ctx["invalid"])
    elif kind == "subscription":
        ctx.update(_subscription_ctx(node, cat))
    elif kind == "segment":
        seg = node.get("segment")
        ctx.update(segment=str(seg) if seg is not None else "", negate=bool(node.get("negate")),
                   options=[(str(s.pk), s.name, s.get_kind_display()) for s in cat.segments.values()],
                   missing=seg is not None and str(seg).isdigit() and int(seg) not in cat.segments)
    elif kind == "sample":
        ctx.update(percent=display_value(node.get("percent")), salt=node.get("salt") or "")
    return ctx


def _field_ctx(node: dict[str, Any], cat: Catalogue) -> dict[str, Any]:
    name = str(node.get("field") or "")
    f = cat.fields.get(name)
    ftype = f.type if f else ""
    ops = type_operators(ftype) if f else []
    operator = str(node.get("operator") or "")
    if f and operator not in ops:
        operator = ops[0] if ops else ""
    choices = list(f.choices or []) if f else []
    if f and f.type == FieldType.BOOLEAN:
        choices = []
    widget = value_widget(ftype, operator, choices) if f else "none"
    value = node.get("value")
    return {
        "field": name,
        "field_obj": f,
        "field_type": ftype,
        "field_missing": bool(name) and f is None,
        "operator": operator,
        "operators": [(o, operator_label(o, ftype)) for o in ops],
        "widget": widget,
        "value": display_value(value),
        "values": [display_value(v) for v in value] if isinstance(value, list) else ([display_value(value)] if value is not None else []),
        "value2": display_value(node.get("value2")),
        "choices": choices,
        "between": operator == "between",
    }


def _event_ctx(node: dict[str, Any], cat: Catalogue) -> dict[str, Any]:
    name = str(node.get("event") or "")
    et = cat.event_types.get(name)
    count = node.get("count") if isinstance(node.get("count"), dict) else {}
    window = node.get("window") if isinstance(node.get("window"), dict) else None
    where = node.get("where") if isinstance(node.get("where"), dict) else {}
    wkind = ""
    if window:
        wkind = "last_days" if "last_days" in window else "between" if ("from" in window or "to" in window) \
            else "since" if "since" in window else ""
    prop_types = {p["name"]: p for p in (et.properties or []) if isinstance(p, dict) and p.get("name")} if et else {}
    props = []
    for p in where.get("properties") or []:
        if not isinstance(p, dict):
            continue
        meta = prop_types.get(str(p.get("name") or ""))
        ptype = (meta or {}).get("type", "string")
        ops = [o for o in type_operators(ptype) if o not in ("anniversary_in_days",)]
        op = str(p.get("operator") or "eq")
        if op not in ops and ops:
            op = ops[0]
        pchoices = list((meta or {}).get("choices") or [])
        props.append({"name": str(p.get("name") or ""), "operator": op,
                      "operators": [(o, operator_label(o, ptype)) for o in ops],
                      "widget": value_widget(ptype, op, pchoices), "choices": pchoices,
                      "value": display_value(p.get("value")),
                      "values": [display_value(v) for v in p["value"]] if isinstance(p.get("value"), list) else []})
    return {
        "event": name,
        "event_obj": et,
        "event_missing": bool(name) and et is None,
        "count_op": count.get("op") or "exists",
        "count_n": display_value(count.get("n")) or "1",
        "count_ops": COUNT_OPS,
        "window": wkind,
        "windows": WINDOWS,
        "last_days": display_value((window or {}).get("last_days")),
        "from": display_value((window or {}).get("from")),
        "to": display_value((window or {}).get("to")),
        "since": display_value((window or {}).get("since")),
        "mailing": display_value(where.get("mailing_id")),
        "link": display_value(where.get("link_id")),
        "template": display_value(where.get("template_id")),
        "w_channel": str(where.get("channel") or ""),
        "props": props,
        "prop_options": [(n, p.get("type", "string")) for n, p in prop_types.items()],
        "has_filters": bool(where),
    }


def _subscription_ctx(node: dict[str, Any], cat: Catalogue) -> dict[str, Any]:
    rid = node.get("resource")
    resource = cat.resources.get(int(rid)) if isinstance(rid, int) or (isinstance(rid, str) and rid.isdigit()) else None
    channels = [(c, label) for c, label in Channel.choices if resource is None or c in (resource.channels or [])]
    return {
        "resource": str(rid) if rid is not None else "",
        "resource_obj": resource,
        "resource_missing": rid not in (None, "") and resource is None,
        "resource_options": [(str(r.pk), r.name) for r in cat.resources.values()],
        "channel": str(node.get("channel") or ""),
        "channel_options": channels,
        "statuses": [str(s) for s in node.get("statuses") or []],
        "status_options": list(Status.choices),
        "status_label": ", ".join(str(label).lower() for value, label in Status.choices
                                  if value in (node.get("statuses") or ["subscribed"])) or "subscribed",
        "category": str(node.get("category") or ""),
        "category_options": [(c["key"], c.get("label") or c["key"]) for c in (resource.categories if resource else [])
                             if isinstance(c, dict) and c.get("key")],
        "negate": bool(node.get("negate")),
    }


def node_paths(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node context of a built tree, depth first (the live count clears their errors)."""
    out = [ctx]
    for child in ctx.get("children") or []:
        out += node_paths(child)
    return out
