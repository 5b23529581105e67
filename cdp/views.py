"""Project-wide pages: the dashboard (the health, readiness and metrics endpoints are in cdp/ops)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.access import account_required
from accounts.models import ApiToken, AuditEvent, Invitation, Job, Membership

ACTIVITY_DAYS = 14


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
        "members": Membership.objects.for_account(account).count(),
        "pending_invitations": Invitation.objects.for_account(account).pending().count(),
        "api_tokens": ApiToken.objects.for_account(account).active().count(),
        "jobs_running": Job.objects.for_account(account).filter(state__in=[Job.State.QUEUED, Job.State.RUNNING]).count(),
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

