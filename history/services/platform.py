"""A fast writer for the events the platform itself records about its messages (message.sent,
message.hard_bounced...): one set-based INSERT a batch, for the mailings dispatch's hot path.

Unlike `events_ingest` it validates nothing per event: the caller is the platform, the type is a
system type, the properties are plain strings it built itself. What it keeps of the ingest
contract:
- idempotency: every row carries a key (the caller's, e.g. "ledger:<id>:sent"), inserted with
  ON CONFLICT DO NOTHING on (account, key), so a replayed batch stores each event once;
- erasure: the insert joins the profile in the account, so an event never outlives or precedes
  its profile's erasure (a row for a profile erased meanwhile is dropped, not an error);
- the handlers: stored events of a type some registered handler wants get their outbox row
  (`EventDispatch`) in the same statement's transaction, and the drain is poked after commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone as tz

from history import handlers
from history.catalogue import BY_NAME
from history.models import EventDispatch

CHUNK = 500  # rows a statement (SQLite's parameter limit: 500 x 13 < 32766)


@dataclass(slots=True)
class PlatformEvent:
    """One event the platform records. `key` must be unique per account for what it describes
    ("ledger:123:sent"); `properties` plain JSON values."""

    profile_id: int
    key: str
    occurred_at: datetime
    channel: str = ""
    resource_id: int | None = None
    mailing_id: int | None = None
    run_id: int | None = None
    ledger_id: int | None = None
    properties: dict[str, Any] = field(default_factory=dict)


def platform_events_add(*, account_id: int, type_name: str, events: Sequence[PlatformEvent],
                        source: str = "mailings") -> list[int]:
    """Store `events` of the system type `type_name` for `account_id`; returns the ids of the
    events stored now (a duplicate key or a missing profile stores nothing). Raises KeyError for
    a type name that is not a system type. Runs in the caller's transaction when there is one."""
    if not events:
        return []
    type_id = BY_NAME[type_name].id
    stored: list[int] = []
    with transaction.atomic():
        for lo in range(0, len(events), CHUNK):
            stored.extend(_insert(account_id, type_id, events[lo:lo + CHUNK], source[:32]))
        if stored and handlers.wanted([type_name]):
            EventDispatch.objects.create(event_ids=sorted(stored))
            from history.services.dispatch import poke

            transaction.on_commit(poke)
    return stored


_COLS = ("account_id", "database_id", "profile_id", "type_id", "occurred_at", "received_at", "channel", "resource_id",
         "mailing_id", "run_id", "ledger_id", "link_id", "properties", "source", "idempotency_key", "machine", "untyped")


_CTE_COLS = "(profile_id, occurred_at, channel, resource_id, mailing_id, run_id, ledger_id, properties, idempotency_key)"
_INSERT = (
    f"INSERT INTO history_event ({', '.join(_COLS)}) "  # noqa: S608 (constants and placeholders only)
    "SELECT p.account_id, p.database_id, v.profile_id, %s, v.occurred_at, %s, v.channel, v.resource_id, "
    "v.mailing_id, v.run_id, v.ledger_id, NULL, v.properties, %s, v.idempotency_key, %s, %s "
    "FROM v JOIN profiles_profile p ON p.id = v.profile_id AND p.account_id = %s WHERE true "
    "ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id"
)


def _insert(account_id: int, type_id: int, events: Sequence[PlatformEvent], source: str) -> list[int]:
    if connection.vendor == "postgresql":
        return _insert_pg(account_id, type_id, events, source)
    adapt = connection.ops.adapt_datetimefield_value
    received = adapt(tz.now())
    values: list[str] = []
    params: list[Any] = []
    for ev in events:
        values.append("(%s, %s, %s, %s, %s, %s, %s, %s, %s)")
        params.extend((ev.profile_id, adapt(ev.occurred_at), ev.channel, ev.resource_id, ev.mailing_id, ev.run_id,
                       ev.ledger_id, json.dumps(ev.properties, separators=(",", ":")), ev.key))
    sql = f"WITH v{_CTE_COLS} AS (VALUES {', '.join(values)}) {_INSERT}"
    with connection.cursor() as cur:
        cur.execute(sql, [*params, type_id, received, source, False, False, account_id])
        return [row[0] for row in cur.fetchall()]


def _insert_pg(account_id: int, type_id: int, events: Sequence[PlatformEvent], source: str) -> list[int]:
    """The same rows as one array per column (unnest): nine parameters whatever the batch size, so
    neither psycopg nor PostgreSQL parses thousands of placeholders."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for ev in events:
        for col, value in zip(columns, (ev.profile_id, ev.occurred_at, ev.channel, ev.resource_id, ev.mailing_id, ev.run_id,
                                        ev.ledger_id, json.dumps(ev.properties, separators=(",", ":")), ev.key),
                              strict=True):
            col.append(value)
    sql = (f"WITH v{_CTE_COLS} AS (SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::varchar[], %s::bigint[], "  # noqa: S608
           f"%s::bigint[], %s::bigint[], %s::bigint[], %s::jsonb[], %s::varchar[])) {_INSERT}")
    with connection.cursor() as cur:
        cur.execute(sql, [*columns, type_id, tz.now(), source, False, False, account_id])
        return [row[0] for row in cur.fetchall()]
