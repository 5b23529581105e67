"""The error report (row, column, value, reason; formulas defused) and the import's result counts."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from cdp.spreadsheets import formula_safe
from profiles.importing.reading import _SURROGATE, ERROR_REPORT_MAX_LINES, ERROR_SAMPLE

# --- the error report ----------------------------------------------------------------------------


def csv_safe(value: Any) -> str:
    """A cell for the error-report CSV: a spreadsheet must not run it as a formula."""
    text = _SURROGATE.sub("\ufffd", "" if value is None else str(value))
    if len(text) > 1000:
        text = text[:1000] + "…"
    return formula_safe(text)


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
    extra: dict[str, Any] = field(default_factory=dict)  # what IMPORT_HANDLERS report, by their name

    def line(self) -> str:
        return f"created={self.created} updated={self.updated} unchanged={self.unchanged} failed={self.failed}"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Progress = Callable[[int, int | None, str], None]

