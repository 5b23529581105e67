"""Project-wide pages: the dashboard (the health, readiness and metrics endpoints are in cdp/ops)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.access import account_required
from accounts.models import ApiToken, AuditEvent, Invitation, Job, Membership

ACTIVITY_DAYS = 14


def _counts(**querysets: QuerySet[Any]) -> dict[str, int]:
    """COUNT(*) of each queryset (small per-account tables) in one statement of scalar subqueries,
    not a round trip each: the dashboard is the page everyone lands on."""
    parts, params = [], []
    for qs in querysets.values():
        sql, p = qs.order_by().values("pk").query.sql_with_params()
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS counted)")  # noqa: S608 - Django's SQL, values as params
        params.extend(p)
    with connection.cursor() as cur:
        cur.execute("SELECT " + ", ".join(parts), params)
        row = cur.fetchone()
    return {name: int(n) for name, n in zip(querysets, row, strict=True)}


@require_GET
@account_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    account = request.account
    tz = account.tzinfo
    now = timezone.now()
    since = (now.astimezone(tz) - timedelta(days=ACTIVITY_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day = dict(
        AuditEvent.objects.for_account(account)
        .filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .values_list("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    days = [(since + timedelta(days=i)).date() for i in range(ACTIVITY_DAYS)]
    activity = {"labels": [d.strftime("%b %-d") for d in days], "values": [per_day.get(d, 0) for d in days]}
    stats = {
        **_counts(
            members=Membership.objects.for_account(account),
            pending_invitations=Invitation.objects.for_account(account).pending(),
            api_tokens=ApiToken.objects.for_account(account).active(),
            jobs_running=Job.objects.for_account(account).filter(state__in=[Job.State.QUEUED, Job.State.RUNNING]),
        ),
        "events_14d": sum(activity["values"]),
    }
    context = {
        "stats": stats,
        "activity": activity,
        "recent_events": AuditEvent.objects.for_account(account)
        .select_related("actor")
        .only("verb", "actor_label", "target_label", "created_at", "actor__full_name", "actor__email")[:8],
        "recent_jobs": Job.objects.for_account(account).defer("params", "result", "error")[:5],
        "section": "dashboard",
    }
    return render(request, "dashboard/dashboard.html", context)

