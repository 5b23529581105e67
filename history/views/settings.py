"""The history's settings: how long events are kept, the last cleanup, and "clean up now".

DATABASES_MANAGE, not ACCOUNT_SETTINGS: the retention period decides which data the account
keeps, like a profile database's fields and the event types (the API's event-type and retention
routes ask the same permission); ACCOUNT_SETTINGS is the account's name, timezone and defaults.

The page never counts events: what a cleanup would remove is PostgreSQL's planner estimate
(EXPLAIN, no rows read); other databases show none.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone as tz
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from history.forms import RetentionForm
from history.models import HistorySettings
from history.services import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, RetentionError, retention_set
from history.tasks import retention_cleanup_account_bulk_task
from profiles.forms import mark_invalid

# While a requested cleanup has not reported back (last_cleanup_at), the page shows it running
# and refuses a second one; after this long it is taken to have been lost with its worker.
CLEANUP_PENDING = timedelta(minutes=15)
PRESETS = (30, 90, 180, 365, 730, 1095)


def _pending_key(account_id: int) -> str:
    return f"history:cleanup-requested:{account_id}"


def cleanup_requested_at(settings: HistorySettings | None) -> datetime | None:
    """When "Clean up now" was pressed, while that cleanup has not finished."""
    if settings is None:
        return None
    at = parse_datetime(cache.get(_pending_key(settings.account_id)) or "")
    if at is None or (settings.last_cleanup_at is not None and settings.last_cleanup_at >= at):
        return None
    return at


def estimate_events_before(account_id: int, cutoff: datetime) -> int | None:
    """PostgreSQL's estimate of the account's events older than `cutoff` (EXPLAIN: statistics
    only, no rows read). None elsewhere."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (FORMAT JSON) SELECT 1 FROM history_event WHERE account_id = %s AND occurred_at < %s",
                    [account_id, cutoff])
        plan = cur.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def _rounded(n: int) -> int:
    """Two significant digits: an estimate should not look exact."""
    if n < 100:
        return n
    digits = len(str(n)) - 2
    return round(n, -digits)


def _context(request: HttpRequest, settings: HistorySettings | None) -> dict[str, Any]:
    days = settings.retention_days if settings else None
    now = tz.now()
    cutoff = now - timedelta(days=days) if days else None
    estimate = estimate_events_before(request.account.pk, cutoff) if cutoff else None
    return {
        "history_settings": settings,
        "days": days,
        "cutoff": cutoff,
        "estimate": _rounded(estimate) if estimate is not None else None,
        "requested_at": cleanup_requested_at(settings),
        "min_days": MIN_RETENTION_DAYS,
        "max_days": MAX_RETENTION_DAYS,
        "presets": PRESETS,
        "section": "history_settings",
    }


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATABASES_MANAGE)
def history_settings(request: HttpRequest) -> HttpResponse:
    settings = HistorySettings.objects.for_account(request.account).first()
    form = RetentionForm(request.POST or None, initial={"retention_days": settings.retention_days if settings else None})
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["retention_days"]
        try:
            settings = retention_set(account=request.account, days=days, actor=Actor.from_request(request))
        except RetentionError as exc:
            form.add_error("retention_days", str(exc))
            mark_invalid(form)
        else:
            if days:
                cutoff = tz.localtime(tz.now() - timedelta(days=days), request.account.tzinfo)
                messages.success(request, f"Events are kept for {days:,} days. Older ones (before {cutoff:%b %-d, %Y}) "
                                          "are deleted within the hour.")
            else:
                messages.success(request, "Events are kept forever.")
            return redirect("history:settings")
    context = {**_context(request, settings), "form": form}
    if request.htmx and request.htmx.target == "cleanup-status":
        return render(request, "history/settings.html#cleanup_status", context)
    return render(request, "history/settings.html", context, status=400 if form.is_bound else 200)


@require_POST
@account_required(Perm.DATABASES_MANAGE)
def history_cleanup(request: HttpRequest) -> HttpResponse:
    """Start the retention cleanup in the background now, rather than at the next hourly run. One
    at a time per account: a second press while one runs is refused."""
    settings = HistorySettings.objects.for_account(request.account).first()
    if settings is None or not settings.retention_days:
        messages.error(request, "Set how long to keep events first: without a retention period nothing is deleted.")
        return redirect("history:settings")
    if not cache.add(_pending_key(request.account.pk), tz.now().isoformat(), timeout=int(CLEANUP_PENDING.total_seconds())):
        if cleanup_requested_at(settings) is not None:
            messages.info(request, "A cleanup is already running. This page shows its result when it ends.")
            return redirect("history:settings")
        cache.set(_pending_key(request.account.pk), tz.now().isoformat(), timeout=int(CLEANUP_PENDING.total_seconds()))
    # This account's cleanup, in batches (the same work the hourly run would do a little later).
    retention_cleanup_account_bulk_task.delay_on_commit(request.account.pk)
    messages.success(request, "The cleanup has started. Events older than the retention period are deleted in batches "
                              "in the background.")
    return redirect("history:settings")
