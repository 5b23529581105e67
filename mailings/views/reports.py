"""A mailing's report (figures, rates, skips by reason, clicks per link, a chart per hour), its
recipient log (keyset pages, filters, each row explaining itself), "why did or didn't this person
get it", and the CSV exports (mailings.exports).

Everyone in the account reads them (analysts see reports). The recipient log as CSV is a bulk
export of addresses, so it needs Perm.DATA_EDIT like the profile and segment exports.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.access import account_required
from accounts.permissions import Perm
from mailings import exports, selectors
from mailings.models import LedgerEntry, Mailing, Run
from mailings.views import get_mailing, get_run
from profiles.models import Profile

LOG_PAGE = 50
RUN_CHOICES = 100


def _runs(request: HttpRequest, mailing: Mailing) -> list[Run]:
    return list(Run.objects.for_account(request.account).filter(mailing=mailing)
                .order_by("-scheduled_for", "-id")[:RUN_CHOICES])


def _chart(report: selectors.Report, tz: Any) -> dict[str, Any] | None:
    if not report.series:
        return None
    return {
        "labels": [p["hour"].astimezone(tz).strftime("%b %-d %H:00") for p in report.series],
        "sent": [p["sent"] for p in report.series],
        "opened": [p["opened"] for p in report.series],
        "clicked": [p["clicked"] for p in report.series],
    }


@require_GET
@account_required(Perm.REPORTS_VIEW)
def mailing_report(request: HttpRequest, pk: int) -> HttpResponse:
    mailing = get_mailing(request, pk, related=False)  # the report names none of its objects
    run = get_run(request, mailing, request.GET.get("run"))
    report = selectors.mailing_report(mailing=mailing, run=run)
    context = {
        "mailing": mailing,
        "run": run,
        "runs": _runs(request, mailing) if mailing.kind != Mailing.Kind.BROADCAST else [],
        "report": report,
        "f": report.figures,
        "rates": report.rates,
        "chart": _chart(report, request.account.tzinfo),
        "run_query": f"?run={run.pk}" if run else "",
        "section": "mailings",
    }
    return render(request, "mailings/mailing_report.html", context)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def recipient_log(request: HttpRequest, pk: int) -> HttpResponse:
    """The ledger rows of the mailing (or ?run=), LOG_PAGE at a time by id (?after=), filtered by
    ?status=, ?reason= and ?q= (an address, or #profile id)."""
    mailing = get_mailing(request, pk)
    run = get_run(request, mailing, request.GET.get("run"))
    status = request.GET.get("status", "")
    status = status if status in LedgerEntry.Status.values else ""
    reason = request.GET.get("reason", "")
    reason = reason if reason in LedgerEntry.Reason.values else ""
    q = request.GET.get("q", "").strip()[:320]
    raw_after = request.GET.get("after", "")
    after = int(raw_after) if raw_after.isdigit() else 0
    page = selectors.recipient_log(mailing=mailing, run=run, status=status or None, reason=reason or None, q=q,
                                   after=after, limit=LOG_PAGE)
    filters = {k: v for k, v in (("run", str(run.pk) if run else ""), ("status", status), ("reason", reason), ("q", q)) if v}
    query = urlencode(filters)
    context = {
        "mailing": mailing,
        "run": run,
        "runs": _runs(request, mailing) if mailing.kind != Mailing.Kind.BROADCAST else [],
        "page": page,
        "status": status,
        "reason": reason,
        "q": q,
        "after": after,
        "statuses": LedgerEntry.Status.choices,
        "reasons": LedgerEntry.Reason.choices,
        "filtered": bool(status or reason or q),
        "next_url": f"{request.path}?{urlencode({**filters, 'after': page.next_after})}" if page.next_after else "",
        "first_url": f"{request.path}?{urlencode(filters)}" if after else "",
        "export_query": f"?{query}" if query else "",
        "can_export": request.membership.can(Perm.DATA_EDIT),
        "section": "mailings",
    }
    template = "mailings/recipient_log.html"
    if request.htmx and request.htmx.target == "recipients":
        template += "#log"
    return render(request, template, context)


def _find_profile(mailing: Mailing, raw: str) -> Profile | None:
    """A profile of the mailing's database by #id / id, e-mail address or phone number."""
    text = raw.strip()[:320]
    if not text:
        return None
    profiles = Profile.objects.filter(account_id=mailing.account_id, database_id=mailing.database_id)
    digits = text.lstrip("#")
    if digits.isdigit() and (text.startswith("#") or len(digits) < 9):
        return profiles.filter(pk=int(digits)).first()
    return profiles.filter(Q(email__iexact=text) | Q(phone=text)).order_by("id").first()


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def recipient_explain(request: HttpRequest, pk: int) -> HttpResponse:
    """"Why did (or didn't) this person get it": ?profile= an e-mail, a phone or #id."""
    mailing = get_mailing(request, pk)
    raw = request.GET.get("profile", "")
    profile = _find_profile(mailing, raw)
    lines = selectors.recipient_explain(mailing=mailing, profile_id=profile.pk) if profile is not None else []
    context = {"mailing": mailing, "raw": raw, "profile": profile, "lines": lines, "section": "mailings"}
    template = "mailings/recipient_explain.html"
    if request.htmx:
        template += "#answer"
    return render(request, template, context)


EXPORTS = {"report", "links", "recipients"}


@require_GET
@account_required(Perm.REPORTS_VIEW)
def mailing_export(request: HttpRequest, pk: int, what: str) -> HttpResponse:
    """CSV: the report (?run=), its clicks per link, or the recipient log with the log's filters."""
    mailing = get_mailing(request, pk)
    if what not in EXPORTS:
        raise Http404("No such export")
    run = get_run(request, mailing, request.GET.get("run"))
    if what == "report":
        lines = exports.report_csv(mailing=mailing, run=run)
    elif what == "links":
        lines = exports.links_csv(mailing=mailing, run=run)
    else:
        if not request.membership.can(Perm.DATA_EDIT):
            raise PermissionDenied
        status = request.GET.get("status", "")
        reason = request.GET.get("reason", "")
        lines = exports.recipient_log_csv(
            mailing=mailing, run=run, status=status if status in LedgerEntry.Status.values else None,
            reason=reason if reason in LedgerEntry.Reason.values else None, q=request.GET.get("q", "").strip()[:320])
    return exports.csv_response(lines, exports.csv_filename(mailing, what, run))
