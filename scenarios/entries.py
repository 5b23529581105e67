"""How profiles enter scenarios (apart from events, which `scenarios.handlers` turns into entries).

- `entries_submit`: every entry made from events goes through here: flood containment, then the
  engine's `participations_enter` (re-entry rules, entry-key dedupe).
- `entries_poll` (the engine tick, every 2 s): new profiles of the databases of live scenarios
  with an `entry.database` step, and the profiles that entered the updatable segments named by
  `entry.segment` steps, after watermarks kept in `Scenario.entry_marks` ("database":
  {"id", "from", "at"}; "segment:<id>": {"run", "after"}). Bounded work a tick; a paused
  scenario's watermarks move on without anyone entering (nobody enters while paused, and
  resuming does not let in who came meanwhile).
- `entries_at_activation`: the watermarks start now (profiles that existed before do not enter
  as "new"), and the members of the `members_at_start` segments enter, in chunks.
- `scenario_enter`: the API entry (`POST /api/v1/scenarios/{id}/enter`).

Flood containment (the issue's "10,000 events a second for one profile"): the entries of one
call collapse per profile (one for re-entry never / after exit: the engine would refuse the
others anyway), and a profile enters one scenario at most `SCENARIOS_ENTRIES_PER_MINUTE` times
in a sliding minute (re-entry always and after exit: a trip that ends at once must not re-enter
at the rate events arrive), counted from the participations themselves, so it holds across
batches and processes. What is refused is logged once per call with the scenario, the profile
and the count; other profiles and other scenarios are unaffected.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone as tz

from profiles.models import Profile
from scenarios.models import Participation, Scenario, Step
from scenarios.services.errors import ScenarioError
from segments.models import Segment, SegmentMember, SegmentMovement, SegmentRun

if TYPE_CHECKING:
    from accounts.access import Actor
    from scenarios.engine import Entry

log = logging.getLogger(__name__)

CHUNK = 5_000  # entries handed to the engine at once (activation), profiles polled a step a tick
LOOKBACK = timedelta(seconds=10)  # new profiles below the watermark looked at again (late commits)
WINDOW = timedelta(seconds=60)  # the entry rate limit's sliding window
MAX_DATA_BYTES = 64 * 1024  # API entry data (like a trigger mailing's)
MAX_KEY_LENGTH = 120
ALL = 2**63 - 1  # "every profile of this run"


def entries_per_minute() -> int:
    """How often one profile may enter one scenario in a minute (settings
    SCENARIOS_ENTRIES_PER_MINUTE, default 10)."""
    return max(1, int(getattr(settings, "SCENARIOS_ENTRIES_PER_MINUTE", 10)))


# --- flood containment ---------------------------------------------------------------------------


def _recent(scenario_id: int, profile_ids: Sequence[int], since: datetime) -> dict[int, int]:
    counts: dict[int, int] = {}
    for start in range(0, len(profile_ids), CHUNK):
        rows = (Participation.objects.filter(scenario_id=scenario_id, profile_id__in=profile_ids[start:start + CHUNK],
                                             entered_at__gte=since)
                .values("profile_id").annotate(n=Count("id")).values_list("profile_id", "n"))
        counts.update(rows)
    return counts


def entries_contain(*, scenario: Scenario, entries: Sequence[Entry], now: datetime | None = None
                    ) -> tuple[list[Entry], dict[int, int]]:
    """(the entries to hand to the engine, {profile id: entries in the last minute} of the
    profiles some entry of was refused by the rate limit). Collapses repeated keys (the first
    wins) and, for re-entry never / after exit, repeated profiles; caps every profile at
    `entries_per_minute()` counting the participations it entered in the last minute."""
    now = now or tz.now()
    seen_keys: set[str] = set()
    unique: list[Entry] = []
    taken: set[int] = set()
    exclusive = scenario.reentry != Scenario.Reentry.ALWAYS
    for e in entries:
        if e.key is not None:
            if e.key in seen_keys:
                continue
            seen_keys.add(e.key)
        if exclusive:
            if e.profile_id in taken:
                continue
            taken.add(e.profile_id)
        unique.append(e)
    if scenario.reentry == Scenario.Reentry.NEVER or not unique:
        return unique, {}  # once per profile ever: the engine's rule is the limit
    limit = entries_per_minute()
    recent = _recent(scenario.pk, sorted({e.profile_id for e in unique}), now - WINDOW)
    used: Counter[int] = Counter()
    kept: list[Entry] = []
    refused: dict[int, int] = {}
    for e in unique:
        already = recent.get(e.profile_id, 0) + used[e.profile_id]
        if already >= limit:
            refused[e.profile_id] = already
            continue
        used[e.profile_id] += 1
        kept.append(e)
    if refused:
        worst = max(refused, key=lambda pid: refused[pid])
        log.warning("scenario %s “%s”: %d entries of %d profile(s) refused: a profile enters at most %d times a "
                    "minute (profile %s: %d)", scenario.pk, scenario.name, len(unique) - len(kept), len(refused),
                    limit, worst, refused[worst])
    return kept, refused


def entries_submit(*, scenario: Scenario, entries: Sequence[Entry], now: datetime | None = None,
                   urgent: bool = True) -> list[int]:
    """Contain a batch of entries (`entries_contain`) and hand the rest to the engine; the ids of
    the participations created. Nothing for a scenario that is not active. `urgent` (events, the
    default): their first steps run from the real-time trigger queue; the polled entries pass
    False (bulk work, the scenarios queue)."""
    if scenario.state != Scenario.State.ACTIVE or not entries:
        return []
    from scenarios.engine import participations_enter

    kept, _ = entries_contain(scenario=scenario, entries=entries, now=now)
    return participations_enter(scenario=scenario, entries=kept, now=now, urgent=urgent) if kept else []


# --- polled entries: new profiles, segment movements ---------------------------------------------


def _polled_steps(scenario_ids: Iterable[int] | None = None) -> dict[int, list[Step]]:
    """The entry.database / entry.segment steps of live scenarios' live versions, by scenario."""
    qs = Step.objects.filter(kind__in=("entry.database", "entry.segment"),
                             version__scenario__state__in=Scenario.LIVE_STATES,
                             version__scenario__live_version=F("version")).order_by("version_id", "id")
    if scenario_ids is not None:
        qs = qs.filter(version__scenario_id__in=list(scenario_ids))
    out: dict[int, list[Step]] = {}
    for step in qs.annotate(scenario_pk=F("version__scenario_id")):
        out.setdefault(step.scenario_pk, []).append(step)  # type: ignore[attr-defined]
    return out


def _segment_id(step: Step) -> int | None:
    sid = (step.config or {}).get("segment_id")
    return sid if isinstance(sid, int) and not isinstance(sid, bool) else None


def _max_profile_id(database_id: int) -> int:
    return Profile.objects.filter(database_id=database_id).aggregate(m=Max("id"))["m"] or 0


def _max_run_id(segment_id: int) -> int:
    return SegmentRun.objects.filter(segment_id=segment_id).aggregate(m=Max("id"))["m"] or 0


def _marks_start(scenario: Scenario, steps: Sequence[Step], marks: dict[str, Any], now: datetime) -> set[str]:
    """Set the watermarks the steps need and do not have yet, at "now" (nobody from before
    enters as new: a scenario activated, or a version published with a new entry step). The
    keys set."""
    started: set[str] = set()
    for step in steps:
        if step.kind == "entry.database" and not isinstance(marks.get("database"), Mapping):
            top = _max_profile_id(scenario.database_id)
            marks["database"] = {"id": top, "from": top, "at": now.isoformat()}
            started.add("database")
        elif (step.kind == "entry.segment" and (sid := _segment_id(step)) is not None
              and not isinstance(marks.get(f"segment:{sid}"), Mapping)):
            marks[f"segment:{sid}"] = {"run": _max_run_id(sid), "after": ALL}
            started.add(f"segment:{sid}")
    return started


def _poll_database(scenario: Scenario, step: Step, mark: dict[str, Any], now: datetime, entering: bool) -> list[Entry]:
    from scenarios.engine import Entry

    if not entering:  # paused: who comes now never enters (nor is looked at again later)
        mark["id"] = mark["from"] = max(mark["id"], _max_profile_id(scenario.database_id))
        mark["at"] = now.isoformat()
        return []
    rows = list(Profile.objects.filter(database_id=scenario.database_id, id__gt=mark["id"])
                .order_by("id").values_list("id", "created_at")[:CHUNK])
    ids = [pid for pid, _ in rows]
    if rows:
        mark["id"], mark["at"] = rows[-1][0], rows[-1][1].isoformat()
    # A profile whose transaction committed after a later one's was polled may sit below the
    # watermark: look again at the last moments' (entry keys make a second look a no-op).
    late = list(Profile.objects.filter(database_id=scenario.database_id, id__gt=mark.get("from", 0),
                                       id__lte=mark["id"], created_at__gte=now - LOOKBACK)
                .exclude(id__in=ids).values_list("id", flat=True)[:CHUNK])
    if late:
        done = set(Participation.objects.filter(scenario_id=scenario.pk, entry_key__in=[f"new:{p}" for p in late])
                   .values_list("profile_id", flat=True))
        ids = sorted(set(ids) | (set(late) - done))
    return [Entry(profile_id=pid, step_key=step.key, source="new", key=f"new:{pid}") for pid in ids]


def _poll_segment(step: Step, sid: int, mark: dict[str, Any], entering: bool) -> list[Entry]:
    from scenarios.engine import Entry

    run, after = int(mark.get("run", 0)), int(mark.get("after", ALL))
    top = _max_run_id(sid)  # read first: a run committed after it waits for the next tick
    if not entering:
        mark["run"], mark["after"] = max(run, top), ALL
        return []
    # A segment's runs are written one at a time under its row lock, each with its movements in
    # one transaction: a visible run is complete and later runs have larger ids.
    rows = list(SegmentMovement.objects.filter(run__segment_id=sid, entered=True, run_id__lte=top)
                .filter(Q(run_id__gt=run) | Q(run_id=run, profile_id__gt=after))
                .order_by("run_id", "profile_id").values_list("run_id", "profile_id")[:CHUNK])
    if len(rows) < CHUNK:
        mark["run"], mark["after"] = max(run, top), ALL
    else:
        mark["run"], mark["after"] = rows[-1]
    return [Entry(profile_id=pid, step_key=step.key, source=f"segment:{sid}", key=f"segment:{rid}:{pid}")
            for rid, pid in rows]


def _poll_one(scenario_id: int, steps: Sequence[Step], now: datetime) -> int:
    with transaction.atomic():
        # One poller a scenario at a time (PostgreSQL; SQLite has one writer anyway).
        scenario = Scenario.objects.select_for_update(skip_locked=True).filter(pk=scenario_id).first()
        if scenario is None or scenario.live_version_id != steps[0].version_id or not scenario.is_live:
            return 0
        marks = copy.deepcopy(scenario.entry_marks or {})
        started = _marks_start(scenario, steps, marks, now)
        entering = scenario.state == Scenario.State.ACTIVE
        entries: list[Entry] = []
        polled: set[str] = set(started)  # two steps on one segment: polled once
        for step in steps:
            if step.kind == "entry.database" and "database" not in polled:
                polled.add("database")
                entries += _poll_database(scenario, step, marks["database"], now, entering)
            elif (step.kind == "entry.segment" and (sid := _segment_id(step)) is not None
                  and f"segment:{sid}" not in polled):
                polled.add(f"segment:{sid}")
                entries += _poll_segment(step, sid, marks[f"segment:{sid}"], entering)
        if marks != scenario.entry_marks:
            Scenario.objects.filter(pk=scenario.pk).update(entry_marks=marks)
        return len(entries_submit(scenario=scenario, entries=entries, now=now, urgent=False)) if entries else 0


def entries_poll(*, now: datetime | None = None) -> int:
    """Polled entries of every live scenario (called by the engine tick): new profiles of the
    scenario's database and the profiles that entered its updatable entry segments since the
    watermarks; at most CHUNK profiles per entry step a call. Returns how many entered.
    Idempotent (entry keys "new:<profile>", "segment:<run>:<profile>"); concurrent ticks skip a
    scenario another one is polling."""
    now = now or tz.now()
    total = 0
    for scenario_id, steps in _polled_steps().items():
        try:
            total += _poll_one(scenario_id, steps, now)
        except Exception:  # one scenario's trouble must not stop the others' entries
            log.exception("scenario %s: polling its entries failed", scenario_id)
    return total


# --- activation ----------------------------------------------------------------------------------


def _members(scenario: Scenario, step: Step) -> Any:
    """The profile ids in the step's segment now (stored members, or the dynamic segment
    evaluated), ascending: a lazy values queryset (filter it by `_after` to page through).
    Raises ScenarioError when the segment is gone or cannot be compiled."""
    from segments.compiler import profiles_matching
    from segments.conditions import Catalog, SegmentError, clean_conditions

    sid = _segment_id(step)
    segment = Segment.objects.filter(pk=sid, account_id=scenario.account_id, database_id=scenario.database_id).first()
    if segment is None:
        raise ScenarioError({step.key: f"Step {step.key} “{step.title or step.kind}”: its segment no longer exists"})
    if segment.is_stored:
        return (SegmentMember.objects.filter(segment_id=segment.pk, profile__database_id=scenario.database_id)
                .order_by("profile_id").values_list("profile_id", flat=True))
    try:
        catalog = Catalog.load(scenario.database)
        tree = clean_conditions(segment.conditions, catalog, segment_id=segment.pk, fill_salts=False)
        return profiles_matching(tree, catalog, stack=(segment.pk,)).order_by("id").values_list("id", flat=True)
    except SegmentError as exc:
        raise ScenarioError({step.key: f"Step {step.key} “{step.title or step.kind}”: segment “{segment.name}” "
                                       f"cannot be evaluated ({exc})"}) from None


def _after(members: Any, after: int) -> Any:
    """The members above profile id `after` (the field is named per kind of segment)."""
    return members.filter(profile_id__gt=after) if members.model is SegmentMember else members.filter(id__gt=after)


def _start_steps(scenario: Scenario, now: datetime) -> list[Step]:
    """Start the polled entries' watermarks at `now`; the live version's `members_at_start` steps."""
    steps = list(Step.objects.filter(version_id=scenario.live_version_id, kind__startswith="entry.").order_by("id"))
    marks = copy.deepcopy(scenario.entry_marks or {})
    if _marks_start(scenario, [s for s in steps if s.kind in ("entry.database", "entry.segment")], marks, now):
        Scenario.objects.filter(pk=scenario.pk).update(entry_marks=marks)
        scenario.entry_marks = marks
    return [s for s in steps if s.kind == "entry.segment" and (s.config or {}).get("members_at_start")]


def _enter_chunk(scenario: Scenario, step: Step, after: int, now: datetime | None) -> tuple[int, int | None]:
    """Let in the next CHUNK members above `after`: (how many entered, the last profile id looked at,
    None when the segment has no more)."""
    from scenarios.engine import Entry, participations_enter

    ids = list(_after(_members(scenario, step), after)[:CHUNK])
    if not ids:
        return 0, None
    source = f"segment:{_segment_id(step)}"
    chunk = [Entry(profile_id=pid, step_key=step.key, source=source, key=f"start:{scenario.live_version_id}:{pid}")
             for pid in ids]
    entered = len(participations_enter(scenario=scenario, entries=chunk, now=now))
    return entered, (ids[-1] if len(ids) == CHUNK else None)


def entries_at_activation(*, scenario: Scenario, now: datetime | None = None) -> int:
    """Start the polled entries' watermarks at now, and let in everyone in the segments of the
    live version's `entry.segment` steps with `members_at_start` (entry key
    "start:<version>:<profile>", so a second call enters nobody twice), in chunks of CHUNK, in this
    process (activation itself uses `entries_at_activation_start`: the members enter in a task).
    Call it once the scenario is ACTIVE (the engine lets nobody into another state). Returns how
    many entered. Raises ScenarioError when a members_at_start segment is gone or broken."""
    now = now or tz.now()
    scenario = Scenario.objects.get(pk=scenario.pk)
    if scenario.live_version_id is None:
        return 0
    entered = 0
    for step in _start_steps(scenario, now):
        after: int | None = 0
        while after is not None:
            n, after = _enter_chunk(scenario, step, after, now)
            entered += n
    return entered


def entries_at_activation_start(*, scenario: Scenario, now: datetime | None = None) -> int:
    """The activation's part of `entries_at_activation`, cheap enough for the request: start the
    watermarks, check the members_at_start segments (ScenarioError when one is gone or broken:
    the activation is refused), and queue `entries_at_activation_task` (scenarios queue) for each
    such step after commit; the members then enter chunk by chunk in the worker. Returns how
    many steps were queued."""
    from mailings.queue import publish
    from scenarios.tasks import entries_at_activation_task

    now = now or tz.now()
    scenario = Scenario.objects.get(pk=scenario.pk)
    if scenario.live_version_id is None:
        return 0
    steps = _start_steps(scenario, now)
    for step in steps:
        _members(scenario, step)  # compiles the segment's query (refuses a broken one) without running it
        transaction.on_commit(lambda step=step: publish(entries_at_activation_task, scenario.pk,
                                                        scenario.live_version_id, step.key, 0))
    return len(steps)


def entries_at_activation_chunk(*, scenario_id: int, version_id: int, step_key: str, after: int = 0) -> int:
    """One chunk of a members_at_start step's members (profile ids above `after`; the body of
    `entries_at_activation_task`), then the next chunk's task after commit. Nothing when the
    scenario is no longer active on that version (paused, stopped, republished) or the segment
    broke meanwhile (logged). Idempotent (entry keys). Returns how many entered."""
    from mailings.queue import publish
    from scenarios.tasks import entries_at_activation_task

    scenario = Scenario.objects.filter(pk=scenario_id).first()
    if scenario is None or scenario.state != Scenario.State.ACTIVE or scenario.live_version_id != version_id:
        return 0
    step = Step.objects.filter(version_id=version_id, key=step_key, kind="entry.segment").first()
    if step is None:
        return 0
    try:
        with transaction.atomic():
            entered, last = _enter_chunk(scenario, step, after, None)
            if last is not None:
                transaction.on_commit(lambda: publish(entries_at_activation_task, scenario_id, version_id, step_key,
                                                      last))
    except ScenarioError as exc:
        log.warning("scenario %s: members at start of %s not let in: %s", scenario_id, step_key, exc.text)
        return 0
    return entered


# --- the API entry -------------------------------------------------------------------------------


def _clean_data(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ScenarioError({"data": "expected an object (templates read it as data.<name>)"})
    try:
        text = json.dumps(dict(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        raise ScenarioError({"data": "not valid JSON (NaN or infinity)"}) from None
    if len(text.encode()) > MAX_DATA_BYTES:
        raise ScenarioError({"data": f"at most {MAX_DATA_BYTES // 1024} KB of data"})
    return json.loads(text)


def _clean_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = str(key).strip()
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise ScenarioError({"idempotency_key": f"1 to {MAX_KEY_LENGTH} printable characters"})
    return f"api:{key}"


def _api_step(scenario: Scenario) -> Step:
    if scenario.state != Scenario.State.ACTIVE:
        raise ScenarioError({"__all__": f"“{scenario.name}” is {scenario.get_state_display().lower()}: "
                                         "profiles enter an active scenario only"})
    step = (Step.objects.filter(version_id=scenario.live_version_id, kind="entry.api").order_by("id").first()
            if scenario.live_version_id else None)
    if step is None:
        raise ScenarioError({"__all__": f"“{scenario.name}” has no API entry step: add one and publish"})
    return step


def _profile(scenario: Scenario, key: str, value: Any, upsert: Mapping[str, Any] | None, actor: Actor) -> Profile:
    from profiles.services import ProfileValidationError, profile_find, profile_upsert
    from profiles.services.profiles import is_erased

    database = scenario.database
    if key == "id":  # the profile's own id (the API's {"id": 42})
        if upsert is not None:
            raise ScenarioError({"fields": "creating or updating a profile needs a match key, not its id"})
        try:
            pid = int(value)
        except (TypeError, ValueError):
            raise ScenarioError({"profile": "a profile id is a whole number"}) from None
        found = Profile.objects.filter(pk=pid, database_id=database.pk).first()
        if found is None:
            raise ScenarioError({"profile": f"no profile #{pid} in “{database.name}”"})
        return found
    if upsert is not None:
        if not isinstance(upsert, Mapping):
            raise ScenarioError({"fields": "expected an object of profile field values"})
        result = profile_upsert(database=database, values={**upsert, key: value}, match=key, actor=actor,
                                source="scenario")
        if result.errors:
            raise ScenarioError({f"fields.{f}" if f != key else "profile": m for f, m in result.errors.items()})
        if result.profile is None:
            raise ScenarioError({"profile": f"no profile: {result.skipped}"})
        return result.profile
    try:
        profile = profile_find(database=database, key=key, value=value)
    except ProfileValidationError as exc:
        raise ScenarioError({"profile": "; ".join(f"{f}: {m}" for f, m in exc.errors.items())}) from None
    if profile is None:
        if value not in (None, "") and is_erased(database, key, value):
            raise ScenarioError({"profile": "this person was erased (data-protection request)"})
        raise ScenarioError({"profile": f"no profile with {key} {value!r} in “{database.name}”"})
    return profile


def _refusal(scenario: Scenario, profile_id: int) -> str:
    trips = Participation.objects.filter(scenario_id=scenario.pk, profile_id=profile_id)
    if scenario.reentry == Scenario.Reentry.NEVER and trips.exists():
        return "the profile has been through this scenario already (re-entry: never)"
    if trips.filter(state__in=Participation.OPEN_STATES).exists():
        return "the profile is in the scenario already (re-entry: after the previous trip ended)"
    return "the profile could not enter (the scenario changed meanwhile): try again"


def scenario_enter(*, scenario: Scenario, key: str, value: Any, data: Mapping[str, Any] | None = None,
                   upsert: Mapping[str, Any] | None = None, idempotency_key: str | None = None,
                   actor: Actor) -> int:
    """Let one profile into an active scenario at its API entry step (the API); the
    participation's id. The profile is found by the match key `key` = `value` in the scenario's
    database (created or updated with `upsert` values when given). `data` (an object, at most
    64 KB) becomes the trip's context["data"] for templates and webhooks. With an
    `idempotency_key` a repeated call answers the same participation. Raises ScenarioError
    keyed like the API's body: "profile" (a bad key or value, no such profile, erased), "data",
    "fields.<name>" (upsert values), "idempotency_key"; "__all__" (a conflict with the
    scenario's state: not active, no API entry, the re-entry rule, too many entries this
    minute)."""
    from scenarios.engine import Entry, participations_enter

    step = _api_step(scenario)
    entry_key = _clean_key(idempotency_key)
    if entry_key is not None:
        found = Participation.objects.filter(scenario_id=scenario.pk, entry_key=entry_key).values_list("id", flat=True).first()
        if found is not None:
            return found
    clean = _clean_data(data)
    profile = _profile(scenario, key, value, upsert, actor)
    entry = Entry(profile_id=profile.pk, step_key=step.key, source=f"api:{idempotency_key}" if entry_key else "api",
                  key=entry_key, context={"data": clean} if clean is not None else {})
    kept, refused = entries_contain(scenario=scenario, entries=[entry])
    ids = participations_enter(scenario=scenario, entries=kept, urgent=True) if kept else []
    if ids:
        return ids[0]
    if entry_key is not None:  # the same key, entered by a concurrent call
        found = Participation.objects.filter(scenario_id=scenario.pk, entry_key=entry_key).values_list("id", flat=True).first()
        if found is not None:
            return found
    if refused:
        raise ScenarioError({"__all__": f"the profile entered this scenario {refused[profile.pk]} times in the last "
                                        f"minute: at most {entries_per_minute()} a minute"})
    raise ScenarioError({"__all__": _refusal(scenario, profile.pk)})
