"""Reads shared by the profile views, the export task and the command.

The profile list is the one hot read: a database may hold millions of profiles, so the search
takes only forms that an index can answer (e-mail prefix, exact E.164 phone, name prefix), a
filter on an indexed custom field compares `data -> 'name'` like the field's expression index
(`profiles.schema`), and nothing here counts a whole database per request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.fields import BooleanField

from profiles.fieldtypes import (
    Context,
    FieldType,
    FieldValueError,
    to_date,
    to_decimal,
    to_email,
    to_enum,
    to_integer,
    to_phone,
)
from profiles.models import Field, Profile, ProfileDatabase

# Up to this many profiles a database's count is exact; beyond it, the planner's estimate.
EXACT_COUNT_LIMIT = 10_000


def database_list(*, account: Any) -> QuerySet[ProfileDatabase]:
    from django.db.models import Count

    return (
        ProfileDatabase.objects.for_account(account)
        .annotate(custom_fields=Count("fields", filter=Q(fields__is_system=False)))
        .order_by("name", "id")
    )


def profile_count_estimate(database: ProfileDatabase) -> int:
    """How many profiles `database` holds: exact up to EXACT_COUNT_LIMIT, an estimate above.

    The exact part counts over a LIMITed subquery (at most 10,001 index entries read), so a
    big database never costs a full COUNT(*). Above the limit PostgreSQL's planner estimates
    the rows of this database from its statistics (never below the limit); SQLite, which has
    no such statistics, answers EXACT_COUNT_LIMIT + 1, read as "10,000+".
    """
    n = Profile.objects.filter(database=database).order_by()[: EXACT_COUNT_LIMIT + 1].count()
    if n <= EXACT_COUNT_LIMIT:
        return n
    if connection.vendor == "postgresql":
        return max(_planner_rows(database.pk), EXACT_COUNT_LIMIT + 1)
    return EXACT_COUNT_LIMIT + 1


def _planner_rows(database_id: int) -> int:
    table = Profile._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'EXPLAIN (FORMAT JSON) SELECT 1 FROM "{table}" WHERE database_id = %s', [database_id])  # noqa: S608
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def profile_count_label(n: int) -> str:
    """"1 profile", "9,999 profiles", "10,000+ profiles", "≈ 1,234,567 profiles"."""
    if n <= EXACT_COUNT_LIMIT:
        return f"{n:,} profile" + ("" if n == 1 else "s")
    if n == EXACT_COUNT_LIMIT + 1:
        return f"{EXACT_COUNT_LIMIT:,}+ profiles"
    return f"≈ {n:,} profiles"


# --- search --------------------------------------------------------------------------------------

_PHONE_LIKE = re.compile(r"\+?[\d\s().\-/]+")
_ID_LIKE = re.compile(r"#(\d{1,18})")


def search_kind(q: str) -> str:
    """What a search box entry is taken for: "email", "phone", "id" or "name" ("" when empty)."""
    q = q.strip()
    if not q:
        return ""
    if "@" in q:
        return "email"
    if _ID_LIKE.fullmatch(q):
        return "id"
    if _PHONE_LIKE.fullmatch(q) and sum(c.isdigit() for c in q) >= 5:
        return "phone"
    return "name"


def profile_search(qs: QuerySet[Profile], q: str, ctx: Context) -> QuerySet[Profile]:
    """An e-mail prefix (lowercased, `LIKE 'x%'` on the e-mail index), an exact phone in E.164
    (normalised with the account's phone region; a number that does not parse finds nothing),
    `#123` for an id, otherwise each word a prefix of the first or last name."""
    q = q.strip()[:200]
    kind = search_kind(q)
    if kind == "email":
        return qs.filter(email__startswith=q.lower())
    if kind == "id":
        return qs.filter(pk=int(q[1:]))
    if kind == "phone":
        try:
            return qs.filter(phone=to_phone(q, ctx))
        except FieldValueError:
            return qs.none()
    for term in q.split()[:4]:
        qs = qs.filter(Q(first_name__istartswith=term) | Q(last_name__istartswith=term))
    return qs


# --- filters -------------------------------------------------------------------------------------

OPERATORS: dict[str, str] = {
    "eq": "equals",
    "starts": "starts with",
    "gt": "more than / after",
    "lt": "less than / before",
    "contains": "contains",
    "yes": "is yes",
    "no": "is no",
    "empty": "is empty",
    "set": "is not empty",
}
_TYPE_LABELS = {
    (FieldType.DATE, "gt"): "after", (FieldType.DATE, "lt"): "before",
    (FieldType.DATETIME, "gt"): "after", (FieldType.DATETIME, "lt"): "before", (FieldType.DATETIME, "eq"): "on",
    (FieldType.DATE, "eq"): "on",
    (FieldType.INTEGER, "gt"): "more than", (FieldType.INTEGER, "lt"): "less than",
    (FieldType.DECIMAL, "gt"): "more than", (FieldType.DECIMAL, "lt"): "less than",
    (FieldType.ENUM, "eq"): "is",
}


def operator_label(op: str, field_type: str = "") -> str:
    """How the filter row names an operator for a field of this type ("after" for a date...)."""
    return _TYPE_LABELS.get((field_type, op), OPERATORS.get(op, op))


NO_VALUE_OPERATORS = frozenset({"yes", "no", "empty", "set"})
_TEXTUAL = ["eq", "starts", "empty", "set"]
_ORDERED = ["eq", "gt", "lt", "empty", "set"]
TYPE_OPERATORS: dict[str, list[str]] = {
    FieldType.STRING: _TEXTUAL,
    FieldType.TEXT: _TEXTUAL,
    FieldType.EMAIL: _TEXTUAL,
    FieldType.PHONE: _TEXTUAL,
    FieldType.ENUM: ["eq", "empty", "set"],
    FieldType.INTEGER: _ORDERED,
    FieldType.DECIMAL: _ORDERED,
    FieldType.DATE: _ORDERED,
    FieldType.DATETIME: _ORDERED,
    FieldType.BOOLEAN: ["yes", "no", "empty"],
    FieldType.LIST: ["contains", "empty", "set"],
    FieldType.JSON: ["set", "empty"],
}
# The first operator of each list is the one a new filter row starts with.
# System fields stored in columns that hold NULL when empty (the others hold "").
_NULLABLE_COLUMNS = frozenset({"email", "phone", "birthday"})
_DATETIME_COLUMNS = frozenset({"created_at", "updated_at"})
MAX_CONDITIONS = 10


class FilterError(ValueError):
    """A filter that cannot apply (unknown field, operator that does not suit the type, bad value)."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str = ""

    @property
    def is_complete(self) -> bool:
        return bool(self.field and self.op) and (self.op in NO_VALUE_OPERATORS or self.value.strip() != "")

    def as_list(self) -> list[str]:
        return [self.field, self.op, self.value]


def conditions_from(rows: Iterable[Sequence[str]]) -> list[Condition]:
    """Conditions from (field, op, value) rows, e.g. a Job's params; at most MAX_CONDITIONS."""
    out = []
    for row in list(rows)[:MAX_CONDITIONS]:
        field, op, value = [*list(row), "", "", ""][:3]
        out.append(Condition(str(field)[:64], str(op)[:16], str(value)[:500]))
    return out


def condition_q(f: Field, cond: Condition, ctx: Context) -> Q:
    """The Q for one condition on field `f`. Raises FilterError with a reason a person can act on."""
    ops = TYPE_OPERATORS.get(f.type, [])
    if cond.op not in ops:
        raise FilterError(f"“{OPERATORS.get(cond.op, cond.op)}” does not apply to {f.label} ({FieldType(f.type).label.lower()}).")
    column = f.name if f.is_system else f"data__{f.name}"
    op = cond.op
    if op in ("empty", "set"):
        if f.is_system:
            empty = Q(**{f"{column}__isnull": True}) if f.name in _NULLABLE_COLUMNS | _DATETIME_COLUMNS else Q(**{column: ""})
        else:
            empty = ~Q(data__has_key=f.name)
        return empty if op == "empty" else ~empty
    if op in ("yes", "no"):
        return Q(**{column: op == "yes"})
    raw = cond.value.strip()
    if op == "contains":  # list fields, always in data
        if connection.vendor == "postgresql":
            return Q(**{f"{column}__contains": [raw]})
        return Q(_sqlite_list_contains(f.name, raw))
    try:
        if f.type == FieldType.DATETIME:
            return _datetime_q(column, op, raw, ctx, is_column=f.is_system)
        value = _parse(f, raw, ctx, op)
    except FieldValueError as exc:
        raise FilterError(f"{f.label}: {exc}") from None
    if op == "starts":
        return Q(**{f"{column}__{'startswith' if f.type in (FieldType.EMAIL, FieldType.PHONE) else 'istartswith'}": value})
    if f.name == "birthday" and f.is_system:
        value = date.fromisoformat(value)
    return Q(**{column if op == "eq" else f"{column}__{op}": value})


def _parse(f: Field, raw: str, ctx: Context, op: str) -> Any:
    if f.type == FieldType.EMAIL:
        if op == "starts" or "@" not in raw:
            return raw.lower()
        return to_email(raw, ctx)
    if f.type == FieldType.PHONE:
        if op == "starts":
            return "+" + "".join(c for c in raw if c.isdigit()) if raw.startswith("+") else "".join(c for c in raw if c.isdigit())
        return to_phone(raw, ctx)
    if f.type == FieldType.ENUM:
        return to_enum(raw, Context(region=ctx.region, tz=ctx.tz, choices=tuple(f.choices)))
    if f.type == FieldType.INTEGER:
        return to_integer(raw, ctx)
    if f.type == FieldType.DECIMAL:
        return to_decimal(raw, ctx)
    if f.type == FieldType.DATE:
        return to_date(raw, ctx)
    return raw


def _datetime_q(column: str, op: str, raw: str, ctx: Context, *, is_column: bool) -> Q:
    """A date means the whole day in the account's timezone: = on that day, > after it, < before it.
    A date and time (2024-05-01T10:30) compares to the minute."""
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time.min, tzinfo=ctx.tz)
            end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=ctx.tz)
        else:
            moment = datetime.fromisoformat(raw)
            start = moment if moment.tzinfo else moment.replace(tzinfo=ctx.tz)
            end = start + timedelta(minutes=1)
    except ValueError:
        raise FieldValueError(f"{raw!r} is not a date (use YYYY-MM-DD)") from None

    def v(moment: datetime) -> Any:
        # Columns compare datetimes; stored values are UTC strings "YYYY-MM-DDTHH:MM:SSZ".
        return moment if is_column else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    if op == "eq":
        return Q(**{f"{column}__gte": v(start), f"{column}__lt": v(end)})
    if op == "gt":
        return Q(**{f"{column}__gte": v(end)})
    return Q(**{f"{column}__lt": v(start)})


def _sqlite_list_contains(name: str, value: str) -> Any:
    # SQLite has no JSON containment; json_each walks the list. `name` is a checked field name.
    table = Profile._meta.db_table
    return RawSQL(  # noqa: S611 (the table name is ours; the path and value are parameters)
        f'EXISTS (SELECT 1 FROM json_each("{table}"."data", %s) WHERE json_each.value = %s)',  # noqa: S608
        [f"$.{name}", value],
        output_field=BooleanField(),
    )


def profile_list(
    *, database: ProfileDatabase, q: str = "", conditions: Sequence[Condition] = (),
    fields: dict[str, Field] | None = None, ctx: Context | None = None,
) -> QuerySet[Profile]:
    """The profiles of `database` matching the search box and every complete condition.

    Incomplete conditions (no value yet) are skipped; a condition that cannot apply raises
    FilterError whose `index` is the condition's position.
    """
    from profiles.services import field_context

    qs = Profile.objects.for_account(database.account).filter(database=database)
    ctx = ctx or field_context(database)
    if q.strip():
        qs = profile_search(qs, q, ctx)
    if conditions:
        fields = fields if fields is not None else {f.name: f for f in database.fields.all()}
        for i, cond in enumerate(conditions):
            if not cond.is_complete:
                continue
            f = fields.get(cond.field)
            if f is None:
                raise FilterError(f"There is no field {cond.field!r} in {database.name}.", index=i)
            try:
                qs = qs.filter(condition_q(f, cond, ctx))
            except FilterError as exc:
                raise FilterError(str(exc), index=i) from None
    return qs
