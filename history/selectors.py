"""Reads on the action history: a profile's timeline, the account's event explorer, and what a
page of events needs to be shown (type labels and icons, resources, links, profiles).

Both lists read newest first with keyset cursors, never OFFSET and never COUNT: a page costs
what the first page costs, 100,000 events down a profile's timeline or 10M into an account.

- `timeline` walks the index (profile, occurred_at DESC, id DESC); filtered by one type it walks
  (profile, type, occurred_at); by several types, one bounded walk per type merged in one
  UNION ALL (PostgreSQL), so no plan sorts the profile's whole history.
- `explorer` walks (account, id DESC), or (account, type, id DESC) by type. Its time window is
  on received_at and is turned into an id range (ids are taken in the order events arrive), so
  a window bounds the scan. Filters no index serves (database, profile, properties) are
  checked row by row inside that scan, under a statement timeout on PostgreSQL; a property
  search always has a window (24 hours unless told, 7 days at most) and the page says so.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from django.db import OperationalError, connection, transaction
from django.db.models import F, Q, QuerySet, TextField
from django.db.models.fields.json import HasKey, KeyTextTransform, KeyTransform
from django.db.models.functions import Cast
from django.utils import timezone as tz

from accounts.models import Account
from history.catalogue import BY_ID
from history.models import Event, EventType, Link
from profiles.models import Profile, ProfileDatabase

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# A property search reads the rows of a time window one by one: 24 hours unless told, never more than 7 days.
PROPERTY_WINDOW = timedelta(hours=24)
PROPERTY_WINDOW_MAX = timedelta(days=7)
# Explorer queries that filter rows no index serves stop after this long (PostgreSQL).
SEARCH_TIMEOUT_MS = 3000
# Ids follow received_at up to the time between stamping a batch and inserting it; the id range
# of a time window is widened by this much on each side, then received_at is checked exactly.
ARRIVAL_SLACK = timedelta(minutes=5)

GROUP_LABELS = {
    "messages": "Messages", "subscriptions": "Subscriptions", "site": "Website", "app": "App",
    "orders": "Orders", "promo": "Promo codes", "custom": "Custom",
}
CHANNEL_LABELS = {
    "email": ("E-mail", "envelope"), "sms": ("SMS", "chat-left-text"), "webpush": ("Web push", "window-stack"),
    "mobilepush": ("Mobile push", "phone-vibrate"), "telegram": ("Telegram", "telegram"), "web": ("Web", "globe2"),
    "app": ("App", "phone"),
}
UTC_ZONE = ZoneInfo("UTC")
COMPACT_PROPERTIES = 6
COMPACT_VALUE_CHARS = 60


class CursorError(ValueError):
    """A cursor this module did not make (tampered with, or from the other list)."""


class SearchError(ValueError):
    """A property search that cannot be run (bad syntax)."""


# --- event types ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeInfo:
    id: int
    name: str
    label: str
    icon: str
    group: str
    system: bool
    enabled: bool = True

    @property
    def group_label(self) -> str:
        return GROUP_LABELS.get(self.group, self.group.title())


@dataclass
class TypeCatalogue:
    """The event types an account sees (the system catalogue and its own), from one query."""

    types: list[TypeInfo]

    @cached_property
    def by_id(self) -> dict[int, TypeInfo]:
        return {t.id: t for t in self.types}

    @cached_property
    def by_name(self) -> dict[str, TypeInfo]:
        return {t.name: t for t in self.types}

    def get(self, type_id: int) -> TypeInfo:
        return self.by_id.get(type_id) or TypeInfo(type_id, f"type-{type_id}", f"Type #{type_id}", "question-circle",
                                                  "custom", False, False)

    def ids(self, names: Collection[str]) -> list[int]:
        """The ids of the named types this account has (unknown names are left out)."""
        return sorted(self.by_name[n].id for n in names if n in self.by_name)

    def groups(self) -> list[tuple[str, list[TypeInfo]]]:
        """(group label, types): the system types by catalogue group, then the account's own."""
        order = list(GROUP_LABELS)
        out: dict[str, list[TypeInfo]] = {}
        for t in sorted(self.types, key=lambda t: (order.index(t.group) if t.group in order else len(order), not t.system,
                                                    t.id if t.system else 0, t.label.lower())):
            out.setdefault(t.group_label, []).append(t)
        return list(out.items())


def event_types(account: Account) -> TypeCatalogue:
    rows = EventType.objects.visible_to(account).values_list("id", "name", "label", "account_id", "enabled")
    types = []
    for id_, name, label, account_id, enabled in rows:
        st = BY_ID.get(id_) if account_id is None else None
        types.append(TypeInfo(id_, name, label or name, st.icon if st else "lightning", st.group if st else "custom",
                              account_id is None, enabled))
    return TypeCatalogue(types)


# --- cursors -------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def _pack(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unpack(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorError("not a cursor") from None


def time_cursor(occurred_at: datetime, event_id: int) -> str:
    return _pack(f"t{(occurred_at - _EPOCH) // _MICRO}.{event_id}")


def read_time_cursor(cursor: str) -> tuple[datetime, int]:
    m = re.fullmatch(r"t(-?\d{1,17})\.(\d{1,19})", _unpack(cursor))
    if not m:
        raise CursorError("not a timeline cursor")
    try:
        return _EPOCH + int(m[1]) * _MICRO, int(m[2])
    except OverflowError:
        raise CursorError("not a timeline cursor") from None


def id_cursor(event_id: int) -> str:
    return _pack(f"i{event_id}")


def read_id_cursor(cursor: str) -> int:
    m = re.fullmatch(r"i(\d{1,19})", _unpack(cursor))
    if not m:
        raise CursorError("not an explorer cursor")
    return int(m[1])


# --- pages ---------------------------------------------------------------------------------------


@dataclass
class EventPage:
    """A page of events, newest first. next_cursor: None at the end. notes: how the search was
    limited (shown above the rows). timed_out: the search was stopped before it found a page;
    the rows are empty and the filters should be narrowed. more: (live) more new events came
    than the page holds."""

    events: list[Event]
    next_cursor: str | None = None
    notes: list[str] = field(default_factory=list)
    timed_out: bool = False
    more: bool = False


def _clamp(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def _newest(qs: QuerySet[Event], order: Sequence[str], n: int, types: Collection[int] | None) -> list[Event]:
    """The first n events of qs in `order`; with several types, one bounded index walk per type."""
    if types is None:
        return list(qs.order_by(*order)[:n])
    wanted = sorted(set(types))
    if not wanted:
        return []
    if len(wanted) == 1:
        return list(qs.filter(type_id=wanted[0]).order_by(*order)[:n])
    if not connection.features.supports_slicing_ordering_in_compound:
        # SQLite cannot order the branches of a UNION; its databases are small.
        return list(qs.filter(type_id__in=wanted).order_by(*order)[:n])
    fields = [o.lstrip("-") for o in order]
    parts = [qs.filter(type_id=t).order_by(*order).values_list(*fields)[:n] for t in wanted]
    keys = list(parts[0].union(*parts[1:], all=True).order_by(*order)[:n])
    ids = [k[fields.index("id")] for k in keys]
    rows = Event.objects.in_bulk(ids)
    return [rows[i] for i in ids if i in rows]


def timeline(profile: Profile, *, types: Collection[int] | None = None, since: datetime | None = None,
             until: datetime | None = None, cursor: str | None = None, limit: int = DEFAULT_LIMIT) -> EventPage:
    """The profile's events, newest first by (occurred_at, id). types: type ids (None: all; empty:
    none). since <= occurred_at < until. cursor: the previous page's next_cursor (CursorError if
    it is not one)."""
    n = _clamp(limit)
    qs = Event.objects.filter(account_id=profile.account_id, profile_id=profile.pk)
    if since is not None:
        qs = qs.filter(occurred_at__gte=since)
    if until is not None:
        qs = qs.filter(occurred_at__lt=until)
    if cursor:
        at, last_id = read_time_cursor(cursor)
        # The first condition bounds the index walk; the second breaks ties on the same instant.
        qs = qs.filter(occurred_at__lte=at).filter(Q(occurred_at__lt=at) | Q(id__lt=last_id))
    events = _newest(qs, ("-occurred_at", "-id"), n + 1, types)
    more = len(events) > n
    events = events[:n]
    return EventPage(events, time_cursor(events[-1].occurred_at, events[-1].pk) if more else None)


# --- the explorer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PropertyQuery:
    """`key=value` (the property's text equals value) or `key` (the property is there). A key may
    name a nested property with dots: `cart.sku=A-1`."""

    path: tuple[str, ...]
    value: str | None = None

    _RE = re.compile(r"([A-Za-z0-9_$@-]{1,64}(?:\.[A-Za-z0-9_$@-]{1,64}){0,4})(?:\s*=\s*(.*))?", re.S)

    @classmethod
    def parse(cls, text: str) -> PropertyQuery:
        text = (text or "").strip()
        m = cls._RE.fullmatch(text)
        if not m:
            raise SearchError("Write key=value (e.g. sku=A-1), or a key alone to find events that have it.")
        value = m[2]
        if value is not None:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            if len(value) > 200:
                raise SearchError("Search for a value of at most 200 characters.")
        return cls(tuple(m[1].split(".")), value)

    def __str__(self) -> str:
        key = ".".join(self.path)
        return key if self.value is None else f"{key}={self.value}"

    def apply(self, qs: QuerySet[Event]) -> QuerySet[Event]:
        parent: Any = F("properties")
        for part in self.path[:-1]:
            parent = KeyTransform(part, parent)
        if self.value is None:
            return qs.filter(HasKey(parent, self.path[-1]))
        # As text, so "42" finds 42 and "42", and "true" a JSON true (on PostgreSQL).
        return qs.alias(_prop=Cast(KeyTextTransform(self.path[-1], parent), TextField())).filter(_prop=self.value)


def _first_id_received(at: datetime) -> int:
    """The first event id received at or after `at` (the highest id + 1 if none): a binary search
    on the primary key in one statement (~30 index probes), as ids are handed out in arrival order."""
    param = connection.ops.adapt_datetimefield_value(at)
    probe = "(SELECT e.received_at >= %s FROM history_event e WHERE e.id >= (b.lo + b.hi) / 2 ORDER BY e.id LIMIT 1)"
    sql = (
        "WITH RECURSIVE b(lo, hi) AS ("  # noqa: S608 (placeholders only)
        " SELECT COALESCE((SELECT min(id) FROM history_event), 1), COALESCE((SELECT max(id) FROM history_event), 0) + 1"
        " UNION ALL"
        f" SELECT CASE WHEN COALESCE({probe}, TRUE) THEN b.lo ELSE (b.lo + b.hi) / 2 + 1 END,"
        f" CASE WHEN COALESCE({probe}, TRUE) THEN (b.lo + b.hi) / 2 ELSE b.hi END"
        " FROM b WHERE b.lo < b.hi"
        ") SELECT max(lo) FROM b"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [param, param])
        return int(cur.fetchone()[0])


@dataclass
class _Guard:
    timed_out: bool = False


def _cancelled(exc: OperationalError) -> bool:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "57014" or getattr(cause, "pgcode", None) == "57014"


@contextmanager
def _time_limit(ms: int | None) -> Iterator[_Guard]:
    """Run the block with a statement timeout (PostgreSQL; elsewhere as is). A cancelled query
    sets guard.timed_out instead of raising; the setting ends with the block."""
    guard = _Guard()
    if not ms or connection.vendor != "postgresql":
        yield guard
        return
    try:
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)",
                            [str(ms)])
                previous = cur.fetchone()[0]
            yield guard
            with connection.cursor() as cur:
                # Inside an outer transaction SET LOCAL would outlive this block.
                cur.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
    except OperationalError as exc:
        if not _cancelled(exc):
            raise
        guard.timed_out = True


def _when(value: datetime, account: Account) -> str:
    return value.astimezone(account.tzinfo).strftime("%b %-d, %H:%M")


def explorer(account: Account, *, types: Collection[int] | None = None, database: ProfileDatabase | None = None,
             profile_id: int | None = None, prop: str | PropertyQuery | None = None, since: datetime | None = None,
             until: datetime | None = None, cursor: str | None = None, after: int | None = None,
             limit: int = DEFAULT_LIMIT, now: datetime | None = None) -> EventPage:
    """The account's events, newest first by id.

    types: type ids (None: all; empty: none). since <= received_at < until. prop: a property
    search (`key=value` or `key`; SearchError if malformed), always within a window: 24 hours
    unless since is given, at most 7 days (the page's notes say so). cursor: the previous page's
    next_cursor (CursorError if it is not one). after: only events with a higher id (the live
    view), up to `limit`, with `more` set when more came.
    """
    n = _clamp(limit)
    notes: list[str] = []
    query = PropertyQuery.parse(prop) if isinstance(prop, str) else prop
    if query is not None:
        now = now or tz.now()
        end = until or now
        if since is None:
            since = end - PROPERTY_WINDOW
            notes.append(f"Property searches look at the last 24 hours unless you choose a window: events received "
                         f"since {_when(since, account)}.")
        elif end - since > PROPERTY_WINDOW_MAX:
            since = end - PROPERTY_WINDOW_MAX
            notes.append(f"Property searches look at 7 days at most: events received since {_when(since, account)}.")
    qs = Event.objects.filter(account_id=account.pk)
    guarded = False
    if database is not None:
        qs, guarded = qs.filter(database_id=database.pk), True
    if profile_id is not None:
        qs, guarded = qs.filter(profile_id=profile_id), True
    if since is not None:
        qs, guarded = qs.filter(id__gte=_first_id_received(since - ARRIVAL_SLACK), received_at__gte=since), True
    if until is not None:
        qs, guarded = qs.filter(id__lt=_first_id_received(until + ARRIVAL_SLACK), received_at__lt=until), True
    if query is not None:
        qs = query.apply(qs)
    if after is not None:
        qs = qs.filter(id__gt=after)
    elif cursor:
        qs = qs.filter(id__lt=read_id_cursor(cursor))
    with _time_limit(SEARCH_TIMEOUT_MS if guarded else None) as guard:
        events = _newest(qs, ("-id",), n + 1, types)
    if guard.timed_out:
        notes.append("The search took too long and was stopped. Narrow it: a shorter window, an event type, "
                     "a profile.")
        return EventPage([], None, notes, timed_out=True)
    more = len(events) > n
    events = events[:n]
    if after is not None:
        return EventPage(events, None, notes, more=more)
    return EventPage(events, id_cursor(events[-1].pk) if more else None, notes)


def newest_event_id(account: Account) -> int:
    """The account's highest event id (0 without events): where the live view starts."""
    return Event.objects.filter(account_id=account.pk).order_by("-id").values_list("id", flat=True).first() or 0


# --- showing a page ------------------------------------------------------------------------------


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= COMPACT_VALUE_CHARS else text[: COMPACT_VALUE_CHARS - 1] + "…"


def ago(delta: timedelta) -> str:
    """ "just now", "5 minutes ago", "3 days ago" (one unit: rows show the exact time beside it)."""
    seconds = delta.total_seconds()
    if seconds < 60:
        return "just now" if seconds > -60 else "in the future"
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


@dataclass
class EventItem:
    """An event with what a row shows, resolved for the whole page at once. Times are formatted
    here, in the account's timezone (a page shows 250 of them; the template filters cost more)."""

    event: Event
    type: TypeInfo
    link_url: str = ""
    resource: tuple[str, str] | None = None  # (slug, name)
    profile_label: str = ""
    database: ProfileDatabase | None = None
    zone: ZoneInfo = UTC_ZONE
    now: datetime = field(default_factory=tz.now)

    def _local(self, value: datetime, fmt: str) -> str:
        return value.astimezone(self.zone).strftime(fmt)

    @property
    def occurred(self) -> str:
        return self._local(self.event.occurred_at, "%b %-d, %Y %H:%M:%S")

    @property
    def occurred_full(self) -> str:
        return self._local(self.event.occurred_at, "%Y-%m-%d %H:%M:%S.%f %Z")

    @property
    def received(self) -> str:
        return self._local(self.event.received_at, "%b %-d, %H:%M:%S")

    @property
    def received_full(self) -> str:
        return self._local(self.event.received_at, "%Y-%m-%d %H:%M:%S.%f %Z")

    @property
    def occurred_ago(self) -> str:
        return ago(self.now - self.event.occurred_at)

    @property
    def received_ago(self) -> str:
        return ago(self.now - self.event.received_at)

    @property
    def pk(self) -> int:
        return self.event.pk

    @property
    def channel(self) -> tuple[str, str] | None:
        return CHANNEL_LABELS.get(self.event.channel) if self.event.channel else None

    @property
    def properties(self) -> dict[str, Any]:
        return self.event.properties if isinstance(self.event.properties, dict) else {}

    @cached_property
    def compact(self) -> list[tuple[str, str]]:
        return [(k, _short(v)) for k, v in list(self.properties.items())[:COMPACT_PROPERTIES]]

    @property
    def hidden_count(self) -> int:
        return max(0, len(self.properties) - COMPACT_PROPERTIES)

    @cached_property
    def pretty(self) -> str:
        return json.dumps(self.event.properties, indent=2, ensure_ascii=False, default=str)

    @property
    def machine_reason(self) -> str:
        reason = self.properties.get("machine_reason")
        return str(reason) if reason else ""

    @property
    def link_is_web(self) -> bool:
        return self.link_url.startswith(("https://", "http://"))

    @property
    def lag(self) -> str:
        """How long after it occurred the event was received ("" within a second)."""
        seconds = (self.event.received_at - self.event.occurred_at).total_seconds()
        if seconds < 0:
            return "before it occurred (the sender's clock is ahead)"
        if seconds < 1:
            return ""
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
            if seconds >= size:
                n = int(seconds // size)
                return f"{n} {unit}{'s' if n != 1 else ''} after it occurred"
        return ""


def describe(account: Account, events: Sequence[Event], types: TypeCatalogue, *, with_profiles: bool = False,
             databases: dict[int, ProfileDatabase] | None = None) -> list[EventItem]:
    """Resolve what the rows show: links, resources and (with_profiles) profiles in one query
    each, whatever the page size. databases: the account's databases by id (the caller has them)."""
    from resources.models import Resource

    link_ids = {e.link_id for e in events if e.link_id}
    resource_ids = {e.resource_id for e in events if e.resource_id}
    links = dict(Link.objects.filter(account_id=account.pk, id__in=link_ids).values_list("id", "url")) if link_ids else {}
    resources = {
        id_: (slug, name)
        for id_, slug, name in Resource.objects.filter(account=account, id__in=resource_ids).values_list("id", "slug", "name")
    } if resource_ids else {}
    labels: dict[int, str] = {}
    if with_profiles and events:
        # By primary key alone (the account is checked on the rows): a plan that ANDs the account's
        # index would read every profile id of the account.
        rows = Profile.objects.filter(id__in={e.profile_id for e in events}).values_list(
            "id", "account_id", "first_name", "last_name", "email", "phone")
        for id_, account_id, first, last, email, phone in rows:
            if account_id == account.pk:
                labels[id_] = f"{first} {last}".strip() or email or phone or f"Profile #{id_}"
    databases = databases or {}
    zone, now = account.tzinfo, tz.now()
    return [
        EventItem(
            event=e, type=types.get(e.type_id), link_url=links.get(e.link_id, "") if e.link_id else "",
            resource=resources.get(e.resource_id) if e.resource_id else None,
            profile_label=labels.get(e.profile_id, f"Profile #{e.profile_id}") if with_profiles else "",
            database=databases.get(e.database_id), zone=zone, now=now,
        )
        for e in events
    ]
