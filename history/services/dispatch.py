"""From stored events to the registered handlers (`history.handlers`), through the outbox.

The statement that stores a batch also adds an `EventDispatch` row listing the stored events
some handler wants (same transaction: stored and owed to the handlers, or neither). After
commit, `poke()` queues ONE drain task for however many batches arrive meanwhile (a short
Redis flag coalesces the pokes), and the drain hands each handler the events of many batches
in one call. Nothing depends on that task being queued: the beat sweep drains whatever is
left (Redis down at commit, a lost task), and a failing handler is retried from its row with
backoff, alone, the others not being called twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone as tz

from cdp import confcache
from history import handlers
from history.models import Event, EventDispatch, EventType

log = logging.getLogger(__name__)

POKE_KEY = "history:dispatch:poke"
POKE_TTL = 15  # seconds (> DRAIN_SECONDS): a lost drain task delays events by at most this, or the sweep's 10 s
DRAIN_ROWS = 200  # outbox rows a round (each is one stored batch)
DRAIN_SECONDS = 10.0  # of steady work a task, then it hands over to a fresh one (other trigger work gets its turn)
LINGER = 0.1  # seconds the trigger task waits after a round for more batches (the added latency, at most)
MAX_ATTEMPTS = 10  # a handler failing this often is given up on for these events (logged, row kept)
BACKOFF_CAP = 300  # seconds


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** attempts, BACKOFF_CAP))


def _flag(force: bool) -> bool:
    """Set the poke flag; whether it was not set before (or `force`). On Redis through the
    process's one client (every request pokes: no client object built per call)."""
    client = confcache.raw_client()
    if client is None:
        if force:
            cache.set(POKE_KEY, 1, timeout=POKE_TTL)
            return True
        return cache.add(POKE_KEY, 1, timeout=POKE_TTL)
    return bool(client.set(cache.make_and_validate_key(POKE_KEY), 1, ex=POKE_TTL, nx=not force)) or force


def poke(*, force: bool = False) -> None:
    """After commit: make sure a drain task is on its way (`force`: queue one even though the
    flag stands; the drain that holds it is handing over). Never raises: with Redis down the
    events wait in the outbox for the sweep."""
    try:
        if not _flag(force):
            return  # a drain is queued or running; it will see this batch (see `events_drain`)
    except Exception:
        log.warning("history: cannot flag the event dispatch (the sweep will drain it)", exc_info=True)
        return
    try:
        from history.tasks import events_drain_trigger_task

        events_drain_trigger_task.delay()
    except Exception:
        log.warning("history: cannot queue the event dispatch (the sweep will drain it)", exc_info=True)
        with contextlib.suppress(Exception):  # Redis is down both ways: the flag expires by itself
            cache.delete(POKE_KEY)


def events_drain(*, rows: int = DRAIN_ROWS, linger: float = 0.0, budget: float = DRAIN_SECONDS) -> int:
    """Hand the due outbox rows to the handlers; returns how many rows were done.

    `linger`: the pause after each round, so that while batches keep coming each round gathers
    those of many requests (the trigger task lingers 100 ms; a test or a sweep by hand need not).
    After `budget` seconds of steady work the task hands over to a fresh one, so other trigger
    work gets its turn. The poke flag is cleared only once a round after a pause found the
    outbox empty, and the outbox is read once more after that: a batch committed while the flag
    still stood is seen by that last read; one committed later sets the flag again and queues
    the next drain."""
    done = 0
    deadline = time.monotonic() + budget
    paused_empty = False
    while True:
        n = _drain_round(rows)
        done += n
        if n == 0 and (paused_empty or linger <= 0):
            break
        if time.monotonic() >= deadline:
            poke(force=True)  # still busy: a fresh task carries on
            return done
        paused_empty = n == 0
        time.sleep(linger)
    try:
        cache.delete(POKE_KEY)
    except Exception:
        log.warning("history: cannot clear the dispatch flag", exc_info=True)
    return done + _drain_round(rows)


def _drain_round(limit: int) -> int:
    now = tz.now()
    with transaction.atomic():
        batch = list(
            EventDispatch.objects.select_for_update(skip_locked=True)
            .filter(due_at__lte=now, attempts__lt=MAX_ATTEMPTS).order_by("id")[:limit]
        )
        if not batch:
            return 0
        ids = sorted({i for row in batch for i in row.event_ids})
        events = {e.id: e for e in Event.objects.filter(id__in=ids)}
        names = dict(EventType.objects.filter(id__in={e.type_id for e in events.values()}).values_list("id", "name"))

        def of(rows: Iterable[EventDispatch]) -> list[Event]:
            wanted = {i for row in rows for i in row.event_ids}
            return sorted((events[i] for i in wanted if i in events), key=lambda e: (e.occurred_at, e.id))

        fresh = [row for row in batch if row.handlers is None]
        retries = [row for row in batch if row.handlers is not None]
        if fresh:
            failed = _run(of(fresh), names, None)
            if failed:  # one row owes the failed handlers every event of this round
                EventDispatch.objects.create(
                    event_ids=sorted({i for row in fresh for i in row.event_ids}), handlers=sorted(failed),
                    attempts=1, due_at=now + backoff(1), last_error=_describe(failed)[:2000],
                )
        for row in retries:
            failed = _run(of([row]), names, row.handlers)
            if failed:
                row.attempts += 1
                row.handlers, row.due_at, row.last_error = sorted(failed), now + backoff(row.attempts), _describe(failed)[:2000]
                if row.attempts >= MAX_ATTEMPTS:
                    log.error("history: gave up on handlers %s for %d events after %d attempts: %s",
                              ", ".join(row.handlers), len(row.event_ids), row.attempts, row.last_error)
                row.save(update_fields=["attempts", "handlers", "due_at", "last_error"])
        EventDispatch.objects.filter(pk__in=[row.pk for row in fresh]
                                     + [row.pk for row in retries if row.due_at <= now]).delete()
    return len(batch)


def _run(events: list[Event], names: dict[int, str], only: list[str] | None) -> dict[str, BaseException]:
    if not events:
        return {}
    try:
        handlers.run_handlers(events, names, only=only)
    except handlers.HandlerError as exc:
        return dict(exc.failed)
    return {}


def _describe(failed: dict[str, BaseException]) -> str:
    return "; ".join(f"{name}: {exc!r}" for name, exc in sorted(failed.items()))


def dispatch_backlog() -> dict[str, int]:
    """What the outbox holds: batches waiting, retries owed, given up (for the status pages)."""
    now = tz.now()
    qs = EventDispatch.objects.all()
    return {
        "waiting": qs.filter(handlers__isnull=True).count(),
        "retrying": qs.filter(handlers__isnull=False, attempts__lt=MAX_ATTEMPTS).count(),
        "given_up": qs.filter(attempts__gte=MAX_ATTEMPTS).count(),
        "overdue": qs.filter(due_at__lt=now - timedelta(minutes=1), attempts__lt=MAX_ATTEMPTS).count(),
    }
