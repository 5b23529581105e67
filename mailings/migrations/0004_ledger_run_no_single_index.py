"""The ledger's run foreign key loses its single-column index (see LedgerEntry.run).

Only the index is dropped: AlterField would also drop and re-add the foreign key, and re-adding
it checks every row of the ledger under a lock. The index name is the one Django gave it (the
same on PostgreSQL and SQLite)."""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "mailings_ledgerentry_run_id_6e9f3123"


class Migration(migrations.Migration):

    dependencies = [
        ('mailings', '0003_ledger_lease_index_on_leases'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='ledgerentry',
                    name='run',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name='entries', to='mailings.run'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=f'CREATE INDEX "{INDEX}" ON "mailings_ledgerentry" ("run_id")',
                ),
            ],
        ),
    ]
