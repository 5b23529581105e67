"""Prefix search on names (`istartswith`, compiled by Django to UPPER(col::text) LIKE UPPER('x%'))
uses these expression indexes on PostgreSQL. SQLite, the embedded default, goes without."""

from __future__ import annotations

from django.db import migrations

INDEXES = {
    "profile_db_upper_first_idx": "first_name",
    "profile_db_upper_last_idx": "last_name",
}


def create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "profiles_profile" '
            f'(database_id, (UPPER("{column}"::text)) text_pattern_ops)'
        )


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("profiles", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
