"""Branching steps: condition (yes / no) and the random split (A/B tests)."""

from __future__ import annotations

import hashlib
from typing import Any

from django.db.models import Q

from mailings.models import LedgerEntry
from scenarios.engine.sql import id_list
from scenarios.engine.steps import Handler, Item, Outcome, StepRun, same
from segments.compiler import profiles_matching
from segments.conditions import Catalog, ConditionError, SegmentBroken, SegmentError, clean_conditions

# What a message test checks on this trip's ledger row. Later stages prove earlier ones: an open
# proves delivery, a click proves an open (images off: a click without an open pixel).
_MESSAGE_TESTS: dict[str, Q] = {
    "sent": Q(status=LedgerEntry.Status.SENT),
    "delivered": Q(delivered_at__isnull=False) | Q(opened_at__isnull=False) | Q(clicked_at__isnull=False),
    "opened": Q(opened_at__isnull=False) | Q(clicked_at__isnull=False),
    "clicked": Q(clicked_at__isnull=False),
}


def _answer(yes: bool, why: str = "") -> Outcome:
    text = "condition: yes" if yes else "condition: no"
    return Outcome(exit="yes" if yes else "no", outcome=f"{text} ({why})" if why else text)


def condition_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Exit "yes" or "no" per item. "segments": the segments compiler over the scenario's
    database, one query for the group (which of these profile ids match the tree). "message":
    this trip's ledger row of the named send step (`context["messages"][step]`), one query for
    the group; a trip that made no row there (no subscription, step not passed) answers no.
    A tree that no longer compiles (a field or segment deleted) fails the trips with the reason."""
    config = run.step.config or {}
    test = config.get("test") or "segments"
    if test == "message":
        return _message(run, items, config)
    if test != "segments":
        return same(Outcome(fail=f"unknown condition test {test!r}"), len(items))
    catalog = Catalog.load(run.scenario.database)
    try:
        tree = clean_conditions(config.get("conditions"), catalog, fill_salts=False)
        matching = set(profiles_matching(tree, catalog, now=run.now)
                       .filter(pk__in=id_list([i.profile_id for i in items])).values_list("pk", flat=True))
    except ConditionError as exc:
        problems = "; ".join(f"{path or 'conditions'}: {msg}" for path, msg in exc.errors.items())
        return same(Outcome(fail=f"the condition cannot be evaluated: {problems}"), len(items))
    except (SegmentBroken, SegmentError) as exc:
        return same(Outcome(fail=f"the condition cannot be evaluated: {exc}"), len(items))
    return [_answer(i.profile_id in matching) for i in items]


def _message(run: StepRun, items: list[Item], config: dict[str, Any]) -> list[Outcome]:
    key = str(config.get("step") or "")
    what = str(config.get("what") or "sent")
    test = _MESSAGE_TESTS.get(what)
    if test is None:
        return same(Outcome(fail=f"unknown message test {what!r} (sent, delivered, opened or clicked)"), len(items))
    rows: dict[int, int] = {}
    for item in items:
        ledger_id = (item.context.get("messages") or {}).get(key)
        if isinstance(ledger_id, int):
            rows[item.id] = ledger_id
    passed = set(LedgerEntry.objects.filter(test, pk__in=id_list(sorted(set(rows.values()))),
                                            account_id=run.scenario.account_id)
                 .values_list("pk", flat=True)) if rows else set()
    out = []
    for item in items:
        if item.id not in rows:
            out.append(_answer(False, f"no message from {key}"))
        else:
            out.append(_answer(rows[item.id] in passed, f"{what}: ledger #{rows[item.id]}"))
    return out


def split_bucket(participation_id: int, step_key: str) -> int:
    """0..9999, fixed for a (participation, step): the same trip always takes the same branch."""
    digest = hashlib.sha256(f"{participation_id}:{step_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def split_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Each item down one branch, by weight: deterministic by (participation id, step key), so
    a repeated call takes the same branch, and the shares follow the weights over many trips."""
    branches = [b for b in (run.step.config or {}).get("branches") or []
                if isinstance(b, dict) and b.get("exit") and _weight(b) > 0]
    total = sum(_weight(b) for b in branches)
    if not branches or total <= 0:
        return same(Outcome(fail="the split has no branch with a weight"), len(items))
    out = []
    for item in items:
        point = split_bucket(item.id, run.step.key) * total / 10_000
        acc = 0.0
        chosen = branches[-1]
        for b in branches:
            acc += _weight(b)
            if point < acc:
                chosen = b
                break
        label = str(chosen.get("label") or str(chosen["exit"]).upper())
        out.append(Outcome(exit=str(chosen["exit"]), outcome=f"split: {label}"))
    return out


def _weight(branch: dict[str, Any]) -> float:
    try:
        return max(float(branch.get("weight") or 0), 0.0)
    except (TypeError, ValueError):
        return 0.0


HANDLERS: dict[str, Handler] = {"condition": condition_run, "split": split_run}
