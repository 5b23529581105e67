"""manage.py export_profiles --account SLUG --database SLUG [--output FILE]: a database's profiles as CSV."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Account
from profiles.exporting import profiles_export
from profiles.models import ProfileDatabase


class Command(BaseCommand):
    help = "Write every profile of a database as CSV (header: the field names) to stdout or a file."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--account", required=True, help="The account's slug (Account settings shows it).")
        parser.add_argument("--database", required=True, help="The profile database's slug.")
        parser.add_argument("--output", "-o", default="", help="A file to write; stdout when left out.")

    def handle(self, *args: Any, **options: Any) -> None:
        account = Account.objects.filter(slug=options["account"]).first()
        if account is None:
            raise CommandError(f"There is no account {options['account']!r}.")
        database = ProfileDatabase.objects.for_account(account).select_related("account").filter(
            slug=options["database"]
        ).first()
        if database is None:
            raise CommandError(f"{account.name} has no profile database {options['database']!r}.")
        def progress(n: int) -> None:
            if options["verbosity"] > 0:
                self.stderr.write(f"{n:,} profiles written…")

        if options["output"]:
            with open(options["output"], "w", encoding="utf-8", newline="") as out:
                written = profiles_export(database=database, filters={}, out=out, progress=progress)
            self.stderr.write(f"Exported {written:,} profiles of {database.name} to {options['output']}.")
        else:
            # Rows go out as they are read; the summary goes to stderr so a pipe gets only CSV.
            self.stdout.ending = ""
            written = profiles_export(database=database, filters={}, out=self.stdout, progress=progress)
            self.stdout.flush()
            self.stderr.write(f"Exported {written:,} profiles of {database.name}.")
