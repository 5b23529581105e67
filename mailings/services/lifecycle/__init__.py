"""A mailing's life: create and edit (validated per field), what stops a launch, the state machine
(draft -> scheduled -> sending -> paused -> done | cancelled), runs (one per mailing and slot),
the schedule tick, and frequency caps.

Every transition runs in one transaction, locks the mailing row, refuses a wrong transition with
a MailingError saying why, and writes an AuditEvent. Work for Celery is published after commit
(`mailings.queue`): a lost publish loses nothing, the tick finds the run still `planning`.

Whenever a trigger mailing's state or definition changes, `cdp.confcache.changed()` makes every
process reload the set of event types trigger mailings listen to.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from mailings import windows
from mailings.models import FrequencyCap, LedgerEntry, Mailing, MailingStat, Run
from mailings.queue import publish_on_commit
from mailings.services.errors import MailingError
from mailings.services.lifecycle.validation import clean_values, mailing_problems, schedule_at
from mailings.services.policies import cap_clean
from mailings.services.stats import stats_add

log = logging.getLogger(__name__)

__all__ = [
    "AUDIT_VERBS", "cap_clear", "cap_set", "mailing_cancel", "mailing_create", "mailing_delete", "mailing_duplicate",
    "mailing_launch", "mailing_pause", "mailing_problems", "mailing_resume", "mailing_update", "mailings_tick",
    "run_start", "trigger_run",
]

AUDIT_VERBS = {
    "mailing.created": "created a mailing",
    "mailing.updated": "changed a mailing",
    "mailing.launched": "launched a mailing",
    "mailing.paused": "paused a mailing",
    "mailing.resumed": "resumed a mailing",
    "mailing.cancelled": "cancelled a mailing",
    "mailing.duplicated": "duplicated a mailing",
    "mailing.deleted": "deleted a mailing",
    "frequency_cap.set": "set a sending policy",
    "frequency_cap.cleared": "removed a sending policy",
}

STUCK_PLANNING = timedelta(seconds=60)  # a run still `planning` this long after creation lost its task
HORIZON = timedelta(days=400)  # how far ahead the next slot of a regular mailing is looked for


def _trigger_changed(mailing: Mailing) -> None:
    if mailing.kind == Mailing.Kind.TRIGGER:
        from cdp import confcache

        confcache.changed()


def _locked(mailing: Mailing) -> Mailing:
    return Mailing.objects.select_for_update().select_related("account").get(pk=mailing.pk)


def _refuse(mailing: Mailing, action: str, allowed: tuple[str, ...]) -> None:
    if mailing.state not in allowed:
        names = " or ".join(Mailing.State(s).label.lower() for s in allowed)
        raise MailingError(f"Only a {names} mailing can be {action}; this one is {mailing.get_state_display().lower()}.")


# --- create, update -------------------------------------------------------------------------------


def _apply(mailing: Mailing, clean: dict[str, Any]) -> list[str]:
    """Set the cleaned plain fields on `mailing`; returns their names (m2m and cap are separate)."""
    fields = [k for k in clean if k not in ("include_segments", "exclude_segments", "cap")]
    for name in fields:
        setattr(mailing, name, clean[name])
    return fields


def _apply_related(mailing: Mailing, clean: dict[str, Any], actor: Actor) -> None:
    if "include_segments" in clean:
        mailing.include_segments.set(clean["include_segments"])
    if "exclude_segments" in clean:
        mailing.exclude_segments.set(clean["exclude_segments"])
    if "cap" in clean:
        if clean["cap"] is None:
            cap_clear(account=mailing.account, actor=actor, mailing=mailing)
        else:
            cap_set(account=mailing.account, actor=actor, mailing=mailing, **clean["cap"])


@transaction.atomic
def mailing_create(*, account: Account, actor: Actor, values: dict[str, Any]) -> Mailing:
    """A new draft mailing. `values`: see COMMON (name and resource required). Raises
    MailingError({field: message}) for values that can never be right (another account's
    objects, a channel the resource lacks, bad shapes); what only stops a launch (no template
    version yet, an unverified sender) is `mailing_problems`."""
    clean = clean_values(account, values, mailing=None)
    mailing = Mailing(account=account, created_by=actor.user)
    _apply(mailing, clean)
    mailing.database_id = clean["resource"].database_id
    mailing.save()
    _apply_related(mailing, clean, actor)
    audit_log(account=account, actor=actor, verb="mailing.created", target=mailing, data={"kind": mailing.kind})
    _trigger_changed(mailing)
    return mailing


LOCKED_AFTER_LAUNCH = ("kind", "channel", "resource", "transactional")


@transaction.atomic
def mailing_update(*, mailing: Mailing, actor: Actor, values: dict[str, Any]) -> Mailing:
    """Change the fields named in `values` (others stay). Draft, scheduled and paused mailings only;
    kind, channel, resource and the transactional flag only while a draft. A scheduled mailing's
    next run is recomputed from its new schedule. Raises MailingError."""
    locked = _locked(mailing)
    if not locked.is_editable:
        raise MailingError(f"A {locked.get_state_display().lower()} mailing cannot be changed; duplicate it instead.")
    clean = clean_values(locked.account, values, mailing=locked)
    if locked.state != Mailing.State.DRAFT:
        frozen = {k: "cannot change after launch" for k in LOCKED_AFTER_LAUNCH
                  if k in clean and getattr(locked, k if k != "resource" else "resource_id")
                  != (clean[k].pk if k == "resource" else clean[k])}
        if frozen:
            raise MailingError(frozen)
    fields = _apply(locked, clean)
    if "resource" in clean:
        locked.database_id = clean["resource"].database_id
        fields.append("database")
    if locked.state == Mailing.State.SCHEDULED and ("schedule" in clean or "send_window" in clean):
        locked.next_run_at = schedule_at(locked, timezone.now())
        if locked.next_run_at is None:
            raise MailingError({"schedule": "this schedule has no future run"})
        fields.append("next_run_at")
    locked.save(update_fields=[*fields, "updated_at"])
    _apply_related(locked, clean, actor)
    audit_log(account=locked.account, actor=actor, verb="mailing.updated", target=locked, data={"fields": sorted(clean)})
    if "trigger" in clean or "kind" in clean:
        _trigger_changed(locked)
    return locked


# --- runs -----------------------------------------------------------------------------------------


def run_start(*, mailing: Mailing, slot: str, scheduled_for: datetime) -> Run | None:
    """The run of `mailing` for `slot`, created with the template's current version for the
    channel frozen on it, and its planning published after commit (trigger runs need none: their
    rows come with events, so they start `sending`). Returns None when the slot's run exists
    already (another tick made it): a run is unique per (mailing, slot). A template with no
    current version for the channel makes a failed run saying so."""
    from content.models import TemplateVersion

    version = (TemplateVersion.objects.filter(template_id=mailing.template_id, channel=mailing.channel, is_current=True)
               .first() if mailing.template_id else None)
    trigger = mailing.kind == Mailing.Kind.TRIGGER
    state = Run.State.SENDING if trigger else Run.State.PLANNING
    error = ""
    if version is None:
        state, error = Run.State.FAILED, f"the template has no current {mailing.get_channel_display()} version"
    try:
        with transaction.atomic():  # a savepoint: a concurrent insert of the slot must not spoil the caller's transaction
            run = Run.objects.create(account_id=mailing.account_id, mailing=mailing, slot=slot, state=state,
                                     version=version, scheduled_for=scheduled_for, error=error,
                                     finished_at=timezone.now() if error else None)
    except IntegrityError:
        return None
    if state == Run.State.PLANNING:
        from mailings.tasks import run_plan_bulk_task

        publish_on_commit(run_plan_bulk_task, run.pk)
    elif error:
        Mailing.objects.filter(pk=mailing.pk).update(last_error=f"Run {slot}: {error}", updated_at=timezone.now())
    return run


def trigger_run(*, mailing: Mailing, now: datetime | None = None) -> Run:
    """Today's (UTC) run of a trigger mailing, made on first use: slot "day:YYYY-MM-DD". The run
    exists but for the day's first fire, so it is read first (one indexed query) before trying to
    make it (a template version query, a savepoint and an INSERT that would conflict)."""
    now = now or timezone.now()
    slot = f"day:{now.astimezone(UTC).date().isoformat()}"
    run = Run.objects.filter(mailing_id=mailing.pk, slot=slot).first()
    if run is None:
        run = run_start(mailing=mailing, slot=slot, scheduled_for=now)
    return run if run is not None else Run.objects.get(mailing=mailing, slot=slot)


# --- transitions ----------------------------------------------------------------------------------


@transaction.atomic
def mailing_launch(*, mailing: Mailing, actor: Actor, now: datetime | None = None) -> Mailing:
    """Draft -> live. Broadcast "now": sending, its run started and planned after commit;
    "at" / "local": scheduled for that time (local: the earliest instant any timezone reaches it;
    the planner delays each row to its recipient's); regular: scheduled for its next slot;
    trigger: sending (listening), no run until an event. Raises MailingError: not a draft, or
    `mailing_problems` (every problem, per field)."""
    now = now or timezone.now()
    locked = _locked(mailing)
    _refuse(locked, "launched", (Mailing.State.DRAFT,))
    problems = mailing_problems(locked, now=now)
    if problems:
        raise MailingError(problems)
    locked.launched_at, locked.last_error, locked.finished_at = now, "", None
    sends_now = locked.kind == Mailing.Kind.BROADCAST and (locked.schedule or {}).get("mode", "now") == "now"
    if locked.kind == Mailing.Kind.TRIGGER or sends_now:
        locked.state, locked.next_run_at = Mailing.State.SENDING, None
    else:
        locked.state, locked.next_run_at = Mailing.State.SCHEDULED, schedule_at(locked, now)
    locked.save(update_fields=["state", "next_run_at", "launched_at", "last_error", "finished_at", "updated_at"])
    if locked.kind == Mailing.Kind.BROADCAST and locked.state == Mailing.State.SENDING:
        run_start(mailing=locked, slot="once", scheduled_for=now)
    audit_log(account=locked.account, actor=actor, verb="mailing.launched", target=locked,
              data={"state": locked.state, "next_run_at": locked.next_run_at.isoformat() if locked.next_run_at else None})
    _trigger_changed(locked)
    return locked


@transaction.atomic
def mailing_pause(*, mailing: Mailing, actor: Actor) -> Mailing:
    """Scheduled or sending -> paused, with its sending runs: claims stop (rows already claimed
    finish), the tick starts no run. Raises MailingError for another state."""
    locked = _locked(mailing)
    _refuse(locked, "paused", (Mailing.State.SCHEDULED, Mailing.State.SENDING))
    locked.state = Mailing.State.PAUSED
    locked.save(update_fields=["state", "updated_at"])
    # A run still planning is left to its planner, which sees the mailing paused and parks the run.
    Run.objects.filter(mailing=locked, state=Run.State.SENDING).update(state=Run.State.PAUSED)
    audit_log(account=locked.account, actor=actor, verb="mailing.paused", target=locked)
    _trigger_changed(locked)
    return locked


def _kick_on_commit(run_ids: list[int]) -> None:
    from mailings.services.planning import kick

    for run_id in run_ids:
        transaction.on_commit(lambda run_id=run_id: kick(run_id))


@transaction.atomic
def mailing_resume(*, mailing: Mailing, actor: Actor, now: datetime | None = None) -> Mailing:
    """Paused -> sending (its paused runs too, kicked after commit; a trigger mailing listens
    again) or, with no run in progress, -> scheduled (a regular mailing's next slot counted from
    now: slots missed while paused are not sent late). Nobody gets a message twice: the ledger
    rows already sent stay sent. Raises MailingError when not paused, or when what it needs
    broke meanwhile (`mailing_problems`)."""
    now = now or timezone.now()
    locked = _locked(mailing)
    _refuse(locked, "resumed", (Mailing.State.PAUSED,))
    problems = mailing_problems(locked, now=now, launching=False)
    if problems:
        raise MailingError(problems)
    active = list(Run.objects.filter(mailing=locked, state__in=(Run.State.PAUSED, Run.State.SENDING, Run.State.PLANNING))
                  .values_list("id", flat=True))
    fields = ["state", "updated_at"]
    if locked.kind == Mailing.Kind.TRIGGER or active:
        locked.state = Mailing.State.SENDING
    else:
        locked.state = Mailing.State.SCHEDULED
        if locked.kind == Mailing.Kind.REGULAR or locked.next_run_at is None:
            locked.next_run_at = schedule_at(locked, now)
            fields.append("next_run_at")
    locked.save(update_fields=fields)
    Run.objects.filter(mailing=locked, state=Run.State.PAUSED).update(state=Run.State.SENDING)
    _kick_on_commit(active)
    audit_log(account=locked.account, actor=actor, verb="mailing.resumed", target=locked, data={"state": locked.state})
    _trigger_changed(locked)
    return locked


@transaction.atomic
def mailing_cancel(*, mailing: Mailing, actor: Actor, now: datetime | None = None) -> Mailing:
    """Scheduled, sending or paused -> cancelled: each unfinished run's queued rows become skipped
    (reason cancelled) in one UPDATE a run, with their counters; the runs are cancelled (rows
    already claimed finish). Raises MailingError for another state (a draft is deleted instead)."""
    now = now or timezone.now()
    locked = _locked(mailing)
    _refuse(locked, "cancelled", Mailing.LIVE_STATES)
    from collections import Counter

    deltas: Counter[Any] = Counter()
    for run in Run.objects.filter(mailing=locked).exclude(state__in=Run.FINISHED_STATES):
        n = LedgerEntry.objects.filter(run=run, status=LedgerEntry.Status.QUEUED).update(
            status=LedgerEntry.Status.SKIPPED, reason=LedgerEntry.Reason.CANCELLED, lease_until=None, updated_at=now)
        key = (locked.account_id, locked.pk, run.pk)
        deltas[(*key, "skipped", None)] += n
        deltas[(*key, "skipped:cancelled", None)] += n
        deltas[(*key, "queued", None)] -= n
        run.state, run.finished_at = Run.State.CANCELLED, now
        run.save(update_fields=["state", "finished_at"])
    stats_add(deltas, when=now)
    locked.state, locked.next_run_at, locked.finished_at = Mailing.State.CANCELLED, None, now
    locked.save(update_fields=["state", "next_run_at", "finished_at", "updated_at"])
    audit_log(account=locked.account, actor=actor, verb="mailing.cancelled", target=locked,
              data={"skipped": sum(v for k, v in deltas.items() if k[3] == "skipped:cancelled")})
    _trigger_changed(locked)
    return locked


@transaction.atomic
def mailing_duplicate(*, mailing: Mailing, actor: Actor, name: str | None = None) -> Mailing:
    """A draft copy (same settings, audience, categories and mailing-level cap), named "Copy of …"."""
    skip = {"id", "state", "next_run_at", "last_error", "created_by", "created_at", "updated_at", "launched_at",
            "finished_at", "name"}
    values = {f.attname: getattr(mailing, f.attname) for f in Mailing._meta.concrete_fields if f.name not in skip}
    copy = Mailing.objects.create(**values, name=(name or f"Copy of {mailing.name}")[:200], created_by=actor.user)
    copy.include_segments.set(mailing.include_segments.all())
    copy.exclude_segments.set(mailing.exclude_segments.all())
    cap = FrequencyCap.objects.filter(mailing=mailing).first()
    if cap is not None:
        FrequencyCap.objects.create(account_id=copy.account_id, mailing=copy, max_messages=cap.max_messages,
                                    days=cap.days, scope=cap.scope)
    audit_log(account=copy.account, actor=actor, verb="mailing.duplicated", target=copy, data={"from": mailing.pk})
    return copy


@transaction.atomic
def mailing_delete(*, mailing: Mailing, actor: Actor) -> None:
    """Delete a draft or finished (done, cancelled) mailing with its runs, ledger and counters
    (set-based deletes: a finished broadcast may have a million ledger rows). Raises MailingError
    for a live mailing: cancel it first."""
    locked = _locked(mailing)
    if locked.state not in (Mailing.State.DRAFT, *Mailing.FINISHED_STATES):
        raise MailingError("Only a draft or finished mailing can be deleted; cancel it first.")
    with connection.cursor() as cur:
        cur.execute("DELETE FROM mailings_ledgerentry WHERE mailing_id = %s", [locked.pk])
    MailingStat.objects.filter(mailing_id=locked.pk).delete()
    audit_log(account=locked.account, actor=actor, verb="mailing.deleted", target=locked,
              target_label=locked.name)
    locked.delete()
    _trigger_changed(locked)


# --- the schedule tick ----------------------------------------------------------------------------


def _claim(mailing_id: int, due: datetime, now: datetime) -> Mailing | None:
    """Take the due mailing for this tick: a compare-and-set on next_run_at, so of two ticks
    (two beats, two processes) exactly one wins; PostgreSQL skips a row another tick holds."""
    qs = Mailing.objects.filter(pk=mailing_id, next_run_at=due,
                                state__in=(Mailing.State.SCHEDULED, Mailing.State.SENDING))
    if connection.vendor == "postgresql":
        qs = qs.select_for_update(skip_locked=True)
    mailing = qs.select_related("account").first()
    if mailing is None or (mailing.state == Mailing.State.SENDING and mailing.kind != Mailing.Kind.REGULAR):
        return None
    return mailing


def _start_due(mailing: Mailing, now: datetime) -> Run | None:
    due = mailing.next_run_at
    assert due is not None
    if mailing.kind == Mailing.Kind.REGULAR:
        slots = list(windows.regular_slots(mailing.schedule, mailing.account.timezone or "UTC",
                                           due - timedelta(seconds=1), now))
        # Only the latest due slot runs: its audience is evaluated now, so slots missed while the
        # scheduler was down would send the same people the same message again.
        slot = slots[-1] if slots else None
        following = next(windows.regular_slots(mailing.schedule, mailing.account.timezone or "UTC", now, now + HORIZON),
                         None)
        updated = Mailing.objects.filter(pk=mailing.pk, next_run_at=due).update(
            next_run_at=following[1] if following else None, updated_at=now)
        if not updated or slot is None:
            return None
        if len(slots) > 1:
            log.warning("mailings: mailing %s missed %d slot(s) before %s", mailing.pk, len(slots) - 1, slot[0])
        return run_start(mailing=mailing, slot=slot[0], scheduled_for=slot[1])
    # A broadcast "at" or "local": its one run.
    updated = Mailing.objects.filter(pk=mailing.pk, next_run_at=due, state=Mailing.State.SCHEDULED).update(
        next_run_at=None, state=Mailing.State.SENDING, updated_at=now)
    if not updated:
        return None
    return run_start(mailing=mailing, slot="once", scheduled_for=due)


def mailings_tick(*, now: datetime | None = None, limit: int = 200) -> int:
    """Start the runs that are due (a broadcast's time, a regular mailing's slot): each mailing is
    claimed with a conditional UPDATE (SKIP LOCKED on PostgreSQL) and its run made unique per
    (mailing, slot), so two ticks make one run. Also re-publishes the planning of runs stuck in
    `planning` (the broker was down at launch). Idempotent. Returns the runs started."""
    from mailings.tasks import run_plan_bulk_task

    now = now or timezone.now()
    started = 0
    due = list(Mailing.objects.filter(next_run_at__lte=now, state__in=(Mailing.State.SCHEDULED, Mailing.State.SENDING))
               .order_by("next_run_at").values_list("id", "next_run_at")[:limit])
    for mailing_id, when in due:
        with transaction.atomic():
            mailing = _claim(mailing_id, when, now)
            if mailing is not None and _start_due(mailing, now) is not None:
                started += 1
    for run_id in Run.objects.filter(state=Run.State.PLANNING, created_at__lt=now - STUCK_PLANNING).values_list(
            "id", flat=True)[:limit]:
        publish_on_commit(run_plan_bulk_task, run_id)
    return started


# --- frequency caps -------------------------------------------------------------------------------


def _cap_target(account: Account, resource: Any, mailing: Any) -> dict[str, Any]:
    if resource is not None and mailing is not None:
        raise MailingError("A sending policy belongs to the account, a resource or a mailing: name one.")
    if resource is not None and resource.account_id != account.pk:
        raise MailingError({"resource": "no such resource"})
    if mailing is not None and mailing.account_id != account.pk:
        raise MailingError({"mailing": "no such mailing"})
    return {"account": account, "resource": resource, "mailing": mailing}


@transaction.atomic
def cap_set(*, account: Account, actor: Actor, resource: Any = None, mailing: Any = None, max_messages: Any,
            days: Any, scope: Any = FrequencyCap.Scope.PROFILE) -> FrequencyCap:
    """Set the cap of the account (no resource, no mailing), a resource or a mailing (one per
    level; set again, it is replaced). Raises MailingError per field (1-15 messages, 1-16 days)."""
    n, d, sc = cap_clean(max_messages=max_messages, days=days, scope=scope)
    target = _cap_target(account, resource, mailing)
    cap = FrequencyCap.objects.select_for_update().filter(**target).first()
    if cap is None:
        cap = FrequencyCap.objects.create(**target, max_messages=n, days=d, scope=sc)
    else:
        cap.max_messages, cap.days, cap.scope = n, d, sc
        cap.save(update_fields=["max_messages", "days", "scope", "updated_at"])
    audit_log(account=account, actor=actor, verb="frequency_cap.set", target=mailing or resource,
              target_label=None if (mailing or resource) else "account",
              data={"level": cap.level, "max_messages": n, "days": d, "scope": sc})
    return cap


@transaction.atomic
def cap_clear(*, account: Account, actor: Actor, resource: Any = None, mailing: Any = None) -> bool:
    """Remove the cap of that level; returns whether there was one."""
    target = _cap_target(account, resource, mailing)
    deleted, _ = FrequencyCap.objects.filter(**target).delete()
    if deleted:
        level = "mailing" if mailing else "resource" if resource else "account"
        audit_log(account=account, actor=actor, verb="frequency_cap.cleared", target=mailing or resource,
                  target_label=None if (mailing or resource) else "account", data={"level": level})
    return bool(deleted)
