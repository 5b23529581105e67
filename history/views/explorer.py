"""The event explorer (`history:events`): the account's events across its databases, newest
first, for debugging integrations. Filters: type, database, profile (id, or e-mail within a
database), a property search (key=value, always within a time window), the time window (on
received_at). A "Live" switch polls for events newer than the newest shown and prepends them.
Each row expands to what arrived: occurred vs received, source, idempotency key, the full JSON;
`history:event_detail` is an event's own page (a link to share).

Every member may read (Perm.ACCOUNT_VIEW). A page is one index walk (statement-timed when it
filters rows no index serves, see history.selectors) plus one query per kind of thing the rows
name; nothing counts the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone as tz
from django.views.decorators.http import require_GET

from accounts.access import account_required
from accounts.models import Account
from accounts.permissions import Perm
from history.models import Event
from history.selectors import (
    CursorError,
    EventPage,
    PropertyQuery,
    SearchError,
    TypeCatalogue,
    describe,
    event_types,
    explorer,
    newest_event_id,
)
from history.views.timeline import MAX_TYPES, card_url
from profiles.models import Profile, ProfileDatabase
from profiles.services import ProfileValidationError, profile_find

WINDOWS: list[tuple[str, str, timedelta | None]] = [
    ("", "Any time", None),
    ("1h", "Last hour", timedelta(hours=1)),
    ("24h", "Last 24 hours", timedelta(hours=24)),
    ("7d", "Last 7 days", timedelta(days=7)),
    ("30d", "Last 30 days", timedelta(days=30)),
]
WINDOW_DELTAS = {key: delta for key, _, delta in WINDOWS}
PAGE = 50
LIVE_PAGE = 100
LIVE_EVERY = "3s"


def _optional_url(name: str, fallback: str = "") -> str:
    """A link to a page another part of the app may not have routed yet."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return fallback


@dataclass
class ExplorerFilters:
    types: list[str] = field(default_factory=list)
    database: ProfileDatabase | None = None
    profile_text: str = ""
    profile_id: int | None = None
    prop_text: str = ""
    prop: PropertyQuery | None = None
    window: str = ""
    live: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_query(cls, params: QueryDict, account: Account, catalogue: TypeCatalogue,
                   databases: list[ProfileDatabase]) -> ExplorerFilters:
        f = cls()
        names = [n for n in dict.fromkeys(params.getlist("type")) if n][:MAX_TYPES]
        f.types = [n for n in names if n in catalogue.by_name]
        if len(f.types) < len(names):
            f.errors["type"] = "Some of the chosen event types do not exist in this account; they were left out."
        slug = params.get("db", "").strip()
        if slug:
            f.database = next((d for d in databases if d.slug == slug), None)
            if f.database is None:
                f.errors["db"] = "There is no such database in this account."
        f.window = params.get("window", "") if params.get("window", "") in WINDOW_DELTAS else ""
        f.live = params.get("live") == "1"
        f.profile_text = params.get("profile", "").strip()[:254]
        if f.profile_text:
            f._resolve_profile(account, databases)
        f.prop_text = params.get("prop", "").strip()[:300]
        if f.prop_text:
            try:
                f.prop = PropertyQuery.parse(f.prop_text)
            except SearchError as exc:
                f.errors["prop"] = str(exc)
        return f

    def _resolve_profile(self, account: Account, databases: list[ProfileDatabase]) -> None:
        text = self.profile_text
        where = f" in {self.database.name}" if self.database else " in this account"
        digits = text.removeprefix("#")
        if digits.isdigit() and len(digits) <= 18:
            qs = Profile.objects.for_account(account).filter(pk=int(digits))
            if self.database:
                qs = qs.filter(database=self.database)
            self.profile_id = qs.values_list("id", flat=True).first()
            if self.profile_id is None:
                self.errors["profile"] = f"No profile #{digits}{where}."
            return
        if "@" not in text:
            self.errors["profile"] = "Enter a profile id (such as 1234) or an e-mail address."
            return
        database = self.database or (databases[0] if len(databases) == 1 else None)
        if database is None:
            self.errors["profile"] = "Choose a database to find a profile by e-mail."
            return
        try:
            profile = profile_find(database=database, key="email", value=text)
        except ProfileValidationError as exc:
            self.errors["profile"] = next(iter(exc.errors.values()), f"{text!r} is not an e-mail address.")
            return
        if profile is None:
            self.errors["profile"] = f"No profile with this e-mail in {database.name}."
            return
        self.profile_id = profile.pk

    @property
    def blocked(self) -> bool:
        """A filter could not be understood: run nothing rather than show events it would exclude."""
        return bool({"db", "profile", "prop"} & set(self.errors))

    @property
    def active(self) -> bool:
        return bool(self.types or self.database or self.profile_text or self.prop_text or self.window)

    def params(self, *, live: bool | None = None) -> list[tuple[str, str]]:
        out = [("type", n) for n in self.types]
        for key, value in (("db", self.database.slug if self.database else ""), ("profile", self.profile_text),
                           ("prop", self.prop_text), ("window", self.window)):
            if value:
                out.append((key, value))
        if self.live if live is None else live:
            out.append(("live", "1"))
        return out


def _explorer_context(request: HttpRequest) -> dict[str, Any]:
    account = request.account
    catalogue = event_types(account)
    databases = list(ProfileDatabase.objects.for_account(account).order_by("name", "id"))
    f = ExplorerFilters.from_query(request.GET, account, catalogue, databases)
    cursor = request.GET.get("cursor", "").strip() or None
    after_raw = request.GET.get("after", "")
    after = int(after_raw) if after_raw.isdigit() and len(after_raw) <= 19 else None
    delta = WINDOW_DELTAS[f.window]
    search = {
        "types": catalogue.ids(f.types) if f.types else None, "database": f.database, "profile_id": f.profile_id,
        "prop": f.prop, "since": tz.now() - delta if delta else None,
    }
    page = EventPage([])
    if not f.blocked:
        try:
            page = explorer(account, cursor=None if after is not None else cursor, after=after,
                            limit=LIVE_PAGE if after is not None else PAGE, **search)
        except CursorError:
            f.errors["cursor"] = "That page link is not valid any more: showing the newest events."
            cursor = None
            page = explorer(account, limit=PAGE, **search)
    items = describe(account, page.events, catalogue, with_profiles=True, databases={d.pk: d for d in databases})
    base = reverse("history:events")
    params = f.params()
    next_url = f"{base}?{urlencode([*params, ('cursor', page.next_cursor)])}" if page.next_cursor else ""
    live_url = ""
    paged = cursor is not None and after is None
    if f.live and not paged and not page.timed_out:
        newest = items[0].pk if items else (after if after is not None else newest_event_id(account))
        live_url = f"{base}?{urlencode([*params, ('after', newest)])}"
    chosen = set(f.types)
    window_label = next(label for key, label, _ in WINDOWS if key == f.window)
    return {
        "filters": f,
        "page": page,
        "event_items": items,
        "explorer": True,
        "paged": paged,
        "is_live_poll": after is not None,
        "live_url": live_url,
        "live_every": LIVE_EVERY,
        "next_url": next_url,
        "next_href": next_url,
        "end_note": "" if not f.window else f"({window_label.lower()})",
        "groups": [(label, [(t, t.name in chosen) for t in types_]) for label, types_ in catalogue.groups()],
        "chosen_labels": [catalogue.by_name[n].label for n in f.types],
        "databases": databases,
        "windows": [(key, label) for key, label, _ in WINDOWS],
        "clear_url": base,
        "newest_url": f"{base}?{urlencode(params)}" if params else base,
        "api_docs_url": _optional_url("api:openapi-view", "/api/v1/docs"),
        "site_tracking_url": _optional_url("history:site_tracking"),
        "section": "events",
    }


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def event_list(request: HttpRequest) -> HttpResponse:
    """The explorer. htmx: the filter form gets the result block, a scroll the next rows, the
    live poll the new rows (204 when none came)."""
    context = _explorer_context(request)
    if request.htmx:
        if context["is_live_poll"]:
            if not context["event_items"] and not context["page"].timed_out:
                return HttpResponse(status=204)
            return render(request, "history/explorer.html#live_rows", context)
        if context["paged"]:
            return render(request, "history/_event_rows.html", context)
        if request.htmx.target == "explorer-results":
            return render(request, "history/explorer.html#results", {**context, "swap_oob": True})
    return render(request, "history/explorer.html", context)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One event with everything that arrived (a link to share while debugging)."""
    event = get_object_or_404(Event.objects.for_account(request.account), pk=pk)
    catalogue = event_types(request.account)
    database = ProfileDatabase.objects.for_account(request.account).filter(pk=event.database_id).first()
    [item] = describe(request.account, [event], catalogue, with_profiles=True,
                      databases={database.pk: database} if database else {})
    return render(request, "history/explorer_event.html", {
        "item": item,
        "event": event,
        "profile_url": card_url(database.slug, event.profile_id) if database else "",
        "similar_url": f"{reverse('history:events')}?{urlencode([('type', item.type.name), ('profile', event.profile_id)])}",
        "section": "events",
    })
