"""The history handler of scenarios ("scenarios.events"): what stored events do to live scenarios.

For one batch of events (the outbox drain hands over many ingests at once, oldest first):

1. goals: an event matching a live scenario's goal (type + property filters, same account and
   profile database) takes the profile out of that scenario wherever it is
   (`participations_exit(reason="goal")`);
2. event waits: `waits_release` lets go the participations waiting for such an event;
3. entries of ACTIVE scenarios' live versions: an `entry.event` step whose type and filters
   match (entry key "event:<event id>": the same event never enters twice), and an
   `entry.subscription` step when a subscription on its resource and channel became sendable
   (new and subscribed, or changed to subscribed from unconfirmed/unsubscribed: the rule of
   mailings' welcome trigger; entry key "subscription:<event id>").

Goals run first so an order that ends a trip is not also what starts the reminder it cancels.
An event that happened before the scenario was activated (an import of old orders) neither
enters nor exits anyone: the scenario was not running then.
Everything is per account (custom type names are per account) and per profile database; one
query per kind for the whole batch; entering goes through `scenarios.entries.entries_submit`
(flood containment, then the engine's `participations_enter`). Idempotent: a redelivered batch
exits nobody twice, releases nothing twice (the engine's conditional updates) and enters
nobody twice (entry keys).

`interesting_types()` is asked on every ingest (history's outbox only records batches someone
wants): a per-process set in a `cdp.confcache` cache. Whoever activates, pauses, resumes, stops
or publishes a scenario calls `interest_changed()`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.db.models import F

from cdp import confcache
from history.catalogue import BY_ID, FIRST_CUSTOM_ID
from mailings.services.triggers.definition import SUBSCRIPTION_TYPES, WELCOME_FROM, filters_match
from resources.models import Status
from scenarios.models import Scenario, ScenarioVersion, Step

if TYPE_CHECKING:
    from history.models import Event
    from scenarios.engine import Entry

log = logging.getLogger(__name__)

HANDLER_NAME = "scenarios.events"
EVENT_KINDS = ("entry.event", "entry.subscription", "wait_event")

_INTEREST: dict[str, frozenset[str]] = confcache.register({})


# --- what live scenarios listen to ---------------------------------------------------------------


def _step_types(kind: str, config: Any) -> set[str]:
    if kind == "entry.subscription":
        return set(SUBSCRIPTION_TYPES)
    if isinstance(config, Mapping) and isinstance(config.get("type"), str) and config["type"]:
        return {config["type"]}
    return set()


def _goal_type(goal: Any) -> str:
    if isinstance(goal, Mapping) and isinstance(goal.get("type"), str):
        return goal["type"]
    return ""


def _load_types() -> frozenset[str]:
    names: set[str] = set()
    # Every published version of a live scenario: profiles still on an older version may be
    # waiting for an event of a type the live version no longer names.
    steps = Step.objects.filter(kind__in=EVENT_KINDS, version__state=ScenarioVersion.State.PUBLISHED,
                                version__scenario__state__in=Scenario.LIVE_STATES)
    for kind, config in steps.values_list("kind", "config"):
        names |= _step_types(kind, config)
    for goal in Scenario.objects.live().values_list("goal", flat=True):
        if name := _goal_type(goal):
            names.add(name)
    return frozenset(names)


def interesting_types() -> frozenset[str]:
    """The event type names some live scenario (of any account) wants: its entry events,
    subscription entries, event waits and goal. A dict lookup while the configuration
    generation stands (checked at most once a second); a query when the shared cache is
    unreachable (then nothing is cached, so nothing is stale)."""
    if not confcache.check(fresh_within=1.0):
        return _load_types()
    types = _INTEREST.get("types")
    if types is None:
        types = _INTEREST["types"] = _load_types()
    return types


def interest_changed() -> None:
    """A scenario was activated, paused, resumed, stopped or published: every process reloads
    the types it listens to (now and again after the changing transaction commits)."""
    confcache.changed()


# --- the handler ---------------------------------------------------------------------------------


def type_names(events: Sequence[Event]) -> dict[int, str]:
    """{type id: name} of the events' types (system types from the catalogue, custom ones in one
    query)."""
    names = {e.type_id: BY_ID[e.type_id].name for e in events if e.type_id in BY_ID}
    custom = {e.type_id for e in events if e.type_id >= FIRST_CUSTOM_ID and e.type_id not in names}
    if custom:
        from history.models import EventType

        names.update(EventType.objects.filter(id__in=custom).values_list("id", "name"))
    return names


def _event_context(event: Event, name: str) -> dict[str, Any]:
    return {"data": dict(event.properties or {}),
            "event": {"id": event.pk, "type": name, "at": event.occurred_at.isoformat()}}


def _became_sendable(event: Event, name: str, config: Mapping[str, Any]) -> bool:
    if name not in SUBSCRIPTION_TYPES:
        return False
    if event.resource_id != config.get("resource_id") or event.channel != config.get("channel"):
        return False
    props = event.properties or {}
    if props.get("status") != Status.SUBSCRIBED:
        return False
    return name == "subscription.subscribed" or props.get("old_status") in WELCOME_FROM


def _before(event: Event, scenario: Scenario) -> bool:
    """Whether the event happened before the scenario was activated (an import of last year's
    orders): it neither starts a trip nor ends one."""
    return scenario.activated_at is not None and event.occurred_at < scenario.activated_at


def _entry_steps(account_ids: Iterable[int]) -> dict[int, list[Step]]:
    """The entry.event / entry.subscription steps of the ACTIVE scenarios' live versions, by
    account (one query; each step carries its version's scenario)."""
    steps = (Step.objects.filter(kind__in=("entry.event", "entry.subscription"),
                                 version__scenario__account_id__in=set(account_ids),
                                 version__scenario__state=Scenario.State.ACTIVE,
                                 version__scenario__live_version=F("version"))
             .select_related("version__scenario").order_by("id"))
    out: dict[int, list[Step]] = defaultdict(list)
    for step in steps:
        out[step.account_id].append(step)
    return out


def _goals(events: Sequence[Event], names: Mapping[int, str]) -> int:
    """Exit the profiles whose event is a goal of a live scenario of theirs; how many exited."""
    from scenarios.engine import participations_exit

    wanted = {names.get(e.type_id, "") for e in events}
    scenarios = [s for s in Scenario.objects.live().filter(account_id__in={e.account_id for e in events})
                 .only("id", "account_id", "database_id", "goal", "activated_at")
                 if _goal_type(s.goal) in wanted]
    if not scenarios:
        return 0
    leaving: dict[int, set[int]] = defaultdict(set)
    for e in events:
        name = names.get(e.type_id, "")
        for s in scenarios:
            if (s.account_id == e.account_id and s.database_id == e.database_id and _goal_type(s.goal) == name
                    and not _before(e, s) and filters_match(e.properties or {}, s.goal.get("filters"))):
                leaving[s.pk].add(e.profile_id)
    return sum(participations_exit(scenario_id=sid, profile_ids=sorted(pids), reason="goal")
               for sid, pids in leaving.items())


def _entries(events: Sequence[Event], names: Mapping[int, str]) -> dict[int, tuple[Scenario, list[Entry]]]:
    """The entries the events make, by scenario id: (scenario, entries in event order)."""
    from scenarios.engine import Entry

    steps_by_account = _entry_steps({e.account_id for e in events})
    out: dict[int, tuple[Scenario, list[Entry]]] = {}
    for e in events:
        name = names.get(e.type_id, "")
        for step in steps_by_account.get(e.account_id, ()):
            scenario = step.version.scenario
            if scenario.database_id != e.database_id or _before(e, scenario):
                continue
            config = step.config or {}
            if step.kind == "entry.event":
                if config.get("type") != name or not filters_match(e.properties or {}, config.get("filters")):
                    continue
                entry = Entry(profile_id=e.profile_id, step_key=step.key, source=f"event:{e.pk}",
                              key=f"event:{e.pk}", context=_event_context(e, name))
            else:
                if not _became_sendable(e, name, config):
                    continue
                entry = Entry(profile_id=e.profile_id, step_key=step.key, source=f"subscription:{e.pk}",
                              key=f"subscription:{e.pk}", context=_event_context(e, name))
            out.setdefault(scenario.pk, (scenario, []))[1].append(entry)
    return out


def on_events(events: list[Event]) -> None:
    """The history handler: goals, event waits, then event and subscription entries for a batch
    (see the module docstring). Idempotent; raises what the engine raises (the drain retries
    the batch for this handler alone)."""
    from scenarios.engine import waits_release
    from scenarios.entries import entries_submit

    events = [e for e in events if e.profile_id is not None]
    if not events:
        return
    names = type_names(events)
    _goals(events, names)
    waits_release(events=events, names=names)
    for scenario, entries in _entries(events, names).values():
        entries_submit(scenario=scenario, entries=entries)
