"""Send windows, local-time sending and regular slots across DST changes (RELIABILITY F16)."""

from __future__ import annotations

import functools
import itertools
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailings.windows import (
    SendWindow,
    by_instant,
    local_send_buckets,
    local_send_time,
    recipient_tz,
    regular_slots,
    zone,
)

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
LORD_HOWE = zoneinfo.ZoneInfo("Australia/Lord_Howe")
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
NAMED = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
ALL_ZONES = sorted(zoneinfo.available_timezones())
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)

# Named zones more often, every zone of the tz database sometimes.
zones = st.one_of(st.sampled_from(NAMED), st.sampled_from(ALL_ZONES)).map(zoneinfo.ZoneInfo)
MINUTES = st.sampled_from([0, 1, 15, 30, 45, 59])
# The small hours (where most DST changes are) more often than the rest of the day.
wall_times = st.one_of(st.builds(time, st.integers(0, 23), MINUTES), st.builds(time, st.integers(0, 3), MINUTES))
CHANGING = [*NAMED[:3], "America/Santiago", "America/Havana", "Pacific/Chatham", "Asia/Tehran", "Africa/Casablanca"]


@functools.cache
def changes() -> list[tuple[str, datetime]]:
    """(zone, the wall time where the offset changes, read with the old offset) for every change
    2000-2036 in zones that change: at midnight (Santiago, Havana), at 02:00, by 30 minutes (Lord
    Howe), backwards for Ramadan (Casablanca), by 45 minutes' offsets (Chatham)."""
    out = []
    for name in CHANGING:
        tz = zoneinfo.ZoneInfo(name)
        t, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2037, 1, 1, tzinfo=UTC)
        previous = t.astimezone(tz).utcoffset()
        while t < end:
            step = t + timedelta(days=3)  # no zone changes twice in three days
            if (offset := step.astimezone(tz).utcoffset()) != previous:
                while step - t > timedelta(microseconds=1):
                    mid = t + (step - t) / 2
                    t, step = (t, mid) if mid.astimezone(tz).utcoffset() == offset else (mid, step)
                step = step.replace(microsecond=0)  # tzdata changes on whole seconds
                out.append((name, (step + previous).replace(tzinfo=None)))
            t, previous = step, offset
    return out


PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def wall(instant: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


# --- local_send_time ----------------------------------------------------------------------------


@pytest.mark.parametrize(("tz", "day", "at", "expected"), [
    (BERLIN, date(2025, 6, 2), time(10, 0), utc(2025, 6, 2, 8, 0)),
    (BERLIN, date(2025, 3, 30), time(2, 30), utc(2025, 3, 30, 1, 0)),  # skipped: 03:00 CEST
    (BERLIN, date(2025, 10, 26), time(2, 30), utc(2025, 10, 26, 0, 30)),  # repeated: the CEST one
    (NEW_YORK, date(2025, 3, 9), time(2, 30), utc(2025, 3, 9, 7, 0)),  # 03:00 EDT
    (NEW_YORK, date(2025, 11, 2), time(1, 30), utc(2025, 11, 2, 5, 30)),  # 01:30 EDT, not EST
    (LORD_HOWE, date(2025, 10, 5), time(2, 15), utc(2025, 10, 4, 15, 30)),  # 02:00-02:30 skipped
    (LORD_HOWE, date(2025, 4, 6), time(1, 45), utc(2025, 4, 5, 14, 45)),  # 01:30-02:00 twice: +11
    (KOLKATA, date(2025, 3, 30), time(2, 30), utc(2025, 3, 29, 21, 0)),
])
def test_it_maps_wall_times_to_the_first_instant_that_reaches_them(tz, day, at, expected):
    assert local_send_time(day, at, tz) == expected


@PROPS
@given(tz=zones, day=st.dates(date(1995, 1, 1), date(2037, 12, 31)), at=wall_times)
def test_it_returns_the_first_instant_whose_wall_time_reaches_the_one_asked(tz, day, at):
    assert_first_instant_reaching(tz, day, at)


def assert_first_instant_reaching(tz: zoneinfo.ZoneInfo, day: date, at: time) -> None:
    asked = datetime.combine(day, at)
    instant = local_send_time(day, at, tz)
    assert instant.tzinfo is UTC
    assert wall(instant, tz) >= asked
    assert wall(instant - timedelta(seconds=1), tz) < asked
    if wall(instant, tz) != asked:  # only a skipped wall time moves, and not by more than the gap
        assert asked.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != asked
        assert wall(instant, tz) - asked <= timedelta(hours=2)


@PROPS
@given(change=st.integers(0, 10**6), minutes=st.integers(-120, 120))
def test_it_returns_the_first_instant_reaching_the_wall_time_around_dst_changes(change, minutes):
    name, at = changes()[change % len(changes())]
    asked = at + timedelta(minutes=minutes)
    assert_first_instant_reaching(zoneinfo.ZoneInfo(name), asked.date(), asked.time())


def test_it_plans_local_time_sends_per_timezone_not_per_recipient():
    buckets = local_send_buckets(date(2025, 3, 30), time(10, 0),
                                 ["Europe/Berlin", "Europe/Paris", "", None, "Mars/Olympus", "Asia/Kolkata"],
                                 account_tz="America/New_York")
    assert buckets == {
        "Europe/Berlin": utc(2025, 3, 30, 8, 0), "Europe/Paris": utc(2025, 3, 30, 8, 0),
        "": utc(2025, 3, 30, 14, 0), None: utc(2025, 3, 30, 14, 0), "Mars/Olympus": utc(2025, 3, 30, 14, 0),
        "Asia/Kolkata": utc(2025, 3, 30, 4, 30),
    }
    assert list(by_instant(buckets).items()) == [
        (utc(2025, 3, 30, 4, 30), ["Asia/Kolkata"]),
        (utc(2025, 3, 30, 8, 0), ["Europe/Berlin", "Europe/Paris"]),
        (utc(2025, 3, 30, 14, 0), ["", None, "Mars/Olympus"]),
    ]


# --- timezones ----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile_tz", ["", None, "Mars/Olympus", "europe/berlin", "localtime", "../../etc/passwd",
                                        "Europe/Berlin\x00", " Europe/Berlin"])
def test_it_falls_back_to_the_accounts_timezone(profile_tz):
    assert recipient_tz(profile_tz, "America/New_York") == NEW_YORK
    assert zone(profile_tz) is None


def test_it_prefers_the_profiles_timezone():
    assert recipient_tz("Asia/Kolkata", NEW_YORK) == KOLKATA
    window = SendWindow(days=frozenset(range(7)), start=time(9), end=time(18), tz_rule="account")
    assert window.zone_for("Asia/Kolkata", NEW_YORK) == NEW_YORK
    assert SendWindow(days=frozenset({MON}), start=time(9), end=time(18)).zone_for("Asia/Kolkata", NEW_YORK) == KOLKATA


def test_it_refuses_an_account_timezone_that_is_not_one():
    with pytest.raises(ValueError, match="not a timezone"):
        recipient_tz("", "Mars/Olympus")


# --- send windows -------------------------------------------------------------------------------

OFFICE = SendWindow(days=frozenset({MON, TUE, WED, THU, FRI}), start=time(9), end=time(18))
NIGHTS = SendWindow(days=frozenset({FRI, SUN}), start=time(22), end=time(6))


def test_it_is_open_inside_the_window_only():
    # 2025-06-02 is a Monday; Berlin is UTC+2 in June.
    assert OFFICE.is_open(utc(2025, 6, 2, 7, 0), BERLIN)
    assert not OFFICE.is_open(utc(2025, 6, 2, 6, 59), BERLIN)
    assert not OFFICE.is_open(utc(2025, 6, 2, 16, 0), BERLIN)  # 18:00: the end is not in the window
    assert not OFFICE.is_open(utc(2025, 6, 7, 10, 0), BERLIN)  # Saturday
    assert OFFICE.is_open(utc(2025, 6, 2, 14, 0), NEW_YORK)  # 10:00 in New York


def test_it_keeps_a_window_across_midnight_open_into_the_next_morning():
    # Friday 2025-06-06 22:00 Berlin until Saturday 06:00; Sunday 22:00 until Monday 06:00.
    assert not NIGHTS.is_open(utc(2025, 6, 6, 19, 59), BERLIN)
    assert NIGHTS.is_open(utc(2025, 6, 6, 20, 0), BERLIN)
    assert NIGHTS.is_open(utc(2025, 6, 7, 3, 59), BERLIN)  # Saturday 05:59
    assert not NIGHTS.is_open(utc(2025, 6, 7, 4, 0), BERLIN)
    assert not NIGHTS.is_open(utc(2025, 6, 7, 21, 0), BERLIN)  # Saturday 23:00: Saturday is not listed
    assert NIGHTS.is_open(utc(2025, 6, 9, 1, 0), BERLIN)  # Monday 03:00, from Sunday's window


def test_it_names_the_next_opening():
    friday_evening = utc(2025, 6, 6, 17, 0)  # 19:00 Berlin
    assert OFFICE.next_allowed(friday_evening, BERLIN) == utc(2025, 6, 9, 7, 0)
    assert OFFICE.next_allowed(utc(2025, 6, 9, 7, 30), BERLIN) == utc(2025, 6, 9, 7, 30)  # open: now
    assert NIGHTS.next_allowed(utc(2025, 6, 7, 4, 0), BERLIN) == utc(2025, 6, 8, 20, 0)  # Sunday 22:00
    assert NIGHTS.next_allowed(utc(2025, 6, 7, 4, 0), KOLKATA) == utc(2025, 6, 8, 16, 30)


def test_it_opens_a_window_that_starts_in_a_dst_gap_at_the_change():
    early = SendWindow(days=frozenset(range(7)), start=time(2, 0), end=time(4, 0))
    assert early.next_allowed(utc(2025, 3, 29, 12, 0), BERLIN) == utc(2025, 3, 30, 1, 0)  # 03:00 CEST
    lost = SendWindow(days=frozenset(range(7)), start=time(2, 0), end=time(2, 45))  # all in the gap
    assert lost.next_allowed(utc(2025, 3, 29, 12, 0), BERLIN) == utc(2025, 3, 31, 0, 0)  # Monday 02:00 CEST


def test_it_treats_start_equal_to_end_as_the_whole_day():
    weekends = SendWindow(days=frozenset({SAT, SUN}), start=time(0), end=time(0))
    assert weekends.is_open(utc(2025, 6, 7, 0, 0), BERLIN)
    assert not weekends.is_open(utc(2025, 6, 8, 22, 0), BERLIN)  # Monday 00:00
    assert weekends.next_allowed(utc(2025, 6, 9, 10, 0), BERLIN) == utc(2025, 6, 13, 22, 0)


def test_it_reads_and_writes_windows_as_json():
    raw = {"days": [4, 0, 1], "start": "22:00", "end": "06:30", "tz": "account"}
    window = SendWindow.from_json(raw)
    assert window == SendWindow(days=frozenset({MON, TUE, FRI}), start=time(22), end=time(6, 30), tz_rule="account")
    assert window.to_json() == {"days": [0, 1, 4], "start": "22:00", "end": "06:30", "tz": "account"}
    for bad in [{"days": [], "start": "09:00", "end": "10:00"}, {"days": [7], "start": "09:00", "end": "10:00"},
                {"days": [1], "start": "9h", "end": "10:00"}, {"days": [1], "end": "10:00"},
                {"days": [1], "start": "09:00", "end": "10:00", "tz": "profile"}]:
        with pytest.raises(ValueError):
            SendWindow.from_json(bad)


windows = st.builds(
    SendWindow,
    days=st.frozensets(st.integers(0, 6), min_size=1),
    start=st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
    end=st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
)


@PROPS
@given(window=windows, tz=zones, now=st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)))
def test_it_never_skips_an_open_moment_before_the_next_opening(window, tz, now):
    opens = window.next_allowed(now, tz)
    assert opens >= now
    assert window.is_open(opens, tz)
    if opens > now:
        assert not window.is_open(now, tz)
        assert not window.is_open(opens - timedelta(seconds=1), tz)  # it opens exactly then
        probe = now + timedelta(minutes=7)
        while probe < opens:  # closed all the way there (windows are at least 15 minutes long)
            assert not window.is_open(probe, tz), probe
            probe += timedelta(minutes=15)


# --- regular slots ------------------------------------------------------------------------------


def slots(schedule, tz, after, until):
    return list(regular_slots(schedule, tz, after, until))


def test_it_runs_a_daily_mailing_once_per_local_day_through_a_berlin_year():
    runs = slots({"daily_at": "10:00"}, BERLIN, utc(2024, 12, 31, 23, 0), utc(2025, 12, 31, 23, 0))
    assert len(runs) == 365
    assert len({key for key, _ in runs}) == 365
    assert [key[:10] for key, _ in runs] == [(date(2025, 1, 1) + timedelta(days=i)).isoformat() for i in range(365)]
    assert all(wall(instant, BERLIN).time() == time(10) for _, instant in runs)
    by_key = dict(runs)
    assert by_key["2025-03-29T10:00"] == utc(2025, 3, 29, 9, 0)
    assert by_key["2025-03-30T10:00"] == utc(2025, 3, 30, 8, 0)
    assert by_key["2025-10-26T10:00"] == utc(2025, 10, 26, 9, 0)


@pytest.mark.parametrize(("tz", "at", "day", "expected"), [
    (BERLIN, "02:30", date(2025, 3, 30), utc(2025, 3, 30, 1, 0)),
    (BERLIN, "02:30", date(2025, 10, 26), utc(2025, 10, 26, 0, 30)),
    (NEW_YORK, "02:30", date(2025, 3, 9), utc(2025, 3, 9, 7, 0)),
    (NEW_YORK, "01:30", date(2025, 11, 2), utc(2025, 11, 2, 5, 30)),
    (LORD_HOWE, "02:15", date(2025, 10, 5), utc(2025, 10, 4, 15, 30)),
    (LORD_HOWE, "01:45", date(2025, 4, 6), utc(2025, 4, 5, 14, 45)),
])
def test_it_runs_a_daily_mailing_at_a_skipped_or_repeated_time_once(tz, at, day, expected):
    runs = slots({"daily_at": at}, tz, local_send_time(day - timedelta(days=1), time(12), tz),
                 local_send_time(day, time(12), tz))
    assert runs == [(f"{day.isoformat()}T{at}", expected)]


def test_it_runs_at_the_same_utc_time_every_day_without_dst():
    runs = slots({"daily_at": "10:00"}, KOLKATA, utc(2025, 1, 1), utc(2026, 1, 1))
    assert len(runs) == 365
    assert {instant.time() for _, instant in runs} == {time(4, 30)}


@PROPS
@given(tz=zones, at=wall_times, start=st.dates(date(2000, 1, 1), date(2036, 1, 1)),
       ticks=st.lists(st.floats(0, 1), max_size=12))
def test_it_runs_once_per_local_day_whenever_the_scheduler_ticks(tz, at, start, ticks):
    """RELIABILITY F16: over about a year, ticks at arbitrary moments (a scheduler down for days,
    two ticks a second apart) together see each local day's slot once, the same as one long tick."""
    after = datetime.combine(start, time(12), tzinfo=UTC)
    until = after + timedelta(days=400)
    whole = slots({"daily_at": at.strftime("%H:%M")}, tz, after, until)
    cuts = sorted({after + (until - after) * f for f in ticks} | {after, until})
    pieces = [run for lo, hi in itertools.pairwise(cuts)
              for run in slots({"daily_at": at.strftime("%H:%M")}, tz, lo, hi)]
    assert pieces == whole
    days = [date.fromisoformat(key[:10]) for key, _ in whole]
    assert days == [days[0] + timedelta(days=i) for i in range(len(days))]  # every day, once, in order
    assert len(days) in (399, 400, 401)
    instants = [instant for _, instant in whole]
    assert instants == sorted(set(instants))
    assert all(after < i <= until for i in instants)
    assert all(local_send_time(d, at, tz) == i for d, i in zip(days, instants, strict=True))


def test_it_runs_an_hourly_cron_once_per_real_instant_across_dst():
    spring = slots({"cron": "0 * * * *"}, BERLIN, utc(2025, 3, 29, 22, 59), utc(2025, 3, 30, 21, 59))
    assert len(spring) == 23  # 02:00 does not exist: it and 03:00 are one run, under the first key
    assert ("2025-03-30T02:00", utc(2025, 3, 30, 1, 0)) in spring
    assert not any(key == "2025-03-30T03:00" for key, _ in spring)
    autumn = slots({"cron": "0 * * * *"}, BERLIN, utc(2025, 10, 25, 21, 59), utc(2025, 10, 26, 22, 59))
    keys = [key for key, _ in autumn]
    assert len(keys) == len(set(keys)) == 24  # the repeated 02:00 runs once
    assert dict(autumn)["2025-10-26T02:00"] == utc(2025, 10, 26, 0, 0)


def test_it_keeps_cron_slots_stable_between_ticks():
    schedule = {"cron": "30 1-3 * * *"}
    after, until = utc(2025, 10, 30), utc(2025, 11, 5)
    whole = slots(schedule, NEW_YORK, after, until)
    cuts = [after + timedelta(hours=7 * i) for i in range(int((until - after) / timedelta(hours=7)) + 1)] + [until]
    assert [r for lo, hi in itertools.pairwise(cuts) for r in slots(schedule, NEW_YORK, lo, hi)] == whole
    nov2 = [(k, i) for k, i in whole if k.startswith("2025-11-02")]
    assert nov2 == [("2025-11-02T01:30", utc(2025, 11, 2, 5, 30)), ("2025-11-02T02:30", utc(2025, 11, 2, 7, 30)),
                    ("2025-11-02T03:30", utc(2025, 11, 2, 8, 30))]


def test_it_runs_every_n_hours_of_absolute_time():
    runs = slots({"every_hours": 6}, BERLIN, utc(2025, 10, 25, 20, 0), utc(2025, 10, 26, 12, 0))
    assert runs == [("2025-10-26T02:00+02:00", utc(2025, 10, 26, 0, 0)),
                    ("2025-10-26T07:00+01:00", utc(2025, 10, 26, 6, 0)),
                    ("2025-10-26T13:00+01:00", utc(2025, 10, 26, 12, 0))]
    assert slots({"every_hours": 6}, BERLIN, utc(2025, 10, 26, 12, 0), utc(2025, 10, 26, 12, 0)) == []


def test_it_refuses_an_unknown_schedule():
    with pytest.raises(ValueError, match="not a schedule"):
        slots({"weekly": "mon"}, BERLIN, utc(2025, 1, 1), utc(2025, 1, 2))
