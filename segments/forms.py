"""Forms of the segment pages. They parse input only; the core (`segments.conditions`) decides
what a valid condition tree is, and its `ConditionError` is shown at the condition it names.

The builder's condition tree travels two ways, so the page works with and without JavaScript:

- as plain form fields, one per input, named after the node's path in the tree (the same path
  the core's errors use): `c.op` and `c.negate` for the root group, `c.items[0].type`,
  `c.items[0].field`, `c.items[0].operator`, `c.items[1].items[0].event`,
  `c.items[1].items[0].prop[0].name`... `tree_from_fields` rebuilds the tree from them;
- as JSON in the hidden `conditions` field (the server refreshes it with each live count).

The fields win when both are there (they are what the person sees); JSON alone (a script, a
test, the API-shaped post of another tool) is taken as it is.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from django import forms
from django.http import QueryDict

from cdp.forms import StyledForm
from profiles.fieldtypes import FieldType

# --- field names of the tree ----------------------------------------------------------------------

_NAME_RE = re.compile(r"^c((?:\.items\[\d+\])*)\.([a-z_0-9\[\]\.]+)$")
_INDEX_RE = re.compile(r"items\[(\d+)\]")
_PROP_RE = re.compile(r"^prop\[(\d+)\]\.(name|operator|value)$")

MAX_NODES = 200
MAX_DEPTH = 6


def node_path(indexes: tuple[int, ...]) -> str:
    """(2, 0) -> "items[2].items[0]" (the core's path of a node; "" is the root group)."""
    return ".".join(f"items[{i}]" for i in indexes)


def path_indexes(path: str) -> tuple[int, ...]:
    return tuple(int(i) for i in _INDEX_RE.findall(path or ""))


def field_name(path: str, attr: str) -> str:
    """The form field of a node's attribute: ("items[0]", "field") -> "c.items[0].field"."""
    return f"c.{path}.{attr}" if path else f"c.{attr}"


# Operators whose value is a list, a number of days, two values, or nothing.
LIST_OPERATORS = frozenset({"in", "not_in"})
DAYS_OPERATORS = frozenset({"in_last_days", "in_next_days", "anniversary_in_days"})
NO_VALUE_OPERATORS = frozenset({"empty", "set"})
NUMERIC_TYPES = frozenset({FieldType.INTEGER, FieldType.DECIMAL})


def _number(raw: str, *, whole: bool) -> Any:
    """A number typed in a box; the text itself when it is not one (the core then says why, at
    the condition)."""
    text = raw.strip().replace(",", ".") if not whole else raw.strip()
    try:
        return int(text) if whole else (int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text))
    except ValueError:
        return raw.strip()


def field_value(raw: str | list[str], field_type: str, operator: str) -> Any:
    """The JSON value of a field condition from what the row's inputs hold, typed by the field."""
    if operator in NO_VALUE_OPERATORS:
        return None
    if operator in DAYS_OPERATORS:
        return _number(raw if isinstance(raw, str) else "", whole=True) if raw != "" else None
    if operator in LIST_OPERATORS:
        items = raw if isinstance(raw, list) else re.split(r"[,\n]", raw)
        items = [str(p).strip() for p in items if str(p).strip()]
        if field_type in NUMERIC_TYPES:
            return [_number(p, whole=field_type == FieldType.INTEGER) for p in items]
        return items
    if isinstance(raw, list):
        raw = raw[0] if raw else ""
    if raw.strip() == "":
        return None
    if field_type in NUMERIC_TYPES:
        return _number(raw, whole=field_type == FieldType.INTEGER)
    if field_type == FieldType.BOOLEAN:
        return {"true": True, "false": False}.get(raw.strip().lower(), raw.strip())
    return raw.strip()


def _first(values: dict[str, list[str]], key: str, default: str = "") -> str:
    got = values.get(key)
    return got[0] if got else default


def _int_or_none(raw: str) -> int | str | None:
    raw = raw.strip()
    if not raw:
        return None
    return int(raw) if re.fullmatch(r"\d{1,18}", raw) else raw


def _window(attrs: dict[str, list[str]]) -> dict[str, Any] | None:
    kind = _first(attrs, "window")
    if kind == "last_days":
        return {"last_days": _number(_first(attrs, "last_days"), whole=True) if _first(attrs, "last_days").strip() else None}
    if kind == "between":
        return {"from": _first(attrs, "from").strip() or None, "to": _first(attrs, "to").strip() or None}
    if kind == "since":
        return {"since": _first(attrs, "since").strip() or None}
    return None


def _event_where(attrs: dict[str, list[str]], prop_types: dict[str, str]) -> dict[str, Any]:
    where: dict[str, Any] = {}
    for key, attr in (("mailing_id", "mailing"), ("link_id", "link"), ("template_id", "template")):
        value = _int_or_none(_first(attrs, attr))
        if value is not None:
            where[key] = value
    channel = _first(attrs, "channel").strip()
    if channel:
        where["channel"] = channel
    props: dict[int, dict[str, str]] = {}
    for key, values in attrs.items():
        m = _PROP_RE.match(key)
        if m:
            props.setdefault(int(m.group(1)), {})[m.group(2)] = values[0] if values else ""
    rows = []
    for i in sorted(props):
        p = props[i]
        name = p.get("name", "").strip()
        if not name:
            continue
        operator = p.get("operator", "eq") or "eq"
        ptype = prop_types.get(name, "string")
        rows.append({"name": name, "operator": operator, "value": field_value(p.get("value", ""), ptype, operator)})
    if rows:
        where["properties"] = rows
    return where


def _node(attrs: dict[str, list[str]], children: list[dict[str, Any]], types: TreeTypes) -> dict[str, Any] | None:
    kind = _first(attrs, "type", "group")
    negate = _first(attrs, "negate") in ("1", "on", "true")
    if kind == "group":
        return {"type": "group", "op": "or" if _first(attrs, "op") == "or" else "and", "negate": negate, "items": children}
    if kind == "field":
        name = _first(attrs, "field").strip()
        operator = _first(attrs, "operator").strip()
        ftype = types.fields.get(name, FieldType.STRING)
        values = attrs.get("value", [])
        raw: str | list[str] = _first(attrs, "value")
        if operator in LIST_OPERATORS and (ftype == FieldType.ENUM or len(values) > 1):
            raw = values  # ticked choices; otherwise one box of comma-separated values
        node: dict[str, Any] = {"type": "field", "field": name, "operator": operator,
                                "value": field_value(raw, ftype, operator)}
        if operator == "between":
            node["value2"] = field_value(_first(attrs, "value2"), ftype, operator)
        return node
    if kind == "subscription":
        node = {"type": "subscription", "resource": _int_or_none(_first(attrs, "resource")),
                "channel": _first(attrs, "channel").strip() or None,
                "statuses": [s for s in attrs.get("statuses", []) if s] or ["subscribed"],
                "negate": negate}
        category = _first(attrs, "category").strip()
        if category:
            node["category"] = category
        return node
    if kind == "event":
        name = _first(attrs, "event").strip()
        op = _first(attrs, "count_op", "exists") or "exists"
        count: dict[str, Any] = {"op": op}
        if op in ("at_least", "at_most"):
            n = _first(attrs, "count_n").strip()
            count["n"] = _number(n, whole=True) if n else 1
        return {"type": "event", "event": name, "count": count, "window": _window(attrs),
                "where": _event_where(attrs, types.properties.get(name, {}))}
    if kind == "segment":
        return {"type": "segment", "segment": _int_or_none(_first(attrs, "segment")), "negate": negate}
    if kind == "sample":
        node = {"type": "sample", "percent": _number(_first(attrs, "percent", "10"), whole=False)}
        salt = _first(attrs, "salt").strip()
        if salt:
            node["salt"] = salt
        return node
    return None


class TreeTypes:
    """What typing a tree's values needs: field types by name, event property types by event."""

    def __init__(self, fields: dict[str, str] | None = None, properties: dict[str, dict[str, str]] | None = None) -> None:
        self.fields = fields or {}
        self.properties = properties or {}


def has_tree_fields(data: QueryDict) -> bool:
    return any(k.startswith("c.") for k in data)


def tree_from_fields(data: QueryDict, types: TreeTypes) -> dict[str, Any]:
    """The condition tree the builder's fields describe (see the module docstring)."""
    attrs: dict[tuple[int, ...], dict[str, list[str]]] = {}
    for key in data:
        m = _NAME_RE.match(key)
        if not m:
            continue
        indexes = path_indexes(m.group(1))
        if len(indexes) > MAX_DEPTH:
            continue
        attrs.setdefault(indexes, {})[m.group(2)] = [v[:2000] for v in data.getlist(key)][:200]
        if len(attrs) > MAX_NODES:
            break
    attrs.setdefault((), {"type": ["group"]})

    def build(at: tuple[int, ...]) -> dict[str, Any] | None:
        kids = sorted({k[: len(at) + 1] for k in attrs if len(k) > len(at) and k[: len(at)] == at})
        children = [c for c in (build(k) for k in kids) if c is not None]
        mine = dict(attrs.get(at, {}))
        if at == ():
            mine["type"] = ["group"]
        return _node(mine, children, types)

    return build(()) or {"type": "group", "op": "and", "negate": False, "items": []}


def tree_from_json(raw: str) -> dict[str, Any] | None:
    """The hidden JSON field's tree; None when it is empty or not a JSON object."""
    if not raw or not raw.strip():
        return None
    try:
        tree = json.loads(raw)
    except ValueError:
        return None
    return tree if isinstance(tree, dict) else None


def empty_tree() -> dict[str, Any]:
    return {"type": "group", "op": "and", "negate": False, "items": []}


# --- structural edits: add, remove ----------------------------------------------------------------

NEW_NODES: dict[str, dict[str, Any]] = {
    "field": {"type": "field", "field": "", "operator": "", "value": None},
    "event": {"type": "event", "event": "", "count": {"op": "exists"}, "window": {"last_days": 30}, "where": {}},
    "subscription": {"type": "subscription", "resource": None, "channel": None, "statuses": ["subscribed"],
                     "negate": False},
    "segment": {"type": "segment", "segment": None, "negate": False},
    "sample": {"type": "sample", "percent": 10},
    "group": {"type": "group", "op": "or", "negate": False, "items": []},
}


def node_at(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: Any = tree
    for i in path_indexes(path):
        items = node.get("items") if isinstance(node, dict) else None
        if not isinstance(items, list) or i >= len(items):
            return None
        node = items[i]
    return node if isinstance(node, dict) else None


def apply_action(tree: dict[str, Any], action: str) -> str | None:
    """Apply a builder button to the tree in place: "add:<group path>:<kind>", "remove:<path>",
    "addprop:<event path>", "rmprop:<event path>:<i>". Returns the path to show (the new or
    changed node), or None when the action names nothing."""
    parts = action.split(":")
    verb = parts[0]
    if verb == "add" and len(parts) == 3 and parts[2] in NEW_NODES:
        group = node_at(tree, parts[1])
        if group is None or group.get("type") != "group" or len(path_indexes(parts[1])) >= MAX_DEPTH:
            return None
        items = group.setdefault("items", [])
        new = json.loads(json.dumps(NEW_NODES[parts[2]]))
        if parts[2] == "group":
            new["items"] = [json.loads(json.dumps(NEW_NODES["field"]))]
        items.append(new)
        return ".".join(p for p in (parts[1], f"items[{len(items) - 1}]") if p)
    if verb == "remove" and len(parts) == 2 and parts[1]:
        indexes = path_indexes(parts[1])
        parent = node_at(tree, node_path(indexes[:-1]))
        if parent is None or not isinstance(parent.get("items"), list) or indexes[-1] >= len(parent["items"]):
            return None
        del parent["items"][indexes[-1]]
        return node_path(indexes[:-1])
    if verb in ("addprop", "rmprop") and len(parts) >= 2:
        event = node_at(tree, parts[1])
        if event is None or event.get("type") != "event":
            return None
        where = event.get("where") if isinstance(event.get("where"), dict) else {}
        props = where.get("properties") if isinstance(where.get("properties"), list) else []
        if verb == "addprop":
            props.append({"name": "", "operator": "eq", "value": None})
        elif len(parts) == 3 and parts[2].isdigit() and int(parts[2]) < len(props):
            del props[int(parts[2])]
        where["properties"] = props
        event["where"] = where
        return parts[1]
    return None


# --- the segment's own fields ---------------------------------------------------------------------


class SegmentForm(StyledForm):
    """Name, description, kind and (updatable) schedule; the tree comes from the builder."""

    KIND_CHOICES = [
        ("dynamic", "Dynamic: evaluated whenever it is used, always current"),
        ("updatable", "Updatable: recalculated on a schedule, members kept in between"),
        ("static", "Static: a snapshot of who matches now, then a fixed list"),
    ]
    SCHEDULE_CHOICES = [("every_hours", "Every N hours"), ("daily_at", "Every day at"), ("cron", "Cron expression")]

    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    description = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial="dynamic", widget=forms.RadioSelect)
    schedule_type = forms.ChoiceField(choices=SCHEDULE_CHOICES, required=False, initial="every_hours", label="Update",
                                      widget=forms.Select(attrs={"class": "w-auto", "aria-label": "Kind of schedule"}))
    every_hours = forms.IntegerField(required=False, min_value=1, max_value=24 * 31, initial=24, label="Hours",
                                     widget=forms.NumberInput(attrs={"style": "width: 6rem"}))
    daily_at = forms.TimeField(required=False, label="At", widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    cron = forms.CharField(required=False, max_length=100, label="Cron",
                           widget=forms.TextInput(attrs={"placeholder": "0 6 * * 1-5", "class": "font-monospace"}))
    conditions = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].widget.attrs["class"] = "form-check-input"

    @staticmethod
    def initial_for(segment: Any) -> dict[str, Any]:
        schedule = segment.schedule or {}
        initial: dict[str, Any] = {"name": segment.name, "description": segment.description, "kind": segment.kind}
        if "every_hours" in schedule:
            initial.update(schedule_type="every_hours", every_hours=schedule["every_hours"])
        elif "daily_at" in schedule:
            initial.update(schedule_type="daily_at", daily_at=schedule["daily_at"])
        elif "cron" in schedule:
            initial.update(schedule_type="cron", cron=schedule["cron"])
        return initial

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("kind") == "updatable":
            kind = data.get("schedule_type") or "every_hours"
            if kind == "every_hours" and not data.get("every_hours"):
                self.add_error("every_hours", "How many hours between updates?")
            elif kind == "daily_at" and not data.get("daily_at"):
                self.add_error("daily_at", "At what time of day?")
            elif kind == "cron" and not (data.get("cron") or "").strip():
                self.add_error("cron", "Enter a cron expression, such as 0 6 * * *.")
        return data

    def schedule(self) -> dict[str, Any] | None:
        """The schedule as the core stores it, or None (not updatable)."""
        data = self.cleaned_data
        if data.get("kind") != "updatable":
            return None
        kind = data.get("schedule_type") or "every_hours"
        if kind == "daily_at":
            return {"daily_at": data["daily_at"].strftime("%H:%M")}
        if kind == "cron":
            return {"cron": " ".join(data["cron"].split())}
        return {"every_hours": data["every_hours"]}


class MembersAddForm(StyledForm):
    """Static segments: add (or remove) members by a match key, from a CSV file or pasted values."""

    key = forms.ChoiceField(label="Find profiles by")
    values = forms.CharField(required=False, label="Paste values", widget=forms.Textarea(
        attrs={"rows": 4, "placeholder": "anna@example.com\nben@example.com", "class": "font-monospace"}))
    file = forms.FileField(required=False, label="…or upload a CSV", help_text="The first column, or the column named "
                           "like the key; a header row is skipped. Up to 100,000 values.")

    MAX_VALUES = 100_000
    MAX_BYTES = 20 * 1024 * 1024

    def __init__(self, *args: Any, keys: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = keys

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        key = data.get("key") or ""
        values: list[str] = []
        upload = data.get("file")
        if upload is not None:
            if upload.size > self.MAX_BYTES:
                self.add_error("file", "The file is larger than 20 MB.")
                return data
            try:
                text = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                self.add_error("file", "Save the file as UTF-8 CSV and try again.")
                return data
            values += csv_values(text, key)
        values += [line.strip() for line in (data.get("values") or "").splitlines() if line.strip()]
        # One of each, in the order given.
        values = list(dict.fromkeys(values))
        if not values:
            self.add_error(None, "Paste some values or choose a file.")
        elif len(values) > self.MAX_VALUES:
            self.add_error(None, f"That is {len(values):,} values; add at most {self.MAX_VALUES:,} at a time.")
        data["parsed"] = values
        return data


def csv_values(text: str, key: str) -> list[str]:
    """The values of a CSV's key column: the column named like the key (then a header row is
    skipped), else the first column; a first row that looks like a header is skipped too."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]
    col = 0
    skip = 0
    if key.lower() in header:
        col, skip = header.index(key.lower()), 1
    elif header and header[0] in ("email", "e-mail", "phone", "id", "profile", "profile_id", key.lower()):
        skip = 1
    return [r[col].strip() for r in rows[skip:] if len(r) > col and r[col].strip()]


# --- the live count: conditions still being filled in ---------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def unfinished_reason(node: Any) -> str:
    """Why a condition is not finished yet (a choice or a value still to make), or "" when it is.
    The live count leaves such conditions out instead of calling them errors; saving does not."""
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "field":
        if not node.get("field"):
            return "Choose a field"
        op = node.get("operator") or ""
        if op and op not in NO_VALUE_OPERATORS and _blank(node.get("value")):
            return "Enter a value"
        if op == "between" and _blank(node.get("value2")):
            return "Enter the second value"
    elif kind == "event":
        if not node.get("event"):
            return "Choose an event"
        window = node.get("window") if isinstance(node.get("window"), dict) else {}
        if any(_blank(v) for v in window.values()):
            return "Finish the time window"
        if (node.get("count") or {}).get("op") in ("at_least", "at_most") and _blank((node.get("count") or {}).get("n")):
            return "Enter how many times"
        for p in ((node.get("where") or {}).get("properties") or []):
            if isinstance(p, dict) and p.get("operator") not in NO_VALUE_OPERATORS and _blank(p.get("value")):
                return "Enter the property's value"
    elif kind in _REQUIRED and _blank(node.get(_REQUIRED[kind][0])):
        return _REQUIRED[kind][1]
    return ""


_REQUIRED = {"subscription": ("resource", "Choose a resource"), "segment": ("segment", "Choose a segment"),
             "sample": ("percent", "Enter a percentage")}


def prune_unfinished(tree: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The tree without its unfinished conditions (and groups left empty by that), for the live
    count. Returns (pruned tree, pruned path -> original path, original path -> why unfinished)."""
    paths: dict[str, str] = {"": ""}
    unfinished: dict[str, str] = {}

    def walk(node: dict[str, Any], old: str, new: str) -> dict[str, Any] | None:
        paths[new] = old
        if node.get("type") != "group":
            reason = unfinished_reason(node)
            if reason:
                unfinished[old] = reason
                return None
            return node
        items = []
        for i, child in enumerate(node.get("items") or []):
            if not isinstance(child, dict):
                continue
            kept = walk(child, ".".join(p for p in (old, f"items[{i}]") if p),
                        ".".join(p for p in (new, f"items[{len(items)}]") if p))
            if kept is not None:
                items.append(kept)
        if old and not items and node.get("items"):
            return None  # a nested group with nothing finished in it yet
        return {**node, "items": items}

    pruned = walk(tree, "", "") or {**tree, "items": []}
    return pruned, paths, unfinished


def unprune_path(path: str, paths: dict[str, str]) -> str:
    """An error path of the pruned tree as a path of the tree the person sees."""
    m = re.match(r"^((?:items\[\d+\](?:\.|$))*)(.*)$", path or "")
    node = (m.group(1) if m else "").rstrip(".")
    rest = m.group(2) if m else path
    original = paths.get(node, node)
    return ".".join(p for p in (original, rest) if p)
