"""Shared test helpers for the scenarios tests: a world to run scenarios in (the mailings world:
a database with subscribed profiles, a resource, a verified sender, a template with e-mail and SMS
versions) and scenarios built directly through the ORM — a version with its steps and
transitions, and for a published version the send steps' trigger mailings made the way publishing
makes them — so the engine, step, entry, selector and view tests do not depend on the authoring
services.

    scenario = make_scenario(world, steps=[("s1", "entry.api", {}), ("s2", "send", {}),
                                           ("s3", "wait", {"mode": "duration", "seconds": 0}),
                                           ("s4", "exit", {})],
                             edges=[("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4")])

A step is (key, kind, config) or (key, kind, config, title); a send step's config is completed
with the world's channel "email", resource, template and sender (an "sms" send gets an SMS
provider of the account). An edge is (source key, exit, target key).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from delivery.models import ProviderAccount
from mailings.models import Mailing
from mailings.tests.factories import SYSTEM, World, actor_for, make_world
from scenarios.graph import STEP_KINDS
from scenarios.models import Participation, PathEntry, Scenario, ScenarioVersion, Step, StepStat, Transition

__all__ = [
    "CHAIN",
    "SYSTEM",
    "World",
    "actor_for",
    "add_version",
    "make_participation",
    "make_scenario",
    "make_scenario_world",
    "make_sms_provider",
    "make_world",
    "participations_of",
    "path_of",
    "send_config",
    "stats_of",
    "step_of",
]

StepSpec = tuple[Any, ...]  # (key, kind, config) or (key, kind, config, title)
EdgeSpec = tuple[str, str, str]  # (source key, exit, target key)

# A common little flow: API entry -> send -> wait 0 -> exit.
CHAIN: tuple[list[StepSpec], list[EdgeSpec]] = (
    [("s1", "entry.api", {}), ("s2", "send", {}), ("s3", "wait", {"mode": "duration", "seconds": 0}),
     ("s4", "exit", {})],
    [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4")],
)


def make_scenario_world(account: Any, *, user: User | None = None, n: int = 5, **kw: Any) -> World:
    """The mailings world (`mailings.tests.factories.make_world`): `n` profiles subscribed by
    e-mail and SMS to "Shop news", a verified sender, a template with e-mail and SMS versions."""
    return make_world(account, user=user, n=n, **kw)


def make_sms_provider(world: World) -> ProviderAccount:
    """The account's SMS provider (a locmem one), made once."""
    provider = ProviderAccount.objects.filter(account=world.account, channel="sms").first()
    if provider is None:
        provider = ProviderAccount.objects.create(account=world.account, channel="sms", kind="locmem",
                                                  name="SMS gateway", secrets={})
    return provider


def send_config(world: World, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A send step's config completed with the world's references (explicit keys win)."""
    config = dict(config or {})
    channel = config.setdefault("channel", "email")
    config.setdefault("resource_id", world.resource.pk)
    config.setdefault("template_id", world.template.pk)
    if channel == "email":
        config.setdefault("sender_id", world.sender.pk)
        config.setdefault("provider_id", None)
    else:
        config.setdefault("sender_id", None)
        config.setdefault("provider_id", make_sms_provider(world).pk)
    config.setdefault("transactional", False)
    config.setdefault("track_opens", True)
    config.setdefault("track_clicks", True)
    return config


def _send_mailing(world: World, scenario: Scenario, step: Step, previous: Mailing | None) -> Mailing:
    """The send step's trigger mailing as publishing makes it: kind trigger, listening
    (state scheduled), trigger {"on"/"kind": "scenario", "scenario_id", "step"}; the previous
    version's mailing of the same key is reused when its references are unchanged."""
    cfg = step.config
    values = {
        "channel": cfg["channel"], "resource_id": cfg["resource_id"], "template_id": cfg["template_id"],
        "sender_id": cfg.get("sender_id"), "provider_id": cfg.get("provider_id"),
    }
    if previous is not None and all(getattr(previous, k) == v for k, v in values.items()):
        return previous
    return Mailing.objects.create(
        account=world.account, database=world.database, name=f"{scenario.name} · {step.title or step.key}",
        kind=Mailing.Kind.TRIGGER, state=Mailing.State.SCHEDULED, launched_at=timezone.now(),
        trigger={"on": "scenario", "kind": "scenario", "scenario_id": scenario.pk, "step": step.key},
        transactional=bool(cfg.get("transactional")), track_opens=bool(cfg.get("track_opens", True)),
        track_clicks=bool(cfg.get("track_clicks", True)), created_by=world.actor.user, **values,
    )


def _build(world: World, scenario: Scenario, version: ScenarioVersion, steps: Sequence[StepSpec],
           edges: Iterable[EdgeSpec], previous: ScenarioVersion | None) -> None:
    by_key: dict[str, Step] = {}
    prev_mailings: dict[str, Mailing] = {}
    if previous is not None:
        prev_mailings = {s.key: s.mailing for s in previous.steps.select_related("mailing") if s.mailing_id}
    for i, spec in enumerate(steps):
        key, kind, config = spec[0], spec[1], dict(spec[2] or {})
        assert kind in STEP_KINDS, f"unknown step kind {kind!r}"
        title = spec[3] if len(spec) > 3 else STEP_KINDS[kind].label
        if kind == "send":
            config = send_config(world, config)
        step = Step.objects.create(account=world.account, version=version, key=key, kind=kind, title=title,
                                   config=config, col=i, row=0)
        if kind == "send" and version.state == ScenarioVersion.State.PUBLISHED:
            step.mailing = _send_mailing(world, scenario, step, prev_mailings.get(key))
            step.save(update_fields=["mailing"])
        by_key[key] = step
    for source, exit_, target in edges:
        Transition.objects.create(account=world.account, version=version, source=by_key[source], exit=exit_,
                                  target=by_key[target])


def make_scenario(world: World, *, steps: Sequence[StepSpec] = CHAIN[0], edges: Iterable[EdgeSpec] = CHAIN[1],
                  active: bool = True, state: str | None = None, name: str = "Welcome journey",
                  reentry: str = Scenario.Reentry.NEVER, goal: dict[str, Any] | None = None, step_limit: int = 100,
                  webhook_secret: str = "s3cret",  # noqa: S107 (a test fixture's secret)
                  webhooks_private_ok: bool = False) -> Scenario:
    """A scenario of the world's account and database with version 1 holding `steps` and `edges`.
    `active` (default): state active, version 1 published and live, send steps' mailings made;
    `active=False`: a draft scenario whose v1 is the draft (no mailings). `state` overrides
    ("paused", "stopped": published like active)."""
    state = state or (Scenario.State.ACTIVE if active else Scenario.State.DRAFT)
    published = state != Scenario.State.DRAFT
    now = timezone.now()
    with transaction.atomic():
        scenario = Scenario.objects.create(
            account=world.account, database=world.database, name=name, state=state, reentry=reentry,
            goal=goal or {}, step_limit=step_limit, webhook_secret=webhook_secret,
            webhooks_private_ok=webhooks_private_ok, created_by=world.actor.user,
            activated_at=now if published else None,
        )
        version = ScenarioVersion.objects.create(
            account=world.account, scenario=scenario, number=1,
            state=ScenarioVersion.State.PUBLISHED if published else ScenarioVersion.State.DRAFT,
            published_at=now if published else None,
        )
        _build(world, scenario, version, steps, edges, previous=None)
        if published:
            scenario.live_version = version
            scenario.save(update_fields=["live_version"])
    return scenario


def add_version(world: World, scenario: Scenario, *, steps: Sequence[StepSpec], edges: Iterable[EdgeSpec],
                publish: bool = True) -> ScenarioVersion:
    """The scenario's next version with `steps` and `edges`. `publish` (default): published and
    made live (send steps reuse the previous live version's mailing of the same key when the
    references are the same); else a draft."""
    number = (scenario.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    now = timezone.now()
    with transaction.atomic():
        version = ScenarioVersion.objects.create(
            account=world.account, scenario=scenario, number=number,
            state=ScenarioVersion.State.PUBLISHED if publish else ScenarioVersion.State.DRAFT,
            published_at=now if publish else None,
        )
        _build(world, scenario, version, steps, edges, previous=scenario.live_version if publish else None)
        if publish:
            scenario.live_version = version
            scenario.save(update_fields=["live_version"])
    return version


def step_of(scenario_or_version: Scenario | ScenarioVersion, key: str) -> Step:
    """The step `key` of a version (a scenario: of its live version)."""
    version = (scenario_or_version.live_version if isinstance(scenario_or_version, Scenario)
               else scenario_or_version)
    return Step.objects.get(version=version, key=key)


def make_participation(scenario: Scenario, profile_id: int, *, step_key: str = "s1",
                       version: ScenarioVersion | None = None, state: str = Participation.State.ACTIVE,
                       next_run_at: datetime | None = None, **values: Any) -> Participation:
    """A participation written directly (no entry rules, no stats, no path row): for tests of
    what comes after entering. `values`: any Participation field."""
    version = version or scenario.live_version
    now = timezone.now()
    step = Step.objects.get(version=version, key=step_key)
    p = Participation.objects.create(
        account_id=scenario.account_id, scenario=scenario, version=version, profile_id=profile_id, step=step,
        state=state, next_run_at=next_run_at or now, entered_at=now, updated_at=now, **values,
    )
    PathEntry.objects.create(participation=p, version_number=version.number, step_key=step_key, seq=p.seq,
                             entered_at=now)
    return p


def participations_of(scenario: Scenario) -> list[Participation]:
    return list(Participation.objects.filter(scenario=scenario).select_related("step").order_by("id"))


def path_of(participation: Participation | int) -> list[tuple[str, str]]:
    """(step key, exit) of each path row of a participation, in order."""
    pid = participation if isinstance(participation, int) else participation.pk
    return list(PathEntry.objects.filter(participation_id=pid).order_by("seq", "id").values_list("step_key", "exit"))


def stats_of(scenario: Scenario) -> dict[tuple[str, str], int]:
    """{(step key, metric): n} summed over the StepStat deltas (zeros left out)."""
    out: dict[tuple[str, str], int] = {}
    for key, metric, n in StepStat.objects.filter(scenario_id=scenario.pk).values_list("step_key", "metric", "n"):
        out[(key, metric)] = out.get((key, metric), 0) + n
    return {k: v for k, v in out.items() if v}
