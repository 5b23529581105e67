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

Modules: reading (sniffing, CSV/XLSX records), mapping (columns to fields, cell converters,
the plan), report (error report, result), running (the one pass), writers (PostgreSQL and
SQLite), services (an upload, its mapping, its run).
"""

from __future__ import annotations

from profiles.importing.mapping import (  # noqa: F401
    Column,
    Conv,
    Options,
    Plan,
    auto_mapping,
    check_options,
    converter,
    normalise,
    writable_fields,
)
from profiles.importing.reading import (  # noqa: F401
    BATCH_ROWS,
    DELIMITERS,
    ENCODINGS,
    ERROR_REPORT_MAX_LINES,
    ERROR_SAMPLE,
    MAX_BYTES_DEFAULT,
    SAMPLE_ROWS,
    SNIFF_BYTES,
    CsvRecords,
    FileInfo,
    ImportFileError,
    ImportMappingError,
    Problem,
    XlsxRecords,
    max_bytes,
    open_records,
    sniff,
)
from profiles.importing.report import (  # noqa: F401
    ErrorReport,
    Progress,
    Result,
    csv_safe,
)
from profiles.importing.running import (  # noqa: F401
    _read,
    import_file,
)
from profiles.importing.services import (  # noqa: F401
    import_create,
    import_fail,
    import_resniff,
    import_run,
    import_start,
)
from profiles.importing.writers import (  # noqa: F401
    PostgresWriter,
    SqliteWriter,
    Writer,
)
