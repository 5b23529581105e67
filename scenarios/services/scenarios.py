"""A scenario's life: create, change its settings, delete; activate, pause, resume, stop.

    draft --activate--> active <--pause/resume--> paused
                          \\________ stop ________/--> stopped (final)

Every service runs in one transaction, locks the scenario row, refuses a wrong state with a
ScenarioError saying why, and writes an AuditEvent (verbs in AUDIT_VERBS, registered by
scenarios.apps). What live scenarios listen to changes with their state, so each transition
calls ENTRIES' `interest_changed()` (the per-process cache of event types).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from accounts.permissions import Perm
from mailings.models import LedgerEntry, Mailing
from profiles.models import ProfileDatabase
from scenarios.graph import ENTRY_KINDS
from scenarios.models import Participation, PathEntry, Scenario, ScenarioVersion, Step, StepStat
from scenarios.services.errors import ScenarioError

AUDIT_VERBS = {
    "scenario.created": "created a scenario",
    "scenario.updated": "changed a scenario's settings",
    "scenario.edited": "edited a scenario's draft",
    "scenario.draft_created": "started a new draft of a scenario",
    "scenario.published": "published a scenario version",
    "scenario.activated": "activated a scenario",
    "scenario.paused": "paused a scenario",
    "scenario.resumed": "resumed a scenario",
    "scenario.stopped": "stopped a scenario",
    "scenario.deleted": "deleted a scenario",
    "scenario.imported": "imported a scenario",
}

MAX_STEP_LIMIT = 10_000


def _actor(actor: Actor | None) -> Actor:
    return actor if actor is not None else Actor.system()


def interest_changed() -> None:
    """Tell every process that what live scenarios listen to changed (ENTRIES' handlers cache)."""
    from scenarios.handlers import interest_changed as changed

    changed()


def _locked(scenario: Scenario) -> Scenario:
    return Scenario.objects.select_for_update().select_related("account", "database").get(pk=scenario.pk)


def _refuse(scenario: Scenario, action: str, allowed: tuple[str, ...]) -> None:
    if scenario.state not in allowed:
        names = " or ".join(Scenario.State(s).label.lower() for s in allowed)
        article = "an" if names[0] in "aeiou" else "a"
        raise ScenarioError(f"Only {article} {names} scenario can be {action}; “{scenario.name}” is "
                            f"{scenario.get_state_display().lower()}.")


def _sync(target: Scenario, source: Scenario, *fields: str) -> None:
    """Copy fields the service changed onto the caller's instance."""
    for f in fields:
        setattr(target, f, getattr(source, f))


# --- settings -------------------------------------------------------------------------------------


def clean_goal(account: Account, goal: Any) -> dict[str, Any]:
    """{} (no goal) or {"type": <a type of the account's catalogue>, "filters": [...]}; ValueError."""
    from history.models import EventType
    from mailings.services.triggers.definition import FILTER_OPS

    if goal in (None, {}, ""):
        return {}
    if not isinstance(goal, dict):
        raise ValueError('an object {"type": "order.placed", "filters": [...]}, or {} for none')
    name = str(goal.get("type") or "")
    if not name:
        raise ValueError("name the goal's event type")
    if not EventType.objects.visible_to(account).filter(name=name).exists():
        raise ValueError(f"there is no event type “{name}” in this account's catalogue")
    filters = goal.get("filters") or []
    if not isinstance(filters, list):
        raise ValueError("filters must be a list")
    clean = []
    for i, f in enumerate(filters):
        if not isinstance(f, dict) or not str(f.get("property") or "").strip() or f.get("op") not in FILTER_OPS:
            raise ValueError(f"filter {i + 1} needs a property and an op ({', '.join(FILTER_OPS)})")
        clean.append({"property": str(f["property"]).strip(), "op": f["op"], "value": f.get("value")})
    return {"type": name, "filters": clean}


def _is_admin(account: Account, actor: Actor) -> bool:
    """Whether the actor may allow webhooks to private addresses (admins and owners; the system)."""
    if actor.token is not None:
        return actor.token.account_id == account.pk and actor.token.can(Perm.ACCOUNT_SETTINGS)
    if actor.user is not None:
        from accounts.models import Membership

        m = Membership.objects.filter(account=account, user=actor.user).first()
        return m is not None and m.can(Perm.ACCOUNT_SETTINGS)
    return True


def clean_settings(account: Account, values: dict[str, Any], *, actor: Actor, creating: bool) -> dict[str, Any]:
    """The model values for `values` (only the keys given; a new scenario needs a name). Raises
    ScenarioError per field."""
    known = {"name", "description", "reentry", "goal", "step_limit", "webhooks_private_ok"}
    errors = dict.fromkeys(set(values) - known, "unknown setting")
    out: dict[str, Any] = {}
    if "name" in values or creating:
        name = str(values.get("name") or "").strip()
        if not name:
            errors["name"] = "give the scenario a name"
        elif len(name) > 200:
            errors["name"] = "at most 200 characters"
        out["name"] = name
    if "description" in values:
        out["description"] = str(values["description"] or "")[:5000]
    if "reentry" in values:
        if values["reentry"] not in Scenario.Reentry.values:
            errors["reentry"] = "one of " + ", ".join(Scenario.Reentry.values)
        out["reentry"] = values["reentry"]
    if "goal" in values:
        try:
            out["goal"] = clean_goal(account, values["goal"])
        except ValueError as exc:
            errors["goal"] = str(exc)
    if "step_limit" in values:
        limit = values["step_limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_STEP_LIMIT:
            errors["step_limit"] = f"steps a profile may take a day: 1 to {MAX_STEP_LIMIT:,}"
        out["step_limit"] = limit
    if "webhooks_private_ok" in values:
        if not isinstance(values["webhooks_private_ok"], bool):
            errors["webhooks_private_ok"] = "true or false"
        elif not _is_admin(account, actor):
            errors["webhooks_private_ok"] = "only an admin or owner may allow webhooks to private addresses"
        out["webhooks_private_ok"] = values["webhooks_private_ok"]
    if errors:
        raise ScenarioError(errors)
    return out


@transaction.atomic
def scenario_create(*, account: Account, database: ProfileDatabase, name: str, actor: Actor | None = None,
                    reentry: str = Scenario.Reentry.NEVER, goal: dict[str, Any] | None = None, description: str = "",
                    starter: str | None = None) -> Scenario:
    """A new draft scenario over `database` with its draft version 1 (empty, or holding one
    `starter` entry step of that kind, e.g. "entry.api"). Raises ScenarioError per field."""
    from scenarios.services.editing import step_add

    actor = _actor(actor)
    errors: dict[str, str] = {}
    if database.account_id != account.pk:
        errors["database"] = "choose one of this account's databases"
    if starter is not None and starter not in ENTRY_KINDS:
        errors["starter"] = "an entry kind: " + ", ".join(sorted(ENTRY_KINDS))
    try:
        clean = clean_settings(account, {"name": name, "reentry": reentry, "goal": goal or {},
                                         "description": description}, actor=actor, creating=True)
    except ScenarioError as exc:
        errors.update(exc.errors)
    if errors:
        raise ScenarioError(errors)
    now = timezone.now()
    scenario = Scenario.objects.create(account=account, database=database, created_by=actor.user, created_at=now,
                                       updated_at=now, webhook_secret=secrets.token_urlsafe(32), **clean)
    version = ScenarioVersion.objects.create(account=account, scenario=scenario, number=1, created_at=now)
    if starter:
        step_add(version=version, kind=starter, actor=actor)
    audit_log(account=account, actor=actor, verb="scenario.created", target=scenario,
              data={"database": database.slug, "reentry": scenario.reentry})
    return scenario


@transaction.atomic
def scenario_update(*, scenario: Scenario, actor: Actor | None = None, values: dict[str, Any]) -> Scenario:
    """Change the settings named in `values` (name, description, reentry, goal, step_limit,
    webhooks_private_ok — the last for admins and owners only). A stopped scenario is final.
    Raises ScenarioError per field."""
    actor = _actor(actor)
    locked = _locked(scenario)
    if locked.state == Scenario.State.STOPPED:
        raise ScenarioError("A stopped scenario cannot be changed.")
    clean = clean_settings(locked.account, values, actor=actor, creating=False)
    for k, v in clean.items():
        setattr(locked, k, v)
    locked.updated_at = timezone.now()
    locked.save(update_fields=[*clean, "updated_at"])
    audit_log(account=locked.account, actor=actor, verb="scenario.updated", target=locked, data={"fields": sorted(clean)})
    if "goal" in clean and locked.is_live:
        interest_changed()
    _sync(scenario, locked, *clean, "updated_at")
    return scenario


@transaction.atomic
def scenario_delete(*, scenario: Scenario, actor: Actor | None = None) -> None:
    """Delete a draft or stopped scenario with its versions, participations, path log and
    counters, and its send steps' mailings. Refused (ScenarioError) for an active or paused one
    (stop it first), and when a step's mailing has ledger rows: the messages sent are on record
    and their mailing stays; the stopped scenario stays with them."""
    actor = _actor(actor)
    locked = _locked(scenario)
    _refuse(locked, "deleted", (Scenario.State.DRAFT, Scenario.State.STOPPED))
    mailing_ids = set(Step.objects.filter(version__scenario=locked, mailing__isnull=False)
                      .values_list("mailing_id", flat=True))
    if mailing_ids and LedgerEntry.objects.filter(mailing_id__in=mailing_ids).exists():
        raise ScenarioError(f"“{locked.name}” has sent messages, and their record (the send ledger) is kept: the "
                            "scenario stays, stopped. Its reports remain readable.")
    with connection.cursor() as cur:  # set-based: a stopped scenario may have had a million trips
        table, part = PathEntry._meta.db_table, Participation._meta.db_table
        cur.execute(f"DELETE FROM {table} WHERE participation_id IN "  # noqa: S608 - fixed table names
                    f"(SELECT id FROM {part} WHERE scenario_id = %s)", [locked.pk])
        cur.execute(f"DELETE FROM {part} WHERE scenario_id = %s", [locked.pk])  # noqa: S608
    StepStat.objects.filter(scenario_id=locked.pk).delete()
    Scenario.objects.filter(pk=locked.pk).update(live_version=None)
    Step.objects.filter(version__scenario=locked).update(mailing=None)
    audit_log(account=locked.account, actor=actor, verb="scenario.deleted", target=locked, target_label=locked.name)
    locked.delete()
    Mailing.objects.filter(pk__in=mailing_ids).delete()


# --- the state machine ------------------------------------------------------------------------------


@transaction.atomic
def scenario_activate(*, scenario: Scenario, actor: Actor | None = None, mapping: dict[str, str] | None = None,
                      publish: bool = False, now: datetime | None = None) -> Scenario:
    """Start a draft scenario, or publish the draft of a running one.

    Draft scenario: its draft is published (when it has no live version yet, or `publish`), the
    state becomes active, and the segment entries with "everyone in it at activation" enter
    after commit, in a task (`entries_at_activation_start`, which also sets the polled entries'
    watermarks now: profiles that existed before do not enter as "new"). Active or paused scenario with a draft: the
    draft is published (profiles moved by `mapping`), the state stays. Raises ScenarioError: a
    stopped scenario, nothing to activate or publish, or what `version_publish` refuses."""
    from scenarios.services.publishing import publish_locked

    actor = _actor(actor)
    now = now or timezone.now()
    locked = _locked(scenario)
    has_draft = ScenarioVersion.objects.filter(scenario=locked, state=ScenarioVersion.State.DRAFT).exists()
    if locked.state == Scenario.State.STOPPED:
        raise ScenarioError(f"“{locked.name}” is stopped, which is final: import a copy to run it again.")
    if locked.state in Scenario.LIVE_STATES:
        if not has_draft:
            raise ScenarioError(f"“{locked.name}” is already {locked.get_state_display().lower()} and has no draft "
                                "to publish.")
        publish_locked(scenario=locked, actor=actor, mapping=mapping, now=now)
        _sync(scenario, locked, "live_version", "updated_at")
        return scenario
    if has_draft and (locked.live_version_id is None or publish):
        publish_locked(scenario=locked, actor=actor, mapping=mapping, now=now)
    elif locked.live_version_id is None:
        raise ScenarioError(f"“{locked.name}” has nothing to activate: build its steps first.")
    locked.state, locked.activated_at, locked.updated_at = Scenario.State.ACTIVE, now, now
    locked.save(update_fields=["state", "activated_at", "updated_at"])
    from scenarios.entries import entries_at_activation_start

    # The members at start enter in a task after commit (chunk by chunk on the scenarios queue),
    # not in this request: 100k profiles would hold it for minutes.
    entries_at_activation_start(scenario=locked, now=now)
    audit_log(account=locked.account, actor=actor, verb="scenario.activated", target=locked,
              data={"version": locked.live_version.number if locked.live_version else None})
    interest_changed()
    locked.refresh_from_db(fields=["entry_marks"])
    _sync(scenario, locked, "state", "activated_at", "updated_at", "live_version", "entry_marks")
    return scenario


def _transition(scenario: Scenario, actor: Actor | None, allowed: tuple[str, ...], action: str, new_state: str,
                verb: str) -> Scenario:
    locked = _locked(scenario)
    _refuse(locked, action, allowed)
    locked.state, locked.updated_at = new_state, timezone.now()
    locked.save(update_fields=["state", "updated_at"])
    audit_log(account=locked.account, actor=_actor(actor), verb=verb, target=locked)
    interest_changed()
    _sync(scenario, locked, "state", "updated_at")
    return scenario


@transaction.atomic
def scenario_pause(*, scenario: Scenario, actor: Actor | None = None) -> Scenario:
    """Active -> paused: nobody enters and nobody moves (the engine holds the claimed rows; waits
    that end meanwhile go on at resume). Messages already in the send ledger still go. Raises
    ScenarioError for another state."""
    return _transition(scenario, actor, (Scenario.State.ACTIVE,), "paused", Scenario.State.PAUSED, "scenario.paused")


@transaction.atomic
def scenario_resume(*, scenario: Scenario, actor: Actor | None = None) -> Scenario:
    """Paused -> active: participations carry on where they were (those whose time came while
    paused move at the next tick). Raises ScenarioError for another state."""
    return _transition(scenario, actor, (Scenario.State.PAUSED,), "resumed", Scenario.State.ACTIVE, "scenario.resumed")


def _finish_mailings(scenario: Scenario, actor: Actor, now: datetime) -> dict[str, int]:
    """The step mailings of every version stop listening: one with messages still queued is
    cancelled (the queued ones are skipped, reason "cancelled": a stopped scenario sends no
    more), the others are done."""
    from mailings.services.lifecycle import mailing_cancel

    ids = set(Step.objects.filter(version__scenario=scenario, mailing__isnull=False).values_list("mailing_id", flat=True))
    live = Mailing.objects.filter(pk__in=ids, state__in=Mailing.LIVE_STATES)
    pending = set(LedgerEntry.objects.filter(mailing_id__in=ids, status=LedgerEntry.Status.QUEUED)
                  .values_list("mailing_id", flat=True).distinct())
    cancelled = 0
    for mailing in live.filter(pk__in=pending):
        mailing_cancel(mailing=mailing, actor=actor, now=now)
        cancelled += 1
    done = live.exclude(pk__in=pending).update(state=Mailing.State.DONE, finished_at=now, next_run_at=None)
    return {"cancelled": cancelled, "done": done}


@transaction.atomic
def scenario_stop(*, scenario: Scenario, actor: Actor | None = None, now: datetime | None = None) -> Scenario:
    """Active or paused -> stopped (final): every open participation exits with reason "stopped"
    (the engine's `participations_exit`), the step mailings stop listening (`_finish_mailings`)
    and the draft, if any, is dropped. Raises ScenarioError for another state (a draft scenario
    is deleted instead)."""
    from scenarios.engine import participations_exit

    actor = _actor(actor)
    now = now or timezone.now()
    locked = _locked(scenario)
    _refuse(locked, "stopped", Scenario.LIVE_STATES)
    locked.state, locked.stopped_at, locked.updated_at = Scenario.State.STOPPED, now, now
    locked.save(update_fields=["state", "stopped_at", "updated_at"])
    exited = participations_exit(scenario_id=locked.pk, profile_ids=None, reason="stopped", now=now)
    ScenarioVersion.objects.filter(scenario=locked, state=ScenarioVersion.State.DRAFT).delete()
    mailings = _finish_mailings(locked, actor, now)
    audit_log(account=locked.account, actor=actor, verb="scenario.stopped", target=locked,
              data={"exited": exited, **mailings})
    interest_changed()
    _sync(scenario, locked, "state", "stopped_at", "updated_at")
    return scenario
