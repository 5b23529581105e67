"""Reading an upload: limits, sniffing (encoding, delimiter, XLSX), and records streamed a row at a time."""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from django.conf import settings

MAX_BYTES_DEFAULT = 2 * 1024**3
SNIFF_BYTES = 64 * 1024
BATCH_ROWS = 10_000
SAMPLE_ROWS = 5
ERROR_SAMPLE = 20
ERROR_REPORT_MAX_LINES = 1_000_000
DELIMITERS = (",", ";", "\t", "|")
ENCODINGS = ("utf-8", "utf-8-sig", "cp1251", "cp1252", "utf-16")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")




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
        return _single_byte_guess(head)


def _single_byte_guess(head: bytes) -> str:
    """Cyrillic (cp1251) or Western European (cp1252, a superset of latin-1's printable range) for
    a file that is not UTF-8. Both put letters in the upper half, so the byte values alone do not
    tell; the words do: Cyrillic words are made of upper-half bytes only (runs of them), while
    Western words are ASCII letters with an accented one here and there ("Jérôme", "Müller").
    Each upper-half byte counts for Cyrillic when a neighbour is also in the upper half, for
    Western when it sits beside an ASCII letter; ties go to Cyrillic, as before. The person can
    always pick another encoding on the mapping screen."""
    runs = beside_ascii = 0
    last = len(head) - 1
    for i, b in enumerate(head):
        if b < 0x80:
            continue
        prev = head[i - 1] if i > 0 else 0x20
        nxt = head[i + 1] if i < last else 0x20
        if prev >= 0x80 or nxt >= 0x80:
            runs += 1
        elif _ascii_letter(prev) or _ascii_letter(nxt):
            beside_ascii += 1
    return "cp1252" if beside_ascii > runs else "cp1251"


def _ascii_letter(b: int) -> bool:
    return 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


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


