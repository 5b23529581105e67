"""Profile import: a CSV or XLSX file streamed into a profile database.

One pass over the file, a batch of rows at a time (memory does not grow with the file):
records are read (CSV: encoding and delimiter sniffed; XLSX: openpyxl read-only), each mapped
cell is converted with the database's field types, and a row with any bad cell goes to the
error report (row, column, value, reason) while every valid row is staged. Staged rows are
then applied set-based in one transaction:

- PostgreSQL: each batch is COPYed into a TEMP staging table; then duplicates of the match key
  are resolved in SQL (the last row of the file wins), erased people and values that would
  break a unique field are taken out (and reported), one join with the profiles finds the rows
  that exist and, of those, the ones that change (their per-field diffs become ProfileChange
  rows), one UPDATE .. FROM updates those, and one INSERT .. SELECT creates the rest.
  Why not one INSERT .. ON CONFLICT DO UPDATE: "empty leaves the value" on NOT NULL columns,
  defaults and required fields for new profiles only, and the old values a diff needs do not
  fit through EXCLUDED; it also locks every conflicting row (a re-run would write them all), and
  a plain INSERT costs 40% less than a speculative one (ON CONFLICT DO NOTHING stays as the
  fallback when someone creates one of the profiles meanwhile).
- SQLite (the embedded default, small files): the same staging table and SQL dedupe, then the
  staged rows are applied in batches with one lookup query per batch and bulk_create/update.

Semantics: an empty cell leaves the stored value as it is, unless `clear_empty` (then it
clears it); re-running the same file changes nothing (updated_at moves only when a value
changes); formula-looking cells are data and are only defused in the error-report CSV.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import secrets
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any, BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Job
from profiles.fieldtypes import (
    CONVERTERS,
    MAX_STRING,
    MAX_TEXT,
    FieldType,
    FieldValueError,
    is_empty,
    to_boolean,
    to_date,
    to_datetime,
    to_email,
    to_timezone,
)
from profiles.models import (
    WRITABLE_SYSTEM_FIELDS,
    ErasedIdentity,
    Field,
    Profile,
    ProfileChange,
    ProfileDatabase,
    ProfileImport,
)
from profiles.services import Schema, apply_values, erased_hash

MAX_BYTES_DEFAULT = 2 * 1024**3
SNIFF_BYTES = 64 * 1024
BATCH_ROWS = 10_000
SAMPLE_ROWS = 5
ERROR_SAMPLE = 20
ERROR_REPORT_MAX_LINES = 1_000_000
DELIMITERS = (",", ";", "\t", "|")
ENCODINGS = ("utf-8", "utf-8-sig", "cp1251", "cp1252", "utf-16")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ImportFileError(Exception):
    """A file that cannot be imported at all (empty, binary, not CSV/XLSX, too big); says why."""


class ImportMappingError(Exception):
    """A mapping that cannot run: `messages` lists what to fix."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("; ".join(messages))


def max_bytes() -> int:
    return int(getattr(settings, "PROFILE_IMPORT_MAX_BYTES", MAX_BYTES_DEFAULT))


# --- sniffing ------------------------------------------------------------------------------------


@dataclass
class FileInfo:
    format: str  # csv | xlsx
    encoding: str = ""
    delimiter: str = ""
    headers: list[str] = field(default_factory=list)
    sample: list[list[str]] = field(default_factory=list)
    rows_estimate: int | None = None


_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x1f\x8b", "a gzip archive (unpack it and upload the CSV inside)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or password-protected file (save it as .xlsx or CSV)"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)


def sniff(file: BinaryIO, *, size: int, encoding: str = "", delimiter: str = "") -> FileInfo:
    """What the file is and how to read it: format, encoding, delimiter, headers and a sample.

    Reads at most the first 64 KB (CSV) or the first rows (XLSX). Raises ImportFileError with a
    message for a person when the file is empty, too big, binary or has no header row.
    """
    if size == 0:
        raise ImportFileError("The file is empty.")
    if size > max_bytes():
        raise ImportFileError(f"The file is {size / 1024**2:,.0f} MB; the limit is {max_bytes() / 1024**2:,.0f} MB. Split it into smaller files.")
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    file.seek(0)
    if head.startswith(b"PK\x03\x04"):
        return _sniff_xlsx(file)
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise ImportFileError(f"This is {what}, not a CSV or XLSX file.")
    encoding = encoding or _sniff_encoding(head)
    if not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and _looks_binary(head):
        raise ImportFileError("This is not a text file: it holds binary data. Upload a CSV (text) or XLSX file.")
    text = _decode_head(head, encoding, whole=len(head) == size)
    if not text.strip():
        raise ImportFileError("The file is empty (it holds only blank lines).")
    delimiter = delimiter or _sniff_delimiter(text)
    records = _head_records(text, delimiter, complete=len(head) == size)
    if not records:
        raise ImportFileError("The first row is not readable as CSV (check the quotes).")
    # Bytes the encoding cannot read show as U+FFFD here (a wrong encoding looks garbled, and the
    # database would refuse the lone surrogates they decode to).
    records = [[_SURROGATE.sub("\ufffd", c) for c in r] for r in records]
    headers = _clean_headers(records[0])
    sample = [[c[:200] for c in r] for r in records[1 : SAMPLE_ROWS + 1]]
    if len(records) < 2 and len(head) == size:
        raise ImportFileError("The file has a header row but no data rows.")
    per_record = max(1, len(text.encode(encoding if "16" not in encoding else "utf-8", "replace")) // max(1, len(records)))
    return FileInfo("csv", encoding, delimiter, headers, sample, max(1, size // per_record - 1))


def _sniff_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "cp1251"


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head[:4096] if b < 32 and b not in (9, 10, 13, 12))
    return controls > max(8, len(head[:4096]) // 20)


def _decode_head(head: bytes, encoding: str, *, whole: bool) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(_ERRORS)
    return decoder.decode(head, final=whole)


def _sniff_delimiter(text: str) -> str:
    lines = text.splitlines()[:50]
    best, best_score = ",", (0, 0)
    for d in DELIMITERS:
        rows = list(csv.reader(lines[:-1] if len(lines) > 2 else lines, delimiter=d))
        if not rows:
            continue
        width = len(rows[0])
        consistent = sum(1 for r in rows if len(r) == width)
        score = (consistent if width > 1 else 0, width)
        if score > best_score:
            best, best_score = d, score
    return best


def _head_records(text: str, delimiter: str, *, complete: bool) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    records: list[list[str]] = []
    try:
        for rec in reader:
            if any(c.strip() for c in rec):
                records.append(rec)
            if len(records) > SAMPLE_ROWS + 200:
                break
    except csv.Error:
        pass
    if not complete and len(records) > 2:
        records.pop()  # may be cut at the 64 KB boundary
    return records


def _clean_headers(row: list[Any]) -> list[str]:
    out = []
    for i, h in enumerate(row):
        text = "" if h is None else str(h).strip().lstrip("\ufeff")
        out.append(text[:200] or f"Column {i + 1}")
    while len(out) > 1 and out[-1].startswith("Column ") and (row[len(out) - 1] in (None, "")):
        out.pop()
    return out


def _sniff_xlsx(file: BinaryIO) -> FileInfo:
    try:
        with zipfile.ZipFile(file) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        raise ImportFileError("This ZIP file is damaged; it is not a readable XLSX file.") from None
    if "xl/workbook.xml" not in names:
        raise ImportFileError("This is a ZIP archive, not an XLSX workbook. Upload the CSV or XLSX file itself.")
    file.seek(0)
    rows, total = [], None
    try:
        with _open_workbook(file) as sheet:
            total = sheet.max_row
            for values in sheet.iter_rows(values_only=True):
                if any(v not in (None, "") for v in values):
                    rows.append(list(values))
                if len(rows) > SAMPLE_ROWS:
                    break
    except ImportFileError:
        raise
    except Exception as exc:  # openpyxl raises many types for damaged files
        raise ImportFileError(f"This XLSX file cannot be read ({type(exc).__name__}). Save it again from your spreadsheet program.") from None
    if not rows:
        raise ImportFileError("The workbook's first sheet is empty.")
    if len(rows) < 2:
        raise ImportFileError("The first sheet has a header row but no data rows.")
    headers = _clean_headers(rows[0])
    sample = [[_cell_text(v)[:200] for v in r] for r in rows[1:]]
    return FileInfo("xlsx", "", "", headers, sample, (total - 1) if total else None)


class _open_workbook:
    """The first sheet of a workbook, read-only (streamed XML), cached formula values."""

    def __init__(self, file: BinaryIO) -> None:
        from openpyxl import load_workbook

        self.wb = load_workbook(file, read_only=True, data_only=True)

    def __enter__(self) -> Any:
        if not self.wb.worksheets:
            raise ImportFileError("The workbook has no sheets.")
        return self.wb.worksheets[0]

    def __exit__(self, *exc: object) -> None:
        self.wb.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


# --- reading records -----------------------------------------------------------------------------

# Undecodable bytes become lone surrogates (like "surrogateescape"), so a bad byte costs only its
# cell, not the file; the counter tells the reader to look for them (no scan while it is zero).
_ERRORS = "cdp-import"
_decode_errors = [0]


def _on_decode_error(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _decode_errors[0] += 1
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + b) for b in bad), exc.end


codecs.register_error(_ERRORS, _on_decode_error)
_SURROGATE = re.compile("[\udc00-\udcff]")


@dataclass
class Problem:
    """A record that could not be read as a row, or a cell that failed; one error-report line."""

    row: int
    column: str
    value: Any
    reason: str


class CsvRecords:
    """Records of a CSV file, streamed: `for row_no, cells in records`, problems in `.problems`.

    Row numbers count records as a spreadsheet shows them (the header is row 1). A record whose
    quotes are broken is reported and the lines it swallowed are read again, so one stray quote
    costs one row, not the rest of the file.
    """

    def __init__(self, file: BinaryIO, info: FileInfo) -> None:
        file.seek(0)
        self.text: io.TextIOWrapper | None = io.TextIOWrapper(file, encoding=info.encoding, errors=_ERRORS, newline="")
        self.delimiter = info.delimiter or ","
        self.width = len(info.headers)
        self.encoding = info.encoding
        self.buffer: list[str] = []
        self.pending: deque[str] = deque()
        self.line = 1  # physical line of buffer[0]
        self.problems: list[Problem] = []

    def _lines(self) -> Iterator[str]:
        buffer, pending = self.buffer, self.pending
        for line in self.text:
            while pending:
                item = pending.popleft()
                buffer.append(item)
                yield item
            buffer.append(line)
            yield line
        while pending:
            item = pending.popleft()
            buffer.append(item)
            yield item
        self.exhausted = True

    def _reader(self) -> Any:
        self.exhausted = False
        return csv.reader(self._lines(), delimiter=self.delimiter, strict=True)

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        reader = self._reader()
        buffer, width = self.buffer, self.width
        row_no = 0
        header_seen = False
        errors_seen = _decode_errors[0]
        while True:
            self.line += len(buffer)
            buffer.clear()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row_no += 1
                self._broken(row_no, str(exc))
                if self.exhausted and self.pending:
                    reader = self._reader()  # the stray quote was in the last lines: read them again
                continue
            row_no += 1
            if not header_seen:  # the header: the first record that is not blank
                header_seen = any(c.strip() for c in cells)
                continue
            n = len(cells)
            if n != width:
                if n > width and any(c.strip() for c in cells[width:]):
                    if len(buffer) > 1:
                        self._broken(row_no, "misplaced quote")
                    else:
                        self.problems.append(Problem(row_no, "", "", (
                            f"the row has {n} cells but the header has {width} (check the delimiter and quotes "
                            f"around values that contain {self._delimiter_name()})")))
                    continue
                if n < width and len(buffer) > 1 and any("\n" in c or "\r" in c for c in cells):
                    self._broken(row_no, "unclosed quote")
                    continue
                cells = cells[:width] if n > width else cells + [""] * (width - n)
            if _decode_errors[0] != errors_seen:
                bad = next((i for i, c in enumerate(cells) if _SURROGATE.search(c)), None)
                if bad is not None:
                    value = _SURROGATE.sub("\ufffd", cells[bad])
                    self.problems.append(Problem(row_no, str(bad), value, (
                        f"holds bytes that are not valid {self.encoding} text (save the file as UTF-8, or pick "
                        "the right encoding when you map the columns)")))
                    continue
            yield row_no, cells

    def close(self) -> None:
        """Let go of the file without closing it (the caller opened it)."""
        if self.text is not None:
            self.text.detach()
            self.text = None

    def _delimiter_name(self) -> str:
        return {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}[self.delimiter]

    def _broken(self, row_no: int, why: str) -> None:
        lines = len(self.buffer)
        where = f"line {self.line}" if lines <= 1 else f"lines {self.line}-{self.line + lines - 1}"
        if "field larger" in why:
            reason = f"a quoted cell starting on line {self.line} is not closed, or a cell is longer than {csv.field_size_limit():,} characters"
        elif "unexpected end" in why or "unclosed" in why:
            reason = f"a quoted cell starting on line {self.line} is not closed before the end of the file"
        else:
            reason = f"a quote in the middle of a cell ({where}); quotes inside a quoted cell must be doubled (\"\")"
        first = self.buffer[0][:200] if self.buffer else ""
        self.problems.append(Problem(row_no, "", first.rstrip("\r\n"), f"broken quotes: {reason}"))
        if lines > 1:
            # Read the swallowed lines again: only the row with the stray quote is lost.
            self.pending.extendleft(reversed(self.buffer[1:]))
            del self.buffer[1:]


class XlsxRecords:
    """Rows of the first sheet of a workbook (read-only, streamed)."""

    def __init__(self, file: BinaryIO, info: FileInfo) -> None:
        file.seek(0)
        self.file = file
        self.width = len(info.headers)
        self.problems: list[Problem] = []

    def __iter__(self) -> Iterator[tuple[int, list[Any]]]:
        width = self.width
        with _open_workbook(self.file) as sheet:
            row_no = (sheet.min_row or 1) - 1
            header_seen = False
            for values in sheet.iter_rows(values_only=True):
                row_no += 1
                if not header_seen:
                    if any(v not in (None, "") for v in values):
                        header_seen = True
                    continue
                cells = [int(v) if v.__class__ is float and v.is_integer() else v for v in values]
                n = len(cells)
                if n != width:
                    if n > width and any(v not in (None, "") for v in cells[width:]):
                        self.problems.append(Problem(row_no, "", "", f"the row has values in {n} columns but the header names {width}"))
                        continue
                    cells = cells[:width] if n > width else cells + [None] * (width - n)
                yield row_no, cells

    def close(self) -> None:
        pass


def open_records(file: BinaryIO, info: FileInfo) -> CsvRecords | XlsxRecords:
    return XlsxRecords(file, info) if info.format == "xlsx" else CsvRecords(file, info)


# --- mapping -------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    return re.sub(r"[\s_\-.]+", "", str(text)).casefold()


def writable_fields(database: ProfileDatabase) -> list[Field]:
    return [f for f in database.fields.all() if not f.read_only]


def auto_mapping(headers: list[str], fields: list[Field]) -> dict[int, str]:
    """Column index -> field name, for headers equal to a field's name or label (case, spaces,
    _ - and . ignored); a field is taken by its first matching column only."""
    by_key: dict[str, str] = {}
    for f in fields:
        by_key.setdefault(normalise(f.name), f.name)
        by_key.setdefault(normalise(f.label), f.name)
    out: dict[int, str] = {}
    for i, h in enumerate(headers):
        name = by_key.get(normalise(h))
        if name and name not in out.values():
            out[i] = name
    return out


@dataclass
class Options:
    mapping: dict[int, str]
    match_key: str
    mode: str = "upsert"
    clear_empty: bool = False
    skip_erased: bool = True


def check_options(database: ProfileDatabase, headers: list[str], options: Options, fields: list[Field] | None = None) -> list[str]:
    """What keeps this mapping from running (empty list: it can run)."""
    fields = fields if fields is not None else writable_fields(database)
    names = {f.name: f for f in fields}
    problems = []
    if options.mode not in ("upsert", "insert", "update"):
        problems.append(f"Unknown mode {options.mode!r}: use upsert, insert or update.")
    if options.match_key not in database.match_keys:
        problems.append(f"{options.match_key!r} is not a match key of this database (match keys: {', '.join(database.match_keys)}).")
    seen: dict[str, int] = {}
    for idx, name in sorted(options.mapping.items()):
        if not 0 <= idx < len(headers):
            problems.append(f"Column {idx + 1} does not exist in the file.")
        elif name not in names:
            problems.append(f"{headers[idx]!r} maps to {name!r}, which is not a field you can import into.")
        elif name in seen:
            problems.append(f"{headers[seen[name]]!r} and {headers[idx]!r} both map to {names[name].label}; pick one.")
        else:
            seen[name] = idx
    if options.match_key in names and options.match_key not in seen:
        label = names[options.match_key].label
        problems.append(f"No column maps to {label}, the match key: map the column that holds it, or pick another match key.")
    if not seen:
        problems.append("No column is mapped to a field.")
    return problems


# --- converting cells ----------------------------------------------------------------------------

Conv = Callable[[Any], Any]


def converter(sch: Schema, f: Field) -> Conv:
    """raw cell -> stored value (None for empty); raises FieldValueError. Same results as
    `Schema.convert`, with fast paths for the common shapes of CSV text."""
    ctx = sch.contexts.get(f.name, sch.ctx)
    official = to_timezone if f.name == "timezone" else CONVERTERS[f.type]

    def slow(raw: Any) -> Any:
        if is_empty(raw):
            return None
        return official(raw, ctx)

    if f.name == "timezone":
        return slow
    t = f.type
    if t in (FieldType.LIST, FieldType.JSON):

        def conv_json(raw: Any) -> Any:
            value = slow(raw)
            if value is not None and "\\u0000" in json.dumps(value):
                raise FieldValueError("contains a NUL character")  # the database cannot store it
            return value

        return conv_json
    if t in (FieldType.STRING, FieldType.TEXT):
        limit = MAX_STRING if t == FieldType.STRING else MAX_TEXT

        def conv(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if not v:
                    return None
                if len(v) <= limit and "\x00" not in v:
                    return v
            return slow(raw)

        return conv
    if t == FieldType.EMAIL:

        def conv_email(raw: Any) -> Any:
            if raw.__class__ is str and raw and not raw.isspace():
                return to_email(raw, ctx)
            return slow(raw)

        return conv_email
    if t == FieldType.INTEGER:

        def conv_int(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if not v:
                    return None
                if len(v) < 19 and v.isdigit() and v.isascii():
                    return int(v)
            return slow(raw)

        return conv_int
    if t == FieldType.DATE:

        def conv_date(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if not v:
                    return None
                if len(v) == 10 and v[4] == "-" and v[7] == "-" and v.isascii():
                    try:
                        date.fromisoformat(v)
                        return v
                    except ValueError:
                        pass
                return to_date(v, ctx)
            return slow(raw)

        return conv_date
    if t == FieldType.DATETIME:

        def conv_datetime(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if not v:
                    return None
                # Already canonical ("2024-05-01T10:30:00Z", years 1000-2999): valid means unchanged.
                if len(v) == 20 and v[10] == "T" and v[19] == "Z" and v[0] in "12" and v.isascii():
                    try:
                        datetime.fromisoformat(v)
                        return v
                    except ValueError:
                        pass
                return to_datetime(v, ctx)
            return slow(raw)

        return conv_datetime
    # Phones: to_phone has its own fast path for numbers already in E.164.
    if t == FieldType.BOOLEAN:
        words = {w: to_boolean(w, ctx) for w in ("true", "false", "yes", "no", "1", "0", "t", "f", "y", "n")}

        def conv_bool(raw: Any) -> Any:
            if raw.__class__ is str:
                value = words.get(raw.strip().lower())
                if value is not None:
                    return value
            return slow(raw)

        return conv_bool
    if t == FieldType.ENUM:
        choices = frozenset(ctx.choices)

        def conv_enum(raw: Any) -> Any:
            if raw.__class__ is str:
                v = raw.strip()
                if v in choices:
                    return v
            return slow(raw)

        return conv_enum
    return slow


@dataclass
class Column:
    index: int  # in the file
    header: str
    field: Field
    conv: Conv


@dataclass
class Plan:
    """What goes where: the mapped columns, in staging order, and the match key's position."""

    database: ProfileDatabase
    sch: Schema
    options: Options
    columns: list[Column]
    key: int  # position in columns

    @classmethod
    def build(cls, database: ProfileDatabase, headers: list[str], options: Options) -> Plan:
        sch = Schema.load(database)
        fields = [f for f in sch.fields.values() if not f.read_only]
        problems = check_options(database, headers, options, fields)
        if problems:
            raise ImportMappingError(problems)
        columns = [
            Column(idx, headers[idx], sch.fields[name], converter(sch, sch.fields[name]))
            for idx, name in sorted(options.mapping.items())
        ]
        for c in columns:
            if not _NAME_RE.match(c.field.name):
                raise ImportMappingError([f"The field name {c.field.name!r} cannot be imported."])
        key = next(i for i, c in enumerate(columns) if c.field.name == options.match_key)
        return cls(database, sch, options, columns, key)

    @property
    def key_field(self) -> Field:
        return self.columns[self.key].field

    def header_of(self, name: str) -> str:
        return next((c.header for c in self.columns if c.field.name == name), name)


# --- the error report ----------------------------------------------------------------------------


def csv_safe(value: Any) -> str:
    """A cell for the error-report CSV: a spreadsheet must not run it as a formula."""
    text = _SURROGATE.sub("\ufffd", "" if value is None else str(value))
    if len(text) > 1000:
        text = text[:1000] + "…"
    return "'" + text if text.startswith(_FORMULA_START) else text


class ErrorReport:
    """row, column, value, reason: one line per problem, written as it is found."""

    HEADER = ("row", "column", "value", "reason")

    def __init__(self, out: IO[str] | None) -> None:
        self.writer = csv.writer(out) if out is not None else None
        self.lines = 0
        self.sample: list[dict[str, Any]] = []
        if self.writer:
            self.writer.writerow(self.HEADER)

    def add(self, row: int | None, column: str, value: Any, reason: str) -> None:
        self.lines += 1
        if len(self.sample) < ERROR_SAMPLE:
            shown = _SURROGATE.sub("\ufffd", "" if value is None else str(value)[:200])
            self.sample.append({"row": row, "column": column, "value": shown, "reason": reason})
        if self.writer is None or self.lines > ERROR_REPORT_MAX_LINES:
            return
        if self.lines == ERROR_REPORT_MAX_LINES:
            self.writer.writerow(["", "", "", f"more problems follow; the report stops at {ERROR_REPORT_MAX_LINES:,} lines"])
            return
        self.writer.writerow([row or "", csv_safe(column), csv_safe(value), csv_safe(reason)])


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Result:
    """rows = created + updated + unchanged + failed + skipped + duplicates."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    skipped_erased: int = 0
    skipped_mode: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_lines: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        return f"created={self.created} updated={self.updated} unchanged={self.unchanged} failed={self.failed}"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Progress = Callable[[int, int | None, str], None]


def import_file(
    *, database: ProfileDatabase, file: BinaryIO, info: FileInfo, options: Options, report: IO[str] | None = None,
    progress: Progress | None = None, source: str = "import", actor_label: str = "",
) -> Result:
    """Import one file into `database`; problems go to `report` (CSV: row, column, value, reason).

    Raises ImportMappingError for a mapping that cannot run. Every write happens in one
    transaction at the end, so a crash stores nothing and running the file again is safe.
    """
    started = time.perf_counter()
    plan = Plan.build(database, info.headers, options)
    errors = ErrorReport(report)
    result = Result()
    writer = PostgresWriter(plan) if connection.vendor == "postgresql" else SqliteWriter(plan)
    records = open_records(file, info)
    try:
        try:
            rows, failed = _read(plan, records, writer, errors, progress, info)
        finally:
            records.close()
        result.rows, result.failed = rows, failed
        result.phases["read"] = time.perf_counter() - started
        if progress:
            progress(rows, rows, f"{rows:,} rows read; saving…")
        applied = time.perf_counter()
        writer.finish(result, errors, source=source, actor_label=actor_label)
        result.phases["apply"] = time.perf_counter() - applied
    finally:
        writer.close()
    result.errors, result.error_lines = errors.sample, errors.lines
    result.seconds = time.perf_counter() - started
    return result


def _read(plan: Plan, records: CsvRecords | XlsxRecords, writer: Writer, errors: ErrorReport,
          progress: Progress | None, info: FileInfo) -> tuple[int, int]:
    """The hot loop, a batch at a time and a column at a time (`map` over a column costs a third
    of a Python loop over cells): convert the mapped cells, report bad rows, stage the rest.
    Returns (rows read, rows failed); blank rows are not counted."""
    columns = [(c.index, c.conv, c.header) for c in plan.columns]
    required = [(c.index, c.header, c.field.label) for c in plan.columns if c.field.required] if plan.options.clear_empty else []
    key_col = plan.columns[plan.key]
    key_reason = f"{key_col.field.label} is empty: it is the match key, every row needs it"
    total = info.rows_estimate
    rows = failed = 0
    source = iter(records)
    while batch := list(itertools.islice(source, BATCH_ROWS)):
        row_nos = [r for r, _ in batch]
        cells = [c for _, c in batch]
        bad: dict[int, list[tuple[str, Any, str]]] = {}
        converted = []
        for idx, conv, header in columns:
            column = [c[idx] for c in cells]
            try:
                converted.append(list(map(conv, column)))
            except FieldValueError:
                converted.append(_convert_each(column, conv, header, bad))
        blank = set()
        for j, value in enumerate(converted[plan.key]):
            if value is None:
                if j not in bad and _blank(cells[j]):
                    blank.add(j)
                elif is_empty(cells[j][key_col.index]):
                    bad.setdefault(j, []).append((key_col.header, "", key_reason))
        for idx, header, label in required:
            for j, c in enumerate(cells):
                if j not in blank and is_empty(c[idx]):
                    bad.setdefault(j, []).append((header, "", f"{label} is required"))
        problems = [(row_nos[j], h, v, why) for j in sorted(bad) for h, v, why in bad[j]]
        problems += [(p.row, _column_name(p.column, info.headers), p.value, p.reason) for p in records.problems]
        failed += len(bad) + len(records.problems)
        rows += len(batch) - len(blank) + len(records.problems)
        records.problems.clear()
        for problem in sorted(problems, key=lambda p: p[0]):
            errors.add(*problem)
        if bad or blank:
            keep = [j for j in range(len(batch)) if j not in bad and j not in blank]
            staged = [(row_nos[j], *(col[j] for col in converted)) for j in keep]
        else:
            staged = list(zip(row_nos, *converted, strict=True))
        if staged:
            writer.stage(staged)
        if progress:
            total = max(total or 0, rows)
            progress(rows, total, f"{rows:,} rows read")
    for p in records.problems:  # a broken record after the last row
        errors.add(p.row, _column_name(p.column, info.headers), p.value, p.reason)
        rows += 1
        failed += 1
    return rows, failed


def _convert_each(column: list[Any], conv: Conv, header: str, bad: dict[int, list[tuple[str, Any, str]]]) -> list[Any]:
    out = []
    for j, raw in enumerate(column):
        try:
            out.append(conv(raw))
        except FieldValueError as exc:
            out.append(None)
            bad.setdefault(j, []).append((header, raw, str(exc)))
    return out


def _blank(cells: list[Any]) -> bool:
    return all(c is None or (c.__class__ is str and not c.strip()) for c in cells)


def _column_name(column: str, headers: list[str]) -> str:
    return headers[int(column)] if column.isdigit() and int(column) < len(headers) else column


# --- writers -------------------------------------------------------------------------------------

# Columns of profiles_profile that system fields live in; NOT NULL text columns hold "" for empty.
_NULLABLE_COLUMNS = ("email", "phone", "birthday")


class Writer:
    """Stages validated rows ([row_no, value per plan column]) and applies them at `finish`."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.staged = 0
        self.suffix = secrets.token_hex(5)

    def stage(self, rows: list[tuple[Any, ...]]) -> None:
        """rows: (row_no, value per plan column), converted and valid."""
        raise NotImplementedError

    def finish(self, result: Result, errors: ErrorReport, *, source: str, actor_label: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _secondary(self) -> list[tuple[int, Field]]:
        """Mapped unique fields other than the match key: a value another profile holds is an error."""
        return [(i, c.field) for i, c in enumerate(self.plan.columns) if c.field.unique and i != self.plan.key]

    def _required_for_new(self) -> list[Field]:
        return [f for f in self.plan.sch.fields.values() if f.required and f.default is None and f.name != self.plan.options.match_key]

    def _defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.plan.sch.fields.values() if f.default is not None and not f.read_only}


def _pg_type(f: Field) -> str:
    if f.name == "birthday":
        return "date"
    if f.is_system:
        return "text"
    return {FieldType.INTEGER: "bigint", FieldType.DECIMAL: "numeric", FieldType.BOOLEAN: "boolean",
            FieldType.LIST: "jsonb", FieldType.JSON: "jsonb"}.get(f.type, "text")


class _Clock:
    """clock("phase") adds the seconds since the last call to phases["phase"]."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases, self.last = phases, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now


class PostgresWriter(Writer):
    """COPY into a TEMP staging table, then set-based SQL (see the module docstring).

    SQL is built from field names checked against `_NAME_RE` and integer ids; values are parameters.
    """

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.stg, self.err, self.chg, self.mt = (f"imp_{n}_{self.suffix}" for n in ("stg", "err", "chg", "mt"))
        self.types = [_pg_type(c.field) for c in plan.columns]
        self.json_pos = frozenset(i + 1 for i, t in enumerate(self.types) if t == "jsonb")
        cols = ", ".join(f"c{i} {t}" for i, t in enumerate(self.types))
        with connection.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {self.stg} (row_no bigint NOT NULL, {cols})")
        names = ", ".join(f"c{i}" for i in range(len(self.types)))
        self.copy_sql = f"COPY {self.stg} (row_no, {names}) FROM STDIN"

    def stage(self, rows: list[tuple[Any, ...]]) -> None:
        if self.json_pos:
            dumps, pos = json.dumps, self.json_pos
            rows = [tuple(dumps(v, ensure_ascii=False) if i in pos and v is not None else v for i, v in enumerate(r)) for r in rows]
        connection.ensure_connection()
        with connection.connection.cursor() as cur, cur.copy(self.copy_sql) as copy:
            write = copy.write_row
            for r in rows:
                write(r)
        self.staged += len(rows)

    def close(self) -> None:
        try:
            with connection.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {self.stg}")
        except Exception:  # noqa: S110 - a broken transaction: the temp table dies with it
            pass

    # expressions over p (the stored profile) and s (the staged row) ---------------------------

    def _col(self, name: str) -> str:
        i = next(i for i, c in enumerate(self.plan.columns) if c.field.name == name)
        return f"s.c{i}"

    def _key_match(self, alias: str = "p") -> str:
        key = self.plan.key_field
        db = int(self.plan.database.pk)
        if key.is_system:
            return f"{alias}.database_id = {db} AND {alias}.{key.name} = s.c{self.plan.key}"
        return f"{alias}.database_id = {db} AND ({alias}.data ->> '{key.name}') = s.c{self.plan.key}::text"

    def _value_match(self, i: int, f: Field) -> str:
        db = int(self.plan.database.pk)
        if f.is_system:
            return f"p.database_id = {db} AND p.{f.name} = s.c{i}"
        return f"p.database_id = {db} AND (p.data ->> '{f.name}') = s.c{i}::text"

    def _old_new(self) -> list[tuple[str, str, str, str, str]]:
        """(name, old, new, old shown, new shown) per mapped field but the key."""
        clear = self.plan.options.clear_empty
        out = []
        for i, c in enumerate(self.plan.columns):
            if i == self.plan.key:
                continue
            f, s = c.field, f"s.c{i}"
            if f.is_system:
                old = f"p.{f.name}"
                if f.name in _NULLABLE_COLUMNS:
                    new = s if clear else f"COALESCE({s}, p.{f.name})"
                    show = "to_jsonb({})"
                else:
                    new = f"COALESCE({s}, '')" if clear else f"COALESCE({s}, p.{f.name})"
                    show = "to_jsonb(NULLIF({}, ''))"
                out.append((f.name, old, new, show.format(old), show.format(new)))
            else:
                old = f"(p.data -> '{f.name}')"
                val = s if self.types[i] == "jsonb" else f"to_jsonb({s})"
                new = val if clear else f"COALESCE({val}, {old})"
                out.append((f.name, old, new, old, new))
        return out

    def _custom_object(self) -> str:
        """The staged custom values as one jsonb object (empty cells left out)."""
        scalar, parts = [], []
        for i, c in enumerate(self.plan.columns):
            if c.field.is_system:
                continue
            if self.types[i] == "jsonb":
                parts.append(f"(CASE WHEN s.c{i} IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object('{c.field.name}', s.c{i}) END)")
            else:
                scalar.append(f"'{c.field.name}', s.c{i}")
        for n in range(0, len(scalar), 40):  # a function takes at most 100 arguments
            parts.insert(0, f"jsonb_strip_nulls(jsonb_build_object({', '.join(scalar[n:n + 40])}))")
        return " || ".join(parts) if parts else "'{}'::jsonb"

    def _custom_mapped(self) -> list[str]:
        return [c.field.name for i, c in enumerate(self.plan.columns) if not c.field.is_system]

    # the apply --------------------------------------------------------------------------------

    def finish(self, result: Result, errors: ErrorReport, *, source: str, actor_label: str) -> None:
        plan, stg, err = self.plan, self.stg, self.err
        db, opts = plan.database, plan.options
        key = f"s.c{plan.key}"
        clock = _Clock(result.phases)
        with transaction.atomic(), connection.cursor() as cur:
            # Imports into one database take turns; other writers race only on single rows.
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"profiles.import:{db.pk}"])
            cur.execute("SET LOCAL work_mem = '64MB'")
            cur.execute(f"CREATE TEMP TABLE {err} (row_no bigint, name text, value text, reason text, dup boolean) ON COMMIT DROP")
            # 1. The same key twice: the last row of the file wins.
            label = plan.key_field.label
            cur.execute(
                f"INSERT INTO {err} SELECT s.row_no, %s, {key}::text, 'row ' || d.keep || ' has the same ' || %s || "  # noqa: S608
                f"' further down the file: the last row wins', true FROM {stg} s JOIN (SELECT c{plan.key} AS k, max(row_no) AS keep "
                f"FROM {stg} GROUP BY c{plan.key} HAVING count(*) > 1) d ON {key} = d.k AND s.row_no <> d.keep",
                [plan.key_field.name, label],
            )
            result.duplicates = self._delete(cur, dup=True)
            # 2. Erased people (a salted hash of the match key, as profile_erase stored it).
            if opts.skip_erased and ErasedIdentity.objects.filter(database=db).exists():
                cur.execute(
                    f"DELETE FROM {stg} s USING profiles_erasedidentity e WHERE e.database_id = %s AND e.key_hash = "  # noqa: S608
                    f"encode(sha256(convert_to(%s || {key}::text, 'UTF8')), 'hex')",
                    [db.pk, f"{db.erasure_salt}:{opts.match_key}:"],
                )
                result.skipped_erased = cur.rowcount
            # 3. Unique fields besides the key: not twice in the file, not another profile's value.
            for i, f in self._secondary():
                cur.execute(
                    f"INSERT INTO {err} SELECT s.row_no, %s, s.c{i}::text, 'row ' || d.keep || ' has the same ' || %s || "  # noqa: S608
                    f"' (it must be unique)', false FROM {stg} s JOIN (SELECT c{i} AS v, max(row_no) AS keep FROM {stg} "
                    f"WHERE c{i} IS NOT NULL GROUP BY c{i} HAVING count(*) > 1) d ON s.c{i} = d.v AND s.row_no <> d.keep",
                    [f.name, f.label],
                )
                key_of_p = f"p.{plan.key_field.name}" if plan.key_field.is_system else f"(p.data ->> '{plan.key_field.name}')"
                cur.execute(
                    f"INSERT INTO {err} SELECT s.row_no, %s, s.c{i}::text, 'another profile (#' || p.id || ') already has this ' "  # noqa: S608
                    f"|| %s, false FROM {stg} s JOIN profiles_profile p ON {self._value_match(i, f)} "
                    f"WHERE {key_of_p} IS DISTINCT FROM {key}::text",
                    [f.name, f.label],
                )
            # 4. New profiles need their required fields.
            if opts.mode != "update":
                for f in self._required_for_new():
                    missing = f"{self._col(f.name)} IS NULL" if f.name in opts.mapping.values() else "true"
                    cur.execute(
                        f"INSERT INTO {err} SELECT s.row_no, %s, '', %s, false FROM {stg} s WHERE {missing} "  # noqa: S608
                        f"AND NOT EXISTS (SELECT 1 FROM profiles_profile p WHERE {self._key_match()})",
                        [f.name, f"{f.label} is required for a new profile"],
                    )
            result.failed += self._delete(cur, dup=False)
            clock("checks")
            cur.execute(f"ANALYZE {stg}")
            cur.execute(f"SELECT count(*) FROM {stg}")  # noqa: S608
            remaining = cur.fetchone()[0]
            matched = self._match(cur, result, source, actor_label)
            clock("update")
            if opts.mode != "update":
                self._insert(cur, result)
                clock("insert")
                if opts.mode == "upsert" and remaining - matched - result.created:
                    lost = remaining - matched - result.created
                    result.failed += lost
                    errors.add(None, "", "", f"{lost} new profile(s) were created by someone else while the import ran: run it again")
            if opts.mode == "insert":
                result.skipped_mode = remaining - result.created
            elif opts.mode == "update":
                result.skipped_mode = remaining - matched
            result.skipped = result.skipped_erased + result.skipped_mode
            result.unchanged = matched - result.updated if opts.mode != "insert" else 0
            self._report(errors)
        clock("commit")

    def _delete(self, cur: Any, *, dup: bool) -> int:
        cur.execute(f"DELETE FROM {self.stg} s USING {self.err} e WHERE e.row_no = s.row_no AND e.dup = %s", [dup])  # noqa: S608
        return cur.rowcount

    def _match(self, cur: Any, result: Result, source: str, actor_label: str) -> int:
        """One join of the staged rows with the stored profiles: the rows that exist go to `mt` (the
        insert leaves them out), the ones that change go to `chg` with their per-field diffs, are
        updated with one UPDATE .. FROM and logged as ProfileChange rows. Returns how many exist."""
        stg, chg, mt, plan = self.stg, self.chg, self.mt, self.plan
        mode = plan.options.mode
        pairs = self._old_new() if mode != "insert" else []
        ctes = []
        if pairs:
            olds = ", ".join(o for _, o, _, _, _ in pairs)
            news = ", ".join(n for _, _, n, _, _ in pairs)
            changed = f"ROW({olds}) IS DISTINCT FROM ROW({news})"
            diff = " || ".join(
                f"(CASE WHEN {o} IS DISTINCT FROM {n} THEN jsonb_build_object('{name}', jsonb_build_array({os}, {ns})) ELSE '{{}}'::jsonb END)"
                for name, o, n, os, ns in pairs
            )
            names = ", ".join(f"c{i}" for i in range(len(plan.columns)))
            staged = ", ".join(f"s.c{i}" for i in range(len(plan.columns)))
            cur.execute(f"CREATE TEMP TABLE {chg} ON COMMIT DROP AS SELECT p.id, NULL::jsonb AS diff, s.* FROM {stg} s, profiles_profile p LIMIT 0")  # noqa: S608
            m = (f"SELECT p.id, s.row_no, {changed} AS changed, {staged}, CASE WHEN {changed} THEN {diff} END AS diff "  # noqa: S608
                 f"FROM {stg} s JOIN profiles_profile p ON {self._key_match()}")
            ctes.append(f"c AS (INSERT INTO {chg} (id, diff, row_no, {names}) SELECT id, diff, row_no, {names} FROM m WHERE changed RETURNING 1)")  # noqa: S608
        else:
            m = f"SELECT p.id, s.row_no FROM {stg} s JOIN profiles_profile p ON {self._key_match()}"  # noqa: S608
        if mode != "update":
            cur.execute(f"CREATE TEMP TABLE {mt} (row_no bigint PRIMARY KEY) ON COMMIT DROP")
            ctes.append(f"k AS (INSERT INTO {mt} SELECT row_no FROM m RETURNING 1)")  # noqa: S608
        cur.execute(f"WITH m AS ({m}){''.join(', ' + c for c in ctes)} SELECT count(*) FROM m")  # noqa: S608
        matched = cur.fetchone()[0]
        if mode != "update":
            cur.execute(f"ANALYZE {mt}")
        if not pairs:
            return matched
        sets = [f"{name} = {n}" for name, _, n, _, _ in pairs if plan.sch.fields[name].is_system]
        custom = self._custom_mapped()
        if custom:
            base = "p.data" if not plan.options.clear_empty else f"(p.data - ARRAY[{', '.join(repr(n) for n in custom)}]::text[])"
            sets.append(f"data = {base} || {self._custom_object()}")
        cur.execute(
            f"WITH u AS (UPDATE profiles_profile p SET {', '.join(sets)}, updated_at = now() FROM {chg} s "  # noqa: S608
            f"WHERE p.id = s.id AND {changed} RETURNING p.id), "
            f"pc AS (INSERT INTO profiles_profilechange (account_id, profile_id, changes, source, actor_label, created_at) "
            f"SELECT %s, s.id, s.diff, %s, %s, now() FROM {chg} s JOIN u ON u.id = s.id RETURNING 1) "
            f"SELECT count(*) FROM u",
            [plan.database.account_id, source[:64], actor_label[:200]],
        )
        result.updated = cur.fetchone()[0]
        return matched

    def _insert(self, cur: Any, result: Result) -> None:
        plan, clear = self.plan, self.plan.options.clear_empty
        mapped = {c.field.name: f"s.c{i}" for i, c in enumerate(plan.columns)}
        defaults = self._defaults()
        values, params = [], []
        for name in WRITABLE_SYSTEM_FIELDS:
            fallback = "NULL" if name in _NULLABLE_COLUMNS else "''"
            if defaults.get(name) is not None and not (clear and name in mapped):
                fallback = "%s"
                params.append(defaults[name])
            if name not in mapped:
                values.append(fallback)
            else:
                values.append(mapped[name] if fallback == "NULL" else f"COALESCE({mapped[name]}, {fallback})")
        custom_defaults = {k: v for k, v in defaults.items() if not plan.sch.fields[k].is_system and not (clear and k in mapped)}
        data = self._custom_object()
        if custom_defaults:
            data = f"%s::jsonb || {data}"
            params.append(json.dumps(custom_defaults))
        # The rows found by `_match` are left out by an anti-join with `mt`, not with the table being
        # filled (whose plan would rest on its statistics: a fresh table makes that quadratic).
        sql = (
            f"INSERT INTO profiles_profile (account_id, database_id, {', '.join(WRITABLE_SYSTEM_FIELDS)}, data, created_at, updated_at) "  # noqa: S608
            f"SELECT {int(plan.database.account_id)}, {int(plan.database.pk)}, {', '.join(values)}, {data}, now(), now() "
            f"FROM {self.stg} s WHERE NOT EXISTS (SELECT 1 FROM {self.mt} m WHERE m.row_no = s.row_no)"
        )
        try:
            # A plain INSERT costs 40% less than ON CONFLICT's speculative insertion ...
            with transaction.atomic():
                cur.execute(sql, params)
        except IntegrityError:
            # ... and is enough unless someone created one of these profiles since `_match`: then
            # those rows are left out (and counted) instead of failing the whole import.
            cur.execute(sql + " ON CONFLICT DO NOTHING", params)
        result.created = cur.rowcount

    def _report(self, errors: ErrorReport) -> None:
        plan = self.plan
        with connection.connection.cursor(name=f"imp_report_{self.suffix}") as cur:
            cur.itersize = 5000
            cur.execute(f"SELECT row_no, name, value, reason FROM {self.err} ORDER BY row_no, name")  # noqa: S608
            for row_no, name, value, reason in cur:
                errors.add(row_no, plan.header_of(name), value, reason)


class _SortedErrors:
    """Error lines kept in a temp table (not memory) and written out in row order by `drain`."""

    def __init__(self, suffix: str) -> None:
        self.table, self.pending = f"imp_err_{suffix}", []
        with connection.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {self.table} (row_no INTEGER, col TEXT, value TEXT, reason TEXT)")

    def add(self, row: int | None, column: str, value: Any, reason: str) -> None:
        self.pending.append((row, column, None if value is None else str(value), reason))
        if len(self.pending) >= 5000:
            self._flush()

    def _flush(self) -> None:
        with connection.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.table} VALUES (%s, %s, %s, %s)", self.pending)  # noqa: S608
        self.pending = []

    def drain(self, errors: ErrorReport) -> None:
        self._flush()
        with connection.cursor() as cur:
            cur.execute(f"SELECT row_no, col, value, reason FROM {self.table} ORDER BY row_no")  # noqa: S608
            while rows := cur.fetchmany(5000):
                for row in rows:
                    errors.add(*row)
            cur.execute(f"DROP TABLE {self.table}")


class SqliteWriter(Writer):
    """The embedded default: a staging table for the file-wide dedupe, then batches applied with
    one lookup query per batch and bulk_create / bulk_update."""

    CHUNK = 2000

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.stg = f"imp_stg_{self.suffix}"
        with connection.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE {self.stg} (row_no INTEGER PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL)")

    def stage(self, rows: list[tuple[Any, ...]]) -> None:
        key = self.plan.key + 1
        with connection.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.stg} (row_no, k, v) VALUES (%s, %s, %s)",  # noqa: S608
                [(r[0], str(r[key]), json.dumps(r[1:], ensure_ascii=False)) for r in rows],
            )
        self.staged += len(rows)

    def close(self) -> None:
        try:
            with connection.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {self.stg}")
        except Exception:  # noqa: S110 - a broken transaction: the temp table dies with it
            pass

    def _take(self, cur: Any, expr: str, name: str, reason: str, errors: _SortedErrors) -> int:
        """Report and drop rows whose `expr` value repeats further down the file."""
        stg = self.stg
        repeated = (
            f"FROM {stg} s JOIN (SELECT {expr.format(stg)} AS x, max(row_no) AS keep FROM {stg} "  # noqa: S608
            f"WHERE {expr.format(stg)} IS NOT NULL GROUP BY 1 HAVING count(*) > 1) d ON {expr.format('s')} = d.x AND s.row_no <> d.keep"
        )
        cur.execute(f"SELECT s.row_no, {expr.format('s')}, d.keep {repeated}")
        header = self.plan.header_of(name)
        while rows := cur.fetchmany(2000):
            for row_no, value, keep in rows:
                errors.add(row_no, header, value, reason.format(keep=keep))
        cur.execute(f"DELETE FROM {stg} WHERE row_no IN (SELECT s.row_no {repeated})")  # noqa: S608
        return cur.rowcount

    def finish(self, result: Result, errors: ErrorReport, *, source: str, actor_label: str) -> None:
        plan = self.plan
        later = _SortedErrors(self.suffix)  # found out of row order here; reported in row order
        with transaction.atomic(), connection.cursor() as cur:
            result.duplicates = self._take(
                cur, "{}.k", plan.key_field.name,
                f"row {{keep}} has the same {plan.key_field.label} further down the file: the last row wins", later,
            )
            for i, f in self._secondary():
                result.failed += self._take(cur, f"json_extract({{}}.v, '$[{i}]')", f.name, f"row {{keep}} has the same {f.label} (it must be unique)", later)
            has_erased = plan.options.skip_erased and ErasedIdentity.objects.filter(database=plan.database).exists()
            last = 0
            while True:
                cur.execute(f"SELECT row_no, v FROM {self.stg} WHERE row_no > %s ORDER BY row_no LIMIT %s", [last, self.CHUNK])  # noqa: S608
                chunk = [(r, json.loads(v)) for r, v in cur.fetchall()]
                if not chunk:
                    break
                last = chunk[-1][0]
                self._apply(chunk, result, later, has_erased, source, actor_label)
            later.drain(errors)
        result.skipped = result.skipped_erased + result.skipped_mode

    def _lookup(self, name: str, values: list[Any]) -> dict[str, Profile]:
        f = self.plan.sch.fields[name]
        lookup = f"{name}__in" if f.is_system else f"data__{name}__in"
        qs = Profile.objects.filter(database=self.plan.database, **{lookup: values})
        return {str(p.value(name)): p for p in qs}

    def _apply(self, chunk: list[tuple[int, list[Any]]], result: Result, errors: _SortedErrors, has_erased: bool,
               source: str, actor_label: str) -> None:
        plan, opts = self.plan, self.plan.options
        db, kpos = plan.database, plan.key
        names = [c.field.name for c in plan.columns]
        if has_erased:
            hashes = {erased_hash(db, opts.match_key, v[kpos]): r for r, v in chunk}
            erased = set(ErasedIdentity.objects.filter(database=db, key_hash__in=list(hashes)).values_list("key_hash", flat=True))
            result.skipped_erased += len(erased)
            skip = {hashes[h] for h in erased}
            chunk = [(r, v) for r, v in chunk if r not in skip]
        existing = self._lookup(opts.match_key, [v[kpos] for _, v in chunk])
        owners = {i: self._lookup(f.name, [v[i] for _, v in chunk if v[i] is not None]) for i, f in self._secondary()}
        defaults, required = self._defaults(), self._required_for_new()
        now = timezone.now()
        new, changed, changes = [], [], []
        for row_no, values in chunk:
            key = str(values[kpos])
            profile = existing.get(key)
            conflict = next(((i, o) for i, o in ((i, owners[i].get(str(values[i]))) for i in owners)
                             if o is not None and (profile is None or o.pk != profile.pk)), None)
            if conflict:
                i, other = conflict
                errors.add(row_no, plan.columns[i].header, values[i], f"another profile (#{other.pk}) already has this {plan.columns[i].field.label}")
                result.failed += 1
                continue
            clean = {n: v for n, v in zip(names, values, strict=True) if v is not None or opts.clear_empty}
            if profile is None:
                if opts.mode == "update":
                    result.skipped_mode += 1
                    continue
                profile = Profile(account_id=db.account_id, database=db, created_at=now, updated_at=now)
                apply_values(profile, {**defaults, **clean})
                missing = [f for f in required if profile.value(f.name) in (None, "", [])]
                if missing:
                    for f in missing:
                        errors.add(row_no, plan.header_of(f.name), "", f"{f.label} is required for a new profile")
                    result.failed += 1
                    continue
                new.append(profile)
            elif opts.mode == "insert":
                result.skipped_mode += 1
            else:
                diff = apply_values(profile, clean)
                if not diff:
                    result.unchanged += 1
                    continue
                profile.updated_at = now
                changed.append(profile)
                changes.append(ProfileChange(account_id=db.account_id, profile=profile, changes=diff, source=source[:64],
                                             actor_label=actor_label[:200], created_at=now))
        Profile.objects.bulk_create(new, batch_size=500)
        if changed:
            Profile.objects.bulk_update(changed, [*WRITABLE_SYSTEM_FIELDS, "data", "updated_at"], batch_size=500)
            ProfileChange.objects.bulk_create(changes, batch_size=500)
        result.created += len(new)
        result.updated += len(changed)


# --- services: an upload, its mapping, its run ---------------------------------------------------


def _binary(f: Any) -> Any:
    """The real binary file under Django's File / UploadedFile / temp-file wrappers."""
    while not isinstance(f, io.IOBase) and hasattr(f, "file"):
        f = f.file
    return f


def import_create(*, database: ProfileDatabase, upload: UploadedFile, actor: Actor) -> ProfileImport:
    """Keep an uploaded file and read its header and first rows (mapping auto-matched by name).

    Raises ImportFileError (and keeps nothing) for an empty, binary, unreadable or too big file.
    """
    size = upload.size or 0
    info = sniff(_binary(upload.file), size=size)
    imp = ProfileImport(
        account_id=database.account_id, database=database, original_name=str(upload.name or "upload")[-255:],
        size=size, format=info.format, encoding=info.encoding, delimiter=info.delimiter, headers=info.headers,
        sample=info.sample, rows=info.rows_estimate or 0, match_key=database.default_match_key,
        created_by=actor.user,
        mapping={str(i): n for i, n in auto_mapping(info.headers, writable_fields(database)).items()},
    )
    upload.seek(0)
    imp.file.save(f"{secrets.token_hex(12)}.{info.format}", upload, save=False)
    imp.save()
    return imp


def import_resniff(*, profile_import: ProfileImport, encoding: str, delimiter: str) -> ProfileImport:
    """Read a CSV upload again with the encoding and delimiter a person picked. Raises ImportFileError."""
    imp = profile_import
    if encoding not in ENCODINGS or delimiter not in DELIMITERS:
        raise ImportFileError("Pick one of the listed encodings and delimiters.")
    with imp.file.open("rb") as fh:
        info = sniff(_binary(fh), size=imp.size, encoding=encoding, delimiter=delimiter)
    imp.encoding, imp.delimiter, imp.headers, imp.sample = info.encoding, info.delimiter, info.headers, info.sample
    imp.mapping = {str(i): n for i, n in auto_mapping(info.headers, writable_fields(imp.database)).items()}
    imp.save(update_fields=["encoding", "delimiter", "headers", "sample", "mapping"])
    return imp


def import_start(*, profile_import: ProfileImport, options: Options, actor: Actor) -> Job:
    """Save the mapping and queue the import as a Job (the task runs after commit).

    Raises ImportMappingError when the mapping cannot run or the import has already started.
    """
    from accounts.jobs import job_create
    from profiles.tasks_import import profile_import_bulk_task

    imp = profile_import
    problems = check_options(imp.database, imp.headers, options)
    if problems:
        raise ImportMappingError(problems)
    with transaction.atomic():
        if ProfileImport.objects.filter(pk=imp.pk, state=ProfileImport.State.UPLOADED).update(state=ProfileImport.State.QUEUED) != 1:
            raise ImportMappingError(["This import has already started."])
        job = job_create(
            account=imp.database.account, kind="profiles.import", title=f"Import {imp.original_name} into {imp.database.name}",
            created_by=actor.user, params={"import_id": imp.pk, "database": imp.database.slug}, total=imp.rows or None,
        )
        imp.job, imp.state = job, ProfileImport.State.QUEUED
        imp.mapping = {str(k): v for k, v in sorted(options.mapping.items())}
        imp.match_key, imp.mode = options.match_key, options.mode
        imp.clear_empty, imp.skip_erased = options.clear_empty, options.skip_erased
        imp.save(update_fields=["job", "state", "mapping", "match_key", "mode", "clear_empty", "skip_erased"])
        profile_import_bulk_task.delay_on_commit(imp.pk)
    return job


def import_run(*, profile_import: ProfileImport, progress: Progress | None = None) -> Result:
    """Run a queued import (the task calls this): counts, error report and state are saved on it.

    Raises ImportFileError / ImportMappingError (the import is marked failed, nothing written).
    """
    imp = profile_import
    ProfileImport.objects.filter(pk=imp.pk).update(state=ProfileImport.State.RUNNING)
    options = Options({int(k): v for k, v in imp.mapping.items()}, imp.match_key, imp.mode, imp.clear_empty, imp.skip_erased)
    info = FileInfo(imp.format, imp.encoding, imp.delimiter, imp.headers, [], imp.rows or None)
    actor = Actor(user=imp.created_by)
    try:
        with imp.file.open("rb") as fh, tempfile.TemporaryFile() as raw:
            report = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            result = import_file(
                database=imp.database, file=_binary(fh), info=info, options=options, report=report, progress=progress,
                source=f"import:{imp.job_id or imp.pk}", actor_label=actor.label,
            )
            report.flush()
            report.detach()
            with transaction.atomic():
                if result.error_lines:
                    raw.seek(0)
                    imp.error_report.save(f"import-{imp.pk}-errors.csv", File(raw), save=False)
                for name in ("rows", "created", "updated", "unchanged", "failed", "skipped", "duplicates"):
                    setattr(imp, name, getattr(result, name))
                imp.state, imp.finished_at, imp.error = ProfileImport.State.SUCCEEDED, timezone.now(), ""
                imp.save()
                audit_log(account=imp.database.account, actor=actor, verb="profiles.imported", target=imp.database,
                          target_label=f"{imp.database.name}: {imp.original_name}",
                          data={"import": imp.pk, **{k: getattr(result, k) for k in ("rows", "created", "updated", "failed")}})
    except (ImportFileError, ImportMappingError) as exc:
        import_fail(profile_import=imp, error=str(exc))
        raise
    except Exception:
        import_fail(profile_import=imp, error="An internal error stopped it (the details are in the server log).")
        raise
    return result


def import_fail(*, profile_import: ProfileImport, error: str) -> None:
    ProfileImport.objects.filter(pk=profile_import.pk).update(
        state=ProfileImport.State.FAILED, error=error[:5000], finished_at=timezone.now()
    )
