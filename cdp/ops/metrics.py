"""/metrics in the Prometheus text exposition format (version 0.0.4), written by hand: a dozen
families computed at scrape time need no client library and no process-global registry (which
would be per gunicorn worker and disagree between scrapes).

Every family is computed from the cheap reads of status.py; a family whose source is down (the
broker, the beacon store) is left out with a `# cdp: ... unavailable` comment line and
`cdp_scrape_error{source}` set to 1, so one outage does not blank the whole scrape.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

from cdp.ops import beacons, queues, status

log = logging.getLogger(__name__)

Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Exposition:
    """Collects metric families and renders them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.errors: dict[str, int] = {}

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        self.lines.append(f"# HELP {name} {_escape(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")

    def section(self, source: str, build: Callable[[], None]) -> None:
        """Run `build` (which adds families); on failure note the source as unavailable."""
        try:
            build()
            self.errors[source] = 0
        except Exception as exc:  # one source down must not cost the others
            log.warning("metrics: %s unavailable: %s", source, type(exc).__name__)
            self.lines.append(f"# cdp: {source} unavailable ({type(exc).__name__})")
            self.errors[source] = 1

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def collect() -> str:
    """The whole exposition, as text."""
    started = time.monotonic()
    out = Exposition()

    def _queues() -> None:
        states = queues.queue_states()
        out.family("cdp_queue_length", "gauge", "Messages waiting in a Celery queue (not yet taken by a worker).",
                   [({"queue": s.name}, s.length) for s in states])
        out.family("cdp_queue_oldest_age_seconds", "gauge",
                   "Age of the oldest waiting message of a queue (0 when empty): the queue's lag.",
                   [({"queue": s.name}, s.oldest_age or 0.0) for s in states])

    def _workers() -> None:
        seen = beacons.workers()
        per_queue = dict.fromkeys(queues.queue_names(), 0)
        for record in seen.values():
            for q in record.get("queues", []):
                per_queue[q] = per_queue.get(q, 0) + 1
        out.family("cdp_workers_seen", "gauge", "Celery workers whose heartbeat is recent.", [({}, len(seen))])
        out.family("cdp_queue_workers", "gauge", "Workers seen that consume a queue.",
                   [({"queue": q}, n) for q, n in per_queue.items()])

    def _ticks() -> None:
        ticks = status.ticks()
        out.family("cdp_tick_lag_seconds", "gauge",
                   "Seconds since a periodic task last succeeded (NaN: never seen).",
                   [({"tick": t.name}, float("nan") if t.lag is None else t.lag) for t in ticks])
        out.family("cdp_tick_interval_seconds", "gauge", "A periodic task's period in the beat schedule.",
                   [({"tick": t.name}, t.every) for t in ticks])

    def _mailings() -> None:
        from mailings.models import LedgerEntry

        sums = status.counter_sums()
        out.family("cdp_sends_total", "counter",
                   "Ledger rows settled, per channel and outcome (the mailings' counters).",
                   [({"channel": c, "outcome": o}, n) for c, o, n in sorted(sums["sends"])])
        rows = status.ledger_rows(sends=sums["sends"])
        out.family("cdp_ledger_rows", "gauge",
                   "Send ledger rows by status: queued/sending counted by index, the rest from counters.",
                   [({"status": k}, v) for k, v in rows.items()])
        estimate = status.table_estimate(LedgerEntry)
        if estimate is not None:
            out.family("cdp_ledger_rows_estimate", "gauge", "The ledger table's size, the planner's estimate.",
                       [({}, estimate)])
        out.family("cdp_mailing_runs", "gauge", "Runs planning or sending.",
                   [({"state": k}, v) for k, v in status.runs_active().items()])

    def _scenarios() -> None:
        sums = status.counter_sums()
        out.family("cdp_participations", "gauge", "Open scenario participations by state.",
                   [({"state": k}, v) for k, v in status.participations_open().items()])
        out.family("cdp_participations_failed_total", "counter",
                   "Participations that failed at a step (the engine's per-step counters).",
                   [({}, sums["participations_failed"])])

    def _jobs() -> None:
        finished = status.jobs_finished()
        count, total, quant = [], [], []
        for (kind, state), durations in sorted(finished.items()):
            labels = {"kind": kind, "state": state}
            count.append((labels, len(durations)))
            total.append((labels, round(sum(durations), 3)))
            for q in (0.5, 0.95, 1.0):
                quant.append(({**labels, "quantile": str(q)}, round(status.quantile(durations, q), 3)))
        out.family("cdp_jobs_finished_last_hour", "gauge", "Background jobs finished in the last hour.", count)
        out.family("cdp_job_duration_seconds_sum_last_hour", "gauge",
                   "Total run time of the background jobs finished in the last hour.", total)
        out.family("cdp_job_duration_seconds", "gauge",
                   "Run time quantiles (0.5, 0.95, 1 = max) of the jobs finished in the last hour.", quant)
        out.family("cdp_jobs_stuck", "gauge", "Jobs running without progress or queued and not started for long.",
                   [({}, len(status.jobs_stuck()))])

    out.section("broker", _queues)
    out.section("workers", _workers)
    out.section("ticks", _ticks)
    out.section("mailings", _mailings)
    out.section("scenarios", _scenarios)
    out.section("jobs", _jobs)
    out.family("cdp_scrape_error", "gauge", "1 when a source of this scrape was unavailable.",
               [({"source": k}, v) for k, v in out.errors.items()])
    out.family("cdp_scrape_duration_seconds", "gauge", "How long this scrape took to compute.",
               [({}, round(time.monotonic() - started, 4))])
    return out.render()
