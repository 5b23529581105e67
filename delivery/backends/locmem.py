"""In-memory backend for tests: sent messages collect in `outbox` (module level, like Django's
mail.outbox); `fail(address, error, **flags)` makes sends to that address fail the way a
provider would (permanent, deactivate, ambiguous, retry_after)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from delivery.backends import KindSpec
from delivery.backends.base import BaseBackend, DeliveryError, OutboundMessage, SendResult

outbox: list[OutboundMessage] = []
_failures: dict[str, dict[str, Any]] = {}
# Set to a DeliveryError to make the next open() raise it (a batch-level failure).
open_error: DeliveryError | None = None


def reset() -> None:
    global open_error
    outbox.clear()
    _failures.clear()
    open_error = None


def fail(address: str, error: str = "550 5.1.1 mailbox unavailable", **flags: Any) -> None:
    """Sends to `address` fail with this error and SendResult flags (permanent=True...)."""
    _failures[address] = {"error": error, **flags}


class LocmemBackend(BaseBackend):
    local = True  # nothing leaves the process

    def open(self) -> None:
        if open_error is not None:
            raise open_error

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        results = []
        for message in messages:
            failure = _failures.get(message.to)
            if failure is not None:
                flags = dict(failure)
                results.append(SendResult.failed(message.ref, flags.pop("error"), **flags))
                continue
            outbox.append(message)
            results.append(SendResult(ref=message.ref, ok=True, provider_id=f"locmem-{len(outbox)}"))
        return results

    def check(self) -> str:
        return "In memory: nothing is sent."


KIND = KindSpec(
    kind="locmem", label="In memory (tests)", channels=("email", "sms", "webpush", "mobilepush", "telegram"),
    backend="delivery.backends.locmem.LocmemBackend", fields=(), help="Keeps messages in memory; for tests.",
)

