"""Wall-clock time for mailings: send windows, local-time sending and the slots of regular mailings.

Every function takes and returns aware UTC datetimes; local dates and times are wall-clock values
in a zone. One rule for wall times that a DST change makes odd, everywhere:

- a wall time skipped by a change (02:30 on a spring-forward night in Europe/Berlin) means the
  first instant that exists after it: the change itself (03:00 CEST);
- a wall time that happens twice (01:30 on a fall-back night in America/New_York) means the
  first occurrence (01:30 EDT), and happens once.

(segments/schedule.py maps a skipped time to the offset before the change, 03:30 CEST instead of
03:00, and computes cron schedules on aware datetimes; mailings need stable slot keys and the rule
above, so this module does not reuse it. Its `clean_schedule` validates the same schedule shapes.)

Timezones: the recipient's is the profile's timezone when it names a real zone, else the account's.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from croniter import croniter

DAY = timedelta(days=1)
TzRule = Literal["recipient", "account"]


# --- timezones ----------------------------------------------------------------------------------


@functools.cache
def _zone_names() -> frozenset[str]:
    # "localtime" and "posixrules" are files of the system's tz directory, not zones anyone lives in.
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "posixrules"}


@functools.lru_cache(maxsize=1024)
def zone(name: str | None) -> zoneinfo.ZoneInfo | None:
    """The zone called `name` (an IANA name such as "Europe/Berlin"), or None when it names none
    (blank, misspelt, a path). Only names in the tz database count, so "localtime" or
    "../../etc/x" never load a file."""
    if not name or name not in _zone_names():
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def _as_zone(tz: zoneinfo.ZoneInfo | str) -> zoneinfo.ZoneInfo:
    if isinstance(tz, zoneinfo.ZoneInfo):
        return tz
    found = zone(tz)
    if found is None:
        raise ValueError(f"{tz!r} is not a timezone")
    return found


def recipient_tz(profile_tz: str | None, account_tz: zoneinfo.ZoneInfo | str) -> zoneinfo.ZoneInfo:
    """The profile's timezone when it names a real zone, else the account's."""
    return zone(profile_tz) or _as_zone(account_tz)


# --- local times --------------------------------------------------------------------------------


def local_send_time(day: date, at: time, tz: zoneinfo.ZoneInfo | str) -> datetime:
    """The UTC instant of wall time `at` on `day` in `tz`: in a DST gap the first instant after
    it (the change), in a fold the first occurrence."""
    tz = _as_zone(tz)
    wall = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    first = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the earlier offset
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # a normal wall time, or the first occurrence of a repeated one
    # Skipped: fold=1 reads it with the later offset, an instant before the change; fold=0 one
    # after it. The change is where the offset flips between the two (whole seconds in tzdata).
    before = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = int(before.timestamp()), int(first.timestamp())
    after_offset = first.astimezone(tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == after_offset:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def local_send_buckets(day: date, at: time, timezones: Iterable[str | None],
                       account_tz: zoneinfo.ZoneInfo | str) -> dict[str | None, datetime]:
    """"Send at `at` on `day` in each recipient's timezone", set-based: for each distinct profile
    timezone value (as stored: blank and invalid values included) the UTC instant to send to the
    profiles that have it. Blank and invalid values get the account's instant. The planner selects
    the distinct values once and plans per value (or per instant, `by_instant`), not per recipient."""
    account = _as_zone(account_tz)
    instants: dict[zoneinfo.ZoneInfo, datetime] = {}
    out: dict[str | None, datetime] = {}
    for value in timezones:
        tz = zone(value) or account
        if tz not in instants:
            instants[tz] = local_send_time(day, at, tz)
        out[value] = instants[tz]
    return out


def by_instant(buckets: dict[str | None, datetime]) -> dict[datetime, list[str | None]]:
    """`local_send_buckets`' answer turned around: instant -> timezone values, earliest first."""
    out: dict[datetime, list[str | None]] = {}
    for value, instant in sorted(buckets.items(), key=lambda kv: kv[1]):
        out.setdefault(instant, []).append(value)
    return out


# --- send windows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendWindow:
    """Messages go out only on `days` (0 = Monday .. 6 = Sunday) between `start` and `end` wall time
    in the recipient's timezone (tz_rule "recipient") or the account's ("account").

    end < start crosses midnight: the window opens on a listed day and closes the next morning
    (Friday 22:00-06:00 is open early on Saturday). start == end is the whole of each listed day.
    On a DST night a window opening at a skipped time opens at the change; one that lies wholly in
    the skipped hour does not open that day."""

    days: frozenset[int]
    start: time
    end: time
    tz_rule: TzRule = "recipient"

    def __post_init__(self) -> None:
        days = frozenset(self.days)
        if not days or not days <= set(range(7)):
            raise ValueError("days must be weekdays 0 (Monday) .. 6 (Sunday), at least one")
        if self.tz_rule not in ("recipient", "account"):
            raise ValueError('tz_rule must be "recipient" or "account"')
        object.__setattr__(self, "days", days)
        object.__setattr__(self, "start", self.start.replace(tzinfo=None, fold=0))
        object.__setattr__(self, "end", self.end.replace(tzinfo=None, fold=0))

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SendWindow:
        """From {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "18:00", "tz": "recipient"};
        ValueError naming what is wrong."""
        try:
            return cls(days=frozenset(int(d) for d in raw["days"]), start=time.fromisoformat(raw["start"]),
                       end=time.fromisoformat(raw["end"]), tz_rule=raw.get("tz", "recipient"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"a send window needs days, start and end ({exc})") from None

    def to_json(self) -> dict[str, Any]:
        return {"days": sorted(self.days), "start": self.start.strftime("%H:%M"),
                "end": self.end.strftime("%H:%M"), "tz": self.tz_rule}

    def zone_for(self, profile_tz: str | None, account_tz: zoneinfo.ZoneInfo | str) -> zoneinfo.ZoneInfo:
        """The zone this window is read in for a recipient."""
        if self.tz_rule == "account":
            return _as_zone(account_tz)
        return recipient_tz(profile_tz, account_tz)

    def is_open(self, now_utc: datetime, tz: zoneinfo.ZoneInfo | str) -> bool:
        local = now_utc.astimezone(_as_zone(tz))
        t, weekday = local.time().replace(fold=0), local.weekday()
        if self.start == self.end:
            return weekday in self.days
        if self.start < self.end:
            return weekday in self.days and self.start <= t < self.end
        return (weekday in self.days and t >= self.start) or ((weekday - 1) % 7 in self.days and t < self.end)

    def next_allowed(self, now_utc: datetime, tz: zoneinfo.ZoneInfo | str) -> datetime:
        """`now_utc` when the window is open, else the UTC instant it next opens."""
        tz = _as_zone(tz)
        if self.is_open(now_utc, tz):
            return now_utc.astimezone(UTC)
        opens = time(0) if self.start == self.end else self.start
        day = now_utc.astimezone(tz).date()
        for _ in range(15):  # a week, and a week more for a window lost in a DST gap
            if day.weekday() in self.days:
                candidate = local_send_time(day, opens, tz)
                if candidate > now_utc and self.is_open(candidate, tz):
                    return candidate
            day += DAY
        raise AssertionError("a send window with a listed day opens within two weeks")  # pragma: no cover


# --- regular mailings ---------------------------------------------------------------------------


def regular_slots(schedule: dict[str, Any], tz: zoneinfo.ZoneInfo | str, after_utc: datetime,
                  until_utc: datetime) -> Iterator[tuple[str, datetime]]:
    """The runs of a regular mailing due in (after_utc, until_utc], as (slot_key, utc_instant),
    earliest first. The slot key is the run's identity (a run is unique per mailing and slot):

    {"daily_at": "HH:MM"}   key "YYYY-MM-DDTHH:MM", the LOCAL date and time: one run per local day,
                            across DST changes; a skipped time runs at the change, a repeated one
                            at its first occurrence.
    {"cron": "m h dom mon dow"}  matched on local wall time, key as above; wall times that a DST
                            change maps to the same instant run once (the first key).
    {"every_hours": N}      every N hours of absolute time from the Unix epoch; key the local
                            time with its offset ("2025-10-26T02:00+02:00"), unique in a fold.

    The same slot has the same key and instant whichever ticks ask, so a scheduler that was down
    catches up with the slots it missed and never runs one twice."""
    tz = _as_zone(tz)
    if after_utc >= until_utc:
        return
    if "daily_at" in schedule:
        at = time.fromisoformat(schedule["daily_at"])
        day = after_utc.astimezone(tz).date() - DAY  # a skipped time may run before its wall date
        while True:
            instant = local_send_time(day, at, tz)
            if instant > until_utc:
                return
            if instant > after_utc:
                yield f"{day.isoformat()}T{at.strftime('%H:%M')}", instant
            day += DAY
    elif "cron" in schedule:
        # Naive wall times: croniter steps the wall clock, this module maps it to instants.
        start = after_utc.astimezone(tz).replace(tzinfo=None) - timedelta(hours=4)
        it = croniter(schedule["cron"], start)
        previous: datetime | None = None
        while True:
            wall: datetime = it.get_next(datetime)
            instant = local_send_time(wall.date(), wall.time(), tz)
            if instant > until_utc:
                return
            if instant > after_utc and instant != previous:
                yield wall.strftime("%Y-%m-%dT%H:%M"), instant
            previous = instant
    elif "every_hours" in schedule:
        step = int(schedule["every_hours"]) * 3600
        n = int(after_utc.timestamp()) // step + 1
        while (instant := datetime.fromtimestamp(n * step, UTC)) <= until_utc:
            yield instant.astimezone(tz).isoformat(timespec="minutes"), instant
            n += 1
    else:
        raise ValueError(f"not a schedule: {schedule!r}")
