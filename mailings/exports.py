"""CSV exports of a mailing: the report's figures, the recipient log and the clicks per link.

Each export is a generator of CSV lines (the first starts with a UTF-8 BOM so spreadsheet
programs read the encoding right), for a `StreamingHttpResponse` (`csv_response`) or a file.
The recipient log is read by keyset on id, `PAGE` rows a query, so a million-row log streams in
constant memory and never holds a long cursor. Every text cell goes through
`cdp.spreadsheets.formula_safe`: an address or a URL starting with "=" stays text.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse
from django.utils.text import slugify

from cdp.spreadsheets import formula_safe
from mailings.models import Mailing, Run
from mailings.selectors import explain_rows, mailing_report, recipient_log_query

PAGE = 2_000


class _Echo:
    """A file-like object whose write returns the line: csv.writer then gives each row back."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return formula_safe(str(value), keep_numbers=True)


def _lines(header: list[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(header)
    for row in rows:
        yield writer.writerow([_cell(v) for v in row])


def report_csv(*, mailing: Mailing, run: Run | None = None) -> Iterator[str]:
    """The report as (section, name, value) rows: figures, rates (percent), skipped and failed by
    reason, and the hourly series."""
    report = mailing_report(mailing=mailing, run=run)

    def rows() -> Iterator[list[Any]]:
        for name, value in report.figures.items():
            yield ["figure", name, value]
        for name, rate in report.rates.items():
            yield ["rate", name, "" if rate is None else rate]
        for r in report.skipped:
            yield ["skipped", r.label, r.count]
        for r in report.failed:
            yield ["failed", r.label, r.count]
        for point in report.series:
            hour = point["hour"].isoformat()
            for metric in ("sent", "opened", "clicked"):
                yield [f"hourly {metric}", hour, point[metric]]

    return _lines(["section", "name", "value"], rows())


def links_csv(*, mailing: Mailing, run: Run | None = None) -> Iterator[str]:
    """Human clicks per link, most clicked first."""
    report = mailing_report(mailing=mailing, run=run)
    return _lines(["link_id", "url", "clicks"], ([r.link_id, r.url, r.clicks] for r in report.links))


LOG_HEADER = ["ledger_id", "run", "profile_id", "channel", "address", "status", "reason", "detail", "attempts", "sent_at",
              "delivered_at", "opened_at", "clicked_at", "bounced_at", "message_id", "explanation"]


def recipient_log_csv(*, mailing: Mailing, run: Run | None = None, status: str | None = None, reason: str | None = None,
                      q: str = "") -> Iterator[str]:
    """The recipient log with the page's filters: every row, keyset-paged (PAGE rows a query),
    with its explanation."""
    qs = recipient_log_query(mailing=mailing, run=run, status=status, reason=reason, q=q)
    slots = dict(Run.objects.filter(mailing=mailing).values_list("pk", "slot"))
    tz = mailing.account.timezone

    def rows() -> Iterator[list[Any]]:
        after = 0
        while True:
            page = list(qs.filter(id__gt=after)[:PAGE])
            if not page:
                return
            explain_rows(page, tz=tz)
            for e in page:
                yield [e.pk, slots.get(e.run_id, e.run_id), e.profile_id, e.channel, e.address, e.status, e.reason, e.detail,
                       e.attempts, e.sent_at, e.delivered_at, e.opened_at, e.clicked_at, e.bounced_at, e.message_id,
                       e.explanation]
            if len(page) < PAGE:
                return
            after = page[-1].pk

    return _lines(LOG_HEADER, rows())


def csv_filename(mailing: Mailing, what: str, run: Run | None = None) -> str:
    base = slugify(mailing.name)[:60] or f"mailing-{mailing.pk}"
    return f"{base}-{what}" + (f"-run-{run.pk}" if run else "") + ".csv"


def csv_response(lines: Iterator[str], filename: str) -> StreamingHttpResponse:
    """A streamed CSV download (the views call this with one of the generators above)."""
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
