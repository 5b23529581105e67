"""Suppression lists in and out of CSV: the set-based import (a Job, or the management command)
and the export.

The import reads rows of `value[, kind, reason, note]` (a header row is optional and may name the
columns in any order), normalises each value with `services.clean_suppression`, and writes a
batch at a time with one lookup of what is listed already and one `bulk_create(ignore_conflicts=True)`,
so importing the same file twice adds nothing the second time. Rows that cannot be read go to an
error report (row, value, reason) and never stop the rest.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account, Job
from cdp.spreadsheets import formula_safe
from resources.models import Suppression
from resources.services import ResourceValidationError, clean_suppression, guess_kind

BATCH = 1000
MAX_BYTES = 50 * 1024 * 1024
ERROR_SAMPLE = 20
ERROR_REPORT_MAX_LINES = 100_000
JOB_KIND = "suppressions.import"
COLUMNS = ("value", "kind", "reason", "note")
DELIMITERS = (",", ";", "\t", "|")
# Header names people use for the value column.
_VALUE_HEADERS = {"value", "email", "e-mail", "address", "phone", "domain"}


class SuppressionImportError(Exception):
    """The file as a whole cannot be imported (empty, too big, not text)."""


@dataclass
class ImportResult:
    """rows = added + already + invalid."""

    rows: int = 0
    added: int = 0
    already: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def message(self) -> str:
        return (f"{self.rows:,} row{'' if self.rows == 1 else 's'}: {self.added:,} added, "
                f"{self.already:,} already listed, {self.invalid:,} invalid")


# --- reading -------------------------------------------------------------------------------------


def _text(binary: IO[bytes]) -> IO[str]:
    """The file as text: UTF-8 (with or without BOM), else Windows-1252 (never fails to decode)."""
    head = binary.read(64 * 1024)
    binary.seek(0)
    if b"\x00" in head:
        raise SuppressionImportError("This is not a CSV file (it holds binary data). Save it as CSV and upload it again.")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut last character is fine
        encoding = "utf-8-sig"
    except UnicodeDecodeError:
        encoding = "cp1252"
    return io.TextIOWrapper(binary, encoding=encoding, errors="replace", newline="")


def _reader(text: IO[str]) -> Iterator[list[str]]:
    # The delimiter most used in the first lines (csv.Sniffer gives up on rows of different
    # lengths, which an optional kind/reason/note column makes common); none: one column.
    sample = text.read(16 * 1024)
    text.seek(0)
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    counts = {d: sum(line.count(d) for line in lines) for d in DELIMITERS}
    delimiter = max(DELIMITERS, key=lambda d: counts[d]) if any(counts.values()) else ","
    return csv.reader(text, delimiter=delimiter)


def _columns(first: list[str]) -> tuple[dict[str, int], bool]:
    """Column positions, and whether `first` was a header row."""
    names = [c.strip().lower() for c in first]
    # A header names the value column; other columns it names that are not ours are ignored
    # (an export's source, added_by and added_at), so an export imports again as it is.
    looks_like_data = any(re.search(r"[@.\d]", n) for n in names)  # "a@b.c;email" is a row, not a header
    if any(n in _VALUE_HEADERS for n in names) and not looks_like_data:
        cols: dict[str, int] = {}
        for i, n in enumerate(names):
            key = "value" if n in _VALUE_HEADERS else n
            if key in COLUMNS and key not in cols:
                cols[key] = i
        return cols, True
    return {name: i for i, name in enumerate(COLUMNS)}, False


def _rows(binary: IO[bytes]) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number in the file, {value, kind, reason, note}) for every non-blank row."""
    reader = _reader(_text(binary))
    cols: dict[str, int] | None = None
    for number, row in enumerate(reader, start=1):
        if not any(cell.strip() for cell in row):
            continue
        if cols is None:
            cols, header = _columns(row)
            if header:
                continue
        yield number, {name: (row[i].strip() if i < len(row) else "") for name, i in cols.items()}


def _count_rows(binary: IO[bytes]) -> int:
    n = sum(chunk.count(b"\n") for chunk in iter(lambda: binary.read(1 << 20), b""))
    binary.seek(0)
    return n


# --- the import ----------------------------------------------------------------------------------


class _Report:
    HEADER = ("row", "value", "reason")

    def __init__(self, out: IO[str] | None, result: ImportResult) -> None:
        self.writer = csv.writer(out) if out is not None else None
        self.result = result
        self.lines = 0
        if self.writer:
            self.writer.writerow(self.HEADER)

    def add(self, row: int, value: str, reason: str) -> None:
        self.result.invalid += 1
        if len(self.result.errors) < ERROR_SAMPLE:
            self.result.errors.append({"row": row, "value": value[:200], "reason": reason})
        self.lines += 1
        if self.writer is not None and self.lines <= ERROR_REPORT_MAX_LINES:
            self.writer.writerow([row, formula_safe(value[:1000]), formula_safe(reason)])


def _clean_row(raw: dict[str, str], region: str) -> tuple[str, str, str, str]:
    """(kind, value, reason, note). Raises ResourceValidationError with one message."""
    value = raw.get("value", "")
    if not value:
        raise ResourceValidationError({"value": "the value is empty"})
    kind = raw.get("kind", "").lower() or guess_kind(value)
    if kind not in Suppression.Kind.values:
        raise ResourceValidationError({"kind": f"unknown kind {raw['kind']!r}; use email, domain or phone"})
    reason = raw.get("reason", "").lower() or Suppression.Reason.IMPORTED
    if reason not in Suppression.Reason.values:
        raise ResourceValidationError({"reason": f"unknown reason {raw['reason']!r}; use {', '.join(Suppression.Reason.values)}"})
    return kind, clean_suppression(kind, value, region=region), reason, raw.get("note", "")[:500]


def _batches(rows: Iterable[tuple[int, dict[str, str]]], size: int) -> Iterator[list[tuple[int, dict[str, str]]]]:
    batch: list[tuple[int, dict[str, str]]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def suppressions_import(
    *, account: Account, binary: IO[bytes], actor: Actor, source: str = "import", errors_out: IO[str] | None = None,
    progress: Callable[[int], None] | None = None, batch_size: int = BATCH,
) -> ImportResult:
    """Add every valid row of a CSV to the account's suppression list; returns the counts.

    Safe to run twice: what is listed already is counted as such and left as it was. Each batch
    is its own transaction, so a crash keeps the batches written. Audited once, as
    "suppressions.imported". Raises SuppressionImportError for a file that is not text."""
    result = ImportResult()
    report = _Report(errors_out, result)
    region = account.default_phone_region or ""
    seen: set[tuple[str, str]] = set()
    for batch in _batches(_rows(binary), batch_size):
        fresh: dict[tuple[str, str], Suppression] = {}
        for number, raw in batch:
            result.rows += 1
            try:
                kind, value, reason, note = _clean_row(raw, region)
            except ResourceValidationError as exc:
                report.add(number, raw.get("value", ""), next(iter(exc.errors.values())))
                continue
            if (kind, value) in seen:
                result.already += 1  # listed further up the same file
                continue
            seen.add((kind, value))
            fresh[(kind, value)] = Suppression(
                account=account, kind=kind, value=value, reason=reason, note=note, source=source[:64],
                created_by_label=actor.label[:200],
            )
        if fresh:
            with transaction.atomic():
                listed = set(
                    Suppression.objects.filter(account=account, kind__in={k for k, _ in fresh},
                                               value__in={v for _, v in fresh}).values_list("kind", "value")
                )
                new = [s for key, s in fresh.items() if key not in listed]
                Suppression.objects.bulk_create(new, batch_size=batch_size, ignore_conflicts=True)
            result.added += len(new)
            result.already += len(fresh) - len(new)
        if progress is not None:
            progress(result.rows)
    audit_log(account=account, actor=actor, verb="suppressions.imported", target_label=source[:300],
              data={"rows": result.rows, "added": result.added, "already": result.already, "invalid": result.invalid})
    return result


# --- as a Job ------------------------------------------------------------------------------------


def suppressions_import_start(*, account: Account, upload: UploadedFile, actor: Actor) -> Job:
    """Keep the upload and queue its import as a Job (run by `suppressions_import_bulk_task` after
    commit). Raises SuppressionImportError for an empty or too big file."""
    from accounts.jobs import job_create
    from resources.tasks import suppressions_import_bulk_task

    size = upload.size or 0
    if size == 0:
        raise SuppressionImportError("The file is empty.")
    if size > MAX_BYTES:
        raise SuppressionImportError(f"The file is too big: at most {MAX_BYTES // (1024 * 1024)} MB.")
    name = str(upload.name or "suppressions.csv")[-200:]
    path = default_storage.save(f"suppression-imports/{secrets.token_hex(12)}.csv", upload)
    with transaction.atomic():
        job = job_create(account=account, kind=JOB_KIND, title=f"Import suppressions from {name}",
                         created_by=actor.user, params={"path": path, "file": name})
        suppressions_import_bulk_task.delay_on_commit(job.pk)
    return job


def suppressions_import_job(job: Job) -> ImportResult:
    """Run a claimed import Job: counts in job.result, the error report as its result_file."""
    from accounts import jobs

    actor = Actor(user=job.created_by) if job.created_by_id else Actor.system()
    path = job.params["path"]
    report_path = ""
    try:
        with default_storage.open(path, "rb") as fh:
            total = _count_rows(fh)
            jobs.job_progress(job=job, progress=0, total=total or None, message="Reading the file")
            with tempfile.NamedTemporaryFile("w", encoding="utf-8-sig", newline="", suffix=".csv", delete=False) as out:
                report_path = out.name
                result = suppressions_import(
                    account=job.account, binary=fh, actor=actor, source=f"import:{job.pk}", errors_out=out,
                    progress=lambda n: jobs.job_progress(job=job, progress=min(n, total) if total else n,
                                                         message=f"{n:,} rows read"),
                )
        jobs.job_progress(job=job, progress=result.rows, total=result.rows)  # the line count included a header
        if result.invalid:
            with open(report_path, "rb") as report:
                jobs.job_succeed(job=job, result=result.as_dict(), message=result.message(),
                                 file=File(report, name=f"suppression-import-{job.pk}-errors.csv"))
        else:
            jobs.job_succeed(job=job, result=result.as_dict(), message=result.message())
    finally:
        if report_path:
            os.unlink(report_path)
        default_storage.delete(path)  # the upload is read once; a failed job is started again by a new upload
    return result


# --- export --------------------------------------------------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def suppressions_export_rows(account: Account) -> Iterator[str]:
    """CSV lines (kind, value, reason, note, source, added_by, added_at) for a streaming response;
    the file imports again as it is."""
    writer = csv.writer(_Echo())
    yield writer.writerow(("kind", "value", "reason", "note", "source", "added_by", "added_at"))
    qs = Suppression.objects.filter(account=account).order_by("kind", "value").values_list(
        "kind", "value", "reason", "note", "source", "created_by_label", "created_at")
    for kind, value, reason, note, source, by, at in qs.iterator(chunk_size=2000):
        yield writer.writerow((kind, formula_safe(value, keep_numbers=True), reason, formula_safe(note),
                               formula_safe(source), formula_safe(by), at.isoformat()))
