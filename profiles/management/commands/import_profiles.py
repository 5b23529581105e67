"""manage.py import_profiles --account SLUG --database SLUG [--match FIELD] [--mode upsert|insert|update]
[--errors FILE] [--ignore-unknown] [--clear-empty] [--include-erased] [--subscribe RESOURCE:CHANNEL:STATUS] FILE

Runs the import pipeline synchronously (no Celery): columns map by header to field names (or
labels; case, spaces, _ and - ignored). Prints a progress bar on stderr when it is a terminal,
and ends with one line: created=N updated=N unchanged=N failed=N. Options of other apps' import
hooks (e.g. --subscribe, registered by resources) come from profiles.importing.hooks and print
their counts on a line of their own.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from profiles.importing import (
    DELIMITERS,
    ENCODINGS,
    ImportFileError,
    ImportMappingError,
    Options,
    import_file,
    normalise,
    sniff,
    writable_fields,
)
from profiles.importing.hooks import IMPORT_HOOKS
from profiles.models import ProfileDatabase


class Command(BaseCommand):
    help = "Import profiles from a CSV or XLSX file into a profile database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the CSV or XLSX file")
        parser.add_argument("--account", required=True, help="the account's slug")
        parser.add_argument("--database", required=True, help="the profile database's slug")
        parser.add_argument("--match", default="", help="the match key (default: the database's first match key)")
        parser.add_argument("--mode", default="upsert", choices=["upsert", "insert", "update"])
        parser.add_argument("--errors", default="", help="write the error report (CSV) to this file")
        parser.add_argument("--ignore-unknown", action="store_true", help="skip columns that name no field")
        parser.add_argument("--clear-empty", action="store_true", help="empty cells clear stored values")
        parser.add_argument("--include-erased", action="store_true", help="import erased people too")
        parser.add_argument("--encoding", default="", choices=["", *ENCODINGS], help="override the sniffed encoding")
        parser.add_argument("--delimiter", default="", help="override the sniffed delimiter (, ; tab |)")
        for name, hook in IMPORT_HOOKS.items():
            if hook.parse_cli is not None:
                parser.add_argument(f"--{name}", dest=f"hook_{name}", default="", metavar="TEXT", help=hook.cli_help or hook.label)

    def handle(self, *args: Any, **opts: Any) -> None:
        account = Account.objects.filter(slug=opts["account"]).first()
        if account is None:
            raise CommandError(f"No account with the slug {opts['account']!r}.")
        database = ProfileDatabase.objects.for_account(account).select_related("account").filter(slug=opts["database"]).first()
        if database is None:
            raise CommandError(f"No profile database {opts['database']!r} in {account.slug}.")
        extra: dict[str, Any] = {}
        for name, hook in IMPORT_HOOKS.items():
            text = opts.get(f"hook_{name}") or ""
            if hook.parse_cli is not None and text:
                try:
                    extra[name] = hook.parse_cli(database, text)
                except ValueError as exc:
                    raise CommandError(f"--{name}: {exc}") from None
        path = Path(opts["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file.")
        delimiter = {"tab": "\t", "\\t": "\t"}.get(opts["delimiter"], opts["delimiter"])
        if delimiter and delimiter not in DELIMITERS:
            raise CommandError("--delimiter must be one of , ; tab |")
        with path.open("rb") as fh:
            try:
                info = sniff(fh, size=path.stat().st_size, encoding=opts["encoding"], delimiter=delimiter)
            except ImportFileError as exc:
                raise CommandError(f"{path}: {exc}") from None
            options = Options(
                self._mapping(database, info.headers, ignore_unknown=opts["ignore_unknown"]),
                opts["match"] or database.default_match_key, opts["mode"], opts["clear_empty"], not opts["include_erased"],
                extra=extra,
            )
            bar = _Bar(sys.stderr) if sys.stderr.isatty() else None
            errors_to = Path(opts["errors"]).open("w", newline="", encoding="utf-8-sig") if opts["errors"] else nullcontext()  # noqa: SIM115
            with errors_to as report:
                try:
                    result = import_file(database=database, file=fh, info=info, options=options, report=report,
                                         progress=bar, source="import:command", actor_label="manage.py import_profiles")
                except (ImportFileError, ImportMappingError) as exc:
                    raise CommandError(str(exc)) from None
                finally:
                    if bar is not None:
                        bar.done()
        audit_log(account=account, actor=Actor.system(), verb="profiles.imported", target=database,
                  target_label=f"{database.name}: {path.name}",
                  data={"rows": result.rows, "created": result.created, "updated": result.updated, "failed": result.failed})
        for e in result.errors[:5]:
            self.stderr.write(f"row {e['row'] or '-'} {e['column']}: {e['reason']}")
        if result.error_lines > 5:
            self.stderr.write(f"… {result.error_lines - 5:,} more problem(s)" + (f" in {opts['errors']}" if opts["errors"] else " (use --errors FILE)"))
        self.stdout.write(f"rows={result.rows} skipped={result.skipped} duplicates={result.duplicates}")
        self.stdout.write(result.line())
        for name, report in result.extra.items():
            counts = " ".join(f"{k}={v}" for k, v in report.items() if isinstance(v, int)) if isinstance(report, dict) else report
            self.stdout.write(f"{name}: {counts}")

    def _mapping(self, database: ProfileDatabase, headers: list[str], *, ignore_unknown: bool) -> dict[int, str]:
        fields = writable_fields(database)
        by_key: dict[str, str] = {}
        for f in fields:
            by_key.setdefault(normalise(f.name), f.name)
            by_key.setdefault(normalise(f.label), f.name)
        mapping: dict[int, str] = {}
        unknown, taken = [], {}
        for i, header in enumerate(headers):
            name = by_key.get(normalise(header))
            if name is None:
                unknown.append(header)
            elif name in taken:
                raise CommandError(f"The columns {taken[name]!r} and {header!r} both name the field {name!r}.")
            else:
                taken[name] = header
                mapping[i] = name
        if unknown and not ignore_unknown:
            raise CommandError(
                f"Unknown column(s): {', '.join(repr(h) for h in unknown)}. Known fields: "
                f"{', '.join(f.name for f in fields)}. Rename the columns, or pass --ignore-unknown to skip them."
            )
        return mapping


class _Bar:
    """[#######.............]  35%  350,000 rows, redrawn in place on a terminal."""

    WIDTH = 30

    def __init__(self, out: Any) -> None:
        self.out = out

    def __call__(self, done: int, total: int | None, message: str) -> None:
        share = min(1.0, done / total) if total else 0.0
        filled = int(share * self.WIDTH)
        self.out.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:4.0%}  {message[:60]:<60}")
        self.out.flush()

    def done(self) -> None:
        self.out.write("\n")
        self.out.flush()
