"""Set-based writes the ORM has no word for: many rows updated with their own values in one
statement (`UPDATE .. FROM <rows>`, each row conditioned on what was read) and a conditional
bulk INSERT returning what it inserted, on PostgreSQL and SQLite alike (SQLite >= 3.35: UPDATE
FROM and RETURNING).

The rows travel as ONE parameter on PostgreSQL (`jsonb_to_recordset(%s)`: a JSON array of
objects typed by the model's columns) rather than as thousands of placeholders, whose parsing
and binding dominate a batch's cost; SQLite gets a plain VALUES list (its binding is cheap)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from django.db import connection, models
from django.db.models.expressions import RawSQL

CHUNK = 500


def _pg_type(field: models.Field) -> str:
    return "bigint" if isinstance(field, models.ForeignKey) else str(field.db_type(connection))


def to_json(value: Any) -> str:
    """`value` as compact JSON for jsonb_to_recordset: instants and dates in ISO 8601 with their
    offset and microseconds (each distinct one formatted once: a batch's rows mostly share `now`)."""
    seen: dict[Any, str] = {}

    def plain(v: Any) -> str:
        text = seen.get(v)
        if text is None:
            if not isinstance(v, datetime | date):
                raise TypeError(f"{type(v).__name__} is not JSON serializable")
            text = seen[v] = v.isoformat()
        return text

    return json.dumps(value, default=plain, separators=(",", ":"))


def pg_columns(columns: Sequence[tuple[str, models.Field]]) -> str:
    """The column list of a `jsonb_to_recordset(..) AS x(<this>)`: each name typed as its field."""
    return ", ".join(f"{name} {_pg_type(f)}" for name, f in columns)


def id_list(ids: Sequence[int]) -> RawSQL:
    """`ids` as a subquery for `field__in=`: ONE parameter however many ids (a PostgreSQL array
    literal, a JSON array on SQLite) instead of one placeholder each, whose quoting and parsing
    dominate a big IN list's cost."""
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", ["{" + ",".join(str(int(i)) for i in ids) + "}"])
    return RawSQL("SELECT value FROM json_each(%s)", [json.dumps([int(i) for i in ids])])


def rows_source(fields: Sequence[models.Field], rows: Sequence[Sequence[Any]], names: Sequence[str]) -> tuple[str, list[Any]]:
    """A FROM-able relation `v(names...)` holding `rows` (values in `fields` order): the SQL and
    its parameters."""
    if connection.vendor == "postgresql":
        cols = ", ".join(f"{n} {_pg_type(f)}" for n, f in zip(names, fields, strict=True))
        doc = to_json([dict(zip(names, row, strict=True)) for row in rows])
        return f"jsonb_to_recordset(%s::jsonb) AS v({cols})", [doc]
    cell = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [f.get_db_prep_save(v, connection) for row in rows for f, v in zip(fields, row, strict=True)]
    return f"(SELECT * FROM (VALUES {', '.join([cell] * len(rows))})) AS v", params  # noqa: S608 (placeholders only)


def _select_list(names: Sequence[str]) -> str:
    """The columns of `rows_source` (SQLite names a VALUES list's columns column1, column2, ..)."""
    if connection.vendor == "postgresql":
        return ", ".join(f"v.{n}" for n in names)
    return ", ".join(f"v.column{i + 1}" for i in range(len(names)))


def _ref(names: Sequence[str], i: int) -> str:
    return f"v.{names[i]}" if connection.vendor == "postgresql" else f"v.column{i + 1}"


def values_update(model: type[models.Model], rows: Sequence[Mapping[str, Any]], *, match: Mapping[str, str],
                  set_: Mapping[str, str], where: str = "", chunk: int = CHUNK) -> list[int]:
    """Update many rows of `model`, each with its own values, in one statement per `chunk` rows.

    `match` {field: row key}: a row is updated only where every column equals its row's value
    (the id, and the `seq` read: a row somebody else moved meanwhile is left alone); `set_`
    {field: row key}: the new values. `where`: an extra SQL condition on the table (alias `t`).
    Returns the primary keys of the rows updated."""
    if not rows:
        return []
    meta = model._meta
    qn = connection.ops.quote_name
    table = qn(meta.db_table)
    columns = list(match.items()) + list(set_.items())
    fields = [meta.get_field(col) for col, _ in columns]
    names = [f"v_{i}" for i in range(len(columns))]
    sets = ", ".join(f"{qn(f.column)} = {_ref(names, len(match) + i)}" for i, f in enumerate(fields[len(match):]))
    conds = " AND ".join(f"t.{qn(f.column)} = {_ref(names, i)}" for i, f in enumerate(fields[:len(match)]))
    if where:
        conds += f" AND ({where})"
    done: list[int] = []
    with connection.cursor() as cur:
        for lo in range(0, len(rows), chunk):
            part = [[row[key] for _, key in columns] for row in rows[lo:lo + chunk]]
            source, params = rows_source(fields, part, names)
            cur.execute(f"UPDATE {table} AS t SET {sets} FROM {source} WHERE {conds} "  # noqa: S608 (names and placeholders only)
                        f"RETURNING {qn(meta.pk.column)}", params)
            done.extend(r[0] for r in cur.fetchall())
    return done


def insert_ignore(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]], *,
                  returning: Sequence[str], chunk: int = 1000) -> list[tuple[Any, ...]]:
    """INSERT `rows` (values in `fields` order), skipping every row that conflicts with a unique
    constraint or index (`ON CONFLICT DO NOTHING`), one statement per `chunk` rows; returns the
    `returning` columns of the rows inserted."""
    if not rows:
        return []
    meta = model._meta
    qn = connection.ops.quote_name
    fobjs = [meta.get_field(f) for f in fields]
    names = [f"v_{i}" for i in range(len(fields))]
    out: list[tuple[Any, ...]] = []
    with connection.cursor() as cur:
        for lo in range(0, len(rows), chunk):
            source, params = rows_source(fobjs, rows[lo:lo + chunk], names)
            cur.execute(f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fobjs)}) "  # noqa: S608 (names and placeholders only)
                        f"SELECT {_select_list(names)} FROM {source} WHERE true "
                        f"ON CONFLICT DO NOTHING RETURNING {', '.join(qn(c) for c in returning)}", params)
            out.extend(tuple(r) for r in cur.fetchall())
    return out
