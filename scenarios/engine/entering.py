"""Entering a scenario: the re-entry rules, the entry-key dedupe and flood containment, in one
set-based INSERT .. ON CONFLICT DO NOTHING RETURNING per 1000 rows; the new participations are
handed to the engine after commit so the first step runs well under a second after the event."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from profiles.models import Profile
from scenarios.engine.advance import PATH_FIELDS
from scenarios.engine.sql import insert_ignore
from scenarios.engine.tick import HANDOUT_LEASE
from scenarios.models import Participation, PathEntry, Scenario, ScenarioVersion, Step

log = logging.getLogger(__name__)

INSERT_CHUNK = 1000
KICK_CHUNK = 500


@dataclass
class Entry:
    """One profile to enter at the entry step `step_key` of the live version. `source` is what
    made it enter ("event:991", "api:<key>", ...; stored as Participation.entry), `key` dedupes
    (the same key never enters the scenario twice), `context` starts the trip's context (entry
    data under "data")."""

    profile_id: int
    step_key: str
    source: str
    key: str | None = None
    context: dict | None = None


URGENT_MAX = 1000  # ids a single event-driven call may put on the trigger queue; more is bulk work


def kick(ids: Sequence[int], *, urgent: bool = False) -> None:
    """Hand participations to the engine after commit, in chunks of KICK_CHUNK (a lost publish is
    harmless: they are due in the database and the tick hands them out once their hand-out lease,
    if any, has run out).

    `urgent` (event and API entries, released waits): on the `trigger` queue, so an event-driven
    step never waits behind the bulk batches of an activation on the `scenarios` queue; a call
    with more than URGENT_MAX ids is bulk work whatever it says (a big event import must not
    flood the real-time queue)."""
    if not ids:
        return
    from mailings.queue import publish
    from scenarios.tasks import participations_advance_task, participations_advance_trigger_task

    task = participations_advance_trigger_task if urgent and len(ids) <= URGENT_MAX else participations_advance_task
    chunks = [list(ids[i:i + KICK_CHUNK]) for i in range(0, len(ids), KICK_CHUNK)]

    def _send() -> None:
        for chunk in chunks:
            publish(task, chunk)

    transaction.on_commit(_send)


_FIELDS = ["account_id", "scenario", "version", "profile_id", "step", "state", "exclusive", "entry", "entry_key",
           "next_run_at", "seq", "attempts", "waiting_for", "context", "day", "moves_today", "error", "exit_reason",
           "entered_at", "updated_at", "lease_until"]


def participations_enter(*, scenario: Scenario, entries: Sequence[Entry], now: datetime | None = None,
                         urgent: bool = False) -> list[int]:
    """Enter profiles into the scenario's live version; returns the ids of the participations made.

    Nothing enters unless the scenario is ACTIVE. An entry naming a step that is not an entry step
    of the live version is skipped. Several entries of one profile in one call collapse to the
    first. Re-entry "never": a profile with any earlier trip is skipped; "after_exit": one open
    trip at a time (the partial unique index `participation_one_open` settles races); "always":
    trips may overlap, but a profile enters at most `step_limit` times a UTC day (a flood of
    events for one profile stays bounded). An entry key seen before enters nothing; a profile of
    another database (or account) never enters. The new
    trips start ACTIVE at the entry step (seq 0, due now, a path row, "entered" counted) and are
    handed to the engine after commit (`urgent`: event and API entries, on the trigger queue; see
    `kick`), with the tick's hand-out lease so the tick does not hand them out a second time
    while their task waits in the queue."""
    from scenarios.engine.stats import stats_add

    now = now or timezone.now()
    live = (Scenario.objects.filter(pk=scenario.pk)
            .values("state", "live_version_id", "reentry", "step_limit", "account_id", "database_id").first())
    if not live or live["state"] != Scenario.State.ACTIVE or not live["live_version_id"] or not entries:
        return []
    version_id = live["live_version_id"]
    steps = {key: (sid, kind) for sid, key, kind in
             Step.objects.filter(version_id=version_id).values_list("id", "key", "kind")}
    seen_profiles: set[int] = set()
    seen_keys: set[str] = set()
    wanted: list[Entry] = []
    for e in entries:
        step = steps.get(e.step_key)
        if step is None or not step[1].startswith("entry."):
            log.info("scenario %s: no entry step %r in the live version; entry skipped", scenario.pk, e.step_key)
            continue
        if e.profile_id in seen_profiles or (e.key is not None and e.key in seen_keys):
            continue
        seen_profiles.add(e.profile_id)
        if e.key is not None:
            seen_keys.add(e.key)
        wanted.append(e)
    if not wanted:
        return []
    reentry = live["reentry"]
    # Only profiles of the scenario's database (of its account) ever enter, whoever the caller is.
    mine = set(Profile.objects.filter(database_id=live["database_id"], id__in=[e.profile_id for e in wanted])
               .values_list("id", flat=True))
    wanted = [e for e in wanted if e.profile_id in mine]
    pids = [e.profile_id for e in wanted]
    with transaction.atomic():
        if reentry == Scenario.Reentry.NEVER:
            been = set(Participation.objects.filter(scenario_id=scenario.pk, profile_id__in=pids)
                       .values_list("profile_id", flat=True))
            wanted = [e for e in wanted if e.profile_id not in been]
        elif reentry == Scenario.Reentry.ALWAYS:
            today = datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)
            counts = dict(Participation.objects.filter(scenario_id=scenario.pk, profile_id__in=pids,
                                                       entered_at__gte=today, entered_at__lt=today + timedelta(days=1))
                          .values_list("profile_id").annotate(n=Count("id")))
            over = {p for p, n in counts.items() if n >= live["step_limit"]}
            if over:
                log.warning("scenario %s: %d profile(s) entered %d times today already (the step limit); skipped",
                            scenario.pk, len(over), live["step_limit"])
            wanted = [e for e in wanted if e.profile_id not in over]
        exclusive = reentry != Scenario.Reentry.ALWAYS
        lease = now + HANDOUT_LEASE
        rows = [(live["account_id"], scenario.pk, version_id, e.profile_id, steps[e.step_key][0], Participation.State.ACTIVE,
                 exclusive, e.source[:200], e.key[:200] if e.key is not None else None, now, 0, 0, "",
                 e.context or {}, now.astimezone(UTC).date(), 0, "", "", now, now, lease)
                for e in wanted]
        made = insert_ignore(Participation, _FIELDS, rows, returning=("id", "step_id"), chunk=INSERT_CHUNK)
        if not made:
            return []
        number = ScenarioVersion.objects.values_list("number", flat=True).get(pk=version_id)
        key_of = {sid: key for key, (sid, _) in steps.items()}
        insert_ignore(PathEntry, PATH_FIELDS, [(pid, number, key_of[sid], 0, now, None, "", "") for pid, sid in made],
                      returning=("id",))
        entered = Counter(key_of[sid] for _, sid in made)
        stats_add({(live["account_id"], scenario.pk, key, "entered"): n for key, n in entered.items()})
        ids = [pid for pid, _ in made]
        kick(ids, urgent=urgent)
    return ids

