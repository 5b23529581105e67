"""Imports as the UI, API and tasks see them: create from an upload, re-sniff, start as a Job, run, fail."""

from __future__ import annotations

import io
import secrets
import tempfile
from typing import Any

from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Job
from profiles.importing.mapping import Options, auto_mapping, check_options, writable_fields
from profiles.importing.reading import (
    DELIMITERS,
    ENCODINGS,
    FileInfo,
    ImportFileError,
    ImportMappingError,
    sniff,
)
from profiles.importing.report import Progress, Result
from profiles.importing.running import import_file
from profiles.models import (
    ProfileDatabase,
    ProfileImport,
)

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
        imp.clear_empty, imp.skip_erased, imp.extra = options.clear_empty, options.skip_erased, options.extra
        imp.save(update_fields=["job", "state", "mapping", "match_key", "mode", "clear_empty", "skip_erased", "extra"])
        profile_import_bulk_task.delay_on_commit(imp.pk)
    return job


def import_run(*, profile_import: ProfileImport, progress: Progress | None = None) -> Result:
    """Run a queued import (the task calls this): counts, error report and state are saved on it.

    Raises ImportFileError / ImportMappingError (the import is marked failed, nothing written).
    """
    imp = profile_import
    ProfileImport.objects.filter(pk=imp.pk).update(state=ProfileImport.State.RUNNING)
    options = Options({int(k): v for k, v in imp.mapping.items()}, imp.match_key, imp.mode, imp.clear_empty, imp.skip_erased,
                      extra=imp.extra or {})
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
                imp.extra_results = result.extra
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
