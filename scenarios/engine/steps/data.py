"""Data steps: update profile fields, change a subscription, put into / take out of a static segment.

Each runs once for the whole group: the field values are validated once against the database's
schema and written with one bulk UPDATE (plus the profiles' change history in one INSERT); the
subscriptions move with one `subscriptions_set_status_bulk` (one UPDATE, one consent-ledger
write); the segment membership changes with one INSERT .. SELECT or DELETE. All of them are
repeatable: a second call for the same trip sets the same values and changes nothing more.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.access import Actor
from profiles.models import WRITABLE_SYSTEM_FIELDS, Profile, ProfileChange
from profiles.services.profiles import Schema, apply_values, clean_values
from resources.models import Resource, Status, Subscription
from resources.services.common import Via
from resources.services.subscriptions import (
    subscriptions_confirm_after_commit,
    subscriptions_set_status_bulk,
    system_refusal,
)
from scenarios.engine.steps import Handler, Item, Outcome, StepRun, same
from segments.conditions import SegmentError
from segments.models import Segment

SYSTEM = Actor.system()
DEFAULT_PAUSE_DAYS = 30


def source_of(run: StepRun) -> str:
    """How the change histories name a scenario step ("scenario:12:s4")."""
    return f"scenario:{run.scenario.pk}:{run.step.key}"


def _label(run: StepRun) -> str:
    return f"Scenario “{run.scenario.name}” step {run.step.key}"[:200]


# --- update ----------------------------------------------------------------------------------------


def update_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Set the configured field values on the group's profiles. Values are converted with the
    database's schema (a value a field cannot hold fails the trips, naming the field). One
    SELECT .. FOR UPDATE, one bulk UPDATE, one INSERT of change-history rows; when the bulk
    write hits a unique value (two profiles cannot share an e-mail), each profile is written on
    its own and only the conflicting ones fail."""
    values = (run.step.config or {}).get("values") or {}
    if not isinstance(values, dict) or not values:
        return same(Outcome(exit="next", outcome="nothing to update"), len(items))
    database = run.scenario.database
    clean, errors = clean_values(Schema.load(database), values, clear_empty=True)
    if errors:
        text = "; ".join(f"field “{name}”: {message}" for name, message in errors.items())
        return same(Outcome(fail=f"the update cannot be applied: {text}"), len(items))
    now = timezone.now()
    with transaction.atomic():
        # By id: concurrent groups lock shared profiles in the same order (no deadlock), and when
        # a unique value clashes the lowest id gets it, whatever order the rows come back in.
        profiles = {p.pk: p for p in Profile.objects.select_for_update().filter(
            pk__in={i.profile_id for i in items}, database_id=database.pk).order_by("pk")}
        diffs: dict[int, dict[str, list[Any]]] = {}
        refused: dict[int, str] = {}
        for pid, profile in profiles.items():
            diff = apply_values(profile, clean)
            if diff and _lost_match_key(database.match_keys, diff, profile):
                refused[pid] = "a profile needs at least one match key"
            elif diff:
                profile.updated_at = now
                diffs[pid] = diff
        changed = [profiles[pid] for pid in diffs]
        columns = _columns(clean)
        failed: dict[int, str] = {}
        try:
            with transaction.atomic():
                Profile.objects.bulk_update(changed, columns, batch_size=500)
        except IntegrityError:
            failed = _one_by_one(changed, columns)
            for pid in failed:
                diffs.pop(pid, None)
        ProfileChange.objects.bulk_create([
            ProfileChange(account_id=profiles[pid].account_id, profile_id=pid, changes=diff, source=source_of(run)[:64],
                          actor_label=_label(run), created_at=now)
            for pid, diff in diffs.items()])
    out = []
    for item in items:
        pid = item.profile_id
        if pid not in profiles:
            out.append(Outcome(exit="next", outcome="no such profile: nothing updated"))
        elif pid in refused:
            out.append(Outcome(fail=f"the update cannot be applied: {refused[pid]}"))
        elif pid in failed:
            out.append(Outcome(fail=f"the update cannot be applied: field “{failed[pid]}”: "
                                    "another profile already has this value"))
        elif pid in diffs:
            out.append(Outcome(exit="next", outcome="updated: " + ", ".join(sorted(diffs[pid]))))
        else:
            out.append(Outcome(exit="next", outcome="unchanged"))
    return out


def _columns(clean: dict[str, Any]) -> list[str]:
    cols = sorted({name for name in clean if name in WRITABLE_SYSTEM_FIELDS})
    if any(name not in WRITABLE_SYSTEM_FIELDS for name in clean):
        cols.append("data")
    return [*cols, "updated_at"]


def _lost_match_key(match_keys: list[str], diff: dict[str, list[Any]], profile: Profile) -> bool:
    return any(k in diff and diff[k][1] is None for k in match_keys) and all(profile.value(k) is None for k in match_keys)


def _one_by_one(profiles: list[Profile], columns: list[str]) -> dict[int, str]:
    """Write each profile in its own savepoint; returns {profile id: the field that clashed}."""
    failed: dict[int, str] = {}
    unique = [c for c in columns if c in ("email", "phone")] or ["data"]
    for p in profiles:
        try:
            with transaction.atomic():
                p.save(update_fields=columns)
        except IntegrityError as exc:
            text = str(exc)
            failed[p.pk] = next((c for c in unique if c in text), unique[0])
    return failed


# --- subscription ----------------------------------------------------------------------------------


# The outcome of a subscription the system may not subscribe (resources' PERSON_ONLY).
_HELD = {Status.UNCONFIRMED: "subscription awaits the person's confirmation",
         Status.UNSUBSCRIBED: "subscription unchanged: only the person can undo their unsubscribe"}


def subscription_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Move the profiles' subscriptions on (resource, channel) to the configured status through
    the resources service (its transition rules, consent ledger and counters; actor: the
    system, source "scenario:<id>:<step>"). A profile without such a subscription goes on with
    outcome "no subscription"; one the rules do not let move (bounced, say) goes on unchanged.
    "suspended" pauses for `config["days"]` days (default 30).

    Consent: an automation never speaks for the person. "subscribed" resumes a paused
    subscription, but never confirms an unconfirmed one (only the person's click does), and never
    undoes an unsubscribe by itself (the resources service refuses both to the system:
    `system_refusal`): on a channel with double opt-in the unsubscribed become unconfirmed and get
    the confirmation message (they are asked); without double opt-in they stay unsubscribed."""
    config = run.step.config or {}
    status, channel = str(config.get("status") or ""), str(config.get("channel") or "")
    if status not in (Status.SUBSCRIBED, Status.UNSUBSCRIBED, Status.SUSPENDED):
        return same(Outcome(fail=f"unknown subscription status {status!r}"), len(items))
    resource = Resource.objects.for_account(run.scenario.account_id).filter(
        pk=config.get("resource_id"), database_id=run.scenario.database_id).first()
    if resource is None:
        return same(Outcome(fail="the step's resource no longer exists"), len(items))
    until = timezone.now() + timedelta(days=int(config.get("days") or DEFAULT_PAUSE_DAYS)) \
        if status == Status.SUSPENDED else None
    with transaction.atomic():
        subs = list(Subscription.objects.select_for_update().filter(
            resource_id=resource.pk, channel=channel, profile_id__in={i.profile_id for i in items}).order_by("id"))
        before = {s.pk: s.status for s in subs}
        held: dict[int, str] = {}  # subscription -> why the system may not subscribe it
        asked: list[Subscription] = []  # unsubscribed on a double opt-in channel: asked to confirm
        if status == Status.SUBSCRIBED:
            doi = resource.needs_confirmation(channel)
            for sub in subs:
                if sub.status == Status.UNSUBSCRIBED and doi:
                    asked.append(sub)
                elif system_refusal(sub.status, status, SYSTEM):  # the service refuses these too
                    held[sub.pk] = _HELD[sub.status]
        asked_ids = {sub.pk for sub in asked}
        free = [sub for sub in subs if sub.pk not in held and sub.pk not in asked_ids]
        via = Via(source=source_of(run))
        moved = set(subscriptions_set_status_bulk(subscriptions=free, status=status, actor=SYSTEM, via=via,
                                                  reason=_label(run), until=until))
        confirming = set(subscriptions_set_status_bulk(subscriptions=asked, status=Status.UNCONFIRMED, actor=SYSTEM,
                                                       via=via, reason=_label(run)))
        if confirming:
            subscriptions_confirm_after_commit([sub for sub in asked if sub.pk in confirming])
    by_profile: dict[int, list[Subscription]] = defaultdict(list)
    for s in subs:
        by_profile[s.profile_id].append(s)
    out = []
    for item in items:
        mine = by_profile.get(item.profile_id)
        if not mine:
            out.append(Outcome(exit="next", outcome=f"no subscription on {resource.name} {channel}"))
        elif any(s.pk in confirming for s in mine):
            out.append(Outcome(exit="next", outcome="subscription unconfirmed: the confirmation message was sent"))
        elif any(s.pk in moved for s in mine):
            out.append(Outcome(exit="next", outcome=f"subscription {status}"))
        elif all(s.pk in held for s in mine):
            out.append(Outcome(exit="next", outcome=held[mine[0].pk]))
        elif all(before[s.pk] == status for s in mine):
            out.append(Outcome(exit="next", outcome=f"subscription already {status}"))
        else:
            olds = ", ".join(sorted({before[s.pk] for s in mine}))
            out.append(Outcome(exit="next", outcome=f"subscription unchanged: {olds} cannot become {status}"))
    return out


# --- segment ---------------------------------------------------------------------------------------


def segment_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Add the group's profiles to (or remove them from) a static segment of the scenario's
    database: one statement through the segments' membership service."""
    from segments.services.members import segment_members_add, segment_members_remove

    config = run.step.config or {}
    action = config.get("action") or "add"
    if action not in ("add", "remove"):
        return same(Outcome(fail=f"unknown segment action {action!r}"), len(items))
    segment = Segment.objects.for_account(run.scenario.account_id).filter(
        pk=config.get("segment_id"), database_id=run.scenario.database_id).first()
    if segment is None:
        return same(Outcome(fail="the step's segment no longer exists"), len(items))
    service = segment_members_add if action == "add" else segment_members_remove
    try:
        service(segment=segment, profile_ids=sorted({i.profile_id for i in items}), actor=SYSTEM,
                source=source_of(run))
    except SegmentError as exc:
        return same(Outcome(fail=f"the segment step cannot run: {exc}"), len(items))
    done = "added to" if action == "add" else "removed from"
    return same(Outcome(exit="next", outcome=f"{done} {segment.name}"), len(items))


HANDLERS: dict[str, Handler] = {"update": update_run, "subscription": subscription_run, "segment": segment_run}
