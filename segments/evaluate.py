"""The condition tree evaluated in plain Python, one profile at a time: the reference meaning of
the conditions (the property tests hold the SQL compiler to it) and the explainer's engine
("why is this profile (not) in the segment").

What a profile did and holds comes from a `Facts` object: `MemoryFacts` answers from plain
lists (the tests' generated data), the explainer's facts (`segments.services.explain`) from the
database. Field comparisons always run here, in Python.
"""

from __future__ import annotations

import hashlib
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol

from profiles.fieldtypes import FieldType
from profiles.models import SYSTEM_FIELD_NAMES
from segments.conditions import ALIASES, COMPLEMENT, Catalog, FieldInfo, SegmentBroken, clean_conditions

MISSING = object()
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def fold(text: str) -> str:
    """Case folding as SQL does it portably (SQLite's LIKE folds ASCII letters only)."""
    return text.translate(_ASCII_UPPER)


# --- time ------------------------------------------------------------------------------------------


def moment(now: datetime | None = None) -> datetime:
    """`now` to the second: the compiler and the evaluator must see the same instant, and stored
    datetimes are kept to the second."""
    from django.utils import timezone

    return (now or timezone.now()).astimezone(UTC).replace(microsecond=0)


def local_midnight(day: date, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def window_bounds(window: dict[str, Any] | None, now: datetime, tz: zoneinfo.ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """[start, end) of an event window, as instants (None: unbounded)."""
    if not window:
        return None, None
    if "last_days" in window:
        return now - timedelta(days=window["last_days"]), None
    if "since" in window:
        return local_midnight(date.fromisoformat(window["since"]), tz), None
    end = date.fromisoformat(window["to"]) + timedelta(days=1)
    return local_midnight(date.fromisoformat(window["from"]), tz), local_midnight(end, tz)


def to_instant(value: Any) -> datetime:
    """A stored datetime (UTC text "YYYY-MM-DDTHH:MM:SSZ" or an aware datetime) as an aware datetime."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def stored_instant(moment_: datetime) -> str:
    return moment_.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def profile_zone(name: str | None, default: zoneinfo.ZoneInfo) -> zoneinfo.ZoneInfo:
    if name and name in known_timezones():
        return zoneinfo.ZoneInfo(name)
    return default


def anniversary_window(today: date, days: int) -> tuple[str, str] | None:
    """("MM-DD", "MM-DD") of the days from today to today + days; None when it covers the year."""
    if days >= 365:
        return None
    return today.strftime("%m-%d"), (today + timedelta(days=days)).strftime("%m-%d")


def in_md_window(md: str, window: tuple[str, str] | None) -> bool:
    if window is None:
        return True
    start, end = window
    return start <= md <= end if start <= end else (md >= start or md <= end)


# --- the sample hash -----------------------------------------------------------------------------

P31 = 2147483647


def salt_number(salt: str) -> int:
    return int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) % (P31 - 1)


def sample_bucket(profile_id: int, salt: str) -> int:
    """0..99 for (profile, salt): two rounds of a Lehmer step and an xorshift, all within 63-bit
    integers, so PostgreSQL and SQLite compute the same (`segments.compiler.sample_bucket_sql`)."""
    x = (profile_id + salt_number(salt)) % (P31 - 1) + 1
    m = (x * 48271) % P31
    x = m ^ (m >> 15)
    m = (x * 69621) % P31
    x = m ^ (m >> 13)
    return x % 100


# --- values and comparisons ----------------------------------------------------------------------


def column_value(profile: Any, name: str) -> Any:
    """A profile's value of field `name` as stored (MISSING when it has none)."""
    if name in SYSTEM_FIELD_NAMES:
        value = getattr(profile, name)
        if value is None or value == "":
            return MISSING
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()
        return value
    data = profile.data or {}
    return data.get(name, MISSING)


def typed(type_: str, value: Any) -> Any:
    """A stored value in the form Python compares like SQL does."""
    if value is MISSING:
        return MISSING
    if type_ == FieldType.DATETIME:
        return to_instant(value)
    if type_ == FieldType.DATE and isinstance(value, date):
        return value.isoformat()
    return value


def _typed_condition(type_: str, value: Any) -> Any:
    if type_ == FieldType.DATETIME and isinstance(value, str):
        return to_instant(value)
    return value


def compare(type_: str, op: str, stored: Any, node: dict[str, Any], *, now: datetime, today: date,
            zone_today: date | None = None) -> bool:
    """Whether a stored value (MISSING for none) satisfies operator `op` of `node`."""
    op = ALIASES.get(op, op)
    if op in COMPLEMENT:
        return not compare(type_, COMPLEMENT[op], stored, node, now=now, today=today, zone_today=zone_today)
    if op == "empty":
        return stored is MISSING
    if op == "set":
        return stored is not MISSING
    if stored is MISSING:
        return False
    v = typed(type_, stored)
    c = _typed_condition(type_, node.get("value"))
    if op == "eq":
        return v == c
    if op == "in":
        return v in [_typed_condition(type_, x) for x in c]
    if op == "contains":
        return isinstance(v, str) and fold(c) in fold(v)
    if op == "starts_with":
        return isinstance(v, str) and fold(v).startswith(fold(c))
    if op == "list_contains":
        return isinstance(v, list) and c in v
    if op == "gt":
        return v > c
    if op == "gte":
        return v >= c
    if op == "lt":
        return v < c
    if op == "lte":
        return v <= c
    if op == "between":
        return c <= v <= _typed_condition(type_, node["value2"])
    if op in ("in_last_days", "in_next_days"):
        n = int(node["value"])
        if type_ == FieldType.DATETIME:
            low, high = (now - timedelta(days=n), now) if op == "in_last_days" else (now, now + timedelta(days=n))
        else:
            low_d, high_d = (today - timedelta(days=n), today) if op == "in_last_days" else (today, today + timedelta(days=n))
            low, high = low_d.isoformat(), high_d.isoformat()
        return low <= v <= high
    if op == "anniversary_in_days":
        return in_md_window(v[5:10], anniversary_window(zone_today or today, int(node["value"])))
    raise ValueError(f"unknown operator {op!r}")


# --- facts ------------------------------------------------------------------------------------------


class Facts(Protocol):
    def subscriptions(self, profile_id: int, node: dict[str, Any]) -> int:
        """How many of the profile's subscriptions match a subscription condition."""

    def event_count(self, profile_id: int, node: dict[str, Any], ctx: EvalContext) -> int:
        """How many of the profile's events match an event condition (type, window, where)."""

    def member(self, profile_id: int, segment_id: int) -> bool:
        """Whether the profile is a stored member of a static or updatable segment."""


@dataclass
class EvalContext:
    catalog: Catalog
    now: datetime
    stack: tuple[int, ...] = ()

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return self.catalog.ctx.tz

    @property
    def today(self) -> date:
        return self.now.astimezone(self.tz).date()


def event_matches(ev: dict[str, Any], node: dict[str, Any], ctx: EvalContext) -> bool:
    """Whether one event (a dict shaped like a history_event row) counts for an event condition."""
    et = ctx.catalog.types[node["event"]]
    if ev["type_id"] != et.id:
        return False
    start, end = window_bounds(node.get("window"), ctx.now, ctx.tz)
    occurred = ev["occurred_at"]
    if (start is not None and occurred < start) or (end is not None and occurred >= end):
        return False
    where = node.get("where") or {}
    for key in ("mailing_id", "link_id", "resource_id"):
        if key in where and ev.get(key) != where[key]:
            return False
    if "channel" in where and ev.get("channel") != where["channel"]:
        return False
    props = ev.get("properties") or {}
    if "template_id" in where:
        t = props.get("template_id")
        if isinstance(t, bool) or not isinstance(t, int | float) or t != where["template_id"]:
            return False
    if where.get("properties"):
        if ev.get("untyped"):
            return False
        for p in where["properties"]:
            ptype = et.properties[p["name"]][0]
            stored = props.get(p["name"], MISSING)
            if not compare(ptype, p["operator"], stored, p, now=ctx.now, today=ctx.today):
                return False
    return True


def count_ok(count: dict[str, Any], n: int) -> bool:
    op = count["op"]
    if op == "exists":
        return n >= 1
    if op == "not_exists":
        return n == 0
    if op == "at_least":
        return n >= count["n"]
    return n <= count["n"]


@dataclass
class MemoryFacts:
    """Facts from plain lists: subscriptions and events as dicts shaped like their rows,
    members as (segment id, profile id) pairs."""

    subscription_rows: list[dict[str, Any]] = field(default_factory=list)
    event_rows: list[dict[str, Any]] = field(default_factory=list)
    members: set[tuple[int, int]] = field(default_factory=set)

    def subscriptions(self, profile_id: int, node: dict[str, Any]) -> int:
        return sum(
            1 for s in self.subscription_rows
            if s["profile_id"] == profile_id and s["resource_id"] == node["resource"] and s["channel"] == node["channel"]
            and s["status"] in node["statuses"] and (node.get("category") is None or node["category"] not in (s.get("opted_out") or []))
        )

    def event_count(self, profile_id: int, node: dict[str, Any], ctx: EvalContext) -> int:
        return sum(1 for ev in self.event_rows if ev["profile_id"] == profile_id and event_matches(ev, node, ctx))

    def member(self, profile_id: int, segment_id: int) -> bool:
        return (segment_id, profile_id) in self.members


# --- evaluation --------------------------------------------------------------------------------------


@dataclass
class Explained:
    """One node of the tree with whether the profile matched it and why."""

    node: dict[str, Any]
    matched: bool
    why: str = ""
    items: list[Explained] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {"node": {k: v for k, v in self.node.items() if k != "items"}, "matched": self.matched, "why": self.why}
        if self.items:
            out["items"] = [i.as_dict() for i in self.items]
        return out


def _show_value(value: Any) -> str:
    if value is MISSING:
        return "no value"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    text = repr(value) if not isinstance(value, str) else f"“{value}”"
    return text if len(text) <= 60 else text[:59] + "…"


def explain(tree: dict[str, Any], profile: Any, facts: Facts, ctx: EvalContext) -> Explained:
    """Evaluate a cleaned tree for one profile (a Profile or anything with its attributes and `data`)."""
    kind = tree["type"]
    if kind == "group":
        items = [explain(item, profile, facts, ctx) for item in tree["items"]]
        hits = [i.matched for i in items]
        matched = all(hits) if tree["op"] == "and" else any(hits)
        if tree.get("negate"):
            matched = not matched
        why = f"{sum(hits)} of {len(hits)} matched" + (" (negated)" if tree.get("negate") else "")
        return Explained(tree, matched, why, items)
    if kind == "field":
        f: FieldInfo = ctx.catalog.fields[tree["field"]]
        stored = column_value(profile, f.name)
        zone_today = None
        if tree["operator"] == "anniversary_in_days":
            zone_today = ctx.now.astimezone(profile_zone(getattr(profile, "timezone", ""), ctx.tz)).date()
        matched = compare(f.type, tree["operator"], stored, tree, now=ctx.now, today=ctx.today, zone_today=zone_today)
        return Explained(tree, matched, f"{f.label}: {_show_value(typed(f.type, stored))}")
    if kind == "subscription":
        n = facts.subscriptions(profile.pk, tree)
        matched = (n > 0) != bool(tree.get("negate"))
        return Explained(tree, matched, f"{n} matching subscription{'s' if n != 1 else ''}")
    if kind == "event":
        n = facts.event_count(profile.pk, tree, ctx)
        return Explained(tree, count_ok(tree["count"], n), f"{n} matching event{'s' if n != 1 else ''}")
    if kind == "segment":
        sid = tree["segment"]
        info = ctx.catalog.segments.get(sid)
        if info is None:
            raise SegmentBroken({"": f"segment {sid} no longer exists"})
        if info.kind == "dynamic":
            if sid in ctx.stack:
                raise SegmentBroken({"": f"“{info.name}” uses itself (a cycle)"})
            inner_tree = clean_conditions(info.conditions, ctx.catalog, segment_id=sid, fill_salts=False)
            inner = explain(inner_tree, profile, facts, EvalContext(ctx.catalog, ctx.now, (*ctx.stack, sid)))
            matched = inner.matched != bool(tree.get("negate"))
            return Explained(tree, matched, f"“{info.name}”: {'in' if inner.matched else 'not in'} (evaluated now)", [inner])
        member = facts.member(profile.pk, sid)
        matched = member != bool(tree.get("negate"))
        return Explained(tree, matched, f"“{info.name}”: {'a member' if member else 'not a member'}")
    if kind == "sample":
        bucket = sample_bucket(profile.pk, tree["salt"])
        return Explained(tree, bucket < tree["percent"], f"bucket {bucket} of 100")
    raise ValueError(f"unknown node type {kind!r}")


def matches(tree: dict[str, Any], profile: Any, facts: Facts, ctx: EvalContext) -> bool:
    return explain(tree, profile, facts, ctx).matched


def members(tree: dict[str, Any], profiles: Iterable[Any], facts: Facts, ctx: EvalContext) -> set[int]:
    """The ids of the profiles that match (the reference the compiler is tested against)."""
    return {p.pk for p in profiles if matches(tree, p, facts, ctx)}
