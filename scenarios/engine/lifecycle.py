"""Taking participations out (goal, stopped, erased, merged), moving them to a newer version, and
the profiles' erasure and merge handlers. Set-based: one read and one conditional UPDATE per
chunk, the path rows closed and the counters added in the same transaction. Every change bumps
`seq`, so an engine task that read the row before has no effect on it afterwards."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from scenarios.models import Participation, PathEntry, Scenario, ScenarioVersion, Step

log = logging.getLogger(__name__)

CHUNK = 5000
OPEN = Participation.OPEN_STATES


def _close_paths(rows: Sequence[Mapping[str, Any]], now: datetime, outcome: str = "") -> None:
    """Close the path rows (participation "id", "seq") still open: left now, with `outcome` (or
    the row's own "outcome")."""
    from scenarios.engine.sql import values_update

    values_update(PathEntry, [{"pid": r["id"], "seq": r["seq"], "left_at": now,
                               "outcome": (r.get("outcome") or outcome)[:300]} for r in rows],
                  match={"participation": "pid", "seq": "seq"}, set_={"left_at": "left_at", "outcome": "outcome"},
                  where="t.left_at IS NULL")


def _exit_rows(ids: list[int], reason: str, now: datetime) -> list[tuple[int, int, int, int, int]]:
    """Exit these participations if still open, whatever step they stand on now (an exit is not
    conditioned on the seq read: the goal counts even while the engine moves the trip; on
    PostgreSQL the UPDATE waits for a running advance and applies to what it wrote). Returns
    (id, seq before, step id, account id, scenario id) of the rows exited."""
    table = connection.ops.quote_name(Participation._meta.db_table)
    prep = Participation._meta.get_field("finished_at").get_db_prep_value(now, connection)
    # One array parameter on PostgreSQL (thousands of placeholders cost more to bind than to run).
    if connection.vendor == "postgresql":
        among, id_params = "= ANY(%s)", [list(ids)]
    else:
        among, id_params = "IN (" + ", ".join(["%s"] * len(ids)) + ")", list(ids)
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {table} SET state = %s, exit_reason = %s, finished_at = %s, updated_at = %s, "  # noqa: S608 (placeholders only)
            f"next_run_at = NULL, lease_until = NULL, waiting_for = '', seq = seq + 1 "
            f"WHERE id {among} AND state IN ('active', 'waiting') "
            f"RETURNING id, seq - 1, step_id, account_id, scenario_id",
            [Participation.State.EXITED, reason[:32], prep, prep, *id_params])
        return [tuple(r) for r in cur.fetchall()]


def participations_exit(*, scenario_id: int | None, profile_ids: Sequence[int] | None, reason: str,
                        now: datetime | None = None) -> int:
    """Take open participations out: state EXITED with `reason` ("goal", "stopped", "erased", ...),
    their current path row closed ("exited: <reason>"), "exited" counted on their step.
    `scenario_id` None: in every scenario; `profile_ids` None: everyone in the scenario (stopping
    it; needs `scenario_id`). Returns how many exited."""
    from scenarios.engine.stats import stats_add

    if scenario_id is None and profile_ids is None:
        raise ValueError("participations_exit needs a scenario, profiles, or both")
    now = now or timezone.now()
    qs = Participation.objects.filter(state__in=OPEN)
    if scenario_id is not None:
        qs = qs.filter(scenario_id=scenario_id)
    if profile_ids is not None:
        if not profile_ids:
            return 0
        qs = qs.filter(profile_id__in=list(profile_ids))
    total, last = 0, 0
    while True:
        with transaction.atomic():
            ids = list(qs.filter(id__gt=last).order_by("id").values_list("id", flat=True)[:CHUNK])
            if not ids:
                break
            last = ids[-1]
            rows = _exit_rows(ids, reason, now)
            keys = dict(Step.objects.filter(id__in={r[2] for r in rows}).values_list("id", "key"))
            _close_paths([{"id": r[0], "seq": r[1]} for r in rows], now, f"exited: {reason}")
            stats_add(Counter((r[3], r[4], keys.get(r[2], ""), "exited") for r in rows))
            total += len(rows)
    return total


def participations_move(*, scenario: Scenario, to_version: ScenarioVersion, mapping: Mapping[str, str],
                        actor: Any = None, now: datetime | None = None) -> int:
    """Move the open participations of older versions whose current step key is in `mapping` to
    the mapped step of `to_version` (a newer published version): the same trip goes on there,
    ACTIVE and due now (a wait restarts at its new step). Unmapped ones finish on their version;
    a mapping to a key `to_version` lacks is ignored (logged). Counted as "exited" on the old key
    and "entered" on the new one; the path log says "moved to v<N> <key>". Returns how many
    moved."""
    from scenarios.engine.advance import PATH_FIELDS
    from scenarios.engine.entering import kick
    from scenarios.engine.sql import insert_ignore, values_update
    from scenarios.engine.stats import stats_add

    now = now or timezone.now()
    targets = {key: (sid, kind) for sid, key, kind in
               Step.objects.filter(version=to_version).values_list("id", "key", "kind")}
    usable = {old: new for old, new in mapping.items() if new in targets and not targets[new][1].startswith("entry.")}
    if len(usable) != len(mapping):
        log.warning("scenario %s: mapping %s names steps v%s lacks (or entry steps); those stay", scenario.pk,
                    {k: v for k, v in mapping.items() if k not in usable}, to_version.number)
    if not usable:
        return 0
    qs = (Participation.objects.filter(scenario_id=scenario.pk, state__in=OPEN, step__key__in=list(usable))
          .exclude(version_id=to_version.pk))
    total, last = 0, 0
    while True:
        with transaction.atomic():
            rows = list(qs.filter(id__gt=last).order_by("id")
                        .values("id", "seq", "account_id", "step__key")[:CHUNK])
            if not rows:
                break
            last = rows[-1]["id"]
            done = set(values_update(
                Participation,
                [{"id": r["id"], "seq": r["seq"], "new_seq": r["seq"] + 1, "version": to_version.pk,
                  "step": targets[usable[r["step__key"]]][0], "state": Participation.State.ACTIVE, "now": now,
                  "none": None, "blank": "", "zero": 0} for r in rows],
                match={"id": "id", "seq": "seq"},
                set_={"seq": "new_seq", "version": "version", "step": "step", "state": "state", "next_run_at": "now",
                      "updated_at": "now", "lease_until": "none", "wait": "none", "waiting_for": "blank",
                      "attempts": "zero"},
                where="t.state IN ('active', 'waiting')"))
            rows = [r for r in rows if r["id"] in done]
            _close_paths([{**r, "outcome": f"moved to v{to_version.number} {usable[r['step__key']]}"} for r in rows], now)
            insert_ignore(PathEntry, PATH_FIELDS, [(r["id"], to_version.number, usable[r["step__key"]], r["seq"] + 1, now,
                                                    None, "", "") for r in rows], returning=("id",))
            deltas: Counter[tuple[int, int, str, str]] = Counter()
            for r in rows:
                deltas[(r["account_id"], scenario.pk, r["step__key"], "exited")] += 1
                deltas[(r["account_id"], scenario.pk, usable[r["step__key"]], "entered")] += 1
            stats_add(deltas)
            kick([r["id"] for r in rows])
            total += len(rows)
    if total:
        log.info("scenario %s: moved %d participation(s) to v%s (by %s)", scenario.pk, total, to_version.number,
                 getattr(actor, "user", None) or "system")
    return total


def participations_erase(profile: Any) -> None:
    """Profiles' erasure handler: the profile's open trips exit ("erased") and every trip of it
    loses its data (context, wait): the rows stay so the figures add up, without personal data."""
    participations_exit(scenario_id=None, profile_ids=[profile.pk], reason="erased")
    Participation.objects.filter(profile_id=profile.pk).update(context={}, wait=None, error="")


def participations_merge(target: Any, source: Any) -> None:
    """Profiles' merge handler: the source's trips become the target's. Where both have an open
    exclusive trip in the same scenario, the source's exits ("merged"): a profile is in a
    scenario once."""
    both = set(Participation.objects.filter(profile_id=target.pk, state__in=OPEN, exclusive=True)
               .values_list("scenario_id", flat=True))
    clash = set(Participation.objects.filter(profile_id=source.pk, state__in=OPEN, exclusive=True,
                                             scenario_id__in=both).values_list("scenario_id", flat=True))
    for scenario_id in clash:
        participations_exit(scenario_id=scenario_id, profile_ids=[source.pk], reason="merged")
    Participation.objects.filter(profile_id=source.pk).update(profile_id=target.pk)
