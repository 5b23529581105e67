"""Imports: the list, the upload, the mapping screen, progress and the result, the error report.

One page per import (`import_detail`) follows it through its life: while it waits for a
mapping it shows the mapping form; once started, the shared job progress bar polls the job, and
the result section polls this view (a few bytes while it runs) until the import has ended, then
shows the counts and stops.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.tables import Column, EmptyState, Filter, Table
from profiles.importing import (
    DELIMITERS,
    ENCODINGS,
    ImportFileError,
    ImportMappingError,
    Options,
    import_create,
    import_resniff,
    import_start,
    max_bytes,
    writable_fields,
)
from profiles.importing.hooks import hook_forms, hook_results
from profiles.models import ProfileDatabase, ProfileImport
from profiles.views import get_database

DELIMITER_LABELS = {",": "Comma ( , )", ";": "Semicolon ( ; )", "\t": "Tab", "|": "Vertical bar ( | )"}
ENCODING_LABELS = {
    "utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "cp1251": "Windows-1251 (Cyrillic)",
    "cp1252": "Windows-1252 (Western European)", "utf-16": "UTF-16",
}
SAMPLE_VALUES = 4


def _get_import(request: HttpRequest, database: ProfileDatabase, pk: int) -> ProfileImport:
    qs = ProfileImport.objects.for_account(request.account).select_related("job", "created_by", "database__account")
    return get_object_or_404(qs, database=database, pk=pk)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def import_list(request: HttpRequest, db: str) -> HttpResponse:
    database = get_database(request, db)
    table = Table(
        request,
        ProfileImport.objects.for_account(request.account).filter(database=database).select_related("created_by", "job"),
        id="imports",
        columns=[Column("File"), Column("State"), Column("Rows", classes="text-end"), Column("Result"), Column("Started by"),
                 Column("Uploaded", sort="created_at")],
        search_fields=["original_name"],
        search_placeholder="Search file names",
        filters=[Filter("state", "All states", ProfileImport.State.choices)],
        default_sort="-created_at",
        row_template="profiles/import_row.html",
        empty=EmptyState(
            "No imports yet", "Upload a CSV or XLSX file to add or update profiles in bulk.", icon="upload",
            action_url=reverse("profiles:import_upload", args=[database.slug]) if request.membership.can(Perm.DATA_EDIT) else "",
            action_label="Import a file",
        ),
    )
    if table.is_partial_request:
        return render(request, "components/table.html", {"table": table})
    return render(request, "profiles/import_list.html", {"database": database, "table": table, "section": "profiles"})


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATA_EDIT)
def import_upload(request: HttpRequest, db: str) -> HttpResponse:
    database = get_database(request, db)
    error = ""
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            error = "Choose a CSV or XLSX file to upload."
        else:
            try:
                imp = import_create(database=database, upload=upload, actor=Actor.from_request(request))
            except ImportFileError as exc:
                error = str(exc)
            else:
                return redirect(imp)
    context = {"database": database, "error": error, "max_bytes": max_bytes(), "section": "profiles",
               "fields": writable_fields(database)}
    return render(request, "profiles/import_upload.html", context, status=400 if error else 200)


def _mapping_rows(imp: ProfileImport, mapping: dict[int, str]) -> list[dict[str, Any]]:
    rows = []
    for i, header in enumerate(imp.headers):
        samples = [r[i] for r in imp.sample if i < len(r) and str(r[i]).strip()][:SAMPLE_VALUES]
        rows.append({"index": i, "header": header, "samples": samples, "field": mapping.get(i, "")})
    return rows


def _options_from(request: HttpRequest, imp: ProfileImport) -> Options:
    post = request.POST
    mapping = {i: post[f"col-{i}"] for i in range(len(imp.headers)) if post.get(f"col-{i}")}
    return Options(
        mapping=mapping, match_key=post.get("match_key", ""), mode=post.get("mode", ""),
        clear_empty=post.get("clear_empty") == "on", skip_erased=post.get("skip_erased") == "on",
    )


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def import_detail(request: HttpRequest, db: str, pk: int) -> HttpResponse:
    database = get_database(request, db)
    imp = _get_import(request, database, pk)
    if request.htmx and request.htmx.target == "import-result":
        return render(request, "profiles/import_detail.html#result", _result_context(imp))
    problems: list[str] = []
    options = Options({int(k): v for k, v in imp.mapping.items()}, imp.match_key or database.default_match_key,
                      imp.mode, imp.clear_empty, imp.skip_erased, extra=dict(imp.extra or {}))
    status = 200
    hooks = None
    if request.method == "POST":
        if not request.membership.can(Perm.DATA_EDIT):
            raise PermissionDenied("Your role does not allow importing.")
        if imp.state != ProfileImport.State.UPLOADED:
            return redirect(imp)
        options = _options_from(request, imp)
        encoding, delimiter = request.POST.get("encoding", imp.encoding), request.POST.get("delimiter", imp.delimiter)
        if imp.format == "csv" and (encoding != imp.encoding or delimiter != imp.delimiter or "reread" in request.POST):
            try:
                imp = import_resniff(profile_import=imp, encoding=encoding, delimiter=delimiter)
                return redirect(imp)
            except ImportFileError as exc:
                problems, status = [str(exc)], 400
        else:
            # Other apps' options (e.g. subscribe the imported profiles), from their own forms.
            hooks = hook_forms(database, request.POST)
            for name, hook, form in hooks:
                if not form.is_valid():
                    problems.append(f"{hook.label or name}: check the highlighted fields.")
                elif form.options() is not None:
                    options.extra[name] = form.options()
            if not problems:
                try:
                    import_start(profile_import=imp, options=options, actor=Actor.from_request(request))
                    return redirect(imp)
                except ImportMappingError as exc:
                    problems = exc.messages
            status = 400
    fields = writable_fields(database)
    context = {
        **_result_context(imp),
        "section": "profiles",
        "problems": problems,
        "options": options,
        "rows": _mapping_rows(imp, options.mapping),
        "fields": fields,
        "match_keys": [f for f in fields if f.name in database.match_keys],
        "modes": ProfileImport.Mode.choices,
        "encodings": [(e, ENCODING_LABELS[e]) for e in ENCODINGS],
        "delimiters": [(d, DELIMITER_LABELS[d]) for d in DELIMITERS],
        "hooks": [{"name": n, "hook": h, "form": f} for n, h, f in (hooks or hook_forms(database, extra=options.extra))],
    }
    return render(request, "profiles/import_detail.html", context, status=status)


def _result_context(imp: ProfileImport) -> dict[str, Any]:
    job = imp.job
    result = job.result if job is not None else {}
    # A worker that died mid-run leaves the import "running"; the job sweeper fails its job.
    lost = job is not None and job.is_finished and imp.state in (ProfileImport.State.QUEUED, ProfileImport.State.RUNNING)
    return {
        "database": imp.database,
        "imp": imp,
        "job": job,
        "finished": imp.state in (ProfileImport.State.SUCCEEDED, ProfileImport.State.FAILED) or lost,
        "failed": imp.state == ProfileImport.State.FAILED or lost,
        "failure": imp.error or (job.error if job is not None else "") or "The import did not finish.",
        "errors_sample": result.get("errors", [])[:20],
        "error_lines": result.get("error_lines", 0),
        "skipped_erased": result.get("skipped_erased", 0),
        "skipped_mode": result.get("skipped_mode", 0),
        "hook_results": [{"hook": h, "result": r} for h, r in hook_results(imp.extra_results)],
    }


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def import_errors(request: HttpRequest, db: str, pk: int) -> HttpResponse:
    database = get_database(request, db)
    imp = _get_import(request, database, pk)
    if not imp.error_report:
        raise Http404("This import has no error report.")
    stem = imp.original_name.rsplit(".", 1)[0][:100] or "import"
    return FileResponse(imp.error_report.open("rb"), as_attachment=True, filename=f"{stem}-errors.csv",
                        content_type="text/csv; charset=utf-8")
