"""Moving participations through their steps, a batch at a time.

`participations_advance(ids=...)` is the body of one engine task: claim the rows still due (on
PostgreSQL `FOR UPDATE SKIP LOCKED`, so a second worker given the same batch skips them), group
them by (version, step), run each group's handler (`scenarios.engine.steps.run_group`) and apply
the outcomes in memory — steps that finish at once (everything but a wait whose time has not
come) go on in the same call, up to MAX_ROUNDS — then write everything in bulk: the
participations' UPDATE, each row conditioned on the `seq` read (a row somebody else moved
meanwhile is left alone), the path rows of the winners and the counters — on PostgreSQL in ONE
statement (data-modifying CTEs over JSON recordsets), on SQLite in four. A redelivered batch
therefore has no second effect: the rows are no longer due, or their `seq` moved on, and the
handlers' side effects are keyed by (participation, seq).

Cost per batch (the claim is one query with the ids as one parameter, no model instance per row;
scenarios, versions, steps and transitions are loaded once per batch): see `participations_advance`.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from cdp import confcache
from scenarios.models import Participation, PathEntry, Scenario, ScenarioVersion, Step, StepStat, Transition

log = logging.getLogger(__name__)

# Back-off of a step that asked to be retried: after the 1st, 2nd, 3rd, 4th failure; the next fails the trip.
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(hours=1), timedelta(hours=6))
MAX_ROUNDS = 50  # steps one participation may take in one call (the rest: the next task or tick)
OPEN = (Participation.State.ACTIVE, Participation.State.WAITING)
PATH_FIELDS = ("participation", "version_number", "step_key", "seq", "entered_at", "left_at", "exit", "outcome")


@dataclass
class _Path:
    seq: int
    step_key: str
    version_number: int
    entered_at: datetime
    left_at: datetime | None = None
    exit: str = ""
    outcome: str = ""
    existing: bool = False  # the row is in the database already (the step the trip stood on)


@dataclass(slots=True)
class _Row:
    """What the claim read of a participation (plain values: no model instance per row)."""

    id: int
    profile_id: int
    account_id: int
    scenario_id: int
    version_id: int
    entered_at: datetime
    scenario: Scenario
    version: ScenarioVersion


@dataclass(slots=True)
class _Trip:
    """A participation being advanced: what was read (`seq0`) and what it becomes."""

    row: _Row
    seq0: int
    step_id: int
    state: str
    seq: int
    attempts: int
    next_run_at: datetime | None
    waiting_for: str
    wait: dict[str, Any] | None
    context: dict[str, Any]
    day: date | None
    moves_today: int
    error: str
    exit_reason: str
    finished_at: datetime | None
    step_entered_at: datetime | None
    path: list[_Path] = field(default_factory=list)
    stats: Counter[tuple[str, str]] = field(default_factory=Counter)
    lease_until: datetime | None = None

    def values(self, now: datetime) -> dict[str, Any]:
        return {"id": self.row.id, "seq0": self.seq0, "step": self.step_id, "state": self.state, "seq": self.seq,
                "attempts": self.attempts, "next_run_at": self.next_run_at, "lease_until": self.lease_until,
                "waiting_for": self.waiting_for, "wait": self.wait, "context": self.context, "day": self.day,
                "moves_today": self.moves_today, "error": self.error, "exit_reason": self.exit_reason,
                "updated_at": now, "finished_at": self.finished_at}


_SET = {c: c for c in ("step", "state", "seq", "attempts", "next_run_at", "lease_until", "waiting_for", "wait",
                       "context", "day", "moves_today", "error", "exit_reason", "updated_at", "finished_at")}
# What the claim reads of a participation, and (a correlated subquery) when it came to its step.
_READ = ("id", "profile_id", "account_id", "scenario_id", "version_id", "entered_at", "step_id", "state", "seq",
         "attempts", "next_run_at", "waiting_for", "wait", "context", "day", "moves_today", "error", "exit_reason",
         "finished_at", "here_at")


_GRAPHS: OrderedDict[tuple[int, datetime], tuple[dict[int, Step], dict[tuple[int, str], int]]] = confcache.register(
    OrderedDict())


class _Graph:
    """The steps and transitions of the versions a batch stands on. A published version is frozen
    (only a draft is edited; publishing makes a new version), so its part is kept per process,
    keyed by (version id, publication time): a one-trip advance (an event's entry, a released
    wait) then reads no graph at all. Drafts (a test may run one) and what is not cached yet: two
    queries. Steps are read-only to the handlers; a send step reads its mailing itself. The cache is
    a `cdp.confcache` one: emptied with the configuration (and between tests, where ids and frozen
    clocks repeat)."""

    _cache = _GRAPHS
    CACHE_SIZE = 256  # versions a process keeps

    def __init__(self, versions: Sequence[ScenarioVersion]) -> None:
        self.steps: dict[int, Step] = {}
        self.next: dict[tuple[int, str], int] = {}
        missing: set[int] = set()
        for v in versions:
            key = self._key(v)
            part = self._cache.get(key) if key else None
            if part is None:
                missing.add(v.pk)
                continue
            with contextlib.suppress(KeyError):  # another thread evicted it meanwhile: it is ours anyway
                self._cache.move_to_end(key)
            self.steps.update(part[0])
            self.next.update(part[1])
        if not missing:
            return
        steps = list(Step.objects.filter(version_id__in=missing))
        edges = list(Transition.objects.filter(version_id__in=missing).values_list("version_id", "source_id", "exit",
                                                                                   "target_id"))
        for v in versions:
            if v.pk not in missing:
                continue
            part = ({s.pk: s for s in steps if s.version_id == v.pk},
                    {(src, ex): tgt for vid, src, ex, tgt in edges if vid == v.pk})
            self.steps.update(part[0])
            self.next.update(part[1])
            key = self._key(v)
            if key:
                self._cache[key] = part
                while len(self._cache) > self.CACHE_SIZE:
                    with contextlib.suppress(KeyError):
                        self._cache.popitem(last=False)

    @staticmethod
    def _key(version: ScenarioVersion) -> tuple[int, datetime] | None:
        if version.state == ScenarioVersion.State.DRAFT or version.published_at is None:
            return None
        return (version.pk, version.published_at)


def _claim(ids: Sequence[int], now: datetime) -> list[tuple[Any, ...]]:
    """The rows of `ids` still due (open, next_run_at <= now), locked (PostgreSQL: rows another
    worker holds are skipped), in id order, as `_READ` tuples: one query, the ids as one parameter
    (`id_list`) and each row's arrival at its step by a correlated lookup of its current path row
    (None: the path row is missing)."""
    from scenarios.engine.sql import id_list

    here = PathEntry.objects.filter(participation_id=OuterRef("id"), seq=OuterRef("seq")).values("entered_at")[:1]
    qs = (Participation.objects.filter(id__in=id_list(ids), state__in=OPEN, next_run_at__lte=now)
          .annotate(here_at=Subquery(here)).order_by("id").values_list(*_READ))
    if connection.vendor == "postgresql":
        qs = qs.select_for_update(skip_locked=True, of=("self",))
    return list(qs)


class _Run:
    """One call's work: the trips, the graph, what to write."""

    def __init__(self, trips: list[_Trip], now: datetime) -> None:
        self.trips = trips
        self.now = now
        self.today = now.astimezone(UTC).date()
        self.graph = _Graph(list({t.row.version_id: t.row.version for t in trips}.values()))

    # --- applying outcomes -------------------------------------------------------------------------

    def _close(self, trip: _Trip, state: str, *, reason: str = "", error: str = "") -> None:
        trip.state, trip.exit_reason, trip.error = state, reason, error
        trip.next_run_at, trip.waiting_for, trip.wait, trip.finished_at = None, "", None, self.now
        trip.path[-1].left_at = trip.path[-1].left_at or self.now

    def fail(self, trip: _Trip, step: Step, error: str, *, reason: str = "failed", outcome: str = "") -> None:
        self._close(trip, Participation.State.FAILED, reason=reason, error=error)
        trip.path[-1].outcome = (outcome or f"failed: {error}")[:300]
        trip.stats[(step.key, "failed")] += 1

    def apply(self, trip: _Trip, step: Step, o: Any) -> bool:
        """Apply one Outcome; True when the trip moved on and should run its next step now."""
        here = trip.path[-1]
        if o.context:
            trip.context = {**trip.context, **o.context}
        if o.fail:
            self.fail(trip, step, o.fail, outcome=o.outcome)
            return False
        if o.retry:
            if trip.attempts >= len(BACKOFF):
                self.fail(trip, step, f"gave up after {trip.attempts + 1} attempts: {o.retry}")
                return False
            trip.attempts += 1
            trip.state, trip.next_run_at = Participation.State.ACTIVE, self.now + BACKOFF[trip.attempts - 1]
            here.outcome = f"retry {trip.attempts}: {o.retry}"[:300]
            return False
        if o.exit:
            here.left_at, here.exit, here.outcome = self.now, o.exit[:32], (o.outcome or here.outcome)[:300]
            trip.stats[(step.key, "passed")] += 1
            target_id = self.graph.next.get((step.id, o.exit))
            target = self.graph.steps.get(target_id) if target_id else None
            if target is None or step.kind == "exit":
                self._close(trip, Participation.State.COMPLETED, reason="completed")
                return False
            trip.seq += 1
            trip.moves_today += 1
            trip.step_id, trip.attempts, trip.wait, trip.waiting_for = target.id, 0, None, ""
            trip.state, trip.next_run_at, trip.step_entered_at = Participation.State.ACTIVE, self.now, self.now
            trip.path.append(_Path(seq=trip.seq, step_key=target.key, version_number=trip.row.version.number,
                                   entered_at=self.now))
            trip.stats[(target.key, "entered")] += 1
            return True
        if o.wait_until is not None or o.waiting_for:
            trip.state, trip.next_run_at = Participation.State.WAITING, o.wait_until
            trip.waiting_for, trip.wait = o.waiting_for[:100], o.wait
            here.outcome = (o.outcome or here.outcome)[:300]
            return False
        # Nothing to do any more (an exit step, or a step with no way on): the trip is complete.
        here.outcome = (o.outcome or here.outcome)[:300]
        trip.stats[(step.key, "passed")] += 1
        self._close(trip, Participation.State.COMPLETED, reason="completed")
        return False

    # --- the loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        from scenarios.engine.steps import Item, Outcome, StepRun, run_group

        active = list(self.trips)
        for _ in range(MAX_ROUNDS):
            if not active:
                break
            groups: dict[int, list[_Trip]] = defaultdict(list)
            for trip in active:
                step = self.graph.steps.get(trip.step_id)
                if step is None:  # cannot happen with PROTECT; never loop on it
                    log.error("scenarios: participation %s stands on no step", trip.row.id)
                    continue
                if trip.day != self.today:
                    trip.day, trip.moves_today = self.today, 0
                limit = trip.row.scenario.step_limit
                if trip.moves_today >= limit and step.kind != "exit":
                    self.fail(trip, step, f"the step limit was reached: {trip.moves_today} moves today (the scenario "
                                          f"allows {limit} a day; does a loop pass no wait?)", reason="step_limit")
                    continue
                groups[step.id].append(trip)
            moving: list[_Trip] = []
            for step_id, trips in groups.items():
                step = self.graph.steps[step_id]
                row = trips[0].row
                run = StepRun(scenario=row.scenario, version=row.version, step=step, now=self.now)
                items = [Item(id=t.row.id, profile_id=t.row.profile_id, account_id=t.row.account_id,
                              scenario_id=t.row.scenario_id, version_id=t.row.version_id, seq=t.seq,
                              attempts=t.attempts, context=dict(t.context), wait=t.wait, entered_at=t.row.entered_at,
                              step_entered_at=t.step_entered_at)
                         for t in trips]
                try:
                    outcomes = run_group(run, items)
                except Exception as exc:  # a handler bug: back off and fail in the end, never lose the batch
                    log.exception("scenarios: step %s (%s) raised for %d participations", step.key, step.kind,
                                  len(items))
                    outcomes = [Outcome(retry=f"internal error: {type(exc).__name__}") for _ in items]
                for trip, outcome in zip(trips, outcomes, strict=True):
                    if self.apply(trip, step, outcome):
                        moving.append(trip)
            active = moving

    # --- writing -----------------------------------------------------------------------------------

    def write(self) -> list[int]:
        """Write the trips conditioned on the seq read; path rows and counters only for the rows
        written. Returns the ids still due now (to hand on; they get the tick's hand-out lease so
        the tick does not hand them out again while their task waits)."""
        from scenarios.engine.tick import HANDOUT_LEASE

        again = {t.row.id for t in self.trips
                 if t.state == Participation.State.ACTIVE and t.next_run_at is not None and t.next_run_at <= self.now}
        for t in self.trips:
            t.lease_until = self.now + HANDOUT_LEASE if t.row.id in again else None
        paths = [(t.row.id, p.version_number, p.step_key, p.seq, p.entered_at, p.left_at, p.exit, p.outcome)
                 for t in self.trips for p in t.path if not p.existing or p.left_at or p.outcome]
        stats = [(t.row.id, t.row.account_id, t.row.scenario_id, key, metric, n)
                 for t in self.trips for (key, metric), n in t.stats.items() if n]
        if connection.vendor == "postgresql":
            won = set(_write_pg([t.values(self.now) for t in self.trips], paths, _totals(stats, None)))
            if len(won) < len(self.trips):  # the counters went only with a full house: the winners' now
                from scenarios.engine.stats import stats_add

                stats_add(_totals(stats, won))
        else:
            won = self._write_portable(paths, stats)
        lost = [t.row.id for t in self.trips if t.row.id not in won]
        if lost:
            log.info("scenarios: %d participation(s) were moved by someone else meanwhile: %s", len(lost), lost[:20])
        return [pid for pid in sorted(again) if pid in won]

    def _write_portable(self, paths: list[tuple[Any, ...]], stats: list[tuple[Any, ...]]) -> set[int]:
        """The write in four statements (SQLite: no round trips to save)."""
        from scenarios.engine.sql import insert_ignore, values_update
        from scenarios.engine.stats import stats_add

        won = set(values_update(Participation, [t.values(self.now) for t in self.trips],
                                match={"id": "id", "seq": "seq0"}, set_=_SET,
                                where="t.state IN ('active', 'waiting')"))
        existing = {(t.row.id, t.seq0) for t in self.trips if t.path and t.path[0].existing}
        updates = [{"pid": r[0], "seq": r[3], "left_at": r[5], "exit": r[6], "outcome": r[7]}
                   for r in paths if r[0] in won and (r[0], r[3]) in existing]
        values_update(PathEntry, updates, match={"participation": "pid", "seq": "seq"},
                      set_={"left_at": "left_at", "exit": "exit", "outcome": "outcome"})
        insert_ignore(PathEntry, PATH_FIELDS, [r for r in paths if r[0] in won and (r[0], r[3]) not in existing],
                      returning=("id",))
        stats_add(_totals(stats, won))
        return won


def _totals(stats: list[tuple[Any, ...]], won: set[int] | None) -> Counter[tuple[int, int, str, str]]:
    """The counter deltas of the trips `won` (None: all of them), summed per (account, scenario,
    step key, metric)."""
    deltas: Counter[tuple[int, int, str, str]] = Counter()
    for pid, account_id, scenario_id, key, metric, n in stats:
        if won is None or pid in won:
            deltas[(account_id, scenario_id, key, metric)] += n
    return deltas


# The jsonb_to_recordset keys of the participations' new values (made once, not per row).
_V_KEYS = tuple((k, f"c_{k}") for k in _SET)


def _write_pg(rows: list[dict[str, Any]], paths: list[tuple[Any, ...]],
              totals: Counter[tuple[int, int, str, str]]) -> list[int]:
    """PostgreSQL: the participations' conditional UPDATE, the path rows (new ones inserted, the
    row of the step left updated: one upsert on (participation, seq)) for the rows the UPDATE
    wrote, and the counters `totals` (all the trips' deltas) only if it wrote every row (else the
    caller adds the winners' own), in ONE statement (data-modifying CTEs), each set as one JSON
    parameter. Returns the ids written."""
    from scenarios.engine.sql import pg_columns, to_json

    qn = connection.ops.quote_name
    p_meta, path_meta, st = Participation._meta, PathEntry._meta, StepStat._meta
    set_fields = [p_meta.get_field(f) for f in _SET]
    v_cols = pg_columns([("id", p_meta.pk), ("seq0", p_meta.get_field("seq"))] + [(f"c_{f.name}", f) for f in set_fields])
    sets = ", ".join(f"{qn(f.column)} = v.c_{f.name}" for f in set_fields)
    path_fields = [path_meta.get_field(f) for f in PATH_FIELDS]
    r_keys = [f"c_{f.name}" for f in path_fields]
    r_cols = pg_columns(list(zip(r_keys, path_fields, strict=True)))
    s_cols = pg_columns([("a", st.get_field("account_id")), ("s", st.get_field("scenario_id")),
                         ("k", st.get_field("step_key")), ("m", st.get_field("metric")), ("n", st.get_field("n"))])
    doc_v = to_json([{"id": r["id"], "seq0": r["seq0"], **{key: r[k] for k, key in _V_KEYS}} for r in rows])
    doc_r = to_json([dict(zip(r_keys, r, strict=True)) for r in paths])
    doc_s = to_json([{"a": a, "s": sc, "k": k, "m": m, "n": n} for (a, sc, k, m), n in totals.items() if n])
    ids = "{" + ",".join(str(r["id"]) for r in rows) + "}"
    participation, pathentry, stepstat = qn(p_meta.db_table), qn(path_meta.db_table), qn(st.db_table)
    # Names and placeholders only in the SQL text. `t.id = ANY(ids)` lets the planner find the rows
    # by primary key (it cannot estimate the recordset: it would scan every open participation).
    sql = (
        f"WITH v AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS v({v_cols})), "  # noqa: S608
        f"upd AS (UPDATE {participation} AS t SET {sets} FROM v WHERE t.id = ANY(%s::bigint[]) AND t.id = v.id "
        f"AND t.seq = v.seq0 AND t.state IN ('active', 'waiting') RETURNING t.id), "
        f"r AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS r({r_cols})), "
        f"ins_r AS (INSERT INTO {pathentry} ({', '.join(qn(f.column) for f in path_fields)}) "
        f"SELECT {', '.join(f'r.{k}' for k in r_keys)} FROM r JOIN upd ON upd.id = r.c_participation "
        f"ON CONFLICT (participation_id, seq) DO UPDATE SET left_at = EXCLUDED.left_at, exit = EXCLUDED.exit, "
        f"outcome = EXCLUDED.outcome), "
        f"ins_s AS (INSERT INTO {stepstat} (account_id, scenario_id, step_key, metric, n, compacted) "
        f"SELECT s.a, s.s, s.k, s.m, s.n, false FROM jsonb_to_recordset(%s::jsonb) AS s({s_cols}) "
        f"WHERE (SELECT COUNT(*) FROM upd) = %s) "
        f"SELECT id FROM upd")
    with connection.cursor() as cur:
        cur.execute(sql, [doc_v, ids, doc_r, doc_s, len(rows)])
        return [r[0] for r in cur.fetchall()]


def participations_advance(*, ids: Sequence[int], now: datetime | None = None) -> int:
    """Advance the participations `ids` that are still due (the body of one engine task; safe to
    run twice or concurrently for the same ids). Participations of a scenario that is not active
    (paused) are released untouched: they wait where they are. Returns how many were advanced.

    Per batch: one claim query, one query each for the scenarios, versions, steps and transitions
    involved, the step handlers' own (a fixed number per group), and one write (PostgreSQL; four
    on SQLite)."""
    from scenarios.engine.entering import kick

    now = now or timezone.now()
    if not ids:
        return 0
    with transaction.atomic():
        read = _claim(ids, now)
        if not read:
            return 0
        # One object per scenario and version for the whole batch (not one per row, as a join would make).
        scenarios = Scenario.objects.in_bulk({r[3] for r in read})
        held = [r[0] for r in read if scenarios[r[3]].state != Scenario.State.ACTIVE]
        if held:
            Participation.objects.filter(id__in=held).update(lease_until=None)
            read = [r for r in read if scenarios[r[3]].state == Scenario.State.ACTIVE]
            if not read:
                return 0
        versions = ScenarioVersion.objects.in_bulk({r[4] for r in read})
        trips = []
        for (pid, profile_id, account_id, scenario_id, version_id, entered_at, step_id, state, seq, attempts,
             next_run_at, waiting_for, wait, context, day, moves_today, error, exit_reason, finished_at,
             here_at) in read:
            row = _Row(id=pid, profile_id=profile_id, account_id=account_id, scenario_id=scenario_id,
                       version_id=version_id, entered_at=entered_at, scenario=scenarios[scenario_id],
                       version=versions[version_id])
            trips.append(_Trip(row=row, seq0=seq, step_id=step_id, state=state, seq=seq, attempts=attempts,
                               next_run_at=next_run_at, waiting_for=waiting_for, wait=wait,
                               context=dict(context or {}), day=day, moves_today=moves_today, error=error,
                               exit_reason=exit_reason, finished_at=finished_at, step_entered_at=here_at))
        run = _Run(trips, now)
        for trip in trips:
            step = run.graph.steps.get(trip.step_id)
            trip.path.append(_Path(seq=trip.seq, step_key=step.key if step else "", version_number=trip.row.version.number,
                                   entered_at=trip.step_entered_at or now, existing=trip.step_entered_at is not None))
        run.run()
        again = run.write()
        kick(again)
    return len(read)
