"""Counters kept as delta rows, and their compaction: one helper for every app that keeps them.

A counter that many writers bump at once (a mailing's sends, a scenario step's passes, a
resource's subscriptions per status) is kept as insert-only delta rows: a writer adds a row in
its own transaction and never waits on a shared counter row; a reader sums the owner's rows.
Compaction, run by the apps' periodic jobs, folds each owner's rows into one row per key so that
the sums stay cheap:

- `mailings.services.stats.stats_compact`: MailingStat, per mailing, by (account, run, metric, link, hour);
- `scenarios.engine.stats.stats_compact`: StepStat, per scenario, by (account, step, metric);
- `resources.services.common.subscription_counts_compact`: SubscriptionCount, per resource, by
  (account, channel, status).

On PostgreSQL each owner is one statement: `DELETE .. RETURNING` feeds an `INSERT .. SELECT
sum() GROUP BY` of exactly the rows it removed. The rows are insert-only, so a delta committed
meanwhile is either among those deleted (and folded) or not seen (and left as it is); two
compactions of one owner never fold a row twice (the second's DELETE skips the rows the first
removed). Nothing is read into Python. SQLite (the embedded default: one writer at a time) does
the same in three ORM statements inside one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Count, Sum


def deltas_compact(model: type[models.Model], *, owner: str, keys: Sequence[str], value: str,
                   owner_id: Any = None, min_rows: int = 200, extra: Mapping[str, Any] | None = None) -> int:
    """Fold the delta rows of `model` per `owner` (a field name) into one row per `keys` (field
    names) holding the sum of `value`; rows whose sum is zero are dropped. Only owners with at
    least `min_rows` rows, unless `owner_id` names one. `extra`: constant field values for the
    folded rows (e.g. {"compacted": True}). Returns how many rows were removed."""
    meta = model._meta
    column = {name: meta.get_field(name).column for name in (owner, *keys, value, *(extra or {}))}
    if owner_id is not None:
        targets = [owner_id]
    else:
        targets = list(model._default_manager.order_by().values_list(owner).annotate(n=Count("*"))
                       .filter(n__gte=min_rows).values_list(owner, flat=True))
    removed = 0
    for target in targets:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                removed += _compact_sql(meta.db_table, column, owner, keys, value, target, extra or {})
            else:
                removed += _compact_orm(model, owner, keys, value, target, extra or {})
    return removed


def _compact_sql(table: str, column: Mapping[str, str], owner: str, keys: Sequence[str], value: str, target: Any,
                 extra: Mapping[str, Any]) -> int:
    qn = connection.ops.quote_name
    grouped = ", ".join(qn(column[k]) for k in (owner, *keys))
    val = qn(column[value])
    extra_cols = "".join(f", {qn(column[k])}" for k in extra)
    extra_vals = "".join(", %s" for _ in extra)
    # Only column names from the model's own metadata and placeholders are joined here.
    sql = (f"WITH d AS (DELETE FROM {qn(table)} WHERE {qn(column[owner])} = %s RETURNING {grouped}, {val}), "  # noqa: S608
           f"i AS (INSERT INTO {qn(table)} ({grouped}, {val}{extra_cols}) "
           f"SELECT {grouped}, sum({val}){extra_vals} FROM d GROUP BY {grouped} HAVING sum({val}) <> 0 RETURNING 1) "
           f"SELECT (SELECT count(*) FROM d) - (SELECT count(*) FROM i)")
    with connection.cursor() as cur:
        cur.execute(sql, [target, *extra.values()])
        return int(cur.fetchone()[0])


def _compact_orm(model: type[models.Model], owner: str, keys: Sequence[str], value: str, target: Any,
                 extra: Mapping[str, Any]) -> int:
    rows = model._default_manager.filter(**{owner: target})
    sums = list(rows.order_by().values(*keys).annotate(total=Sum(value)))
    before, _ = rows.delete()
    kept = [model(**{owner: target, **{k: s[k] for k in keys}, value: s["total"], **extra}) for s in sums if s["total"]]
    model._default_manager.bulk_create(kept)
    return before - len(kept)
