"""The condition tree compiled to ONE query: a `Q` over `profiles_profile` (Django ORM expressions,
with a few SQL fragments where the ORM cannot say it), for PostgreSQL and SQLite alike.

Shapes, chosen by measuring plans at 1M profiles / 10M events on PostgreSQL 15:

- Profile fields compare the column, or `data -> 'name'` exactly like the field's expression
  index (`profiles.schema`), so an indexed field is an index scan.
- Events, subscriptions and stored members are *sets* of profile ids: `SELECT profile_id FROM
  history_event WHERE account_id = .. AND type_id = .. AND occurred_at >= ..` (BRIN on
  occurred_at, or (account, type) without a window), `GROUP BY profile_id HAVING count(*) >= n`
  for "at least n". Where a set stands in the chain of ANDs from the root it is written
  `id IN (set)`, which the planner turns into a semi-join (a hash join over the set, or index
  probes when the field conditions leave few profiles). Elsewhere (under an OR) it is
  `EXISTS (SELECT 1 FROM (set) g WHERE g.profile_id = id)`, which the planner hashes when the
  set fits in memory and otherwise probes `event_profile_type_idx` per profile: never the plain
  `IN` subplan that rescans the set for every profile. An OR of sets is one set (UNION ALL).
  A negated set is `NOT EXISTS (..)`: an anti-join (never `NOT IN`, which PostgreSQL cannot
  turn into one).
- NOT is pushed down to the leaves (De Morgan), and every leaf has an explicit negative form
  that is true for a profile without a value ("not Berlin" includes profiles with no city), so
  SQL's NULLs never make a negated condition drop profiles.
- Dynamic segments named in a condition are compiled inline; static and updatable ones are
  their stored members.

`conditions_q(tree, catalog, now=...)` takes a *cleaned* tree (`segments.conditions`), and raises
SegmentBroken when a segment it names is broken or gone.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Count, Expression, F, Q, QuerySet, Subquery
from django.db.models.fields.json import KeyTextTransform, KeyTransform

from history.models import Event
from profiles.fieldtypes import FieldType
from profiles.models import Profile
from resources.models import Subscription
from segments.conditions import (
    ALIASES,
    COMPLEMENT,
    Catalog,
    ConditionError,
    SegmentBroken,
    clean_conditions,
)
from segments.evaluate import (
    P31,
    anniversary_window,
    known_timezones,
    moment,
    salt_number,
    to_instant,
    window_bounds,
)

# System columns: which hold NULL when empty (the others hold ""), which are never empty.
NULLABLE_COLUMNS = frozenset({"email", "phone", "birthday"})
NEVER_EMPTY_COLUMNS = frozenset({"created_at", "updated_at"})


# --- SQL pieces the ORM has no words for -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Param:
    """A value sent as a query parameter (compared by identity: it may hold a list)."""

    value: Any


class Sql(Expression):
    """SQL made of pieces: text, `Param(value)` (a placeholder) and ORM expressions, which are
    resolved and relabelled like any other, so the fragment stays right when Django nests the
    query (a segment used as a subquery of a mailing's plan). Text pieces write % as %%."""

    output_field = BooleanField()

    def __init__(self, *pieces: Any) -> None:
        super().__init__()
        self.pieces = list(pieces)

    def get_source_expressions(self) -> list[Any]:
        return [p for p in self.pieces if hasattr(p, "resolve_expression")]

    def set_source_expressions(self, exprs: list[Any]) -> None:
        it = iter(exprs)
        self.pieces = [next(it) if hasattr(p, "resolve_expression") else p for p in self.pieces]

    def resolve_expression(self, query: Any = None, allow_joins: bool = True, reuse: Any = None,
                           summarize: bool = False, for_save: bool = False) -> Sql:
        c = self.copy()
        c.is_summary = summarize
        c.set_source_expressions([e.resolve_expression(query, allow_joins, reuse, summarize, for_save)
                                  for e in self.get_source_expressions()])
        return c

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        sql: list[str] = []
        params: list[Any] = []
        for p in self.pieces:
            if isinstance(p, str):
                sql.append(p)
            elif isinstance(p, Param):
                sql.append("%s")
                params.append(p.value)
            else:
                s, ps = compiler.compile(p)
                sql.append(s)
                params.extend(ps)
        return "".join(sql), params


class LookupOf(Expression):
    """`lookup` applied to `lhs` once `lhs` is resolved against the query, e.g. "exact" on
    `data -> 'name'`: the lookup Django would build for "data__name__exact", without reading the
    field name as a lookup (a field may be called "contains" or "in")."""

    output_field = BooleanField()

    def __init__(self, lhs: Any, lookup: str, rhs: Any) -> None:
        super().__init__()
        self.lhs, self.lookup, self.rhs = lhs, lookup, rhs

    def resolve_expression(self, query: Any = None, allow_joins: bool = True, reuse: Any = None,
                           summarize: bool = False, for_save: bool = False) -> Any:
        lhs = self.lhs.resolve_expression(query, allow_joins, reuse, summarize, for_save)
        lookup_class = lhs.get_lookup(self.lookup)
        if lookup_class is None:  # pragma: no cover (a programming error)
            raise ValueError(f"no lookup {self.lookup!r} on {lhs!r}")
        return lookup_class(lhs, self.rhs)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:  # pragma: no cover
        raise ValueError("LookupOf must be resolved before it is compiled")


FALSE_SQL = Sql("1 = 0")


class _Const:
    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "TRUE" if self.value else "FALSE"


TRUE, FALSE = _Const(True), _Const(False)


@dataclass
class Pred:
    """A condition on the profile row."""

    q: Q


@dataclass
class IdSet:
    """A set of profile ids (a queryset of one column, `profile_id`), matched (or, `negated`, not)."""

    qs: QuerySet[Any]
    negated: bool = False


Part = Pred | IdSet | _Const


def exists_in(qs: QuerySet[Any]) -> Sql:
    """EXISTS over a derived table: PostgreSQL flattens a simple set (a correlated probe, or a
    hashed subplan), keeps a grouped one whole (an anti/semi-join at the top level)."""
    return Sql("EXISTS (SELECT 1 FROM ", Subquery(qs), " seg_g WHERE seg_g.profile_id = ", F("pk"), ")")


def part_q(part: Part, *, top: bool) -> Q:
    if part is TRUE:
        return Q()
    if part is FALSE:
        return Q(FALSE_SQL)
    if isinstance(part, Pred):
        return part.q
    assert isinstance(part, IdSet)
    if part.negated:
        return ~Q(exists_in(part.qs))
    if top:
        return Q(pk__in=part.qs)
    return Q(exists_in(part.qs))


def _and(parts: list[Part], *, top: bool) -> Part:
    if any(p is FALSE for p in parts):
        return FALSE
    parts = [p for p in parts if p is not TRUE]
    if not parts:
        return TRUE
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, IdSet) and p.negated for p in parts):
        # NOT a AND NOT b = NOT (a OR b): one anti-join over the union.
        return IdSet(_union([p.qs for p in parts]), negated=True)  # type: ignore[union-attr]
    q = Q()
    for p in parts:
        q &= part_q(p, top=top)
    return Pred(q)


def _or(parts: list[Part], *, top: bool) -> Part:
    if any(p is TRUE for p in parts):
        return TRUE
    parts = [p for p in parts if p is not FALSE]
    if not parts:
        return FALSE
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, IdSet) and not p.negated for p in parts):
        return IdSet(_union([p.qs for p in parts]))  # type: ignore[union-attr]
    first, *rest = (part_q(p, top=False) for p in parts)
    for pq in rest:
        first |= pq
    return Pred(first)


def _union(sets: list[QuerySet[Any]]) -> QuerySet[Any]:
    first, *rest = (qs.order_by() for qs in sets)
    return first.union(*rest, all=True)


# --- the compiler ------------------------------------------------------------------------------------


class Compiler:
    def __init__(self, catalog: Catalog, now: datetime | None = None) -> None:
        self.catalog = catalog
        self.now = moment(now)
        self.tz = catalog.ctx.tz
        self.today = self.now.astimezone(self.tz).date()
        self.vendor = connection.vendor

    def compile(self, tree: dict[str, Any], *, stack: tuple[int, ...] = ()) -> Q:
        return part_q(self.node(tree, neg=False, top=True, stack=stack), top=True)

    def node(self, node: dict[str, Any], *, neg: bool, top: bool, stack: tuple[int, ...], path: str = "") -> Part:
        kind = node["type"]
        if kind == "group":
            neg = neg != bool(node.get("negate"))
            op = node["op"] if not neg else ("or" if node["op"] == "and" else "and")
            child_top = top and op == "and"
            parts = [self.node(item, neg=neg, top=child_top, stack=stack, path=_at(path, f"items[{i}]"))
                     for i, item in enumerate(node["items"])]
            return _and(parts, top=top) if op == "and" else _or(parts, top=top)
        if kind == "field":
            f = self.catalog.fields[node["field"]]
            target = Column(f.name) if f.is_system else JsonKey("data", f.name)
            return self.predicate(target, f.type, node, neg=neg)
        if kind == "subscription":
            return IdSet(self.subscription_set(node), negated=neg != bool(node.get("negate")))
        if kind == "event":
            return self.event_part(node, neg=neg)
        if kind == "segment":
            return self.segment_part(node, neg=neg != bool(node.get("negate")), top=top, stack=stack, path=path)
        if kind == "sample":
            percent = node["percent"]
            if percent <= 0:
                return TRUE if neg else FALSE
            if percent >= 100:
                return FALSE if neg else TRUE
            bucket = sample_bucket_sql(F("pk"), node["salt"])
            return Pred(Q(Sql(*bucket, " >= " if neg else " < ", Param(percent))))
        raise ValueError(f"unknown node type {kind!r}")  # pragma: no cover (cleaned trees only)

    # fields and properties

    def predicate(self, target: Target, type_: str, node: dict[str, Any], *, neg: bool) -> Part:
        op = ALIASES.get(node["operator"], node["operator"])
        if op in COMPLEMENT:
            op, neg = COMPLEMENT[op], not neg
        empty = target.empty()
        if op == "empty":
            return _not(empty) if neg else empty
        if op == "set":
            return empty if neg else _not(empty)
        value = self.value_q(target, type_, op, node)
        if not neg:
            return value
        return _or([_not(value), empty], top=False)

    def value_q(self, target: Target, type_: str, op: str, node: dict[str, Any]) -> Part:
        """The positive comparison: true when the value is there and satisfies `op` (false or
        NULL when there is none)."""
        v = node.get("value")
        conv = self._converter(target, type_)
        if op == "eq":
            return Pred(target.lookup("exact", conv(v)))
        if op == "in":
            return Pred(target.lookup("in", [conv(x) for x in v]))
        if op == "contains":
            return Pred(target.lookup("icontains", v))
        if op == "starts_with":
            exact = isinstance(target, Column) and target.name == "email"  # lowercased: the LIKE index
            return Pred(target.lookup("startswith" if exact else "istartswith", v))
        if op in ("gt", "gte", "lt", "lte"):
            return Pred(target.lookup(op, conv(v)))
        if op == "between":
            return Pred(target.lookup("gte", conv(v)) & target.lookup("lte", conv(node["value2"])))
        if op in ("in_last_days", "in_next_days"):
            n = int(v)
            if type_ == FieldType.DATETIME:
                low, high = (self.now - timedelta(days=n), self.now) if op == "in_last_days" else (self.now, self.now + timedelta(days=n))
                low_v, high_v = (conv_instant(target, low), conv_instant(target, high))
            else:
                lo, hi = (self.today - timedelta(days=n), self.today) if op == "in_last_days" else (self.today, self.today + timedelta(days=n))
                low_v, high_v = conv(lo.isoformat()), conv(hi.isoformat())
            return Pred(target.lookup("gte", low_v) & target.lookup("lte", high_v))
        if op == "list_contains":
            return Pred(target.list_contains(v, self.vendor))
        if op == "anniversary_in_days":
            return Pred(Q(self.anniversary(target, int(v))))
        raise ValueError(f"unknown operator {op!r}")  # pragma: no cover

    @staticmethod
    def _converter(target: Target, type_: str) -> Any:
        if isinstance(target, Column):
            if type_ == FieldType.DATE:
                return date.fromisoformat
            if type_ == FieldType.DATETIME:
                return to_instant
        return lambda x: x

    def anniversary(self, target: Target, days: int) -> Sql:
        """The month and day of a date within the next `days` days from today in each profile's own
        timezone. At any instant the world spans at most three dates: the timezones are grouped
        by their date now (in Python), and each group gets its own window."""
        if isinstance(target, Column):
            md: list[Any] = (["to_char(", F(target.name), ", 'MM-DD')"] if self.vendor == "postgresql"
                             else ["substr(", F(target.name), ", 6, 5)"])
        else:
            md = ["substr(", KeyTextTransform(target.key, target.column), ", 6, 5)"]
        groups: dict[date, list[str]] = defaultdict(list)
        for name in sorted(known_timezones()):
            groups[self.now.astimezone(_zone(name)).date()].append(name)
        account_day = self.today
        pieces: list[Any] = ["("]
        for i, (day, zones) in enumerate(sorted(groups.items())):
            if i:
                pieces.append(" OR ")
            if len(groups) == 1:
                zone_cond: list[Any] = ["1 = 1"]
            elif day == account_day:
                others = sorted(z for d, zs in groups.items() if d != day for z in zs)
                zone_cond = ["NOT (", *self._zone_in(others), ")"]
            else:
                zone_cond = self._zone_in(zones)
            window = anniversary_window(day, days)
            if window is None:
                md_cond: list[Any] = [*md, " IS NOT NULL"]
            elif window[0] <= window[1]:
                md_cond = [*md, " BETWEEN ", Param(window[0]), " AND ", Param(window[1])]
            else:
                md_cond = ["(", *md, " >= ", Param(window[0]), " OR ", *md, " <= ", Param(window[1]), ")"]
            pieces += ["((", *zone_cond, ") AND ", *md_cond, ")"]
        if account_day not in groups:  # pragma: no cover (the account's zone is a known zone)
            pieces += [" OR 1 = 0"]
        pieces.append(")")
        return Sql(*pieces)

    def _zone_in(self, zones: list[str]) -> list[Any]:
        if self.vendor == "postgresql":
            return [F("timezone"), " = ANY(", Param(zones), ")"]
        return [F("timezone"), " IN (SELECT value FROM json_each(", Param(json.dumps(zones)), "))"]

    # sets

    def subscription_set(self, node: dict[str, Any]) -> QuerySet[Any]:
        qs = Subscription.objects.filter(account_id=self.catalog.account.pk, resource_id=node["resource"],
                                         channel=node["channel"], status__in=node["statuses"])
        if node.get("category"):
            qs = qs.exclude(JsonKey("opted_out", None).list_contains(node["category"], self.vendor))
        return qs.order_by().values("profile_id")

    def event_filter(self, node: dict[str, Any]) -> Q:
        """The events an event condition counts (any profile's)."""
        et = self.catalog.types[node["event"]]
        q = Q(account_id=self.catalog.account.pk, type_id=et.id)
        start, end = window_bounds(node.get("window"), self.now, self.tz)
        if start is not None:
            q &= Q(occurred_at__gte=start)
        if end is not None:
            q &= Q(occurred_at__lt=end)
        where = node.get("where") or {}
        for key in ("mailing_id", "link_id", "resource_id", "channel"):
            if key in where:
                q &= Q(**{key: where[key]})
        if "template_id" in where:
            q &= JsonKey("properties", "template_id").lookup("exact", where["template_id"])
        if where.get("properties"):
            q &= Q(untyped=False)
            for p in where["properties"]:
                ptype = et.properties[p["name"]][0]
                part = self.predicate(JsonKey("properties", p["name"]), ptype, p, neg=False)
                q &= part_q(part, top=False)
        return q

    def event_part(self, node: dict[str, Any], *, neg: bool) -> Part:
        events = Event.objects.filter(self.event_filter(node))
        op, n = node["count"]["op"], node["count"]["n"]
        if op == "not_exists" or (op == "at_most" and n == 0):
            op, n, neg = "at_least", 1, not neg
        elif op == "exists":
            op, n = "at_least", 1
        elif op == "at_most":
            op, n, neg = "at_least", n + 1, not neg
        if n == 1:
            return IdSet(events.values("profile_id"), negated=neg)
        grouped = events.values("profile_id").annotate(seg_n=Count("*")).filter(seg_n__gte=n).values("profile_id")
        return IdSet(grouped, negated=neg)

    def segment_part(self, node: dict[str, Any], *, neg: bool, top: bool, stack: tuple[int, ...], path: str) -> Part:
        from segments.models import Segment, SegmentMember

        sid = node["segment"]
        info = self.catalog.segments.get(sid)
        where = _at(path, "segment")
        if info is None:
            raise SegmentBroken({where: f"segment {sid} no longer exists"})
        if info.state == Segment.State.BROKEN:
            raise SegmentBroken({where: f"segment “{info.name}” is broken: {info.problem}"})
        if info.kind == Segment.Kind.UPDATABLE and info.conditions is not None:
            # Its stored members are only as good as its conditions: one whose field is gone is
            # broken now, not at its next update.
            try:
                clean_conditions(info.conditions, self.catalog, segment_id=sid, fill_salts=False)
            except ConditionError as exc:
                raise SegmentBroken({where: f"segment “{info.name}” is broken: {exc.path}: {exc.message}"}) from None
        if info.kind != Segment.Kind.DYNAMIC:
            return IdSet(SegmentMember.objects.filter(segment_id=sid).order_by().values("profile_id"), negated=neg)
        if sid in stack:
            raise SegmentBroken({where: f"segment “{info.name}” uses itself (a cycle)"})
        try:
            tree = clean_conditions(info.conditions, self.catalog, segment_id=sid, fill_salts=False)
        except ConditionError as exc:
            raise SegmentBroken({where: f"segment “{info.name}” is broken: {exc.path}: {exc.message}"}) from None
        try:
            return self.node(tree, neg=neg, top=top, stack=(*stack, sid))
        except SegmentBroken as exc:
            raise SegmentBroken({where: f"segment “{info.name}” is broken: {exc.message}"}) from None


def _not(part: Part) -> Part:
    """The negation of a part that is never NULL (emptiness checks)."""
    if part is TRUE:
        return FALSE
    if part is FALSE:
        return TRUE
    assert isinstance(part, Pred)
    return Pred(~part.q)


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _zone(name: str) -> Any:
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


def conv_instant(target: Target, moment_: datetime) -> Any:
    if isinstance(target, Column):
        return moment_
    return moment_.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- where values live --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A system field: a column of profiles_profile."""

    name: str

    def lookup(self, lookup: str, value: Any) -> Q:
        return Q(**{f"{self.name}__{lookup}": value})

    def empty(self) -> Part:
        if self.name in NEVER_EMPTY_COLUMNS:
            return FALSE
        if self.name in NULLABLE_COLUMNS:
            return Pred(Q(**{f"{self.name}__isnull": True}))
        return Pred(Q(**{self.name: ""}))

    def list_contains(self, value: str, vendor: str) -> Q:  # pragma: no cover (no system field is a list)
        raise ValueError("system fields hold no lists")


@dataclass(frozen=True)
class JsonKey:
    """A key of a JSON column: a custom field in `data`, a property in an event's `properties`,
    or (key None) the JSON column itself."""

    column: str
    key: str | None

    def expr(self) -> Any:
        return KeyTransform(self.key, self.column) if self.key is not None else F(self.column)

    def lookup(self, lookup: str, value: Any) -> Q:
        return Q(LookupOf(self.expr(), lookup, value))

    def empty(self) -> Part:
        return Pred(~Q(LookupOf(F(self.column), "has_key", self.key)))

    def list_contains(self, value: str, vendor: str) -> Q:
        if vendor == "postgresql":
            return Q(LookupOf(self.expr(), "contains", [value]))
        path = f'$."{self.key}"' if self.key is not None else "$"
        return Q(Sql("EXISTS (SELECT 1 FROM json_each(", F(self.column), ", ", Param(path),
                     ") WHERE json_each.value = ", Param(value), ")"))


Target = Column | JsonKey


def sample_bucket_sql(pk: Any, salt: str) -> list[Any]:
    """Pieces computing `segments.evaluate.sample_bucket` in SQL (63-bit integers only; xor as
    (a | b) - (a & b), which both databases have)."""
    s = salt_number(salt)
    x0: list[Any] = ["(((", pk, f" + {s}) %% {P31 - 1}) + 1)"]

    def lehmer(x: list[Any], mult: int) -> list[Any]:
        return ["((", *x, f" * {mult}) %% {P31})"]

    def xorshift(m: list[Any], shift: int) -> list[Any]:
        return ["((", *m, " | (", *m, f" >> {shift})) - (", *m, " & (", *m, f" >> {shift})))"]

    x2 = xorshift(lehmer(xorshift(lehmer(x0, 48271), 15), 69621), 13)
    return ["(", *x2, " %% 100)"]


# --- entry points --------------------------------------------------------------------------------------


def conditions_q(tree: dict[str, Any], catalog: Catalog, *, now: datetime | None = None,
                 stack: tuple[int, ...] = ()) -> Q:
    """The Q selecting the profiles a cleaned tree matches. Raises SegmentBroken."""
    return Compiler(catalog, now).compile(tree, stack=stack)


def profiles_matching(tree: dict[str, Any], catalog: Catalog, *, now: datetime | None = None,
                      stack: tuple[int, ...] = ()) -> QuerySet[Profile]:
    """The database's profiles a cleaned tree matches: one query."""
    return Profile.objects.filter(account=catalog.account, database=catalog.database).filter(
        conditions_q(tree, catalog, now=now, stack=stack))
