"""Profiles to CSV, streamed: rows come from the database in chunks and go straight to `out`,
so an export of millions of profiles holds one chunk in memory, not the database.

Cells are written for spreadsheets: lists joined with "; ", JSON as JSON text, booleans
true/false, dates ISO 8601, datetimes in UTC ("2024-05-01T10:30:00Z"), and text that a
spreadsheet would run as a formula (starting with = + - @ tab or CR) gets a leading '.
Plain numbers (-5, +4930123456 in E.164) are left alone: a spreadsheet reads them as numbers,
never as formulas, and phones must survive a round trip through an import.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import IO, Any

from django.db import transaction
from django.db.models import QuerySet

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.jobs import job_create
from accounts.models import Job
from cdp.spreadsheets import FORMULA_START, formula_safe
from profiles.fieldtypes import FieldType
from profiles.models import Field, Profile, ProfileDatabase
from profiles.selectors import Condition, conditions_from, profile_list

CHUNK_SIZE = 5000


def csv_cell(value: Any, field_type: str) -> str:
    """One stored value as CSV text. (Hot: called for every cell of an export, so plain text,
    the common case, takes the first and shortest path.)"""
    if value is None:
        return ""
    if value.__class__ is str and field_type != FieldType.JSON:
        return formula_safe(value, keep_numbers=True) if value[:1] in FORMULA_START else value
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if field_type == FieldType.JSON or isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    elif isinstance(value, list):
        text = "; ".join(str(v) for v in value)
    elif isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    return formula_safe(text, keep_numbers=True)


def export_queryset(*, database: ProfileDatabase, filters: dict[str, Any]) -> tuple[list[Field], QuerySet[Profile]]:
    """The fields (in the schema's order) and the matching profiles, oldest first.

    `filters` is {"q": search box text, "where": [[field, op, value], ...]}, as the list page
    keeps them. Raises selectors.FilterError for a filter that no longer applies.
    """
    fields = list(database.fields.all())
    qs = profile_list(
        database=database,
        q=str(filters.get("q", "")),
        conditions=conditions_from(filters.get("where", [])),
        fields={f.name: f for f in fields},
    )
    return fields, qs.order_by("id")


def profiles_export(
    *, database: ProfileDatabase, filters: dict[str, Any], out: IO[str], progress: Callable[[int], None] | None = None
) -> int:
    """Write the matching profiles of `database` as CSV to `out` (a text stream opened with
    newline=""). The header is the field names. Returns how many profiles were written."""
    fields, qs = export_queryset(database=database, filters=filters)
    columns = [f.name for f in fields if f.is_system]
    at = {name: i for i, name in enumerate(columns)}
    # Per output column: where the value comes from (a column index, or a key of `data`) and its type.
    plan = [(at[f.name] if f.is_system else None, f.name, f.type) for f in fields]
    data_at = len(columns)
    writer = csv.writer(out)
    writer.writerow([f.name for f in fields])
    done = 0
    for row in qs.values_list(*columns, "data").iterator(chunk_size=CHUNK_SIZE):
        data = row[data_at] or {}
        writer.writerow([
            csv_cell(row[i] if i is not None else data.get(name), field_type) for i, name, field_type in plan
        ])
        done += 1
        if progress is not None and done % CHUNK_SIZE == 0:
            progress(done)
    return done


@transaction.atomic
def profiles_export_start(
    *, database: ProfileDatabase, actor: Actor, q: str = "", conditions: list[Condition] | None = None
) -> Job:
    """Start a background export of the profiles matching the list's search and filters.

    Returns the Job; its task writes the CSV and attaches it for download."""
    from profiles.tasks import profile_export_task

    where = [c.as_list() for c in conditions or [] if c.is_complete]
    filtered = bool(q.strip() or where)
    job = job_create(
        account=database.account,
        kind="profiles.export",
        title=f"Export of {database.name}" + (" (filtered)" if filtered else ""),
        created_by=actor.user,
        params={"database_id": database.pk, "q": q.strip(), "where": where},
    )
    audit_log(account=database.account, actor=actor, verb="profiles.exported", target=database,
              data={"job": job.pk, "q": q.strip(), "where": where})
    profile_export_task.delay_on_commit(job.pk)
    return job
