"""Import a suppression list from a CSV file: `manage.py import_suppressions <account-slug> <file.csv>`."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.access import Actor
from accounts.models import Account
from resources.suppressions_io import SuppressionImportError, suppressions_import


class Command(BaseCommand):
    help = "Add the rows of a CSV (value[, kind, reason, note]; header optional) to an account's suppression list."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account", help="the account's slug")
        parser.add_argument("file", help="a CSV file")
        parser.add_argument("--errors", default="", help="write the rows that could not be imported to this CSV file")

    def handle(self, *args: Any, **options: Any) -> None:
        account = Account.objects.filter(slug=options["account"]).first()
        if account is None:
            raise CommandError(f"No account with the slug {options['account']!r}.")
        errors_out = open(options["errors"], "w", encoding="utf-8-sig", newline="") if options["errors"] else None  # noqa: SIM115
        try:
            with open(options["file"], "rb") as fh:
                result = suppressions_import(
                    account=account, binary=fh, actor=Actor.system(), source="import:command", errors_out=errors_out,
                    progress=lambda n: self.stderr.write(f"\r{n:,} rows", ending="") if sys.stderr.isatty() else None,
                )
        except OSError as exc:
            raise CommandError(str(exc)) from None
        except SuppressionImportError as exc:
            raise CommandError(str(exc)) from None
        finally:
            if errors_out is not None:
                errors_out.close()
        for e in result.errors:
            self.stderr.write(f"row {e['row']}: {e['value']!r}: {e['reason']}")
        self.stdout.write(result.message())
