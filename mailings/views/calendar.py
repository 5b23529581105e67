"""The calendar: a month grid of scheduled and sent mailings (selectors.mailing_calendar), in the
account's timezone, with the previous and next month; each entry links to its mailing."""

from __future__ import annotations

import calendar as cal
from collections import defaultdict
from datetime import date, datetime, timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.access import account_required
from accounts.permissions import Perm
from mailings import selectors

MAX_PER_DAY = 6


def _month(raw: str, today: date) -> date:
    """?month=YYYY-MM, else this month (a malformed value shows this month rather than an error)."""
    try:
        year, month = (int(x) for x in raw.split("-", 1))
        return date(year, month, 1) if 1900 < year < 3000 else today.replace(day=1)
    except ValueError:
        return today.replace(day=1)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def mailing_calendar(request: HttpRequest) -> HttpResponse:
    tz = request.account.tzinfo
    today = timezone.now().astimezone(tz).date()
    first = _month(request.GET.get("month", ""), today)
    weeks = cal.Calendar(firstweekday=0).monthdatescalendar(first.year, first.month)
    start_day, end_day = weeks[0][0], weeks[-1][-1] + timedelta(days=1)
    start = datetime.combine(start_day, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(end_day, datetime.min.time(), tzinfo=tz)
    by_day: dict[date, list[selectors.CalendarEntry]] = defaultdict(list)
    for entry in selectors.mailing_calendar(account=request.account, start=start, end=end):
        by_day[entry.when.astimezone(tz).date()].append(entry)
    grid = [[{"day": d, "in_month": d.month == first.month, "today": d == today,
              "entries": by_day.get(d, [])[:MAX_PER_DAY], "more": max(0, len(by_day.get(d, [])) - MAX_PER_DAY)}
             for d in week] for week in weeks]
    prev_month = (first - timedelta(days=1)).replace(day=1)
    next_month = (first + timedelta(days=32)).replace(day=1)
    context = {
        "month": first, "grid": grid, "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
        "prev": prev_month.strftime("%Y-%m"), "next": next_month.strftime("%Y-%m"),
        "this_month": today.strftime("%Y-%m") if first != today.replace(day=1) else "",
        "tz": tz, "section": "calendar",
    }
    template = "mailings/mailing_calendar.html"
    if request.htmx:
        template += "#month"
    return render(request, template, context)
