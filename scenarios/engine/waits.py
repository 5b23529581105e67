"""Event waits released by the events they wait for (called by the history handler for each
drained batch of events): one indexed query finds the waiting participations of the batch's
profiles and types, the wait's filters and time are checked in Python, one UPDATE releases them
(conditioned on the seq and state read), and they are handed to the engine after commit on the trigger queue (with the tick's hand-out
lease, so the tick does not hand them out again meanwhile)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from scenarios.models import Participation


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def waits_release(*, events: Sequence[Any], names: Mapping[int, str], now: datetime | None = None) -> int:
    """Release the event waits these events satisfy: a WAITING participation of the event's
    profile and account whose `waiting_for` is the event's type name (`names`: event type id ->
    name, as the history handlers get it), whose wait's property filters the event passes and
    which began at or before the event occurred. The wait gets "released" = {"event_id", "type",
    "at"} and is due now; the first matching event (by occurrence) wins. Idempotent: a released
    wait is not released again. Returns how many were released."""
    from mailings.services.triggers.definition import filters_match
    from scenarios.engine.entering import kick
    from scenarios.engine.sql import values_update
    from scenarios.engine.tick import HANDOUT_LEASE

    now = now or timezone.now()
    by_key: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for e in events:
        name = names.get(e.type_id)
        if name and e.profile_id:
            by_key[(name, e.profile_id)].append(e)
    if not by_key:
        return 0
    types = {k[0] for k in by_key}
    pids = {k[1] for k in by_key}
    # The conditions of the partial index participation_waitfor_idx, spelled out so the planner uses it.
    rows = (Participation.objects.filter(state=Participation.State.WAITING, waiting_for__in=types, profile_id__in=pids)
            .exclude(waiting_for="").values_list("id", "account_id", "profile_id", "waiting_for", "wait", "seq"))
    updates: list[dict[str, Any]] = []
    for pid, account_id, profile_id, waiting_for, wait, seq in rows:
        wait = wait if isinstance(wait, dict) else {}
        if isinstance(wait.get("released"), dict):
            continue
        since = _instant(wait.get("since"))
        matches = sorted(
            (e for e in by_key.get((waiting_for, profile_id), ())
             if e.account_id == account_id and (since is None or e.occurred_at >= since)
             and filters_match(e.properties or {}, wait.get("filters"))),
            key=lambda e: (e.occurred_at, e.pk))
        if not matches:
            continue
        e = matches[0]
        released = {"event_id": e.pk, "type": waiting_for, "at": e.occurred_at.astimezone(UTC).isoformat()}
        updates.append({"id": pid, "seq": seq, "wait": {**wait, "released": released}, "next_run_at": now,
                        "updated_at": now, "lease_until": now + HANDOUT_LEASE})
    if not updates:
        return 0
    with transaction.atomic():
        done = values_update(Participation, updates, match={"id": "id", "seq": "seq"},
                             set_={"wait": "wait", "next_run_at": "next_run_at", "updated_at": "updated_at",
                                   "lease_until": "lease_until"},
                             where="t.state = 'waiting'")
        kick(done, urgent=True)  # event-driven: the trigger queue, not behind bulk batches
    return len(done)
