"""The figures of /metrics and the status page, each read the cheap way (never a COUNT(*) over the
ledger or the participations of every run ever):

- sends per channel and outcome, and the ledger's settled rows: sums of the mailings' counters
  (MailingStat, compacted by the mailings tick), cached for OPS_COUNTERS_CACHE_SECONDS;
- the ledger's open rows: `queued` through the partial index ledger_queued_idx, `sending` through
  the lease index (only rows with a lease are in it); the table's size: pg_class.reltuples;
- open participations: their partial index (participation_due_idx); failed ones: the engine's
  per-step counters (StepStat "failed");
- job durations: accounts.Job rows finished in the last hour, through (state, heartbeat_at)
  (a finished job's heartbeat is its finish time);
- stuck jobs, stalled runs: running jobs past their heartbeat, sending runs (run_active_idx)
  whose last settled row is older than OPS_STALLED_RUN_MINUTES.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from accounts.models import Job
from cdp.ops import beacons

OUTCOMES = ("sent", "failed", "skipped", "ambiguous")
CACHE_KEY = "ops:counters:v1"


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


# --- mailings ---------------------------------------------------------------------------------


def _counter_sums() -> dict[str, Any]:
    from mailings.models import Mailing, MailingStat

    stat, mailing = MailingStat._meta.db_table, Mailing._meta.db_table
    placeholders = ", ".join(["%s"] * len(OUTCOMES))
    with connection.cursor() as cursor:
        # One aggregate over the compacted counters, grouped by the mailing's channel.
        cursor.execute(
            f"SELECT m.channel, s.metric, SUM(s.delta) FROM {stat} s JOIN {mailing} m ON m.id = s.mailing_id "  # noqa: S608
            f"WHERE s.metric IN ({placeholders}) GROUP BY m.channel, s.metric",
            list(OUTCOMES),
        )
        sends = [(channel, metric, int(total or 0)) for channel, metric, total in cursor.fetchall()]
    from scenarios.models import StepStat

    failed = StepStat.objects.filter(metric="failed").aggregate(n=Sum("n"))["n"] or 0
    return {"sends": sends, "participations_failed": int(failed), "at": time.time()}


def counter_sums(*, fresh: bool = False) -> dict[str, Any]:
    """{"sends": [(channel, outcome, total)], "participations_failed": n, "at": epoch}: the
    counters' sums, from the cache unless `fresh` or older than OPS_COUNTERS_CACHE_SECONDS."""
    ttl = _setting("OPS_COUNTERS_CACHE_SECONDS", 30)
    if not fresh and ttl > 0:
        cached = cache.get(CACHE_KEY)
        if cached is not None:
            return cached
    sums = _counter_sums()
    if ttl > 0:
        cache.set(CACHE_KEY, sums, ttl)
    return sums


def ledger_rows(*, sends: list[tuple[str, str, int]]) -> dict[str, int]:
    """Ledger rows by status: queued and sending counted through their indexes, the settled
    statuses from the counters `sends` (counter_sums()["sends"])."""
    from mailings.models import LedgerEntry

    rows = {"queued": LedgerEntry.objects.filter(status=LedgerEntry.Status.QUEUED).count(),
            "sending": LedgerEntry.objects.filter(lease_until__isnull=False,
                                                  status=LedgerEntry.Status.SENDING).count()}
    for outcome in OUTCOMES:
        rows[outcome] = sum(n for _, metric, n in sends if metric == outcome)
    return rows


def table_estimate(model: Any) -> int | None:
    """The planner's row estimate of a model's table (PostgreSQL; None elsewhere or never analysed)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [model._meta.db_table])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


@dataclass(frozen=True)
class StalledRun:
    run_id: int
    mailing_id: int
    mailing_name: str
    account_name: str
    last_progress: datetime | None
    queued: int


def runs_active() -> dict[str, int]:
    """Runs planning and sending (the partial index run_active_idx)."""
    from mailings.models import Run

    counts = dict.fromkeys(("planning", "sending"), 0)
    for state in counts:
        counts[state] = Run.objects.filter(state=state).count()
    return counts


def runs_stalled(*, now: datetime | None = None, limit: int = 50) -> list[StalledRun]:
    """Sending runs with queued rows whose last settled row (sent/failed/skipped/ambiguous, by
    the newest id of each status: rows settle roughly in id order) changed more than
    OPS_STALLED_RUN_MINUTES ago, or that settled nothing since they were planned that long ago."""
    from mailings.models import LedgerEntry, Run

    now = now or timezone.now()
    cutoff = now - timedelta(minutes=_setting("OPS_STALLED_RUN_MINUTES", 10))
    out = []
    runs = (Run.objects.filter(state=Run.State.SENDING).select_related("mailing", "account")
            .only("id", "planned_at", "created_at", "mailing__id", "mailing__name", "account__name")[:limit])
    for run in runs:
        latest = None
        for status in LedgerEntry.TERMINAL:
            row = (LedgerEntry.objects.filter(run_id=run.pk, status=status).order_by("-id")
                   .values_list("updated_at", flat=True).first())
            if row is not None and (latest is None or row > latest):
                latest = row
        since = latest or run.planned_at or run.created_at
        if since >= cutoff:
            continue
        queued = LedgerEntry.objects.filter(run_id=run.pk, status=LedgerEntry.Status.QUEUED).count()
        sending = LedgerEntry.objects.filter(run_id=run.pk, status=LedgerEntry.Status.SENDING).exists()
        if queued or sending:
            out.append(StalledRun(run.pk, run.mailing.pk, run.mailing.name, run.account.name, latest, queued))
    return out


# --- scenarios --------------------------------------------------------------------------------


def participations_open() -> dict[str, int]:
    """Open participations by state (active, waiting), through the engine's partial index."""
    from scenarios.models import Participation

    counts = dict.fromkeys(Participation.OPEN_STATES, 0)
    for state, n in (Participation.objects.filter(state__in=Participation.OPEN_STATES)
                     .values_list("state").annotate(n=Count("id")).values_list("state", "n")):
        counts[state] = int(n or 0)
    return {str(k): v for k, v in counts.items()}


# --- jobs -------------------------------------------------------------------------------------


def jobs_finished(*, now: datetime | None = None, window: timedelta = timedelta(hours=1)) -> dict[tuple[str, str], list[float]]:
    """{(kind, state): [durations in seconds]} of the jobs finished within `window`."""
    now = now or timezone.now()
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    rows = (Job.objects.filter(state__in=Job.FINISHED, heartbeat_at__gte=now - window)
            .values_list("kind", "state", "started_at", "finished_at"))
    for kind, state, started, finished in rows:
        if started and finished:
            out[(kind, state)].append(max(0.0, (finished - started).total_seconds()))
    return dict(out)


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def jobs_stuck(*, now: datetime | None = None, limit: int = 50) -> list[Job]:
    """Running jobs whose task has not reported for OPS_JOB_STUCK_MINUTES (accounts.jobs_sweep
    fails them after its own, longer limit), and queued jobs no worker took for as long."""
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=_setting("OPS_JOB_STUCK_MINUTES", 5))
    running = Job.objects.filter(state=Job.State.RUNNING, heartbeat_at__lt=cutoff)
    queued = Job.objects.filter(state=Job.State.QUEUED, created_at__lt=cutoff)
    fields = ("id", "kind", "title", "state", "progress", "total", "created_at", "started_at", "heartbeat_at",
              "account__name")
    jobs = list(running.select_related("account").only(*fields).order_by("heartbeat_at")[:limit])
    jobs += list(queued.select_related("account").only(*fields).order_by("created_at")[:limit])
    return jobs


# --- ticks and workers ------------------------------------------------------------------------


def duration_label(seconds: float) -> str:
    """A short human duration: "45 s", "10 min", "1 h", "2 d 3 h"."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        hours = seconds / 3600
        return f"{hours:.0f} h" if hours.is_integer() or hours >= 10 else f"{hours:.1f} h"
    days, rest = divmod(int(seconds), 86400)
    return f"{days} d {rest // 3600} h" if rest >= 3600 else f"{days} d"


@dataclass(frozen=True)
class Tick:
    name: str
    task: str
    every: float  # seconds, from the beat schedule
    last: float | None  # epoch seconds of the last success
    lag: float | None  # seconds since it
    seconds: float | None  # how long the last run took

    @property
    def late(self) -> bool:
        """More than 3 periods (at least a minute) since the last success. A tick never seen is
        not "late" here (an hourly one has simply not run since the store was emptied); /readyz
        still fails for the mailings and scenarios ticks until they are seen."""
        return self.lag is not None and self.lag > max(3 * self.every, 60.0)

    @property
    def every_label(self) -> str:
        return duration_label(self.every)

    @property
    def lag_label(self) -> str:
        return "never" if self.lag is None else f"{duration_label(self.lag)} ago"

    @property
    def last_at(self) -> datetime | None:
        return None if self.last is None else datetime.fromtimestamp(self.last, tz=UTC)


def ticks() -> list[Tick]:
    """Every periodic task of the beat schedule with its last success. Raises the beacon
    store's error."""
    from cdp.celery import app

    seen = beacons.ticks()
    now = time.time()
    out = []
    for name, entry in sorted((app.conf.beat_schedule or {}).items()):
        schedule = entry["schedule"]
        every = schedule.total_seconds() if isinstance(schedule, timedelta) else float(
            getattr(getattr(schedule, "run_every", None), "total_seconds", lambda: 0)())
        record = seen.get(name)
        last = float(record["at"]) if record else None
        out.append(Tick(name, entry["task"], every, last, None if last is None else round(now - last, 1),
                        record.get("seconds") if record else None))
    return out
