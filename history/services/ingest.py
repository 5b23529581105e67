"""The one way events are stored: validated, deduplicated by idempotency key, written set-based,
then handed to the registered handlers after commit (see `history.handlers`).

Every caller (the API, the JavaScript collector, tracking, the consent ledger, imports, and the
higher apps) builds `EventIn`s and calls `events_ingest`. It never raises for one bad event:
each item gets an `ItemResult` (stored, duplicate or error with the property that is wrong), and
everything valid beside a bad item is stored.

Writes: ids are taken from the sequence up front (PostgreSQL) so the one INSERT .. SELECT ..
JOIN profile .. ON CONFLICT DO NOTHING RETURNING id tells exactly which items were stored; the
join drops events for profiles that do not exist (or were erased meanwhile) in this account, and
the conflict clause makes a concurrent duplicate (same account and key) a no-op that waits for
the other transaction, so two simultaneous deliveries of one event store it once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone as tz
from django.utils.dateparse import parse_datetime

from accounts.models import Account
from cdp import confcache
from history import handlers
from history.catalogue import BY_ID
from history.models import Event, EventDispatch, EventType, HistorySettings
from history.schema import CompiledSchema
from history.services.dispatch import poke
from profiles.fieldtypes import Context

log = logging.getLogger(__name__)

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 16 * 1024
MAX_KEY_LENGTH = 128
MAX_FUTURE = timedelta(hours=1)
MAX_PAST = timedelta(days=3653)
_PROPERTIES_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
CHANNELS = frozenset({"", "email", "sms", "webpush", "mobilepush", "telegram", "web", "app"})


@dataclass
class EventIn:
    """One event to store. `type` is a type name; `occurred_at` a datetime, ISO text, epoch
    seconds (or milliseconds), or None for now."""

    type: str
    profile_id: int | None
    occurred_at: Any = None
    properties: Any = None
    key: str | None = None
    channel: str = ""
    resource_id: int | None = None
    mailing_id: int | None = None
    run_id: int | None = None
    ledger_id: int | None = None
    link_id: int | None = None
    machine: bool = False
    source: str = ""


@dataclass
class ItemResult:
    index: int
    status: str = "error"  # stored | duplicate | error
    id: int | None = None
    error: str = ""
    field: str = ""
    untyped: bool = False

    def as_json(self) -> str:
        """`as_dict` as JSON text; a stored item (nearly every one) is written out directly."""
        if self.status == "stored" and not self.error and self.id is not None:
            return (f'{{"index":{self.index},"status":"stored","id":{self.id}'
                    + (',"untyped":true}' if self.untyped else "}"))
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.id is not None:
            d["id"] = self.id
        if self.error:
            d["error"] = {"field": self.field, "message": self.error}
        if self.untyped:
            d["untyped"] = True
        return d


@dataclass
class TypeSpec:
    id: int
    name: str
    strict: bool
    enabled: bool
    public: bool
    schema: CompiledSchema


@dataclass
class TypeBook:
    """What ingestion needs to know about an account: its event types by name, and its retention
    period. `for_account` keeps it per process until the configuration changes (cdp.confcache)."""

    by_name: dict[str, TypeSpec] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    retention_days: int | None = None

    @classmethod
    def for_account(cls, account: Account) -> TypeBook:
        # The API has just synced the configuration cache in this request; other callers read
        # the generation at most once a second.
        if not confcache.check(fresh_within=1.0):
            return cls.load(account)
        book = _BOOKS.get(account.pk)
        if book is None:
            book = _BOOKS[account.pk] = cls.load(account)
        return book

    @classmethod
    def load(cls, account: Account) -> TypeBook:
        ctx = Context(region=account.default_phone_region, tz=account.tzinfo)
        book = cls()
        book.retention_days = HistorySettings.objects.filter(account=account).values_list("retention_days", flat=True).first()
        rows = EventType.objects.visible_to(account).values_list("id", "name", "strict", "enabled", "properties", "account_id")
        for id_, name, strict, enabled, props, account_id in rows:
            st = BY_ID.get(id_) if account_id is None else None
            public = st.public if st else account_id is not None
            # System types are loose: their listed properties are typed when present.
            book.by_name[name] = TypeSpec(id_, name, strict and account_id is not None, enabled, public,
                                          CompiledSchema(props or [], ctx))
            book.names[id_] = name
        return book


_BOOKS: dict[int, TypeBook] = confcache.register({})


class _Rejected(Exception):
    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message


def parse_time(raw: Any, now: datetime, *, earliest: datetime, too_old: str = "too far in the past") -> datetime:
    if raw is None or raw == "":
        return now
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, bool):
        raise _Rejected("time", "expected an ISO 8601 time or epoch seconds, got true/false")
    elif isinstance(raw, int | float):
        seconds = raw / 1000 if abs(raw) > 1e11 else raw
        try:
            value = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise _Rejected("time", f"{raw} is not a time") from None
    elif isinstance(raw, str):
        try:
            value = parse_datetime(raw.strip())
        except ValueError:
            value = None
        if value is None:
            raise _Rejected("time", f"{raw[:40]!r} is not an ISO 8601 time (e.g. 2026-11-28T10:15:00Z)")
    else:
        raise _Rejected("time", f"expected an ISO 8601 time or epoch seconds, got {type(raw).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value > now + MAX_FUTURE:
        raise _Rejected("time", f"{value.isoformat()} is in the future (more than an hour ahead of the server's clock)")
    if value < earliest:
        raise _Rejected("time", f"{value.isoformat()} is {too_old} (the earliest accepted is {earliest.date()})")
    return value


def _earliest(book: TypeBook, now: datetime) -> tuple[datetime, str]:
    days = book.retention_days
    if days:
        return now - timedelta(days=days), f"older than the account's retention period ({days} days)"
    return now - MAX_PAST, "more than 10 years ago"


@dataclass
class EventChecker:
    """Checks events the way `events_ingest` does, without storing them (for callers that must
    answer before or without knowing the profile, such as the public collector)."""

    book: TypeBook
    now: datetime
    earliest: tuple[datetime, str]

    @classmethod
    def for_account(cls, account: Account, book: TypeBook | None = None, now: datetime | None = None) -> EventChecker:
        now = now or tz.now()
        book = book or TypeBook.for_account(account)
        return cls(book, now, _earliest(book, now))

    def problem(self, ev: EventIn, *, public_only: bool = True) -> tuple[str, str] | None:
        """(field, message) of what is wrong with the event itself (not its profile), or None."""
        try:
            _validate(ev, self.book, self.now, self.earliest, public_only, ev.source or "")
        except _Rejected as r:
            return r.field, r.message
        return None


def events_ingest(*, account: Account, events: Sequence[EventIn], source: str = "api", public_only: bool = False,
                  book: TypeBook | None = None, now: datetime | None = None,
                  database_id: int | None = None) -> list[ItemResult]:
    """Store `events` for `account`; one result per event, in order. public_only: refuse the
    types only the platform writes (the API and the JavaScript collector set it). database_id:
    the caller has just looked every profile up in this database of this account (the
    payloads path), so the insert need not join the profiles again; without it, events of
    profiles that are not this account's are refused."""
    now = now or tz.now()
    book = book or TypeBook.for_account(account)
    earliest, too_old = _earliest(book, now)
    results = [ItemResult(i) for i in range(len(events))]
    rows: list[tuple[int, dict[str, Any]]] = []
    first_of_key: dict[str, int] = {}
    dup_of: dict[int, int] = {}
    for i, ev in enumerate(events):
        try:
            row = _validate(ev, book, now, (earliest, too_old), public_only, source)
        except _Rejected as r:
            results[i].error, results[i].field = r.message, r.field
            continue
        key = row["idempotency_key"]
        if key is not None:
            if key in first_of_key:
                dup_of[i] = first_of_key[key]
                continue
            first_of_key[key] = i
        results[i].untyped = row["untyped"]
        rows.append((i, row))
    if rows:
        # The types some handler wants: the write adds their stored events to the outbox.
        wanted = sorted({row["type_id"] for _, row in rows if handlers.wanted([book.names.get(row["type_id"], "")])})
        stored = _write(account.pk, rows, database_id, wanted)
        missing_keys = [row["idempotency_key"] for i, row in rows if i not in stored and row["idempotency_key"]]
        existing = dict(
            Event.objects.filter(account_id=account.pk, idempotency_key__in=missing_keys).values_list("idempotency_key", "id")
        ) if missing_keys else {}
        for i, row in rows:
            if i in stored:
                results[i].status, results[i].id = "stored", stored[i]
            elif row["idempotency_key"] in existing:
                results[i].status, results[i].id = "duplicate", existing[row["idempotency_key"]]
                results[i].untyped = False
            else:
                results[i].error, results[i].field = "no such profile in this account", "profile"
                results[i].untyped = False
        if wanted and any(i in stored and row["type_id"] in wanted for i, row in rows):
            transaction.on_commit(poke)
    for i, first in dup_of.items():
        r, f = results[i], results[first]
        if f.status == "error":
            r.error, r.field = f.error, f.field
        else:
            r.status, r.id = "duplicate", f.id
            if f.status == "stored":
                r.error, r.field = "", ""
    return results


def _validate(ev: EventIn, book: TypeBook, now: datetime, earliest: tuple[datetime, str], public_only: bool,
              source: str) -> dict[str, Any]:
    if not ev.type:
        raise _Rejected("event", "name the event type (e.g. \"page.viewed\" or one of the account's own types)")
    spec = book.by_name.get(ev.type) if isinstance(ev.type, str) else None
    if spec is None:
        raise _Rejected("event", f"unknown event type {str(ev.type)[:64]!r} (define it under History → Event types)")
    if not spec.enabled:
        raise _Rejected("event", f"event type {spec.name!r} is disabled")
    if public_only and not spec.public:
        raise _Rejected("event", f"{spec.name!r} is recorded by the platform itself and cannot be sent")
    if not isinstance(ev.profile_id, int) or isinstance(ev.profile_id, bool):
        raise _Rejected("profile", "name the profile")
    occurred = parse_time(ev.occurred_at, now, earliest=earliest[0], too_old=earliest[1])
    props = ev.properties if ev.properties is not None else {}
    if not isinstance(props, dict):
        raise _Rejected("properties", f"expected an object, got {type(props).__name__}")
    key = ev.key
    if key is not None:
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise _Rejected("id", "expected a string")
        key = str(key).strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            raise _Rejected("id", f"must be 1 to {MAX_KEY_LENGTH} characters")
        if "\x00" in key:
            raise _Rejected("id", "contains a NUL character")
    channel = ev.channel or ""
    if channel not in CHANNELS:
        raise _Rejected("channel", f"{str(channel)[:20]!r} is not a channel ({', '.join(sorted(c for c in CHANNELS if c))})")
    converted, errors = spec.schema.check(props)
    untyped = False
    if errors:
        if spec.strict:
            name, why = next(iter(errors.items()))
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise _Rejected(f"properties.{name}", f"{why}{more}")
        converted, untyped = props, True
    try:
        encoded = _PROPERTIES_JSON.encode(converted)
    except (TypeError, ValueError) as exc:
        raise _Rejected("properties", f"cannot be stored as JSON: {exc}") from None
    if len(encoded) * 4 > MAX_PROPERTIES_BYTES and len(encoded.encode()) > MAX_PROPERTIES_BYTES:  # 4: UTF-8's most
        raise _Rejected("properties", f"larger than {MAX_PROPERTIES_BYTES // 1024} KB ({len(encoded.encode()):,} bytes)")
    if "\\u0000" in encoded:
        raise _Rejected("properties", "contains a NUL character")
    return {
        "profile_id": ev.profile_id, "type_id": spec.id, "occurred_at": occurred, "channel": channel,
        "resource_id": ev.resource_id, "mailing_id": ev.mailing_id, "run_id": ev.run_id, "ledger_id": ev.ledger_id,
        "link_id": ev.link_id, "properties": encoded, "source": (ev.source or source)[:32], "idempotency_key": key,
        "machine": bool(ev.machine), "untyped": untyped,
    }


_COLS = ("id", "account_id", "database_id", "profile_id", "type_id", "occurred_at", "received_at", "channel", "resource_id",
         "mailing_id", "run_id", "ledger_id", "link_id", "properties", "source", "idempotency_key", "machine", "untyped")
_VALUE_COLS = ("profile_id", "type_id", "occurred_at", "channel", "resource_id", "mailing_id", "run_id", "ledger_id",
               "link_id", "properties", "source", "idempotency_key", "machine", "untyped")


def _write(account_id: int, rows: list[tuple[int, dict[str, Any]]], database_id: int | None,
           wanted: list[int]) -> dict[int, int]:
    """Insert the rows, and the outbox row for the stored ones of the `wanted` type ids, in one
    transaction; {item index: new event id} for those stored."""
    if connection.vendor == "postgresql":
        return _write_pg(account_id, rows, database_id, wanted)
    return _write_sqlite(account_id, rows, database_id, wanted)


# One statement: the batch travels as ONE JSON parameter read by jsonb_to_recordset (the driver
# adapts a single string: no per-value Python adaptation, no thousands of placeholders; the
# properties go in as JSON without being encoded twice), each row takes its id from the sequence,
# the stored rows of the types a handler wants go to the outbox as one row, and the answer pairs
# each stored row's id with its place in the batch.
_PG_RECORD = ("n int, profile_id bigint, type_id int, occurred_at timestamptz, channel varchar, resource_id bigint, "
              "mailing_id bigint, run_id bigint, ledger_id bigint, link_id bigint, properties jsonb, source varchar, "
              "idempotency_key varchar, machine bool, untyped bool")
# The identity column's sequence (Django names it <table>_id_seq) is named, not looked up per row.
_PG_WITH = ("WITH v AS MATERIALIZED (SELECT nextval('history_event_id_seq') AS id, r.* "  # noqa: S608 (constants)
            f"FROM jsonb_to_recordset(%s::jsonb) AS r ({_PG_RECORD})) ")
_PG_VALUES = ("v.profile_id, v.type_id, v.occurred_at, %s, v.channel, v.resource_id, v.mailing_id, v.run_id, "
              "v.ledger_id, v.link_id, v.properties, v.source, v.idempotency_key, v.machine, v.untyped")
_PG_CONFLICT = ("ORDER BY v.idempotency_key "
                "ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id, type_id) ")
_PG_OUTBOX = (", outbox AS (INSERT INTO history_eventdispatch (event_ids, handlers, attempts, due_at, created_at, last_error) "
              "SELECT jsonb_agg(ins.id ORDER BY ins.id), NULL, 0, now(), now(), '' FROM ins "
              "WHERE ins.type_id = ANY(%s::int[]) HAVING count(*) > 0) ")
_PG_ANSWER = "SELECT v.n, v.id FROM v JOIN ins ON ins.id = v.id"
# Profiles the caller looked up in this account's database: account and database are constants.
_PG_INSERT_KNOWN = (
    _PG_WITH + f", ins AS (INSERT INTO history_event ({', '.join(_COLS)}) "  # noqa: S608 (constants only)
    f"SELECT v.id, %s, %s, {_PG_VALUES} FROM v " + _PG_CONFLICT
)
# Profile ids from elsewhere (tokens, ledger rows): joined, so only this account's existing
# profiles get events. "+ 0" keeps the planner off the account index (stale statistics would
# have it read every profile of the account); with hash and merge joins off for the
# transaction it probes the primary key once per event.
_PG_INSERT_JOINED = (
    _PG_WITH + f", ins AS (INSERT INTO history_event ({', '.join(_COLS)}) "  # noqa: S608 (constants only)
    f"SELECT v.id, p.account_id, p.database_id, {_PG_VALUES} "
    "FROM v JOIN profiles_profile p ON p.id = v.profile_id AND p.account_id + 0 = %s " + _PG_CONFLICT
)


_json_str = json.encoder.encode_basestring  # type: ignore[attr-defined]  # the C string encoder: "…" with escapes


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def _write_pg(account_id: int, rows: list[tuple[int, dict[str, Any]]], database_id: int | None,
              wanted: list[int]) -> dict[int, int]:
    # Each record is written out by hand: its values are ints, booleans, a time and a few strings
    # (escaped by the json module's C string encoder); the properties are already JSON text
    # (validated, size-checked), spliced in, not re-encoded.
    parts = [
        f'{{"n":{i},"profile_id":{int(row["profile_id"])},"type_id":{int(row["type_id"])},'
        f'"occurred_at":"{row["occurred_at"].isoformat()}","channel":{_json_str(row["channel"])},'
        f'"resource_id":{_json_int(row["resource_id"])},"mailing_id":{_json_int(row["mailing_id"])},'
        f'"run_id":{_json_int(row["run_id"])},"ledger_id":{_json_int(row["ledger_id"])},'
        f'"link_id":{_json_int(row["link_id"])},"source":{_json_str(row["source"])},'
        f'"idempotency_key":{"null" if row["idempotency_key"] is None else _json_str(row["idempotency_key"])},'
        f'"machine":{"true" if row["machine"] else "false"},"untyped":{"true" if row["untyped"] else "false"},'
        f'"properties":{row["properties"]}}}'
        for i, row in rows
    ]
    batch = "[" + ",".join(parts) + "]"
    outbox, extra = (_PG_OUTBOX, [wanted]) if wanted else ("", [])
    if database_id is not None:
        sql, params = _PG_INSERT_KNOWN + outbox + _PG_ANSWER, [batch, account_id, database_id, tz.now(), *extra]
    else:
        sql, params = _PG_INSERT_JOINED + outbox + _PG_ANSWER, [batch, tz.now(), account_id, *extra]
    if database_id is not None and connection.get_autocommit():
        # One statement is its own transaction: no BEGIN and COMMIT round trips.
        with connection.cursor() as cur:
            cur.execute(sql, params)
            return dict(cur.fetchall())
    with transaction.atomic(), connection.cursor() as cur:
        if database_id is None:
            cur.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        cur.execute(sql, params)
        return dict(cur.fetchall())


_SQLITE_CHUNK = 400


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def _write_sqlite(account_id: int, rows: list[tuple[int, dict[str, Any]]], database_id: int | None,
                  wanted: list[int]) -> dict[int, int]:
    # SQLite is local and small: it always joins the profiles (database_id only spares PostgreSQL the join).
    received = tz.now()
    stored: dict[int, int] = {}
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'history_event'), 0), "
                    "coalesce((SELECT max(id) FROM history_event), 0))")
        next_id = cur.fetchone()[0] + 1
        for start in range(0, len(rows), _SQLITE_CHUNK):
            chunk = rows[start:start + _SQLITE_CHUNK]
            by_id = {}
            params: list[Any] = []
            values = []
            for i, row in chunk:
                by_id[next_id] = i
                values.append("(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)")
                params.append(next_id)
                params.extend(
                    _sqlite_time(row[c]) if c == "occurred_at" else row[c] for c in _VALUE_COLS
                )
                next_id += 1
            cur.execute(
                f"INSERT INTO history_event ({', '.join(_COLS)}) "  # noqa: S608 (placeholders only)
                f"SELECT v.column1, p.account_id, p.database_id, v.column2, v.column3, v.column4, %s, v.column5, v.column6, "
                f"v.column7, v.column8, v.column9, v.column10, v.column11, v.column12, v.column13, v.column14, v.column15 "
                f"FROM (VALUES {', '.join(values)}) AS v "
                f"JOIN profiles_profile p ON p.id = v.column2 AND p.account_id = %s WHERE true "
                f"ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
                [_sqlite_time(received), *params, account_id],
            )
            stored.update({by_id[r[0]]: r[0] for r in cur.fetchall()})
        owed = sorted(stored[i] for i, row in rows if i in stored and row["type_id"] in wanted)
        if owed:
            EventDispatch.objects.create(event_ids=owed)
    return stored
