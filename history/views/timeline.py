"""The profile card's "Events" tab: the profile's timeline, newest first, filtered by type and
date, with infinite scroll.

The tab is registered with profiles in AppConfig.ready (key "events": the card's own "History"
tab is the profile's data changes). `timeline_tab_context` renders it inside the card (GET
parameters type, from, to, cursor, so it works without JavaScript); `timeline_rows`
(`history:timeline`) answers the tab's htmx requests: a filter change gets the whole result
block (and the card's URL pushed), a scroll gets the next rows only. Each page is one keyset
walk of the profile's index plus one query per kind of thing the rows name; nothing counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import push_url

from accounts.access import account_required
from accounts.permissions import Perm
from history.selectors import CursorError, TypeCatalogue, describe, event_types, timeline
from profiles.models import Profile
from profiles.views import get_database

TAB = "events"
MAX_TYPES = 40


def card_url(database_slug: str, profile_id: int, params: list[tuple[str, str]] | None = None) -> str:
    """The profile card opened on its Events tab (other apps link here)."""
    base = reverse("profiles:profile_detail", args=[database_slug, profile_id])
    return f"{base}?{urlencode([('tab', TAB), *(params or [])])}"


def _parse_date(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip()) if raw and raw.strip() else None
    except ValueError:
        return None


@dataclass
class TimelineFilters:
    """The tab's filters as the request gives them: type names, a date range in the account's timezone."""

    types: list[str] = field(default_factory=list)
    date_from: date | None = None
    date_to: date | None = None
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, params: QueryDict, catalogue: TypeCatalogue) -> TimelineFilters:
        f = cls()
        names = [n for n in dict.fromkeys(params.getlist("type")) if n][:MAX_TYPES]
        f.types = [n for n in names if n in catalogue.by_name]
        if len(f.types) < len(names):
            f.errors.append("Some of the chosen event types do not exist in this account; they were left out.")
        for key, label in (("from", "From"), ("to", "To")):
            raw = params.get(key, "")
            value = _parse_date(raw)
            if raw.strip() and value is None:
                f.errors.append(f"{label}: {raw[:20]!r} is not a date (YYYY-MM-DD).")
            setattr(f, "date_from" if key == "from" else "date_to", value)
        if f.date_from and f.date_to and f.date_from > f.date_to:
            f.errors.append("From is after To: the two dates were swapped.")
            f.date_from, f.date_to = f.date_to, f.date_from
        return f

    @property
    def active(self) -> bool:
        return bool(self.types or self.date_from or self.date_to)

    def window(self, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
        """[since, until) in UTC: from the start of `from` to the end of `to`, days in `zone`."""
        since = datetime.combine(self.date_from, time.min, zone) if self.date_from else None
        until = datetime.combine(self.date_to + timedelta(days=1), time.min, zone) if self.date_to else None
        return since, until

    def params(self) -> list[tuple[str, str]]:
        out = [("type", n) for n in self.types]
        if self.date_from:
            out.append(("from", self.date_from.isoformat()))
        if self.date_to:
            out.append(("to", self.date_to.isoformat()))
        return out


def timeline_tab_context(request: HttpRequest, profile: Profile, *, database_slug: str | None = None) -> dict[str, Any]:
    """What the tab's template needs (the card passes the request and the profile)."""
    account = request.account
    catalogue = event_types(account)
    filters = TimelineFilters.from_query(request.GET, catalogue)
    since, until = filters.window(account.tzinfo)
    types = catalogue.ids(filters.types) if filters.types else None
    cursor = request.GET.get("cursor", "").strip() or None
    try:
        page = timeline(profile, types=types, since=since, until=until, cursor=cursor)
    except CursorError:
        filters.errors.append("That page link is not valid any more: showing the newest events.")
        cursor = None
        page = timeline(profile, types=types, since=since, until=until)
    slug = database_slug or profile.database.slug
    params = filters.params()
    rows_base = reverse("history:timeline", args=[slug, profile.pk])
    next_url = next_href = ""
    if page.next_cursor:
        next_url = f"{rows_base}?{urlencode([*params, ('cursor', page.next_cursor)])}"
        next_href = card_url(slug, profile.pk, [*params, ("cursor", page.next_cursor)])
    chosen = set(filters.types)
    return {
        "tl": {
            "filters": filters,
            "groups": [(label, [(t, t.name in chosen) for t in types_]) for label, types_ in catalogue.groups()],
            "chosen_labels": [catalogue.by_name[n].label for n in filters.types],
            "paged": cursor is not None,
            "rows_url": rows_base,
            "card_url": card_url(slug, profile.pk),
            "filtered_url": card_url(slug, profile.pk, params),
        },
        "event_items": describe(account, page.events, catalogue),
        "next_url": next_url,
        "next_href": next_href,
    }


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def timeline_rows(request: HttpRequest, db: str, pk: int) -> HttpResponse:
    """The tab's rows for htmx: with a cursor, the next rows (infinite scroll); without, the
    filtered result block, pushing the card's URL. Without htmx: the card's tab itself."""
    database = get_database(request, db)
    profile = get_object_or_404(Profile.objects.for_account(request.account).filter(database=database), pk=pk)
    if not request.htmx:
        return redirect(card_url(database.slug, profile.pk, [(k, v) for k, vs in request.GET.lists() if k != "tab" for v in vs]))
    context = {"database": database, "profile": profile,
               **timeline_tab_context(request, profile, database_slug=database.slug)}
    if context["tl"]["paged"]:
        return render(request, "history/_event_rows.html", context)
    response = render(request, "history/_card_timeline.html#results", {**context, "swap_oob": True})
    return push_url(response, context["tl"]["filtered_url"])
