"""Validating a version before it is published: `version_validate(version) -> list[Problem]`.

Two kinds of checks, all collected (never the first one only):
- the graph: at least one entry step; every step reachable from an entry; every exit of every
  step connected to a step (a wait without its exit, a condition with one branch); no transition
  from an exit the step no longer has; no loop that passes no wait step (a profile would spin
  until the step limit stops it);
- each step's config against `scenarios.graph` (the shapes documented there): the templates,
  resources, senders, providers, segments, fields and event types it names exist in the
  account (and the scenario's database) and fit (a template with a version for the channel, a
  static segment for the segment step, a date field for a field wait...); and the goal.

Messages say what and where: "Step s4 “Wait 2 days”: the exit “timeout” goes nowhere". The
catalogue of the database (fields, event types, resources, segments) is loaded once
(`segments.conditions.Catalog`), plus one query each for templates, template versions, senders
and providers, so validating a 30-step version costs a handful of queries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scenarios.graph import ENTRY_KINDS, SPLIT_EXITS, STEP_KINDS, WAIT_KINDS, exits_of
from scenarios.models import Scenario, ScenarioVersion, Step, Transition

MAX_WAIT_SECONDS = 366 * 24 * 3600  # a year (a leap one included)
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
SEND_WHAT = ("sent", "delivered", "opened", "clicked")
SUBSCRIPTION_STATUSES = ("subscribed", "unsubscribed", "suspended")


@dataclass(frozen=True)
class Problem:
    """One thing that stops publishing. `step_key` "" for the scenario itself (its goal, "no
    entry step"); `field` the config key at fault ("template_id", "exits.timeout", "" for the step
    as a whole); `message` a full sentence naming the step."""

    step_key: str
    field: str
    message: str


def step_label(step: Step) -> str:
    """How messages name a step: 'Step s4 “Wait 2 days”' (the kind's label when it has no title)."""
    spec = STEP_KINDS.get(step.kind)
    title = step.title or (spec.label if spec else step.kind)
    return f"Step {step.key} “{title}”"


class _Refs:
    """The account's objects a version's configs may name, loaded once per validation."""

    def __init__(self, scenario: Scenario, steps: Iterable[Step]) -> None:
        from content.models import Template, TemplateVersion
        from delivery.models import ProviderAccount, Sender
        from segments.conditions import Catalog

        self.scenario = scenario
        self.catalog = Catalog.load(scenario.database)
        configs = [s.config or {} for s in steps]
        ids = {name: {_int(c.get(name)) for c in configs} - {None} for name in ("template_id", "sender_id", "provider_id")}
        account = scenario.account
        self.templates = {t.pk: t for t in Template.objects.for_account(account).filter(pk__in=ids["template_id"])}
        self.channels: dict[int, set[str]] = {}
        for template_id, channel in (TemplateVersion.objects.filter(template_id__in=list(self.templates), is_current=True)
                                     .values_list("template_id", "channel")):
            self.channels.setdefault(template_id, set()).add(channel)
        self.senders = set(Sender.objects.filter(account=account, pk__in=ids["sender_id"]).values_list("pk", flat=True))
        self.providers = dict(ProviderAccount.objects.filter(account=account, pk__in=ids["provider_id"])
                              .values_list("pk", "channel"))
        self._schema: Any = None

    @property
    def schema(self) -> Any:
        if self._schema is None:
            from profiles.services.profiles import Schema

            self._schema = Schema.load(self.scenario.database)
        return self._schema


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1  # names nothing: reported as "no such ..."


def _seconds(value: Any) -> int | None:
    """A whole number of seconds within a year, else None."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("-").isdigit():
        return None
    n = int(value)
    return n if 0 <= n <= MAX_WAIT_SECONDS else None


class _Checker:
    def __init__(self, version: ScenarioVersion) -> None:
        self.version = version
        self.scenario = version.scenario
        self.steps = list(Step.objects.filter(version=version).order_by("key", "id"))
        self.transitions = list(Transition.objects.filter(version=version).select_related("source", "target"))
        self.by_key = {s.key: s for s in self.steps}
        self.problems: list[Problem] = []
        self.refs = _Refs(self.scenario, self.steps)

    def add(self, step: Step | None, field: str, message: str) -> None:
        if step is None:
            self.problems.append(Problem("", field, message))
        else:
            self.problems.append(Problem(step.key, field, f"{step_label(step)}: {message}"))

    # --- the graph -----------------------------------------------------------------------------------

    def graph(self) -> None:
        entries = [s for s in self.steps if s.kind in ENTRY_KINDS]
        if not entries:
            self.add(None, "steps", "The scenario has no entry step: add one (segment, new profile, event, "
                                    "subscription or API call) so profiles can enter.")
        out: dict[int, dict[str, Step]] = {}
        for t in self.transitions:
            out.setdefault(t.source_id, {})[t.exit] = t.target
        for step in self.steps:
            if step.kind not in STEP_KINDS:
                continue
            exits = exits_of(step.kind, step.config)
            connected = out.get(step.pk, {})
            for exit_ in exits:
                if exit_ not in connected:
                    self.add(step, f"exits.{exit_}", f"the exit “{exit_}” goes nowhere")
            for exit_ in sorted(set(connected) - set(exits)):
                self.add(step, f"exits.{exit_}", f"the exit “{exit_}” no longer exists: remove its connection")
            if step.kind in ENTRY_KINDS and any(t.target_id == step.pk for t in self.transitions):
                self.add(step, "", "an entry step cannot be the target of a connection")
        # Reachability from the entries.
        seen: set[int] = set()
        todo = [s.pk for s in entries]
        while todo:
            pk = todo.pop()
            if pk in seen:
                continue
            seen.add(pk)
            todo.extend(t.pk for t in out.get(pk, {}).values())
        if entries:
            for step in self.steps:
                if step.pk not in seen:
                    self.add(step, "", "no entry leads here: connect it or delete it")
        self._loops(out)

    def _loops(self, out: Mapping[int, Mapping[str, Step]]) -> None:
        """A cycle among steps that hold nobody (no wait or wait-for-event on it) would move a
        profile round it at once, over and over: refused, naming the loop."""
        nodes = {s.pk: s for s in self.steps if s.kind not in WAIT_KINDS}
        edges = {pk: sorted({t.pk for t in out.get(pk, {}).values() if t.pk in nodes}) for pk in nodes}
        state: dict[int, int] = {}  # 1 on the stack, 2 done
        reported: set[frozenset[int]] = set()

        def visit(start: int) -> None:
            stack: list[tuple[int, Iterable[int]]] = [(start, iter(edges[start]))]
            path = [start]
            state[start] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)  # type: ignore[call-overload]
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                    path.pop()
                    continue
                if state.get(nxt) == 1:
                    loop = path[path.index(nxt):]
                    if frozenset(loop) not in reported:
                        reported.add(frozenset(loop))
                        names = " → ".join(nodes[p].key for p in [*loop, nxt])
                        self.add(nodes[nxt], "", f"the loop {names} passes no wait step: a profile would go round "
                                                 "it without pause (add a wait)")
                elif nxt not in state:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append((nxt, iter(edges[nxt])))

        for pk in sorted(nodes, key=lambda p: nodes[p].key):
            if pk not in state:
                visit(pk)

    # --- configs -------------------------------------------------------------------------------------

    def configs(self) -> None:
        for step in self.steps:
            if step.kind not in STEP_KINDS:
                self.add(step, "kind", f"“{step.kind}” is not a kind of step")
                continue
            if not isinstance(step.config, dict):
                self.add(step, "config", "the settings must be an object")
                continue
            check = getattr(self, "c_" + step.kind.replace(".", "_"), None)
            if check is not None:
                check(step, step.config)
        self.goal()

    def _segment(self, step: Step, value: Any, field: str = "segment_id") -> Any:
        info = self.refs.catalog.segments.get(_int(value) or 0)
        if info is None:
            self.add(step, field, "choose a segment of the scenario's database" if value in (None, "")
                     else "the segment it names no longer exists (or is in another database)")
            return None
        if info.state == "broken":
            self.add(step, field, f"the segment “{info.name}” is broken and cannot be evaluated: fix it first")
        return info

    def _event_type(self, step: Step | None, name: Any, field: str = "type") -> None:
        if not name:
            self.add(step, field, "choose an event type")
        elif str(name) not in self.refs.catalog.types:
            self.add(step, field, f"there is no event type “{name}” in this account's catalogue")

    def _filters(self, step: Step | None, filters: Any, field: str = "filters") -> None:
        from mailings.services.triggers.definition import FILTER_OPS

        if filters in (None, []):
            return
        if not isinstance(filters, list):
            self.add(step, field, "the filters must be a list")
            return
        for i, f in enumerate(filters):
            if not isinstance(f, dict) or not str(f.get("property") or "").strip() or f.get("op") not in FILTER_OPS:
                self.add(step, f"{field}[{i}]", f"filter {i + 1} needs a property and an op "
                                                 f"({', '.join(FILTER_OPS)})")

    def _resource(self, step: Step, config: Mapping[str, Any]) -> Any:
        from resources.models import Channel

        info = self.refs.catalog.resources.get(_int(config.get("resource_id")) or 0)
        channel = config.get("channel")
        if info is None:
            self.add(step, "resource_id", "choose a resource of the scenario's database"
                     if config.get("resource_id") in (None, "") else "the resource it names no longer exists "
                     "(or belongs to another database)")
        if channel not in Channel.values:
            self.add(step, "channel", "choose a channel (" + ", ".join(Channel.values) + ")")
        elif info is not None and channel not in info.channels:
            self.add(step, "channel", f"the resource “{info.name}” has no {Channel(channel).label} channel")
        return info

    def c_entry_segment(self, step: Step, config: Mapping[str, Any]) -> None:
        info = self._segment(step, config.get("segment_id"))
        if info is not None and not config.get("members_at_start") and info.kind != "updatable":
            self.add(step, "segment_id", f"the segment “{info.name}” is {info.kind}: only an updatable segment "
                                         "reports profiles entering it (or tick “everyone in it at activation”)")

    def c_entry_event(self, step: Step, config: Mapping[str, Any]) -> None:
        self._event_type(step, config.get("type"))
        self._filters(step, config.get("filters"))

    def c_entry_subscription(self, step: Step, config: Mapping[str, Any]) -> None:
        self._resource(step, config)

    def c_send(self, step: Step, config: Mapping[str, Any]) -> None:
        from resources.models import Channel

        self._resource(step, config)
        channel = config.get("channel")
        template_id = _int(config.get("template_id"))
        template = self.refs.templates.get(template_id or 0)
        if template_id is None:
            self.add(step, "template_id", "choose a template")
        elif template is None:
            self.add(step, "template_id", "the template it names no longer exists")
        elif template.is_archived:
            self.add(step, "template_id", f"the template “{template.name}” is archived")
        elif channel in Channel.values and channel not in self.refs.channels.get(template.pk, set()):
            self.add(step, "template_id", f"the template “{template.name}” has no {Channel(channel).label} version")
        sender_id = _int(config.get("sender_id"))
        if sender_id is not None:
            if channel != Channel.EMAIL:
                self.add(step, "sender_id", "only e-mail has a sender")
            elif sender_id not in self.refs.senders:
                self.add(step, "sender_id", "the sender it names no longer exists")
        provider_id = _int(config.get("provider_id"))
        if provider_id is not None:
            provider_channel = self.refs.providers.get(provider_id)
            if provider_channel is None:
                self.add(step, "provider_id", "the provider account it names no longer exists")
            elif provider_channel != channel:
                self.add(step, "provider_id", f"the provider account sends {provider_channel}, not {channel}")
        for flag in ("transactional", "track_opens", "track_clicks"):
            if flag in config and not isinstance(config[flag], bool):
                self.add(step, flag, "must be true or false")

    def c_wait(self, step: Step, config: Mapping[str, Any]) -> None:
        mode = config.get("mode")
        if mode == "duration":
            if _seconds(config.get("seconds")) is None:
                self.add(step, "seconds", "the duration must be from 0 seconds to a year")
        elif mode == "until":
            try:
                datetime.fromisoformat(str(config.get("at") or ""))
            except ValueError:
                self.add(step, "at", "give the date and time to wait until (such as 2026-12-24T09:00:00+01:00)")
        elif mode == "field":
            name = config.get("field")
            info = self.refs.catalog.fields.get(str(name or ""))
            if info is None:
                self.add(step, "field", f"there is no field “{name}” in the database" if name else "choose a date field")
            elif info.type not in ("date", "datetime"):
                self.add(step, "field", f"the field “{name}” is not a date or a date and time")
            offset = config.get("offset_seconds", 0) or 0
            if isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > MAX_WAIT_SECONDS:
                self.add(step, "offset_seconds", "the offset must be a whole number of seconds within a year")
        elif mode == "time_of_day":
            if not TIME_RE.match(str(config.get("time") or "")):
                self.add(step, "time", "the time of day must be HH:MM (00:00 to 23:59)")
            days = config.get("weekdays") or []
            if not isinstance(days, list) or any(isinstance(d, bool) or d not in range(7) for d in days):
                self.add(step, "weekdays", "weekdays are numbers 0 (Monday) to 6 (Sunday)")
        else:
            self.add(step, "mode", "choose how to wait: duration, until, field or time_of_day")

    def c_wait_event(self, step: Step, config: Mapping[str, Any]) -> None:
        self._event_type(step, config.get("type"))
        self._filters(step, config.get("filters"))
        if _seconds(config.get("timeout_seconds")) is None:
            self.add(step, "timeout_seconds", "the timeout must be from 0 seconds to a year")

    def c_condition(self, step: Step, config: Mapping[str, Any]) -> None:
        test = config.get("test")
        if test == "segments":
            from segments.conditions import ConditionError, clean_conditions

            try:
                clean_conditions(config.get("conditions"), self.refs.catalog, fill_salts=False)
            except ConditionError as exc:
                where = f" (at {exc.path})" if exc.path else ""
                self.add(step, "conditions", f"the condition cannot be used{where}: {exc.message}")
        elif test == "message":
            target = self.by_key.get(str(config.get("step") or ""))
            if target is None or target.kind != "send":
                self.add(step, "step", "choose a send step of this scenario to test its message")
            if config.get("what") not in SEND_WHAT:
                self.add(step, "what", "choose what the message did: " + ", ".join(SEND_WHAT))
        else:
            self.add(step, "test", "choose a test: segments (profile data) or message")

    def c_split(self, step: Step, config: Mapping[str, Any]) -> None:
        branches = config.get("branches")
        if not isinstance(branches, list) or not 2 <= len(branches) <= 5:
            self.add(step, "branches", "a split has 2 to 5 branches")
            return
        total, names = 0, []
        for i, b in enumerate(branches):
            weight = b.get("weight") if isinstance(b, dict) else None
            name = b.get("exit") if isinstance(b, dict) else None
            if name not in SPLIT_EXITS:
                self.add(step, f"branches[{i}].exit", f"branch {i + 1} needs an exit name ({', '.join(SPLIT_EXITS)})")
            names.append(name)
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
                self.add(step, f"branches[{i}].weight", f"branch {i + 1}'s weight must be a whole number 0-100")
            else:
                total += weight
        if len(set(names)) != len(names):
            self.add(step, "branches", "two branches have the same exit")
        if total != 100:
            self.add(step, "branches", f"the weights add up to {total}, not 100")

    def c_update(self, step: Step, config: Mapping[str, Any]) -> None:
        from profiles.services.profiles import clean_values

        values = config.get("values")
        if not isinstance(values, dict) or not values:
            self.add(step, "values", "set at least one field")
            return
        _, errors = clean_values(self.refs.schema, dict(values), clear_empty=True)
        for name, message in errors.items():
            self.add(step, f"values.{name}", f"the field “{name}”: {message}")

    def c_subscription(self, step: Step, config: Mapping[str, Any]) -> None:
        self._resource(step, config)
        if config.get("status") not in SUBSCRIPTION_STATUSES:
            self.add(step, "status", "choose the status to set: " + ", ".join(SUBSCRIPTION_STATUSES))

    def c_segment(self, step: Step, config: Mapping[str, Any]) -> None:
        info = self._segment(step, config.get("segment_id"))
        if info is not None and info.kind != "static":
            self.add(step, "segment_id", f"the segment “{info.name}” is {info.kind}: profiles can be added to and "
                                         "removed from a static segment only")
        if config.get("action") not in ("add", "remove"):
            self.add(step, "action", "choose add or remove")

    def c_webhook(self, step: Step, config: Mapping[str, Any]) -> None:
        problem = webhook_problem(str(config.get("url") or ""), private_ok=self.scenario.webhooks_private_ok)
        if problem:
            self.add(step, "url", problem)
        timeout = config.get("timeout_seconds", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 30:
            self.add(step, "timeout_seconds", "the timeout must be 1 to 30 seconds")
        retries = config.get("retries", 3)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 5:
            self.add(step, "retries", "retries must be 0 to 5")

    def goal(self) -> None:
        goal = self.scenario.goal or {}
        if not goal:
            return
        if not isinstance(goal, dict):
            self.add(None, "goal", "The goal must be an object: {\"type\": ..., \"filters\": [...]}.")
            return
        name = goal.get("type")
        if not name or str(name) not in self.refs.catalog.types:
            self.add(None, "goal", f"The goal's event type “{name}” is not in this account's catalogue."
                     if name else "The goal needs an event type.")
        self._filters(None, goal.get("filters"), "goal.filters")


def webhook_problem(url: str, *, private_ok: bool) -> str | None:
    """What is wrong with a webhook URL, or None: STEPS' `webhook_url_problem` (http(s) only, no
    credentials, a host that resolves to no private, loopback, link-local, multicast or reserved
    address unless the scenario or the SCENARIOS_WEBHOOK_ALLOW_PRIVATE setting allows them)."""
    from scenarios.engine.steps.webhook import webhook_url_problem

    if not url:
        return "give the URL to call"
    return webhook_url_problem(url, private_ok=private_ok)


def version_validate(version: ScenarioVersion) -> list[Problem]:
    """Every problem that stops `version` from being published, graph problems first, then each
    step's (by key), then the scenario's goal; [] when it can be published. Reads only."""
    checker = _Checker(version)
    checker.graph()
    checker.configs()
    order = {s.key: i for i, s in enumerate(sorted(checker.steps, key=lambda s: (len(s.key), s.key)))}
    def rank(p: Problem) -> tuple[int, int]:
        if not p.step_key:  # the scenario's own: "no entry step" first, the goal last
            return (0, 0) if p.field == "steps" else (2, 0)
        return 1, order.get(p.step_key, 0)

    return sorted(checker.problems, key=rank)


def problems_dict(problems: Iterable[Problem]) -> dict[str, str]:
    """The problems as ScenarioError errors: {step key (or "__all__"/"goal"): messages joined}."""
    out: dict[str, str] = {}
    for p in problems:
        key = p.step_key or ("goal" if p.field.startswith("goal") else "__all__")
        out[key] = f"{out[key]}; {p.message}" if key in out else p.message
    return out
