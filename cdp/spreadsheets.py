"""Cells for CSV files people open in spreadsheet programs (exports, error reports)."""

from __future__ import annotations

import re

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Sheets.
FORMULA_START = frozenset("=+-@\t\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def formula_safe(text: str, *, keep_numbers: bool = False) -> str:
    """`text` with a leading ' when a spreadsheet would run it as a formula (CSV injection).

    keep_numbers: leave plain numbers (-5, +4930123456) alone; a spreadsheet reads them as
    numbers, never as formulas, and a phone in E.164 must survive an export/import round trip.
    """
    if text[:1] in FORMULA_START and not (keep_numbers and _PLAIN_NUMBER.fullmatch(text)):
        return "'" + text
    return text
