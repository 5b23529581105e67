"""The handler registry: how higher apps (mailings, scenarios) react to events in real time.

A higher app registers in its AppConfig.ready():

    from history.handlers import EventHandler, register_handler
    register_handler(EventHandler("mailings.triggers", on_events, types={"cart_abandoned", "order.placed"}))

The statement that stores a batch also writes, in the same transaction, one outbox row
(`EventDispatch`) listing the stored events some registered handler wants (a batch nobody
listens to writes none). After commit one drain task on the trigger queue
(`history.tasks.events_drain_trigger_task`) takes the outbox rows of however many batches came
in meanwhile and calls each interested handler once with their events (a list, oldest first);
beat runs the same drain every 10 s, so a batch stored while Redis was down reaches the
handlers once it is back. Handlers must be idempotent (a redelivered drain calls them again
with the same events; a failing handler is retried alone, from its own outbox row, with
backoff) and quick: heavy work is theirs to batch and enqueue. History never imports the apps
that register here.

`types=None` means every type. Custom type names are per account, so a handler that cares about
one account's "cart_abandoned" checks `event.account_id` itself. A handler whose types change
at run time (trigger mailings: the types some live mailing listens to) passes `interest`, a
callable returning the names it wants now (cached by its owner); then `types` is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from history.models import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventHandler:
    name: str
    func: Callable[[list[Event]], None]
    types: frozenset[str] | None = None
    interest: Callable[[], frozenset[str]] | None = None

    def __init__(self, name: str, func: Callable[[list[Event]], None], types: Iterable[str] | None = None,
                 interest: Callable[[], frozenset[str]] | None = None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "func", func)
        object.__setattr__(self, "types", frozenset(types) if types is not None else None)
        object.__setattr__(self, "interest", interest)

    def wanted_types(self) -> frozenset[str] | None:
        """The type names it wants now (None: every type)."""
        return self.interest() if self.interest is not None else self.types

    def wants(self, type_name: str) -> bool:
        types = self.wanted_types()
        return types is None or type_name in types


EVENT_HANDLERS: dict[str, EventHandler] = {}


def register_handler(handler: EventHandler) -> None:
    """Register (or replace, by name) a handler. Call from AppConfig.ready()."""
    EVENT_HANDLERS[handler.name] = handler


def unregister_handler(name: str) -> None:
    EVENT_HANDLERS.pop(name, None)


def wanted(type_names: Iterable[str]) -> bool:
    """Whether any handler wants any of these types (so a batch nobody listens to costs no task)."""
    if not EVENT_HANDLERS:
        return False
    names = set(type_names)
    for h in EVENT_HANDLERS.values():
        types = h.wanted_types()
        if types is None or types & names:
            return True
    return False


def run_handlers(events: list[Event], names: dict[int, str], only: Iterable[str] | None = None) -> dict[str, int]:
    """Call every interested handler with its events; one failing handler does not stop the others
    (its exception is logged and re-raised at the end so the task is retried)."""
    calls: dict[str, int] = {}
    failed: list[tuple[str, BaseException]] = []
    chosen = set(only) if only is not None else None
    for handler in list(EVENT_HANDLERS.values()):
        if chosen is not None and handler.name not in chosen:
            continue
        types = handler.wanted_types()
        mine = events if types is None else [e for e in events if names.get(e.type_id, "") in types]
        if not mine:
            continue
        try:
            handler.func(mine)
            calls[handler.name] = len(mine)
        except Exception as exc:  # one handler's failure must not hide the batch from the others
            log.exception("event handler %s failed on %d events", handler.name, len(mine))
            failed.append((handler.name, exc))
    if failed:
        raise HandlerError(failed)
    return calls


class HandlerError(Exception):
    def __init__(self, failed: list[tuple[str, BaseException]]) -> None:
        super().__init__("; ".join(f"{name}: {exc!r}" for name, exc in failed))
        self.failed = failed
