"""The condition tree of a segment: its format (the contract the builder UI and the API use),
and its validation against a database's schema, the event-type catalogue, the database's
resources and the account's segments.

The tree (JSON). The root is a group.

    group:        {"type": "group", "op": "and" | "or", "negate": false, "items": [node, ...]}
    field:        {"type": "field", "field": "<field name>", "operator": "<op>", "value": ..., "value2": ...}
    subscription: {"type": "subscription", "resource": <resource id>, "channel": "email",
                   "statuses": ["subscribed"], "category": "<category key>" | null, "negate": false}
    event:        {"type": "event", "event": "<event type name>",
                   "count": {"op": "exists" | "not_exists" | "at_least" | "at_most", "n": 1},
                   "window": null | {"last_days": 30} | {"from": "2026-11-01", "to": "2026-11-28"}
                             | {"since": "2026-01-01"},
                   "where": {"mailing_id": 7, "link_id": 3, "resource_id": 2, "channel": "email",
                             "template_id": 5,
                             "properties": [{"name": "sku", "operator": "eq", "value": "X"}]}}
    segment:      {"type": "segment", "segment": <segment id>, "negate": false}
    sample:       {"type": "sample", "percent": 10, "salt": "<kept once saved>"}

Meaning (the SQL compiler, `segments.compiler`, and the Python evaluator, `segments.evaluate`,
implement exactly this; property tests hold them to it):

- A group of "and" matches when every item does (an empty one: everyone), "or" when one does
  (an empty one: no one); `negate` turns the result over.
- A field condition compares the profile's value as its field's type (numbers numerically, dates
  as dates, datetimes as instants). A profile without a value ("empty": no key in `data`, NULL or
  "" in a column) matches no comparison; the negative operators (ne, not_in, not_contains) are
  exactly "not" their positive one, so they match empty values too. Values are normalised like
  stored values (an e-mail lowercased, a phone in E.164, an enum choice as spelled in the schema).
  Text `contains` / `starts_with` ignore case (ASCII letters on SQLite). Operators by type:

    string, text, email, phone: eq ne contains not_contains starts_with in not_in empty set
    enum:                       eq ne in not_in empty set
    integer, decimal:           eq ne gt gte lt lte between in not_in empty set
    boolean:                    eq ne empty set
    date:                       eq ne gt gte lt lte between before after in_last_days in_next_days
                                anniversary_in_days empty set
    datetime:                   gt gte lt lte between before after in_last_days in_next_days empty set
    list:                       list_contains empty set
    json:                       empty set

  `between` takes value <= value2, both ends included; `before`/`after` are lt/gt. `in` takes a
  list (value). Relative operators take a whole number of days N (value, 0..36,500) and count
  from today in the account's timezone (dates) or from now (datetimes), both ends included:
  in_last_days is [today - N, today], in_next_days [today, today + N]. anniversary_in_days
  (birthday-like, 0..366) matches when the date's month and day fall within the next N days
  counted from today in the profile's own timezone (its `timezone` field, else the account's);
  29 February counts only in years that have one.
- A subscription condition matches a profile with at least one subscription to the resource, on
  the channel, in one of the statuses (default: subscribed), and, with a category, not opted out
  of that category. `negate`: has none.
- An event condition counts the profile's events of the type within the window (last_days: the
  last N x 24 hours; from/to: whole days in the account's timezone, both included; since: from
  that day on) that match every `where` filter: exists (>= 1), not_exists (0), at_least n, at_most n
  (which includes 0). Property filters use the type's declared properties (with the field
  operators of the property's type; anniversary excepted) and skip events stored "untyped" (a
  loose type's events whose properties did not match the schema). `template_id` compares the
  events' `template_id` property (message events carry it as a number).
- A segment condition matches members of another segment of the same database: stored members
  for static and updatable segments, the segment's own conditions, evaluated now, for a dynamic
  one. Cycles are refused. A segment that is broken breaks the ones that use it.
- A sample condition keeps a stable `percent` of profiles: a hash of (profile id, salt) mod 100
  is below percent. The same profile stays in (or out) while the salt stays the same.

`clean_conditions(tree, catalog)` returns the normalised tree or raises `ConditionError`, whose
`errors` map the path of each offending node (e.g. "items[2].items[0].value") to a message a
person can act on. The same check runs when a saved segment is evaluated: a field, type,
resource or segment removed since (or a field whose type changed) makes the segment broken.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from accounts.models import Account
from history.models import EventType
from history.services.ingest import CHANNELS as EVENT_CHANNELS
from profiles.fieldtypes import (
    CONVERTERS,
    Context,
    FieldType,
    FieldValueError,
    is_empty,
    to_date,
    to_string,
)
from profiles.models import ProfileDatabase
from resources.models import Resource
from resources.models import Status as SubscriptionStatus

MAX_DEPTH = 8
MAX_NODES = 200
MAX_LIST_VALUES = 1000
MAX_DAYS = 36_500
MAX_ANNIVERSARY_DAYS = 366
MAX_COUNT = 1_000_000
MAX_PROPERTY_FILTERS = 10
MAX_SALT = 64

NODE_TYPES = ("group", "field", "subscription", "event", "segment", "sample")
COUNT_OPS = ("exists", "not_exists", "at_least", "at_most")

# Operators by value shape.
NO_VALUE = frozenset({"empty", "set"})
LIST_VALUE = frozenset({"in", "not_in"})
PAIR_VALUE = frozenset({"between"})
DAYS_VALUE = frozenset({"in_last_days", "in_next_days", "anniversary_in_days"})
TEXT_MATCH = frozenset({"contains", "not_contains", "starts_with"})
# The negative operators: exactly "not" of their positive one (so they match empty values).
COMPLEMENT = {"ne": "eq", "not_in": "in", "not_contains": "contains"}
ALIASES = {"before": "lt", "after": "gt"}

_TEXTUAL = ("eq", "ne", "contains", "not_contains", "starts_with", "in", "not_in", "empty", "set")
_ORDERED = ("gt", "gte", "lt", "lte", "between")
OPERATORS: dict[str, tuple[str, ...]] = {
    FieldType.STRING: _TEXTUAL,
    FieldType.TEXT: _TEXTUAL,
    FieldType.EMAIL: _TEXTUAL,
    FieldType.PHONE: _TEXTUAL,
    FieldType.ENUM: ("eq", "ne", "in", "not_in", "empty", "set"),
    FieldType.INTEGER: ("eq", "ne", *_ORDERED, "in", "not_in", "empty", "set"),
    FieldType.DECIMAL: ("eq", "ne", *_ORDERED, "in", "not_in", "empty", "set"),
    FieldType.BOOLEAN: ("eq", "ne", "empty", "set"),
    FieldType.DATE: ("eq", "ne", *_ORDERED, "before", "after", "in_last_days", "in_next_days", "anniversary_in_days",
                     "empty", "set"),
    FieldType.DATETIME: (*_ORDERED, "before", "after", "in_last_days", "in_next_days", "empty", "set"),
    FieldType.LIST: ("list_contains", "empty", "set"),
    FieldType.JSON: ("empty", "set"),
}
OPERATOR_LABELS = {
    "eq": "is", "ne": "is not", "contains": "contains", "not_contains": "does not contain", "starts_with": "starts with",
    "in": "is one of", "not_in": "is none of", "gt": "is more than", "gte": "is at least", "lt": "is less than",
    "lte": "is at most", "between": "is between", "empty": "is empty", "set": "is set", "before": "is before",
    "after": "is after", "in_last_days": "in the last N days", "in_next_days": "in the next N days",
    "anniversary_in_days": "anniversary within N days", "list_contains": "contains",
}


class SegmentError(Exception):
    """A request about segments that cannot be carried out; `errors` maps a field (or the path of
    a condition) to why."""

    def __init__(self, errors: dict[str, str] | str) -> None:
        if isinstance(errors, str):
            errors = {"": errors}
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" if k else v for k, v in self.errors.items()))

    @property
    def path(self) -> str:
        return next(iter(self.errors), "")

    @property
    def message(self) -> str:
        return next(iter(self.errors.values()), "")


class ConditionError(SegmentError):
    """Conditions (or a schedule) that cannot be used: `errors` maps each offending node's path,
    such as "items[2].items[0].value", to a message; `path` and `message` are the first."""


class SegmentBroken(SegmentError):
    """The segment cannot be evaluated (a field, type, resource or segment it names is gone):
    it is never treated as empty, and never used as an audience."""


# --- the catalogue: what conditions may name ------------------------------------------------------


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str
    label: str
    is_system: bool
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class TypeInfo:
    id: int
    name: str
    label: str
    # Declared properties: name -> (type, choices)
    properties: dict[str, tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class ResourceInfo:
    id: int
    name: str
    channels: tuple[str, ...]
    categories: tuple[str, ...]


@dataclass(frozen=True)
class SegmentInfo:
    id: int
    name: str
    kind: str
    conditions: Any
    state: str
    problem: str = ""


@dataclass
class Catalog:
    """Everything a tree of `database` may name, loaded once (four queries) for a validation, a
    compilation or an explanation."""

    account: Account
    database: ProfileDatabase
    fields: dict[str, FieldInfo]
    types: dict[str, TypeInfo]
    resources: dict[int, ResourceInfo]
    segments: dict[int, SegmentInfo]
    ctx: Context
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, database: ProfileDatabase) -> Catalog:
        account = database.account
        fields = {
            f.name: FieldInfo(f.name, f.type, f.label, f.is_system, tuple(f.choices or ()))
            for f in database.fields.all()
        }
        types = {}
        for et in EventType.objects.visible_to(account).only("id", "name", "label", "properties"):
            props = {
                p["name"]: (p.get("type") or "string", tuple(p.get("choices") or ()))
                for p in (et.properties or []) if isinstance(p, dict) and p.get("name")
            }
            types[et.name] = TypeInfo(et.pk, et.name, et.label or et.name, props)
        resources = {
            r.pk: ResourceInfo(r.pk, r.name, tuple(r.channels or ()), tuple(r.category_keys))
            for r in Resource.objects.for_account(account).filter(database=database)
        }
        from segments.models import Segment

        segments = {
            s.pk: SegmentInfo(s.pk, s.name, s.kind, s.conditions, s.state, s.problem)
            for s in Segment.objects.for_account(account).filter(database=database).only(
                "id", "name", "kind", "conditions", "state", "problem")
        }
        ctx = Context(region=account.default_phone_region, tz=account.tzinfo)
        return cls(account=account, database=database, fields=fields, types=types, resources=resources,
                   segments=segments, ctx=ctx)

    @property
    def types_by_id(self) -> dict[int, TypeInfo]:
        if "types_by_id" not in self.extra:
            self.extra["types_by_id"] = {t.id: t for t in self.types.values()}
        return self.extra["types_by_id"]


# --- validation ------------------------------------------------------------------------------------


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


class _Cleaner:
    def __init__(self, catalog: Catalog, segment_id: int | None, fill_salts: bool) -> None:
        self.catalog = catalog
        self.segment_id = segment_id
        self.fill_salts = fill_salts
        self.errors: dict[str, str] = {}
        self.nodes = 0

    def fail(self, path: str, message: str) -> None:
        self.errors.setdefault(path, message)

    # nodes

    def node(self, raw: Any, path: str, depth: int) -> dict[str, Any] | None:
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.fail(path, f"a segment has at most {MAX_NODES} conditions")
        if not isinstance(raw, dict):
            self.fail(path, "must be a condition (an object with a type)")
            return None
        kind = raw.get("type")
        if kind not in NODE_TYPES:
            self.fail(_at(path, "type"), f"{_show(kind)} is not a condition type (one of {', '.join(NODE_TYPES)})")
            return None
        return getattr(self, kind)(raw, path, depth)

    def group(self, raw: dict[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        if depth > MAX_DEPTH:
            self.fail(path, f"groups nest at most {MAX_DEPTH} deep")
            return None
        op = raw.get("op", "and")
        if op not in ("and", "or"):
            self.fail(_at(path, "op"), f"{_show(op)} is not and / or")
        items = raw.get("items", [])
        if not isinstance(items, list):
            self.fail(_at(path, "items"), "must be a list of conditions")
            items = []
        out = []
        for i, item in enumerate(items):
            node = self.node(item, _at(path, f"items[{i}]"), depth + 1)
            if node is not None:
                out.append(node)
        return {"type": "group", "op": op, "negate": self.flag(raw, "negate", path), "items": out}

    def flag(self, raw: dict[str, Any], key: str, path: str) -> bool:
        value = raw.get(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.fail(_at(path, key), "must be true or false")
            return False
        return value

    def field(self, raw: dict[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        name = raw.get("field")
        f = self.catalog.fields.get(name) if isinstance(name, str) else None
        if f is None:
            self.fail(_at(path, "field"), f"there is no field {_show(name)} in {self.catalog.database.name}")
            return None
        clean = self.predicate(f.type, f.choices, f.label, raw, path, allow_anniversary=True)
        if clean is None:
            return None
        return {"type": "field", "field": f.name, **clean}

    def predicate(self, type_: str, choices: tuple[str, ...], label: str, raw: dict[str, Any], path: str,
                  *, allow_anniversary: bool) -> dict[str, Any] | None:
        """operator, value, value2 of a comparison on a value of `type_`, normalised."""
        op = raw.get("operator")
        ops = OPERATORS.get(type_, ())
        if not allow_anniversary:
            ops = tuple(o for o in ops if o != "anniversary_in_days")
        if op not in ops:
            self.fail(_at(path, "operator"),
                      f"{_show(op)} does not apply to {label} ({FieldType(type_).label.lower() if type_ in FieldType.values else type_}); "
                      f"use one of {', '.join(ops)}")
            return None
        out: dict[str, Any] = {"operator": op}
        value, value2 = raw.get("value"), raw.get("value2")
        if op in NO_VALUE:
            return out
        if op in DAYS_VALUE:
            limit = MAX_ANNIVERSARY_DAYS if op == "anniversary_in_days" else MAX_DAYS
            n = self.whole(value, _at(path, "value"), 0, limit, "days")
            if n is None:
                return None
            out["value"] = n
            return out
        ctx = Context(region=self.catalog.ctx.region, tz=self.catalog.ctx.tz, choices=choices)
        if op in LIST_VALUE:
            if not isinstance(value, list) or not value:
                self.fail(_at(path, "value"), "must be a list of one or more values")
                return None
            if len(value) > MAX_LIST_VALUES:
                self.fail(_at(path, "value"), f"at most {MAX_LIST_VALUES:,} values")
                return None
            items = []
            for i, v in enumerate(value):
                c = self.value(type_, op, v, ctx, _at(path, f"value[{i}]"))
                if c is None:
                    return None
                if c not in items:
                    items.append(c)
            out["value"] = items
            return out
        v1 = self.value(type_, op, value, ctx, _at(path, "value"))
        if v1 is None:
            return None
        out["value"] = v1
        if op in PAIR_VALUE:
            v2 = self.value(type_, op, value2, ctx, _at(path, "value2"))
            if v2 is None:
                return None
            if _order_key(type_, v1) > _order_key(type_, v2):
                self.fail(_at(path, "value2"), "must not be less than the first value")
                return None
            out["value2"] = v2
        return out

    def value(self, type_: str, op: str, raw: Any, ctx: Context, path: str) -> Any:
        if raw is None or is_empty(raw):
            self.fail(path, "a value is required")
            return None
        try:
            if op in TEXT_MATCH:
                text = to_string(raw, ctx)
                if type_ == FieldType.EMAIL:
                    text = text.lower()
                elif type_ == FieldType.PHONE:
                    text = ("+" if text.startswith("+") else "") + "".join(c for c in text if c.isdigit())
                if not text:
                    raise FieldValueError("a value is required")
                return text
            if op == "list_contains":
                text = to_string(raw, ctx)
                if len(text) > 200:
                    raise FieldValueError("longer than 200 characters")
                return text
            if type_ == FieldType.JSON or type_ == FieldType.LIST:
                raise FieldValueError("cannot be compared")
            return CONVERTERS[type_](raw, ctx)
        except FieldValueError as exc:
            self.fail(path, str(exc))
            return None

    def whole(self, raw: Any, path: str, low: int, high: int, what: str) -> int | None:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            self.fail(path, f"must be a whole number of {what}")
            return None
        try:
            n = int(raw)
        except ValueError:
            self.fail(path, f"must be a whole number of {what}")
            return None
        if not low <= n <= high:
            self.fail(path, f"must be between {low:,} and {high:,} {what}")
            return None
        return n

    def subscription(self, raw: dict[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        rid = raw.get("resource")
        resource = self.catalog.resources.get(rid) if isinstance(rid, int) and not isinstance(rid, bool) else None
        if resource is None:
            self.fail(_at(path, "resource"), f"there is no resource {_show(rid)} for {self.catalog.database.name}")
            return None
        channel = raw.get("channel")
        if channel not in resource.channels:
            self.fail(_at(path, "channel"), f"{resource.name} has no channel {_show(channel)} "
                                            f"(it has {', '.join(resource.channels) or 'none'})")
            return None
        statuses = raw.get("statuses") or [SubscriptionStatus.SUBSCRIBED]
        if not isinstance(statuses, list) or any(s not in SubscriptionStatus.values for s in statuses):
            self.fail(_at(path, "statuses"), f"must be a list of statuses ({', '.join(SubscriptionStatus.values)})")
            return None
        category = raw.get("category") or None
        if category is not None and category not in resource.categories:
            self.fail(_at(path, "category"), f"{resource.name} has no category {_show(category)}")
            return None
        return {"type": "subscription", "resource": resource.id, "channel": channel,
                "statuses": sorted(set(statuses), key=SubscriptionStatus.values.index), "category": category,
                "negate": self.flag(raw, "negate", path)}

    def event(self, raw: dict[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        name = raw.get("event")
        et = self.catalog.types.get(name) if isinstance(name, str) else None
        if et is None:
            self.fail(_at(path, "event"), f"there is no event type {_show(name)}")
            return None
        count = raw.get("count") or {"op": "exists"}
        if not isinstance(count, dict) or count.get("op") not in COUNT_OPS:
            self.fail(_at(path, "count.op"), f"must be one of {', '.join(COUNT_OPS)}")
            return None
        op = count["op"]
        n = 1
        if op in ("at_least", "at_most"):
            got = self.whole(count.get("n", 1), _at(path, "count.n"), 1 if op == "at_least" else 0, MAX_COUNT, "times")
            if got is None:
                return None
            n = got
        window = self.window(raw.get("window"), _at(path, "window"))
        if window is False:
            return None
        where = self.where(raw.get("where") or {}, et, _at(path, "where"))
        if where is None:
            return None
        return {"type": "event", "event": et.name, "count": {"op": op, "n": n}, "window": window, "where": where}

    def window(self, raw: Any, path: str) -> dict[str, Any] | bool | None:
        if raw in (None, {}):
            return None
        if not isinstance(raw, dict):
            self.fail(path, 'must be null, {"last_days": N}, {"from": date, "to": date} or {"since": date}')
            return False
        if "last_days" in raw:
            n = self.whole(raw["last_days"], _at(path, "last_days"), 1, MAX_DAYS, "days")
            return False if n is None else {"last_days": n}
        if "since" in raw:
            d = self.day(raw["since"], _at(path, "since"))
            return False if d is None else {"since": d}
        if "from" in raw or "to" in raw:
            start, end = self.day(raw.get("from"), _at(path, "from")), self.day(raw.get("to"), _at(path, "to"))
            if start is None or end is None:
                return False
            if start > end:
                self.fail(_at(path, "to"), "must not be before the start")
                return False
            return {"from": start, "to": end}
        self.fail(path, 'must be null, {"last_days": N}, {"from": date, "to": date} or {"since": date}')
        return False

    def day(self, raw: Any, path: str) -> str | None:
        if raw is None or is_empty(raw):
            self.fail(path, "a date is required")
            return None
        try:
            return to_date(raw, self.catalog.ctx)
        except FieldValueError as exc:
            self.fail(path, str(exc))
            return None

    def where(self, raw: Any, et: TypeInfo, path: str) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.fail(path, "must be an object of filters")
            return None
        out: dict[str, Any] = {}
        for key in ("mailing_id", "link_id", "template_id", "resource_id"):
            if raw.get(key) is None:
                continue
            n = self.whole(raw[key], _at(path, key), 1, 2**63 - 1, "(an id)")
            if n is None:
                return None
            if key == "resource_id" and n not in self.catalog.resources:
                self.fail(_at(path, key), f"there is no resource {n} for {self.catalog.database.name}")
                return None
            out[key] = n
        channel = raw.get("channel")
        if channel not in (None, ""):
            if channel not in EVENT_CHANNELS:
                self.fail(_at(path, "channel"), f"{_show(channel)} is not a channel "
                                                f"({', '.join(sorted(c for c in EVENT_CHANNELS if c))})")
                return None
            out["channel"] = channel
        unknown = set(raw) - {"mailing_id", "link_id", "template_id", "resource_id", "channel", "properties"}
        if unknown:
            self.fail(_at(path, sorted(unknown)[0]), "is not a filter of events")
            return None
        props = raw.get("properties") or []
        if not isinstance(props, list):
            self.fail(_at(path, "properties"), "must be a list of property filters")
            return None
        if len(props) > MAX_PROPERTY_FILTERS:
            self.fail(_at(path, "properties"), f"at most {MAX_PROPERTY_FILTERS} property filters")
            return None
        clean_props = []
        for i, p in enumerate(props):
            ppath = _at(path, f"properties[{i}]")
            pname = p.get("name") if isinstance(p, dict) else None
            if pname not in et.properties:
                declared = ", ".join(sorted(et.properties)) or "none"
                self.fail(_at(ppath, "name"), f"{et.label} has no property {_show(pname)} (declared: {declared})")
                return None
            ptype, pchoices = et.properties[pname]
            pred = self.predicate(ptype, pchoices, pname, p, ppath, allow_anniversary=False)
            if pred is None:
                return None
            clean_props.append({"name": pname, **pred})
        if clean_props:
            out["properties"] = clean_props
        return out

    def segment(self, raw: dict[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        sid = raw.get("segment")
        info = self.catalog.segments.get(sid) if isinstance(sid, int) and not isinstance(sid, bool) else None
        if info is None:
            self.fail(_at(path, "segment"), f"there is no segment {_show(sid)} in {self.catalog.database.name}")
            return None
        if sid == self.segment_id:
            self.fail(_at(path, "segment"), "a segment cannot contain itself")
            return None
        if self.segment_id is not None and _reaches(self.catalog, sid, self.segment_id):
            self.fail(_at(path, "segment"), f"“{info.name}” uses this segment (directly or through others): "
                                            "that would be a cycle")
            return None
        return {"type": "segment", "segment": sid, "negate": self.flag(raw, "negate", path)}

    def sample(self, raw: dict[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        percent = self.whole(raw.get("percent"), _at(path, "percent"), 0, 100, "percent")
        if percent is None:
            return None
        salt = raw.get("salt")
        if salt in (None, "") and self.fill_salts:
            salt = secrets.token_hex(8)
        if not isinstance(salt, str) or not salt or len(salt) > MAX_SALT:
            self.fail(_at(path, "salt"), f"must be text of 1 to {MAX_SALT} characters")
            return None
        return {"type": "sample", "percent": percent, "salt": salt}


def _order_key(type_: str, value: Any) -> Any:
    if type_ == FieldType.DATE:
        return date.fromisoformat(value)
    return value


def segment_refs(tree: Any) -> Iterator[tuple[str, int]]:
    """(path, segment id) of every segment condition in a (cleaned or stored) tree."""

    def walk(node: Any, path: str) -> Iterator[tuple[str, int]]:
        if not isinstance(node, dict):
            return
        if node.get("type") == "segment" and isinstance(node.get("segment"), int):
            yield path, node["segment"]
        for i, item in enumerate(node.get("items") or [] if node.get("type") == "group" else []):
            yield from walk(item, _at(path, f"items[{i}]"))

    yield from walk(tree, "")


def _reaches(catalog: Catalog, start: int, target: int) -> bool:
    """Whether segment `start` uses `target`, directly or through other segments."""
    seen: set[int] = set()
    todo = [start]
    while todo:
        sid = todo.pop()
        if sid == target:
            return True
        if sid in seen:
            continue
        seen.add(sid)
        info = catalog.segments.get(sid)
        if info is not None:
            todo.extend(ref for _, ref in segment_refs(info.conditions))
    return False


def clean_conditions(tree: Any, catalog: Catalog, *, segment_id: int | None = None, fill_salts: bool = True) -> dict[str, Any]:
    """The normalised tree, or ConditionError naming every offending node by its path.

    `segment_id` is the segment the tree belongs to (for cycle detection); `fill_salts` gives
    sample conditions without a salt a new random one (keep the returned tree to keep the sample).
    """
    cleaner = _Cleaner(catalog, segment_id, fill_salts)
    if tree is None:
        tree = {"type": "group", "op": "and", "items": []}
    if not isinstance(tree, dict) or tree.get("type") != "group":
        raise ConditionError({"": 'the conditions must be a group: {"type": "group", "op": "and", "items": [...]}'})
    out = cleaner.group(tree, "", 1)
    if cleaner.errors or out is None:
        raise ConditionError(cleaner.errors or {"": "the conditions cannot be used"})
    return out


def conditions_warnings(tree: dict[str, Any], catalog: Catalog) -> list[tuple[str, str]]:
    """(path, message) for conditions that are valid but costly on a big database, for the
    builder to show before saving."""
    out: list[tuple[str, str]] = []

    def walk(node: dict[str, Any], path: str) -> None:
        kind = node.get("type")
        if kind == "group":
            for i, item in enumerate(node["items"]):
                walk(item, _at(path, f"items[{i}]"))
        elif kind == "event":
            if node.get("window") is None:
                out.append((path, "no time window: every event of this type ever recorded is read"))
            elif (node["window"].get("last_days") or 0) > 365:
                out.append((path, "a window of more than a year reads a large part of the history"))
            if node["where"].get("properties") and node.get("window") is None:
                out.append((path, "property filters are checked event by event: narrow the time window"))
        elif kind == "field":
            f = catalog.fields.get(node["field"])
            if f is not None and not f.is_system and node["operator"] in ("contains", "not_contains"):
                out.append((path, f"“{f.label}” {OPERATOR_LABELS[node['operator']]}: every profile is read"))

    walk(tree, "")
    return out


def describe_fields(catalog: Catalog) -> list[dict[str, Any]]:
    """The fields a builder may offer, with the operators of each (for the UI and the API)."""
    return [
        {"name": f.name, "label": f.label, "type": f.type, "system": f.is_system, "choices": list(f.choices),
         "operators": list(OPERATORS.get(f.type, ()))}
        for f in catalog.fields.values()
    ]
