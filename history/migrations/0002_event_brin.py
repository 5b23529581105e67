"""PostgreSQL only: a BRIN index on occurred_at for retention's "older than" scans (a few pages
per million rows; events arrive roughly in time order, which is what BRIN needs), and
autovacuum settings for a big append-mostly table."""

from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE INDEX IF NOT EXISTS event_occurred_brin ON history_event USING brin (occurred_at) "
                          "WITH (pages_per_range = 32)")
    schema_editor.execute("ALTER TABLE history_event SET (autovacuum_vacuum_scale_factor = 0.02, "
                          "autovacuum_analyze_scale_factor = 0.01, autovacuum_vacuum_insert_scale_factor = 0.05)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS event_occurred_brin")


class Migration(migrations.Migration):
    dependencies = [("history", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
