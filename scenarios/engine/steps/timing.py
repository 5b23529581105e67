"""Wait steps: hold a participation until a time (wait) or until an event or a timeout (wait_event).

A wait's due time is a pure function of the step's config, when the participation came to the
step (`item.step_entered_at`) and the profile's data: calling the handler again (a redelivered
task, an early wake-up) computes the same instant, so it never restarts or shortens a wait.

Wall-clock waits follow `mailings.windows`: the profile's timezone when it names a real zone,
else the account's; a local time skipped by a DST change means the change itself, a local time
that happens twice means its first occurrence.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from history.models import Event, EventType
from mailings.services.triggers.definition import filters_match
from mailings.windows import local_send_time, recipient_tz
from profiles.models import SYSTEM_FIELDS, Field, Profile
from scenarios.engine.steps import Handler, Item, Outcome, StepRun, same

_SYSTEM_TYPES = {f["name"]: str(f["type"]) for f in SYSTEM_FIELDS}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def shown(moment: datetime) -> str:
    """An instant as the path log says it: to the minute, in UTC (the stored wait keeps `iso`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_instant(value: Any) -> datetime | None:
    """An ISO 8601 instant (naive: UTC), or None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _arrived(run: StepRun, item: Item) -> datetime:
    return item.step_entered_at or run.now


def _due(run: StepRun, item: Item, due: datetime, mode: str, note: str = "") -> Outcome:
    """Go on now when `due` has come, else wait until it."""
    if due <= run.now:
        return Outcome(exit="next", outcome=note or f"waited until {shown(due)}")
    return Outcome(wait_until=due, wait={"mode": mode, "until": iso(due)}, outcome=f"waiting until {shown(due)}")


# --- wait ------------------------------------------------------------------------------------------


def next_local_time(after: datetime, at: time, tz: zoneinfo.ZoneInfo, weekdays: set[int]) -> datetime:
    """The first instant at or after `after` whose wall time in `tz` is `at` on an allowed weekday
    (Monday 0 .. Sunday 6; none given: every day). A skipped wall time is the DST change itself,
    a repeated one its first occurrence (`mailings.windows.local_send_time`)."""
    start = after.astimezone(tz).date()
    for offset in range(0, 9):
        day = start + timedelta(days=offset)
        if weekdays and day.weekday() not in weekdays:
            continue
        moment = local_send_time(day, at, tz)
        if moment >= after:
            return moment
    raise ValueError("no allowed weekday")  # unreachable with 0..6 in weekdays


def _time_of_day(config: dict[str, Any]) -> tuple[time, set[int]] | None:
    try:
        hh, mm = str(config.get("time") or "").split(":")
        at = time(int(hh), int(mm))
    except ValueError:
        return None
    weekdays = {int(d) for d in (config.get("weekdays") or []) if str(d).isdigit() and 0 <= int(d) <= 6}
    return at, weekdays


def _field_instant(value: Any, type_: str, tz: zoneinfo.ZoneInfo) -> datetime | None:
    """A date field's value as the start of that day in `tz`; a datetime field's as its instant."""
    if value is None or value == "":
        return None
    if type_ == "date" or (isinstance(value, date) and not isinstance(value, datetime)):
        try:
            day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
        except ValueError:
            return None
        return local_send_time(day, time(0, 0), tz)
    return parse_instant(value)


def wait_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Exit "next" once the wait is over; until then WAITING with `wait_until` (see the module
    docstring). Modes: duration (from arrival at the step), until (an instant), field (a profile's
    date/datetime field + offset; a profile without the value goes on at once), time_of_day."""
    config = run.step.config or {}
    mode = config.get("mode") or "duration"
    if mode == "duration":
        seconds = _int(config.get("seconds"))
        return [_due(run, item, _arrived(run, item) + timedelta(seconds=seconds), mode) for item in items]
    if mode == "until":
        at = parse_instant(config.get("at"))
        if at is None:
            return same(Outcome(fail=f"the wait's “until” instant {config.get('at')!r} is not an ISO date and time"),
                        len(items))
        return [_due(run, item, at, mode) for item in items]
    if mode not in ("field", "time_of_day"):
        return same(Outcome(fail=f"unknown wait mode {mode!r}"), len(items))
    # Both need the profiles (timezone, the field's value): one query for the group.
    account_tz = run.scenario.account.tzinfo
    name = str(config.get("field") or "")
    columns = ["id", "timezone"] + (["data"] if mode == "field" and name not in _SYSTEM_TYPES else [])
    if mode == "field" and name in _SYSTEM_TYPES:
        columns.append(name)
    profiles = {p.pk: p for p in Profile.objects.filter(
        pk__in=[i.profile_id for i in items], database_id=run.scenario.database_id).only(*columns)}
    if mode == "time_of_day":
        parsed = _time_of_day(config)
        if parsed is None:
            return same(Outcome(fail=f"the wait's time of day {config.get('time')!r} is not HH:MM"), len(items))
        at, weekdays = parsed
        out = []
        for item in items:
            p = profiles.get(item.profile_id)
            tz = recipient_tz(p.timezone if p else None, account_tz)
            out.append(_due(run, item, next_local_time(_arrived(run, item), at, tz, weekdays), mode))
        return out
    type_ = _SYSTEM_TYPES.get(name) or Field.objects.filter(
        database_id=run.scenario.database_id, name=name).values_list("type", flat=True).first()
    if type_ not in ("date", "datetime"):
        return same(Outcome(fail=f"the wait's field “{name}” is not a date or date-and-time field of the database"),
                    len(items))
    offset = timedelta(seconds=_int(config.get("offset_seconds"), allow_negative=True))
    out = []
    for item in items:
        p = profiles.get(item.profile_id)
        tz = recipient_tz(p.timezone if p else None, account_tz)
        moment = _field_instant(p.value(name) if p else None, type_, tz)
        if moment is None:
            out.append(Outcome(exit="next", outcome=f"no {name}: not waiting"))
        else:
            out.append(_due(run, item, moment + offset, mode))
    return out


def _int(value: Any, *, allow_negative: bool = False) -> int:
    try:
        n = int(value or 0)
    except (TypeError, ValueError):
        return 0
    return n if allow_negative else max(n, 0)


# --- wait_event --------------------------------------------------------------------------------------


def _window(run: StepRun, item: Item, timeout: timedelta) -> tuple[datetime, datetime]:
    """[since, until] of the item's wait: as stored when it began, else from its arrival."""
    wait = item.wait if isinstance(item.wait, dict) else {}
    since = parse_instant(wait.get("since")) or _arrived(run, item)
    until = parse_instant(wait.get("until")) or (since + timeout)
    return since, until


def wait_event_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Wait for an event of a type (with property filters) until a timeout.

    Released (`scenarios.engine.waits_release` set wait["released"] = {"event_id", "type",
    "at"}): exit "event", the event in context["event"] ({"id", "type", "at", "properties"}).
    Otherwise the profile's history is asked once for the group: a matching event since the wait
    began (one that came between the arrival and this call, or while the row was not yet
    WAITING and so could not be released) also leaves by "event". Else: the timeout passed ->
    exit "timeout"; not yet -> WAITING with waiting_for=type, wait={"type", "filters", "since",
    "until"} (kept as it was when woken early).
    """
    config = run.step.config or {}
    type_ = str(config.get("type") or "")
    filters = config.get("filters") or []
    timeout = timedelta(seconds=_int(config.get("timeout_seconds")))
    released = {i.id: i.wait["released"] for i in items
                if isinstance(i.wait, dict) and isinstance(i.wait.get("released"), dict)}
    windows = {i.id: _window(run, i, timeout) for i in items if i.id not in released}
    seen = _events_since(run, [i for i in items if i.id in windows], windows, type_, filters) if windows else {}
    events = _events(run, [r.get("event_id") for r in released.values()] + list(seen.values()))
    out: list[Outcome] = []
    for item in items:
        if item.id in released or item.id in seen:
            event_id = seen.get(item.id) or released[item.id].get("event_id")
            event = events.get(event_id) or {"id": event_id, "type": type_,
                                             "at": (released.get(item.id) or {}).get("at"), "properties": {}}
            out.append(Outcome(exit="event", outcome=f"event {type_} #{event_id}", context={"event": event}))
            continue
        since, until = windows[item.id]
        if until <= run.now:
            out.append(Outcome(exit="timeout", outcome=f"no {type_} within the timeout"))
            continue
        wait = dict(item.wait) if isinstance(item.wait, dict) else {
            "type": type_, "filters": filters, "since": iso(since), "until": iso(until)}
        out.append(Outcome(wait_until=until, waiting_for=type_, wait=wait,
                           outcome=f"waiting for {type_} until {shown(until)}"))
    return out


def _events_since(run: StepRun, items: list[Item], windows: dict[int, tuple[datetime, datetime]], type_: str,
                  filters: Any) -> dict[int, int]:
    """{participation id: the first matching event id} of the items whose profile had an event of
    the type passing the filters within its wait's window (up to now): one query for the group."""
    type_id = EventType.objects.visible_to(run.scenario.account).filter(name=type_).values_list("id", flat=True).first()
    if type_id is None:
        return {}
    oldest = min(windows[i.id][0] for i in items)
    found: dict[int, list[tuple[datetime, int, dict[str, Any]]]] = {}
    for id_, profile_id, at, props in (Event.objects.filter(
            account_id=run.scenario.account_id, type_id=type_id, profile_id__in={i.profile_id for i in items},
            occurred_at__gte=oldest, occurred_at__lte=run.now)
            .order_by("occurred_at", "id").values_list("id", "profile_id", "occurred_at", "properties")[:10_000]):
        found.setdefault(profile_id, []).append((at, id_, props))
    out: dict[int, int] = {}
    for item in items:
        since, until = windows[item.id]
        for at, id_, props in found.get(item.profile_id, []):
            if since <= at <= until and filters_match(props, filters):
                out[item.id] = id_
                break
    return out


def _events(run: StepRun, ids: list[Any]) -> dict[int, dict[str, Any]]:
    wanted = {int(i) for i in ids if isinstance(i, int) or (isinstance(i, str) and i.isdigit())}
    if not wanted:
        return {}
    return {id_: {"id": id_, "type": name, "at": iso(at), "properties": props or {}}
            for id_, name, at, props in Event.objects.filter(pk__in=wanted, account_id=run.scenario.account_id)
            .values_list("id", "type__name", "occurred_at", "properties")}


HANDLERS: dict[str, Handler] = {"wait": wait_run, "wait_event": wait_event_run}
