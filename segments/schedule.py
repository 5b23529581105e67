"""When an updatable segment is recalculated: every N hours, daily at HH:MM, or a cron expression,
in the account's timezone. At most once an hour: a schedule that would run more often is refused.

    {"every_hours": 6}          every 6 hours from the previous slot
    {"daily_at": "06:30"}       each day at 06:30 local time (a time skipped by a DST change runs
                                at the same offset as before the change, once)
    {"cron": "15 */2 * * 1-5"}  five fields (minute hour day month weekday); the minute field must
                                name one minute, so it runs at most once an hour
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, time, timedelta
from typing import Any

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from segments.conditions import ConditionError

MAX_EVERY_HOURS = 24 * 31
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def clean_schedule(raw: Any) -> dict[str, Any]:
    """The normalised schedule, or ConditionError with the path of what is wrong ("schedule.cron")."""
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConditionError({"schedule": 'must be {"every_hours": N}, {"daily_at": "HH:MM"} or {"cron": "m h dom mon dow"}'})
    (key, value), = raw.items()
    path = f"schedule.{key}"
    if key == "every_hours":
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
            raise ConditionError({path: "must be a whole number of hours"})
        n = int(value)
        if n < 1:
            raise ConditionError({path: "updatable segments are recalculated at most once an hour"})
        if n > MAX_EVERY_HOURS:
            raise ConditionError({path: f"at most every {MAX_EVERY_HOURS} hours (a month)"})
        return {"every_hours": n}
    if key == "daily_at":
        m = _HHMM.match(str(value).strip()) if isinstance(value, str) else None
        if m is None:
            raise ConditionError({path: "must be a time of day as HH:MM (24-hour)"})
        return {"daily_at": f"{int(m[1]):02d}:{m[2]}"}
    if key == "cron":
        if not isinstance(value, str) or len(value) > 100:
            raise ConditionError({path: "must be a cron expression (minute hour day month weekday)"})
        expr = " ".join(value.split())
        if len(expr.split(" ")) != 5:
            raise ConditionError({path: "must have five fields: minute hour day month weekday"})
        try:
            minutes = croniter(expr).expanded[0]
        except (CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, ValueError, KeyError) as exc:
            raise ConditionError({path: f"is not a valid cron expression ({exc})"}) from None
        if len(minutes) != 1 or minutes[0] == "*":
            raise ConditionError({path: "runs more often than once an hour: give the minute field one value (e.g. 0)"})
        return {"cron": expr}
    raise ConditionError({"schedule": f"{key!r} is not a kind of schedule (every_hours, daily_at, cron)"})


def next_run(schedule: dict[str, Any], after: datetime, tz: zoneinfo.ZoneInfo, *, slot: datetime | None = None) -> datetime:
    """The first run time strictly after `after`. `slot` is the run being taken now (every_hours
    keeps its rhythm from it; a scheduler that was down for a day runs once, not 24 times)."""
    if "every_hours" in schedule:
        step = timedelta(hours=schedule["every_hours"])
        base = slot or after
        nxt = base + step
        if nxt <= after:
            missed = (after - base) // step
            nxt = base + step * (missed + 1)
            if nxt <= after:
                nxt += step
        return nxt
    local = after.astimezone(tz)
    if "daily_at" in schedule:
        hh, mm = (int(x) for x in schedule["daily_at"].split(":"))
        day = local.date()
        for _ in range(3):
            candidate = datetime.combine(day, time(hh, mm), tzinfo=tz)
            # A wall time skipped by DST maps to a real instant; a repeated one to its first occurrence.
            if candidate > after:
                return candidate
            day += timedelta(days=1)
        raise AssertionError("unreachable")  # pragma: no cover
    it = croniter(schedule["cron"], local)
    nxt = it.get_next(datetime)
    while nxt <= after:  # pragma: no cover (croniter's DST corner cases)
        nxt = it.get_next(datetime)
    return nxt


def describe_schedule(schedule: dict[str, Any] | None) -> str:
    if not schedule:
        return ""
    if "every_hours" in schedule:
        n = schedule["every_hours"]
        return "every hour" if n == 1 else f"every {n} hours"
    if "daily_at" in schedule:
        return f"daily at {schedule['daily_at']}"
    return f"cron “{schedule['cron']}”"
