"""Per-step counters of a scenario as deltas (models.StepStat): written in bulk by the engine in
the transaction that moves the participations, summed by the report, compacted by housekeeping so
a step keeps one row per metric however many profiles passed it.

Metrics: entered (came to the step), passed (left it by an exit), exited (taken out while there:
goal, stopped, erased, moved), failed (a step failure after its retries, or the step limit).
"In it now" is not a counter: it is the open participations grouped by step (`step_counts`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db.models import Count, Sum

from cdp.counters import deltas_compact
from scenarios.models import Participation, Scenario, StepStat

METRICS = ("entered", "passed", "exited", "failed")
StatKey = tuple[int, int, str, str]  # account id, scenario id, step key, metric


def stats_add(deltas: Mapping[StatKey, int] | Iterable[tuple[StatKey, int]]) -> int:
    """Add counter deltas (zeros dropped) in one INSERT. Returns the rows written."""
    items = deltas.items() if isinstance(deltas, Mapping) else deltas
    rows = [StepStat(account_id=a, scenario_id=s, step_key=k, metric=m, n=n) for (a, s, k, m), n in items if n]
    if rows:
        StepStat.objects.bulk_create(rows)
    return len(rows)


def step_counts(scenario: Scenario) -> dict[str, dict[str, int]]:
    """{step key: {"now": open participations there, "entered", "passed", "exited", "failed"}}
    over every version (keys are stable across versions). Two queries."""
    out: dict[str, dict[str, int]] = {}
    for key, metric, total in (StepStat.objects.filter(scenario_id=scenario.pk)
                               .values_list("step_key", "metric").annotate(total=Sum("n"))):
        if total:
            out.setdefault(key, {})[metric] = out.get(key, {}).get(metric, 0) + int(total)
    for key, n in (Participation.objects.filter(scenario_id=scenario.pk, state__in=Participation.OPEN_STATES)
                   .values_list("step__key").annotate(n=Count("id"))):
        if key:
            out.setdefault(key, {})["now"] = n
    for counts in out.values():
        for metric in ("now", *METRICS):
            counts.setdefault(metric, 0)
    return out


def stats_compact(*, scenario_id: int | None = None, min_rows: int = 200) -> int:
    """Fold the deltas of each scenario with at least `min_rows` rows (or of the one named) into one
    compacted row per (step key, metric): `cdp.counters.deltas_compact`. Safe beside concurrent
    writers. Returns how many rows it removed."""
    return deltas_compact(StepStat, owner="scenario_id", keys=("account_id", "step_key", "metric"), value="n",
                          owner_id=scenario_id, min_rows=min_rows, extra={"compacted": True})
