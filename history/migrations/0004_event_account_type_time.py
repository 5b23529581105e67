"""The index segments read "events of type X in a window" from: (account, type, occurred_at),
covering profile_id on PostgreSQL so the set is an index-only scan. Built CONCURRENTLY there, so a
live platform keeps ingesting while it is made (hence not atomic)."""

from django.db import migrations, models

NAME = "event_account_type_time_idx"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NAME} ON history_event "
                              "(account_id, type_id, occurred_at) INCLUDE (profile_id)")
    else:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON history_event (account_id, type_id, occurred_at)")


def backwards(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("history", "0003_event_dispatch")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.AddIndex(
                    model_name="event",
                    index=models.Index(fields=["account", "type", "occurred_at"], include=["profile"],
                                       name=NAME),
                ),
            ],
        ),
    ]
