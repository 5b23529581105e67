"""manage.py import_events FILE --account SLUG --database SLUG [--create-profiles] [--batch 1000]
[--errors FILE] [--format auto|jsonl|csv] [--platform-types]

Reads events from JSON Lines (one event a line, shaped like an item of `POST /api/v1/events/batch`)
or CSV (columns id, event, time, profile_key, profile_value, properties (a JSON object), channel,
resource; header required, only event, profile_key and profile_value are required) and stores them
through `history.services.ingest_payloads` in batches, with source "import". Prints one summary
line, `lines=N stored=N duplicate=N error=N profiles_created=N`; each refused line is reported
with its line number, field and reason on stderr, or in a CSV with --errors.

Re-running the same file stores nothing twice for lines that carry an "id" (the event id is the
idempotency key); lines without one are stored again. Exit status: 0 when every line was stored
or was a duplicate, 1 when any line was refused (the others are kept).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from history.services import MAX_BATCH, TypeBook, ingest_payloads
from profiles.models import ProfileDatabase

CSV_COLUMNS = ("id", "event", "time", "profile_key", "profile_value", "properties", "channel", "resource")
CSV_REQUIRED = ("event", "profile_key", "profile_value")
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


@dataclass
class Line:
    """One record of the file: the event item, or why it could not be read."""

    number: int
    item: Any = None
    field: str = ""
    error: str = ""


@dataclass
class Tally:
    lines: int = 0
    stored: int = 0
    duplicate: int = 0
    error: int = 0
    profiles_created: int = 0
    stored_without_id: int = 0

    def line(self) -> str:
        return (f"lines={self.lines} stored={self.stored} duplicate={self.duplicate} error={self.error} "
                f"profiles_created={self.profiles_created}")


class _Decoded:
    """Decodes a binary file line by line as UTF-8, remembering the lines that are not (their text
    is kept with replacement characters, so a CSV record spanning them can be refused by number)."""

    def __init__(self, binary: IO[bytes]) -> None:
        self.binary = binary
        self.bad: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self.binary, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                self.bad.add(number)
                text = raw.decode("utf-8", errors="replace")
            yield text


def read_jsonl(binary: IO[bytes]) -> Iterator[Line]:
    decoded = _Decoded(binary)
    for number, text in enumerate(decoded, start=1):
        if number in decoded.bad:
            yield Line(number, error="is not UTF-8 text")
            continue
        if not text.strip():
            continue
        try:
            yield Line(number, item=json.loads(text))
        except json.JSONDecodeError as exc:
            yield Line(number, error=f"is not valid JSON: {exc.msg} at column {exc.colno}")
        except RecursionError:
            yield Line(number, error="is nested too deeply")


def read_csv(binary: IO[bytes]) -> Iterator[Line]:
    decoded = _Decoded(binary)
    reader = csv.reader(decoded)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise CommandError(f"line 1: the header cannot be read: {exc}") from None
    names = [h.strip().lower() for h in header]
    unknown = [h for h in names if h not in CSV_COLUMNS]
    if unknown:
        raise CommandError(f"Unknown column(s): {', '.join(repr(h) for h in unknown)}. "
                           f"The columns are: {', '.join(CSV_COLUMNS)}.")
    missing = [c for c in CSV_REQUIRED if c not in names]
    if missing:
        raise CommandError(f"Missing column(s): {', '.join(missing)}. The header names: {', '.join(CSV_COLUMNS)} "
                           f"(only {', '.join(CSV_REQUIRED)} are required).")
    if len(set(names)) != len(names):
        raise CommandError("A column appears twice in the header.")
    end = reader.line_num
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            yield Line(start, error=f"cannot be read as CSV: {exc}")
            continue
        end = reader.line_num
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if any(n in decoded.bad for n in range(start, end + 1)):
            yield Line(start, error="is not UTF-8 text")
        elif len(cells) != len(names):
            yield Line(start, error=f"has {len(cells)} cells; the header has {len(names)}")
        else:
            yield _csv_item(start, dict(zip(names, cells, strict=True)))


def _csv_item(number: int, row: dict[str, str]) -> Line:
    item: dict[str, Any] = {}
    for key in ("id", "event", "time", "channel", "resource"):
        value = (row.get(key) or "").strip()
        if value:
            item[key] = value
    key, value = (row.get("profile_key") or "").strip(), (row.get("profile_value") or "").strip()
    if not key:
        return Line(number, field="profile_key", error="name the match key (e.g. email, or id)")
    item["profile"] = {key: value}
    raw = (row.get("properties") or "").strip()
    if raw:
        try:
            item["properties"] = json.loads(raw)
        except json.JSONDecodeError as exc:
            return Line(number, field="properties", error=f"is not valid JSON: {exc.msg} at character {exc.pos + 1}")
        except RecursionError:
            return Line(number, field="properties", error="is nested too deeply")
    return Line(number, item=item)


def _batches(lines: Iterable[Line], size: int) -> Iterator[list[Line]]:
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Command(BaseCommand):
    help = (
        "Import events from a JSON Lines file (one event a line, shaped like an item of POST /api/v1/events/batch) "
        "or a CSV (columns id,event,time,profile_key,profile_value,properties,channel,resource). Lines with an id "
        "already stored are skipped as duplicates, so a re-run stores nothing twice. Exit status 0 when every "
        "line was stored or a duplicate, 1 when any line was refused (the rest is kept)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="a .jsonl/.ndjson or .csv file")
        parser.add_argument("--account", required=True, help="the account's slug")
        parser.add_argument("--database", required=True, help="the profile database's slug")
        parser.add_argument("--create-profiles", action="store_true",
                            help="create the profiles the events name that do not exist (otherwise those lines fail)")
        parser.add_argument("--batch", type=int, default=MAX_BATCH, help=f"events a batch, 1 to {MAX_BATCH} (default {MAX_BATCH})")
        parser.add_argument("--errors", default="", help="write the refused lines (line,field,message) to this CSV file "
                                                         "instead of stderr")
        parser.add_argument("--format", default="auto", choices=["auto", "jsonl", "csv"],
                            help="default: by the file's suffix (.csv, or .jsonl/.ndjson/.json), else by its first character")
        parser.add_argument("--platform-types", action="store_true",
                            help="also accept the types only the platform records (message.sent, message.opened...), "
                                 "e.g. to bring over the history of another system")

    def handle(self, *args: Any, **opts: Any) -> None:
        account = Account.objects.filter(slug=opts["account"]).first()
        if account is None:
            raise CommandError(f"No account with the slug {opts['account']!r}.")
        database = ProfileDatabase.objects.for_account(account).filter(slug=opts["database"]).first()
        if database is None:
            known = ", ".join(ProfileDatabase.objects.for_account(account).values_list("slug", flat=True)[:20])
            raise CommandError(f"No profile database {opts['database']!r} in {account.slug}" + (f" (there is: {known})." if known else "."))
        database.account = account
        size = opts["batch"]
        if not 1 <= size <= MAX_BATCH:
            raise CommandError(f"--batch must be between 1 and {MAX_BATCH}.")
        path = Path(opts["file"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file.")
        errors_to = Path(opts["errors"]).open("w", newline="", encoding="utf-8") if opts["errors"] else nullcontext()  # noqa: SIM115
        with path.open("rb") as binary, errors_to as report:
            fmt = opts["format"] if opts["format"] != "auto" else _guess_format(path, binary)
            writer = csv.writer(report) if report is not None else None
            if writer is not None:
                writer.writerow(["line", "field", "message"])
            lines = read_csv(binary) if fmt == "csv" else read_jsonl(binary)
            tally = self._run(account, database, lines, size=size, create_profiles=opts["create_profiles"],
                              public_only=not opts["platform_types"], writer=writer)
        audit_log(account=account, actor=Actor.system(), verb="history.events_imported", target=database,
                  target_label=f"{database.name}: {path.name}",
                  data={"lines": tally.lines, "stored": tally.stored, "duplicate": tally.duplicate, "error": tally.error,
                        "profiles_created": tally.profiles_created})
        self.stdout.write(tally.line())
        if tally.stored_without_id:
            self.stdout.write(f"note: {tally.stored_without_id:,} stored event(s) had no id; running this import "
                              f"again would store them again.")
        if tally.error:
            where = f"see {opts['errors']}" if opts["errors"] else "listed above"
            raise CommandError(f"{tally.error:,} line(s) were refused ({where}); the others were imported.", returncode=1)

    def _run(self, account: Account, database: ProfileDatabase, lines: Iterable[Line], *, size: int, create_profiles: bool,
             public_only: bool, writer: Any) -> Tally:
        from resources.models import Resource  # below history: the allowed direction

        tally = Tally()
        book = TypeBook.load(account)
        resource_ids = dict(Resource.objects.filter(database=database).values_list("slug", "id"))
        progress = sys.stderr.isatty()

        for batch in _batches(lines, size):
            tally.lines += len(batch)
            refused = [(line.number, line.field, line.error) for line in batch if line.error]
            readable = [line for line in batch if not line.error]
            outcome = ingest_payloads(account=account, database=database, items=[line.item for line in readable],
                                      create_profiles=create_profiles, source="import", public_only=public_only,
                                      resource_ids=resource_ids, book=book)
            tally.profiles_created += outcome.profiles_created
            for line, result in zip(readable, outcome.results, strict=True):
                if result.status == "error":
                    refused.append((line.number, result.field, result.error))
                elif result.status == "duplicate":
                    tally.duplicate += 1
                else:
                    tally.stored += 1
                    if not (isinstance(line.item, dict) and line.item.get("id") not in (None, "")):
                        tally.stored_without_id += 1
            tally.error += len(refused)
            for number, field, message in sorted(refused):
                if writer is not None:
                    writer.writerow([number, field, message])
                else:
                    self.stderr.write(f"line {number}: {field + ': ' if field else ''}{message}")
            if progress:
                self.stderr.write(f"\r{tally.lines:,} lines", ending="")
        if progress:
            self.stderr.write("")
        return tally


def _guess_format(path: Path, binary: IO[bytes]) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    head = binary.read(4096)
    binary.seek(0)
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"
