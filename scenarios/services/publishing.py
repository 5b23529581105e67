"""Publishing a scenario's draft: `version_publish`.

Publishing validates the draft (every problem, refused at once), gives each send step its trigger
mailing, freezes the version (PUBLISHED, live), and optionally moves the profiles already inside
older versions step by step (`mapping` {old step key: new step key}, the engine's
`participations_move`). No new draft is made: the next edit makes one.

A send step's mailing is a Mailing of kind trigger, state `scheduled` (listening: the dispatch
claims its rows; mailings' own event handler and API leave it alone, its trigger is
{"on": "scenario", "kind": "scenario", "scenario_id", "step"}). The previous live version's
mailing of the same step key is reused when the channel, resource, template, sender, provider
and transactional flag are unchanged (its report keeps counting the step's messages across
versions); otherwise a new one is made, named "<scenario> · <step title>".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from mailings.models import Mailing
from scenarios.models import Participation, Scenario, ScenarioVersion, Step
from scenarios.services.errors import ScenarioError
from scenarios.services.validation import problems_dict, step_label, version_validate

REFERENCES = ("channel", "resource_id", "template_id", "sender_id", "provider_id")


def _ref(config: Mapping[str, Any], name: str) -> Any:
    value = config.get(name)
    if name == "channel":
        return value
    return int(value) if value not in (None, "") else None


def _trigger(scenario: Scenario, step: Step) -> dict[str, Any]:
    return {"on": "scenario", "kind": "scenario", "scenario_id": scenario.pk, "step": step.key}


def _reusable(mailing: Mailing | None, config: Mapping[str, Any]) -> bool:
    if mailing is None or mailing.state not in (Mailing.State.SCHEDULED, Mailing.State.SENDING, Mailing.State.PAUSED):
        return False
    same = all(getattr(mailing, name) == _ref(config, name) for name in REFERENCES)
    return same and mailing.transactional == bool(config.get("transactional"))


def _step_mailing(scenario: Scenario, step: Step, previous: Mailing | None, actor: Actor, now: datetime) -> Mailing:
    """The trigger mailing `step` sends through: `previous` when reusable (its tracking flags and
    name follow the step), else a new listening one. Raises ScenarioError when the new mailing
    could not send (an unverified sender, a template with lint errors...: mailings' own check)."""
    config = step.config or {}
    name = f"{scenario.name} · {step.title or step.key}"[:200]
    flags = {"track_opens": bool(config.get("track_opens", True)), "track_clicks": bool(config.get("track_clicks", True))}
    if _reusable(previous, config):
        assert previous is not None
        changed = {k: v for k, v in {**flags, "name": name}.items() if getattr(previous, k) != v}
        if changed:
            for k, v in changed.items():
                setattr(previous, k, v)
            previous.save(update_fields=[*changed, "updated_at"])
        return previous
    from mailings.services.lifecycle import mailing_problems

    mailing = Mailing(
        account_id=scenario.account_id, database_id=scenario.database_id, name=name, kind=Mailing.Kind.TRIGGER,
        state=Mailing.State.SCHEDULED, channel=config.get("channel"), resource_id=_ref(config, "resource_id"),
        template_id=_ref(config, "template_id"), sender_id=_ref(config, "sender_id"),
        provider_id=_ref(config, "provider_id"), transactional=bool(config.get("transactional")),
        trigger=_trigger(scenario, step), launched_at=now, created_by=actor.user,
        description=f"The messages of step {step.key} of the scenario “{scenario.name}”.", **flags)
    problems = mailing_problems(mailing, now=now, launching=False)
    if problems:
        raise ScenarioError({step.key: f"{step_label(step)}: " + "; ".join(problems.values())})
    mailing.save()
    return mailing


def _clean_mapping(scenario: Scenario, draft: ScenarioVersion, mapping: Any) -> dict[str, str]:
    """{old key: new key}: old keys are steps of an older published version, new keys steps of
    the draft (not entries). Raises ScenarioError keyed "mapping.<old key>"."""
    if mapping in (None, {}):
        return {}
    if not isinstance(mapping, Mapping):
        raise ScenarioError({"mapping": "an object {old step key: new step key}"})
    old_keys = set(Step.objects.filter(version__scenario=scenario, version__state=ScenarioVersion.State.PUBLISHED)
                   .values_list("key", flat=True))
    new_steps = dict(Step.objects.filter(version=draft).values_list("key", "kind"))
    errors: dict[str, str] = {}
    for old, new in mapping.items():
        if old not in old_keys:
            errors[f"mapping.{old}"] = f"no published version has a step {old}"
        elif new not in new_steps:
            errors[f"mapping.{old}"] = f"the new version has no step {new}"
        elif new_steps[new].startswith("entry."):
            errors[f"mapping.{old}"] = f"step {new} is an entry: move profiles to a step after it"
    if errors:
        raise ScenarioError(errors)
    return {str(k): str(v) for k, v in mapping.items()}


def publish_locked(*, scenario: Scenario, actor: Actor, mapping: Any = None, now: datetime | None = None) -> ScenarioVersion:
    """`version_publish` for a caller that holds the scenario row locked in its transaction."""
    now = now or timezone.now()
    if scenario.state == Scenario.State.STOPPED:
        raise ScenarioError("A stopped scenario cannot be published.")
    draft = (ScenarioVersion.objects.select_for_update().filter(scenario=scenario, state=ScenarioVersion.State.DRAFT)
             .first())
    if draft is None:
        raise ScenarioError("There is no draft to publish: edit the scenario first.")
    problems = version_validate(draft)
    if problems:
        raise ScenarioError(problems_dict(problems), problems=problems)
    moves = _clean_mapping(scenario, draft, mapping)
    previous: dict[str, Mailing] = {}
    if scenario.live_version_id:
        previous = {s.key: s.mailing for s in Step.objects.filter(version_id=scenario.live_version_id,
                                                                   mailing__isnull=False).select_related("mailing")}
    for step in Step.objects.filter(version=draft, kind="send").order_by("key"):
        mailing = _step_mailing(scenario, step, previous.get(step.key), actor, now)
        Step.objects.filter(pk=step.pk).update(mailing=mailing)
    draft.state, draft.published_at, draft.published_by = ScenarioVersion.State.PUBLISHED, now, actor.user
    draft.save(update_fields=["state", "published_at", "published_by"])
    scenario.live_version = draft
    scenario.updated_at = now
    scenario.save(update_fields=["live_version", "updated_at"])
    moved = 0
    if moves and Participation.objects.filter(scenario=scenario, state__in=Participation.OPEN_STATES).exclude(
            version=draft).exists():
        from scenarios.engine import participations_move

        moved = participations_move(scenario=scenario, to_version=draft, mapping=moves, actor=actor)
    audit_log(account=scenario.account, actor=actor, verb="scenario.published", target=scenario,
              data={"version": draft.number, "mapping": moves, "moved": moved})
    from scenarios.services.scenarios import interest_changed

    interest_changed()
    return draft


@transaction.atomic
def version_publish(*, scenario: Scenario, actor: Actor | None = None, mapping: Any = None,
                    now: datetime | None = None) -> ScenarioVersion:
    """Publish the scenario's draft and make it the live version (the scenario's state does not
    change: activating is `scenario_activate`). Raises ScenarioError: no draft, a stopped
    scenario, every validation problem keyed by step ("s4") or "__all__"/"goal", a bad mapping
    ("mapping.s3"), or a send step whose new mailing could not send. Returns the published version."""
    locked = Scenario.objects.select_for_update().select_related("account", "database").get(pk=scenario.pk)
    version = publish_locked(scenario=locked, actor=actor or Actor.system(), mapping=mapping, now=now)
    scenario.live_version, scenario.updated_at = version, locked.updated_at
    return version


def step_mailings_release(*, scenario: Scenario, now: datetime | None = None) -> int:
    """Finish the step mailings nobody sends through any more: mailings of the scenario's send
    steps that no draft or published version uses (their versions were retired) and that have no
    message still queued or sending become done. For the engine's housekeeping, after it retires
    versions. Idempotent; returns how many finished."""
    from mailings.models import LedgerEntry

    now = now or timezone.now()
    used = Step.objects.filter(version__scenario=scenario, mailing__isnull=False)
    in_use = set(used.exclude(version__state=ScenarioVersion.State.RETIRED).values_list("mailing_id", flat=True))
    idle = set(used.values_list("mailing_id", flat=True)) - in_use
    busy = set(LedgerEntry.objects.filter(mailing_id__in=idle, status__in=(LedgerEntry.Status.QUEUED,
                                                                            LedgerEntry.Status.SENDING))
               .values_list("mailing_id", flat=True).distinct())
    return Mailing.objects.filter(pk__in=idle - busy, state__in=Mailing.LIVE_STATES).update(
        state=Mailing.State.DONE, finished_at=now, next_run_at=None)
