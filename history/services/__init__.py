"""Writes on the action history. Modules: ingest (the one way events are stored), dispatch (stored
events to the registered handlers, through the outbox), payloads
(events as integrations send them), types (custom event types), lifecycle (merge, erasure,
retention, consent changes as events)."""

from __future__ import annotations

from history.services.dispatch import dispatch_backlog, events_drain, poke  # noqa: F401
from history.services.ingest import (  # noqa: F401
    CHANNELS,
    MAX_BATCH,
    MAX_PROPERTIES_BYTES,
    EventIn,
    ItemResult,
    TypeBook,
    events_ingest,
)
from history.services.lifecycle import (  # noqa: F401
    MAX_RETENTION_DAYS,
    MIN_RETENTION_DAYS,
    RetentionError,
    consent_events,
    events_erase,
    events_merge,
    retention_accounts_due,
    retention_cleanup,
    retention_set,
)
from history.services.payloads import BatchOutcome, BatchTooLarge, ingest_payloads  # noqa: F401
from history.services.types import (  # noqa: F401
    EventTypeError,
    eventtype_create,
    eventtype_delete,
    eventtype_update,
    sync_system_types,
)
