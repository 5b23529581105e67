"""Editing a scenario's graph: its draft version, steps and transitions.

Only a DRAFT version is editable; `draft_get_or_create` makes one (a copy of the live version:
same step keys, configs, positions and transitions) when the scenario has none, so editing an
active scenario never touches what profiles are moving through. Step keys ("s7") are unique
across all versions of a scenario: a new step takes the next free number, a copied step keeps
its key (counters, mappings and path logs name steps by key).

These services check shapes (a known kind, a config object, an exit the step has, a target in
the same version); whether the graph can be published is `validation.version_validate`. Each
write is atomic and audited ("scenario.edited", with what changed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from scenarios.graph import ENTRY_KINDS, SPLIT_EXITS, STEP_KINDS, exits_of
from scenarios.models import Scenario, ScenarioVersion, Step, Transition
from scenarios.services.errors import ScenarioError

MAX_CELL = 999  # the diagram's grid: columns and rows 0..999
KEY_RE = re.compile(r"^s(\d{1,6})$")

# What a new step of a kind starts with (the editor's forms fill in the rest; validation says what is missing).
DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "entry.segment": {"segment_id": None, "members_at_start": False},
    "entry.event": {"type": "", "filters": []},
    "entry.subscription": {"resource_id": None, "channel": "email"},
    "send": {"channel": "email", "resource_id": None, "template_id": None, "sender_id": None, "provider_id": None,
             "transactional": False, "track_opens": True, "track_clicks": True},
    "wait": {"mode": "duration", "seconds": 86400},
    "wait_event": {"type": "", "filters": [], "timeout_seconds": 7 * 86400},
    "condition": {"test": "segments", "conditions": {"type": "group", "op": "and", "items": []}},
    "split": {"branches": [{"exit": "a", "label": "A", "weight": 50}, {"exit": "b", "label": "B", "weight": 50}]},
    "update": {"values": {}},
    "subscription": {"resource_id": None, "channel": "email", "status": "unsubscribed"},
    "segment": {"segment_id": None, "action": "add"},
    "webhook": {"url": "", "timeout_seconds": 10, "retries": 3},
}


def _actor(actor: Actor | None) -> Actor:
    return actor if actor is not None else Actor.system()


def _lock_version(version: ScenarioVersion) -> ScenarioVersion:
    """The version row locked for this transaction (edits of one draft, and its publishing, go one
    at a time: no step lands in a version being published, no two new steps take one key). The
    scenario row is locked first, as publishing and the state machine lock it: one lock order."""
    scenario_id = version.scenario_id if version.scenario_id else (
        ScenarioVersion.objects.filter(pk=version.pk).values_list("scenario_id", flat=True).get())
    list(Scenario.objects.select_for_update().filter(pk=scenario_id).values_list("pk", flat=True))
    return ScenarioVersion.objects.select_for_update().select_related("scenario").get(pk=version.pk)


def _editable(version: ScenarioVersion) -> None:
    if version.state != ScenarioVersion.State.DRAFT:
        raise ScenarioError(f"Version {version.number} is {version.get_state_display().lower()}: only the draft can be "
                            "edited (a change to a live scenario is made in its draft, then published).")


def _touch(version: ScenarioVersion, actor: Actor | None, action: str, **data: Any) -> None:
    now = timezone.now()
    Scenario.objects.filter(pk=version.scenario_id).update(updated_at=now)
    audit_log(account=version.account, actor=_actor(actor), verb="scenario.edited", target=version.scenario,
              data={"version": version.number, "action": action, **data})


def _cell(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CELL:
        raise ScenarioError({what: f"a whole number from 0 to {MAX_CELL}"})
    return value


def _config(kind: str, config: Any) -> dict[str, Any]:
    if config is None:
        return dict(DEFAULT_CONFIGS.get(kind, {}))
    if not isinstance(config, Mapping):
        raise ScenarioError({"config": "the step's settings must be an object"})
    return dict(config)


def _title(title: Any) -> str:
    text = str(title or "").strip()
    if len(text) > 200:
        raise ScenarioError({"title": "at most 200 characters"})
    return text


def next_keys(scenario: Scenario, n: int = 1) -> list[str]:
    """The next `n` free step keys of the scenario ("s<N>" above every key any version used)."""
    top = 0
    for key in Step.objects.filter(version__scenario=scenario).values_list("key", flat=True):
        m = KEY_RE.match(key)
        if m:
            top = max(top, int(m.group(1)))
    return [f"s{top + i}" for i in range(1, n + 1)]


# --- the draft ------------------------------------------------------------------------------------


def _copy_graph(source: ScenarioVersion, target: ScenarioVersion) -> None:
    """Steps (keys, kinds, titles, configs, positions; not the send steps' mailings: publishing
    decides those) and transitions of `source` into the empty `target`."""
    steps = list(Step.objects.filter(version=source).order_by("id"))
    copies = Step.objects.bulk_create([
        Step(account_id=target.account_id, version=target, key=s.key, kind=s.kind, title=s.title, config=s.config,
             col=s.col, row=s.row) for s in steps])
    by_key = {s.key: s for s in copies}
    if any(s.pk is None for s in copies):  # backends that do not return ids from bulk inserts
        by_key = {s.key: s for s in Step.objects.filter(version=target)}
    old = {s.pk: s.key for s in steps}
    Transition.objects.bulk_create([
        Transition(account_id=target.account_id, version=target, source=by_key[old[t.source_id]], exit=t.exit,
                   target=by_key[old[t.target_id]])
        for t in Transition.objects.filter(version=source)])


@transaction.atomic
def draft_get_or_create(*, scenario: Scenario, actor: Actor | None = None) -> ScenarioVersion:
    """The scenario's draft version, made when it has none: a copy of the live version (or of the
    newest version) numbered after every other. Raises ScenarioError for a stopped scenario (it is
    final). Safe under concurrency: the scenario row is locked and one draft is a constraint."""
    locked = Scenario.objects.select_for_update().get(pk=scenario.pk)
    draft = ScenarioVersion.objects.filter(scenario=locked, state=ScenarioVersion.State.DRAFT).first()
    if draft is not None:
        return draft
    if locked.state == Scenario.State.STOPPED:
        raise ScenarioError("A stopped scenario cannot be edited; export it and import a copy to build on it.")
    base = locked.live_version or ScenarioVersion.objects.filter(scenario=locked).order_by("-number").first()
    number = (ScenarioVersion.objects.filter(scenario=locked).aggregate(n=Max("number"))["n"] or 0) + 1
    try:
        with transaction.atomic():
            draft = ScenarioVersion.objects.create(account_id=locked.account_id, scenario=locked, number=number)
    except IntegrityError:  # another request made it between our read and insert
        return ScenarioVersion.objects.get(scenario=locked, state=ScenarioVersion.State.DRAFT)
    if base is not None:
        _copy_graph(base, draft)
    audit_log(account=locked.account, actor=_actor(actor), verb="scenario.draft_created", target=locked,
              data={"version": number, "from": base.number if base else None})
    return draft


# --- steps ------------------------------------------------------------------------------------------


@transaction.atomic
def step_add(*, version: ScenarioVersion, kind: str, config: Mapping[str, Any] | None = None, title: str = "",
             col: int | None = None, row: int | None = None, actor: Actor | None = None) -> Step:
    """A new step in the draft `version`, keyed with the scenario's next free key; `config`
    defaults to the kind's starting config, the position to the next free column of row 0.
    Raises ScenarioError (not a draft, unknown kind, config not an object, position out of range)."""
    version = _lock_version(version)
    _editable(version)
    if kind not in STEP_KINDS:
        raise ScenarioError({"kind": f"“{kind}” is not a kind of step (one of {', '.join(STEP_KINDS)})"})
    clean = _config(kind, config)
    if col is None:
        top = Step.objects.filter(version=version).aggregate(c=Max("col"))["c"]
        col = 0 if top is None else min(top + 1, MAX_CELL)
    step = Step.objects.create(
        account_id=version.account_id, version=version, key=next_keys(version.scenario)[0], kind=kind,
        title=_title(title) or STEP_KINDS[kind].label, config=clean, col=_cell(col, "col"),
        row=_cell(0 if row is None else row, "row"))
    _touch(version, actor, "step_add", step=step.key, kind=kind)
    return step


def _locked_step(step: Step) -> Step:
    version = _lock_version(ScenarioVersion(pk=step.version_id))
    locked = Step.objects.select_for_update().get(pk=step.pk)
    locked.version = version
    _editable(version)
    return locked


@transaction.atomic
def step_update(*, step: Step, config: Mapping[str, Any] | None = None, title: str | None = None,
                actor: Actor | None = None) -> Step:
    """Replace the step's config and/or title (None: unchanged). Connections from exits the step
    no longer has (a split branch removed) are deleted. Raises ScenarioError."""
    locked = _locked_step(step)
    fields = []
    if config is not None:
        locked.config = _config(locked.kind, config)
        fields.append("config")
    if title is not None:
        locked.title = _title(title) or STEP_KINDS.get(locked.kind, STEP_KINDS["exit"]).label
        fields.append("title")
    if fields:
        locked.save(update_fields=fields)
    if config is not None:
        Transition.objects.filter(source=locked).exclude(exit__in=exits_of(locked.kind, locked.config)).delete()
    _touch(locked.version, actor, "step_update", step=locked.key, fields=fields)
    return locked


@transaction.atomic
def step_move(*, step: Step, col: int, row: int, actor: Actor | None = None) -> Step:
    """Put the step at grid cell (col, row) of the diagram. Raises ScenarioError."""
    locked = _locked_step(step)
    locked.col, locked.row = _cell(col, "col"), _cell(row, "row")
    locked.save(update_fields=["col", "row"])
    return locked


@transaction.atomic
def step_delete(*, step: Step, actor: Actor | None = None) -> None:
    """Delete the step and every connection from or to it. Raises ScenarioError (not a draft)."""
    locked = _locked_step(step)
    version = locked.version
    Transition.objects.filter(version=version, target=locked).delete()
    Transition.objects.filter(version=version, source=locked).delete()
    locked.delete()
    _touch(version, actor, "step_delete", step=step.key)


# --- transitions ------------------------------------------------------------------------------------


@transaction.atomic
def transition_set(*, source: Step, exit: str, target: Step, actor: Actor | None = None) -> Transition:
    """Connect the source step's `exit` to `target` (replacing where it led before). Raises
    ScenarioError: not a draft, an exit the step does not have, a target in another version or an
    entry step (profiles enter there, nothing leads into it)."""
    locked = _locked_step(source)
    if target.version_id != locked.version_id:
        raise ScenarioError({"target": "choose a step of the same version"})
    exits = exits_of(locked.kind, locked.config)
    if exit not in exits:
        have = ", ".join(f"“{e}”" for e in exits) or "none"
        raise ScenarioError({"exit": f"step {locked.key} has no exit “{exit}” (its exits: {have})"})
    if target.kind in ENTRY_KINDS:
        raise ScenarioError({"target": f"step {target.key} is an entry: nothing leads into an entry step"})
    t, _ = Transition.objects.update_or_create(
        source=locked, exit=exit, defaults={"account_id": locked.account_id, "version": locked.version, "target": target})
    _touch(locked.version, actor, "transition_set", source=locked.key, exit=exit, target=target.key)
    return t


@transaction.atomic
def transition_delete(*, source: Step, exit: str, actor: Actor | None = None) -> bool:
    """Disconnect the source step's `exit`; returns whether it was connected. Raises ScenarioError."""
    locked = _locked_step(source)
    deleted, _ = Transition.objects.filter(source=locked, exit=exit).delete()
    if deleted:
        _touch(locked.version, actor, "transition_delete", source=locked.key, exit=exit)
    return bool(deleted)


# --- the whole graph at once (the API's PATCH, imports) ---------------------------------------------


def clean_graph(steps: Any, transitions: Any, *, prefix: str = "") -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """Check the shape of a whole graph given as JSON: `steps` [{"key"?, "kind", "title"?,
    "config"?, "col"?, "row"?}], `transitions` [{"source", "exit", "target"}] (step keys).
    Returns (steps, edges) cleaned; raises ScenarioError naming each fault by its path
    ("steps[3].kind", "transitions[0].target"). Steps without a key get one later."""
    errors: dict[str, str] = {}
    if not isinstance(steps, list):
        raise ScenarioError({f"{prefix}steps": "a list of steps"})
    if not isinstance(transitions, list):
        raise ScenarioError({f"{prefix}transitions": "a list of {source, exit, target}"})
    if len(steps) > 500:
        raise ScenarioError({f"{prefix}steps": "at most 500 steps"})
    out: list[dict[str, Any]] = []
    keys: dict[str, int] = {}
    for i, raw in enumerate(steps):
        at = f"{prefix}steps[{i}]"
        if not isinstance(raw, Mapping):
            errors[at] = "a step must be an object"
            continue
        kind = raw.get("kind")
        if kind not in STEP_KINDS:
            errors[f"{at}.kind"] = f"“{kind}” is not a kind of step" if kind else "missing"
        key = raw.get("key")
        if key is not None:
            if not isinstance(key, str) or not KEY_RE.match(key):
                errors[f"{at}.key"] = 'a step key is "s" and a number, such as "s4"'
            elif key in keys:
                errors[f"{at}.key"] = f"repeats the key of steps[{keys[key]}]"
            else:
                keys[key] = i
        config = raw.get("config")
        if config is not None and not isinstance(config, Mapping):
            errors[f"{at}.config"] = "the settings must be an object"
        title = raw.get("title") or ""
        if not isinstance(title, str) or len(title) > 200:
            errors[f"{at}.title"] = "text of at most 200 characters"
        cells = {}
        for name in ("col", "row"):
            value = raw.get(name, i if name == "col" else 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CELL:
                errors[f"{at}.{name}"] = f"a whole number from 0 to {MAX_CELL}"
            cells[name] = value
        out.append({"key": key, "kind": kind, "title": title.strip() if isinstance(title, str) else "",
                    "config": dict(config) if isinstance(config, Mapping) else dict(DEFAULT_CONFIGS.get(str(kind), {})),
                    **cells})
    edges: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    by_key = {s["key"]: s for s in out if s["key"]}
    for i, raw in enumerate(transitions):
        at = f"{prefix}transitions[{i}]"
        if not isinstance(raw, Mapping):
            errors[at] = "a transition must be an object {source, exit, target}"
            continue
        source, exit_, target = raw.get("source"), raw.get("exit", "next"), raw.get("target")
        src = by_key.get(source)
        if src is None:
            errors[f"{at}.source"] = f"no step “{source}” in this graph"
        elif src["kind"] in STEP_KINDS and exit_ not in exits_of(src["kind"], src["config"]):
            have = ", ".join(exits_of(src["kind"], src["config"])) or "none"
            errors[f"{at}.exit"] = f"step {source} has no exit “{exit_}” (its exits: {have})"
        elif (source, exit_) in seen:
            errors[f"{at}.exit"] = f"the exit “{exit_}” of {source} is connected twice"
        tgt = by_key.get(target)
        if tgt is None:
            errors[f"{at}.target"] = f"no step “{target}” in this graph"
        elif tgt["kind"] in ENTRY_KINDS:
            errors[f"{at}.target"] = f"step {target} is an entry: nothing leads into an entry step"
        seen.add((source, exit_))
        edges.append((str(source), str(exit_), str(target)))
    if errors:
        raise ScenarioError(errors)
    return out, edges


def graph_write(version: ScenarioVersion, steps: Sequence[Mapping[str, Any]], edges: Sequence[tuple[str, str, str]]) -> dict[str, Step]:
    """Replace the draft `version`'s steps and transitions by cleaned ones (`clean_graph`); steps
    without a key get the scenario's next free keys. Returns the steps by key."""
    _editable(version)
    Transition.objects.filter(version=version).delete()
    Step.objects.filter(version=version).delete()
    fresh = iter(next_keys(version.scenario, sum(1 for s in steps if not s.get("key"))))
    rows = [Step(account_id=version.account_id, version=version, key=s.get("key") or next(fresh), kind=s["kind"],
                 title=s.get("title") or STEP_KINDS[s["kind"]].label, config=dict(s.get("config") or {}),
                 col=s.get("col", 0), row=s.get("row", 0)) for s in steps]
    Step.objects.bulk_create(rows)
    by_key = {s.key: s for s in Step.objects.filter(version=version)}
    Transition.objects.bulk_create([
        Transition(account_id=version.account_id, version=version, source=by_key[a], exit=e, target=by_key[b])
        for a, e, b in edges])
    return by_key


@transaction.atomic
def graph_replace(*, scenario: Scenario, steps: Any, transitions: Any, actor: Actor | None = None) -> ScenarioVersion:
    """Replace the draft's whole graph (made from the live version when there is none) by
    `steps` and `transitions` as JSON (see `clean_graph`). Raises ScenarioError with paths."""
    clean_steps, edges = clean_graph(steps, transitions)
    version = draft_get_or_create(scenario=scenario, actor=actor)
    graph_write(version, clean_steps, edges)
    _touch(version, actor, "graph_replace", steps=len(clean_steps), transitions=len(edges))
    return version


__all__ = [
    "DEFAULT_CONFIGS", "SPLIT_EXITS", "clean_graph", "draft_get_or_create", "graph_replace", "graph_write", "next_keys",
    "step_add", "step_delete", "step_move", "step_update", "transition_delete", "transition_set",
]
