"""Subscriptions: the only way their status changes (validated against TRANSITIONS, written to
the consent ledger in the same transaction), double opt-in, pauses, merge and erasure."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Max
from django.utils import timezone

from accounts.access import Actor
from accounts.models import Account
from profiles.models import Profile
from resources.addresses import AddressError, normalise_address
from resources.models import SYSTEM_STATUSES, Channel, ConsentRecord, Resource, Status, Subscription
from resources.services.common import (
    ResourceError,
    ResourceValidationError,
    Via,
    _record,
    _write_ledger,
    write_count_deltas,
)

# Higher apps register here in AppConfig.ready(): CONFIRMATION_HANDLERS are told (after commit)
# that a subscription now awaits double opt-in, to send its confirmation link (mailings wires a
# trigger mailing).
CONFIRMATION_HANDLERS: list[Callable[[Subscription], None]] = []

PAUSE_DAYS = (14, 30, 60, 90)


# --- status transitions --------------------------------------------------------------------------

# old status -> statuses it may move to without `force`. Leaving a system state (bounced,
# complained, blocked) is an explicit admin action (`force=True`), recorded with its reason.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.SUBSCRIBED: frozenset({Status.UNSUBSCRIBED, Status.SUSPENDED, *SYSTEM_STATUSES}),
    Status.UNCONFIRMED: frozenset({Status.SUBSCRIBED, Status.UNSUBSCRIBED, *SYSTEM_STATUSES}),
    Status.SUSPENDED: frozenset({Status.SUBSCRIBED, Status.UNSUBSCRIBED, Status.SUSPENDED, *SYSTEM_STATUSES}),
    Status.UNSUBSCRIBED: frozenset({Status.SUBSCRIBED, Status.UNCONFIRMED, *SYSTEM_STATUSES}),
    Status.BOUNCED: frozenset({Status.UNSUBSCRIBED, Status.COMPLAINED, Status.BLOCKED}),
    Status.COMPLAINED: frozenset({Status.UNSUBSCRIBED, Status.BLOCKED}),
    Status.BLOCKED: frozenset({Status.UNSUBSCRIBED}),
}


# Only the person moves their subscription from these to "subscribed" (a confirmation click, a
# resubscribe on a public page), or a team member or token stating the person's consent. Never
# the system: an automation (a scenario step, a schedule) does not speak for the person.
PERSON_ONLY: dict[str, str] = {
    Status.UNCONFIRMED: "it awaits the person's confirmation",
    Status.UNSUBSCRIBED: "only the person can undo their unsubscribe",
}


def system_refusal(old: str, new: str, actor: Actor | None) -> str | None:
    """Why `actor` may not move a subscription from `old` to `new` on the person's behalf, or None."""
    if actor is not None and actor.kind == "system" and new == Status.SUBSCRIBED:
        return PERSON_ONLY.get(old)
    return None


def check_transition(old: str, new: str, *, force: bool = False, actor: Actor | None = None) -> None:
    """Raises ResourceError when `old` -> `new` is not allowed (a no-op is allowed).

    `force` (leaving a system state) is for team members and API tokens only, never for a
    subscriber on a public page or the system; the system never subscribes an unconfirmed or
    unsubscribed address (PERSON_ONLY)."""
    if new not in Status.values:
        raise ResourceError(f"Unknown status {new!r}: use one of {', '.join(Status.values)}.")
    if old == new and new != Status.SUSPENDED:
        return
    if why := system_refusal(old, new, actor):
        raise ResourceError(f"The system cannot subscribe this address: {why}.")
    if new in TRANSITIONS.get(old, frozenset()):
        return
    if old in SYSTEM_STATUSES:
        if force and (actor is None or actor.kind in ("user", "token")):
            return
        raise ResourceError(
            f"This address is {Status(old).label.lower()}: only an admin may subscribe it again, as an explicit action "
            "(tick “I have the person's renewed consent”, or send force=true with a reason)."
        )
    raise ResourceError(f"A subscription cannot go from {Status(old).label.lower()} to {Status(new).label.lower()}.")


# --- subscriptions -------------------------------------------------------------------------------


def _region(account_id: int) -> str:
    return Account.objects.filter(pk=account_id).values_list("default_phone_region", flat=True).first() or ""


def clean_address(resource: Resource, channel: str, address: Any) -> str:
    """Raises ResourceValidationError for a channel the resource lacks or an invalid address."""
    if channel not in Channel.values:
        raise ResourceValidationError({"channel": f"unknown channel {channel!r}; use {', '.join(Channel.values)}"})
    if channel not in resource.channels:
        raise ResourceValidationError({"channel": f"{Channel(channel).label} is not enabled on {resource.name}"})
    try:
        return normalise_address(channel, address, region=_region(resource.account_id))
    except AddressError as exc:
        raise ResourceValidationError({"address": str(exc)}) from None


def _clean_opted_out(resource: Resource, opted_out: Iterable[str] | None) -> list[str]:
    keys = list(dict.fromkeys(opted_out or []))
    unknown = [k for k in keys if k not in resource.category_keys]
    if unknown:
        raise ResourceValidationError({"opted_out": f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(str, unknown))}"
                                                    f" (this resource has: {', '.join(resource.category_keys) or 'none'})"})
    return [k for k in resource.category_keys if k in keys]


def hold_parents(*, profile_id: int, resource_id: int) -> None:
    """Hold the profile and resource a subscription is about to reference (FOR KEY SHARE on
    PostgreSQL; SQLite has one writer) until the transaction ends, so an erasure or deletion waits
    and then removes what this transaction added. Raises ResourceError if either is gone."""
    lock = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cur:
        cur.execute(f"SELECT id FROM profiles_profile WHERE id = %s{lock}", [profile_id])  # noqa: S608
        if cur.fetchone() is None:
            raise ResourceError("This profile no longer exists.")
        cur.execute(f"SELECT id FROM resources_resource WHERE id = %s{lock}", [resource_id])  # noqa: S608
        if cur.fetchone() is None:
            raise ResourceError("This resource no longer exists.")


def _confirm_after_commit(sub: Subscription) -> None:
    if CONFIRMATION_HANDLERS:
        transaction.on_commit(lambda: [h(sub) for h in CONFIRMATION_HANDLERS])


def subscriptions_confirm_after_commit(subscriptions: Iterable[Subscription]) -> None:
    """Ask each of these (now unconfirmed) subscriptions' owners to confirm, after commit: the
    CONFIRMATION_HANDLERS (the double opt-in trigger mailing) for each, as a single change does."""
    for sub in subscriptions:
        _confirm_after_commit(sub)


@transaction.atomic
def subscription_create(
    *, profile: Profile, resource: Resource, channel: str, address: Any, actor: Actor, via: Via,
    status: str = Status.SUBSCRIBED, opted_out: Iterable[str] | None = None, priority: int | None = None,
    meta: dict[str, Any] | None = None, confirmed: bool = False, reason: str = "",
) -> Subscription:
    """Subscribe `profile` to `resource` on `channel` at `address` (normalised here).

    On a channel with double opt-in a new "subscribed" subscription starts "unconfirmed" (and
    CONFIRMATION_HANDLERS are called after commit) unless `confirmed` says the person already
    confirmed. An address another profile holds on this resource is an error, except a push
    token, which moves to this profile (a device signs in as someone else). Raises
    ResourceValidationError.
    """
    if profile.database_id != resource.database_id:
        raise ResourceValidationError({"resource": f"{resource.name} belongs to another profile database"})
    clean = clean_address(resource, channel, address)
    if status not in (Status.SUBSCRIBED, Status.UNCONFIRMED, Status.UNSUBSCRIBED):
        raise ResourceValidationError({"status": "a new subscription is subscribed, unconfirmed or unsubscribed"})
    opted = _clean_opted_out(resource, opted_out)
    hold_parents(profile_id=profile.pk, resource_id=resource.pk)
    existing = Subscription.objects.select_for_update().filter(resource=resource, channel=channel, address=clean).first()
    if existing is not None:
        if existing.profile_id == profile.pk:
            raise ResourceValidationError({"address": f"this profile is already subscribed at {clean} ({existing.get_status_display().lower()})"})
        if channel not in (Channel.WEBPUSH, Channel.MOBILEPUSH):
            raise ResourceValidationError({"address": f"{clean} belongs to another profile (#{existing.profile_id}) on this resource"})
        return _move_device(existing, profile, actor=actor, via=via)
    if status == Status.SUBSCRIBED and resource.needs_confirmation(channel) and not confirmed:
        status = Status.UNCONFIRMED
    if priority is None:
        top = Subscription.objects.filter(profile=profile, resource=resource, channel=channel).aggregate(m=Max("priority"))["m"]
        priority = (top or 0) + 1
    now = timezone.now()
    sub = Subscription(
        account_id=resource.account_id, resource=resource, profile=profile, channel=channel, address=clean, status=status,
        reason=reason[:500], opted_out=opted, priority=max(1, min(int(priority), 32767)), meta=meta or {}, source=via.source[:64],
        confirmed_at=now if status == Status.SUBSCRIBED and resource.needs_confirmation(channel) else None,
        suspended_until=None, created_at=now, changed_at=now, updated_at=now,
    )
    try:
        with transaction.atomic():
            sub.save()
    except IntegrityError:
        raise ResourceValidationError({"address": f"{clean} was just subscribed by someone else; reload and try again"}) from None
    _write_ledger([_record(sub, actor=actor, via=via, action=ConsentRecord.Action.CREATED, new_status=status,
                           new_categories=opted or None, reason=reason)])
    if status == Status.UNCONFIRMED:
        _confirm_after_commit(sub)
    return sub


def _move_device(sub: Subscription, profile: Profile, *, actor: Actor, via: Via) -> Subscription:
    old_profile = sub.profile_id
    sub.profile = profile
    sub.updated_at = timezone.now()
    sub.save(update_fields=["profile", "updated_at"])
    _write_ledger([_record(sub, actor=actor, via=via, action=ConsentRecord.Action.MOVED, old_status=sub.status,
                           new_status=sub.status, reason=f"device moved from profile #{old_profile}")])
    return sub


def _locked(sub: Subscription) -> Subscription:
    return Subscription.objects.select_for_update().select_related("resource").get(pk=sub.pk)


@transaction.atomic
def subscription_set_status(
    *, subscription: Subscription, status: str, actor: Actor, via: Via, reason: str = "",
    until: datetime | None = None, force: bool = False,
) -> bool:
    """Move a subscription to `status` (validated by TRANSITIONS); returns False for a no-op.

    Pausing (suspended) needs `until`, a time in the future. Re-subscribing on a double opt-in
    channel goes through "unconfirmed" unless a team member or token does it. Raises ResourceError.
    Safe to call twice: the second call changes nothing and writes nothing.
    """
    sub = _locked(subscription)
    old = sub.status
    if status == Status.SUSPENDED:
        if until is None or until <= timezone.now():
            raise ResourceValidationError({"until": "a pause needs an end in the future"})
        if old == Status.SUSPENDED and sub.suspended_until == until:
            return False
    elif old == status:
        return False
    if (status == Status.SUBSCRIBED and old == Status.UNSUBSCRIBED and actor.kind == "subscriber"
            and sub.resource.needs_confirmation(sub.channel)):
        status = Status.UNCONFIRMED
    check_transition(old, status, force=force, actor=actor)
    now = timezone.now()
    sub.status, sub.reason, sub.changed_at, sub.updated_at = status, reason[:500], now, now
    sub.suspended_until = until if status == Status.SUSPENDED else None
    if status == Status.SUBSCRIBED and old == Status.UNCONFIRMED:
        sub.confirmed_at = now
    sub.save(update_fields=["status", "reason", "changed_at", "updated_at", "suspended_until", "confirmed_at"])
    _write_ledger([_record(sub, actor=actor, via=via, action=ConsentRecord.Action.STATUS, old_status=old, new_status=status,
                           reason=reason or (f"paused until {until:%Y-%m-%d}" if until else ""))])
    if status == Status.UNCONFIRMED:
        _confirm_after_commit(sub)
    subscription.__dict__.update({k: v for k, v in sub.__dict__.items() if not k.startswith("_")})
    return True


@transaction.atomic
def subscription_set_categories(*, subscription: Subscription, opted_out: Iterable[str], actor: Actor, via: Via) -> bool:
    """Set the categories the subscriber opted out of; returns False for a no-op. Raises ResourceValidationError."""
    sub = _locked(subscription)
    new = _clean_opted_out(sub.resource, opted_out)
    old = list(sub.opted_out)
    if new == old:
        return False
    sub.opted_out, sub.updated_at = new, timezone.now()
    sub.save(update_fields=["opted_out", "updated_at"])
    _write_ledger([_record(sub, actor=actor, via=via, action=ConsentRecord.Action.CATEGORIES, old_status=sub.status,
                           new_status=sub.status, old_categories=old, new_categories=new)])
    subscription.__dict__.update({k: v for k, v in sub.__dict__.items() if not k.startswith("_")})
    return True


@transaction.atomic
def subscription_update(
    *, subscription: Subscription, actor: Actor, via: Via, status: str | None = None, reason: str = "",
    until: datetime | None = None, force: bool = False, opted_out: Iterable[str] | None = None,
    priority: int | None = None, meta: dict[str, Any] | None = None,
) -> list[str]:
    """The API's PATCH: any of status, categories, priority and meta; returns what changed."""
    changed = []
    if status is not None and subscription_set_status(subscription=subscription, status=status, actor=actor, via=via,
                                                      reason=reason, until=until, force=force):
        changed.append("status")
    if opted_out is not None and subscription_set_categories(subscription=subscription, opted_out=opted_out, actor=actor, via=via):
        changed.append("opted_out")
    fields = []
    if priority is not None and priority != subscription.priority:
        if not 1 <= priority <= 32767:
            raise ResourceValidationError({"priority": "is 1 (primary) or more"})
        subscription.priority = priority
        fields.append("priority")
    if meta is not None and meta != subscription.meta:
        subscription.meta = meta
        fields.append("meta")
    if fields:
        subscription.updated_at = timezone.now()
        subscription.save(update_fields=[*fields, "updated_at"])
        changed += fields
    return changed


@transaction.atomic
def subscription_make_primary(*, subscription: Subscription) -> bool:
    """Make this the primary address (priority 1) on its resource and channel; the profile's other
    subscriptions there follow in their old order. Returns False when it already was the only primary."""
    siblings = list(
        Subscription.objects.select_for_update()
        .filter(profile_id=subscription.profile_id, resource_id=subscription.resource_id, channel=subscription.channel)
        .order_by("priority", "id")
    )
    ordered = [s for s in siblings if s.pk == subscription.pk] + [s for s in siblings if s.pk != subscription.pk]
    now, changed = timezone.now(), []
    for n, s in enumerate(ordered, start=1):
        if s.priority != n:
            s.priority, s.updated_at = n, now
            changed.append(s)
    Subscription.objects.bulk_update(changed, ["priority", "updated_at"])
    subscription.priority = 1
    return bool(changed)


@transaction.atomic
def subscription_delete(*, subscription: Subscription, actor: Actor, via: Via) -> None:
    """Delete a subscription (a wrong address, an old device). The ledger keeps a "deleted" record.

    Prefer unsubscribing: a deleted address can be subscribed again without a trace of the opt-out."""
    sub = _locked(subscription)
    _write_ledger([_record(sub, actor=actor, via=via, action=ConsentRecord.Action.DELETED, old_status=sub.status)])
    sub.delete()


@transaction.atomic
def subscription_subscribe(
    *, profile: Profile, resource: Resource, channel: str, address: Any, actor: Actor, via: Via,
    status: str = Status.SUBSCRIBED, opted_out: Iterable[str] | None = None, confirmed: bool = False,
    force: bool = False, reason: str = "",
) -> tuple[Subscription, bool]:
    """Create the subscription, or move the existing one at this address to `status` (the API's and
    the public form's "subscribe"). Returns (subscription, created). Raises ResourceError."""
    clean = clean_address(resource, channel, address)
    existing = Subscription.objects.filter(resource=resource, channel=channel, address=clean).first()
    if existing is None or (existing.profile_id != profile.pk and channel in (Channel.WEBPUSH, Channel.MOBILEPUSH)):
        sub = subscription_create(profile=profile, resource=resource, channel=channel, address=clean, actor=actor, via=via,
                                  status=status, opted_out=opted_out, confirmed=confirmed, reason=reason)
        return sub, existing is None
    if existing.profile_id != profile.pk:
        raise ResourceValidationError({"address": f"{clean} belongs to another profile (#{existing.profile_id}) on this resource"})
    target = status
    if (target == Status.SUBSCRIBED and existing.status in (Status.UNSUBSCRIBED, Status.UNCONFIRMED)
            and resource.needs_confirmation(channel) and not confirmed):
        target = Status.UNCONFIRMED
    if target == Status.UNCONFIRMED and existing.status in (Status.SUBSCRIBED, Status.SUSPENDED):
        target = existing.status  # already confirmed earlier: nothing to confirm again
    if target != existing.status:
        subscription_set_status(subscription=existing, status=target, actor=actor, via=via, reason=reason, force=force)
    elif target == Status.UNCONFIRMED:
        _confirm_after_commit(existing)  # asked again: send the confirmation again
    if opted_out is not None:
        subscription_set_categories(subscription=existing, opted_out=opted_out, actor=actor, via=via)
    return existing, False


def subscription_confirm(*, subscription: Subscription, actor: Actor, via: Via) -> bool:
    """Double opt-in: unconfirmed -> subscribed. False when there was nothing to confirm (a second click)."""
    if subscription.status != Status.UNCONFIRMED:
        return False
    return subscription_set_status(subscription=subscription, status=Status.SUBSCRIBED, actor=actor, via=via,
                                   reason="confirmed by the subscriber")


def subscription_pause(*, subscription: Subscription, days: int, actor: Actor, via: Via) -> bool:
    if days not in PAUSE_DAYS and actor.kind == "subscriber":
        raise ResourceValidationError({"days": f"pause for {', '.join(map(str, PAUSE_DAYS))} days"})
    until = timezone.now() + timedelta(days=days)
    return subscription_set_status(subscription=subscription, status=Status.SUSPENDED, actor=actor, via=via, until=until)


def subscriptions_set_status_bulk(*, subscriptions: Iterable[Subscription], status: str, actor: Actor, via: Via,
                                  reason: str = "", until: datetime | None = None) -> list[int]:
    """Move many subscriptions to `status` at once (bounces, complaints, dead push tokens): those
    whose transition TRANSITIONS allows (a pause only from subscribed, so a person's own longer
    pause is never shortened or lengthened) and that the actor may make (`system_refusal`), one
    UPDATE and one consent-ledger write for all of them (its counters and history events
    follow). The caller holds the rows (`select_for_update`) in its transaction. Returns the ids
    changed."""
    movable = [s for s in subscriptions
               if status in TRANSITIONS.get(s.status, frozenset()) and (s.status != status or status == Status.SUSPENDED)
               and not system_refusal(s.status, status, actor)]
    if status == Status.SUSPENDED:
        movable = [s for s in movable if s.status == Status.SUBSCRIBED]
    if not movable:
        return []
    now = timezone.now()
    Subscription.objects.filter(pk__in=[s.pk for s in movable]).update(
        status=status, reason=reason[:500], changed_at=now, updated_at=now,
        suspended_until=until if status == Status.SUSPENDED else None)
    records = []
    for s in movable:
        old = s.status
        s.status, s.reason = status, reason[:500]
        records.append(_record(s, actor=actor, via=via, action=ConsentRecord.Action.STATUS, old_status=old,
                               new_status=status, reason=reason))
    _write_ledger(records)
    return [s.pk for s in movable]


def subscriptions_resume_due(*, now: datetime | None = None, batch: int = 1000) -> int:
    """Paused subscriptions whose pause has ended become subscribed again (the scheduler runs this).
    Batches of `batch` rows, each one transaction; safe to run on several workers at once."""
    now = now or timezone.now()
    total = 0
    actor, via = Actor.system(), Via(source="schedule")
    while True:
        with transaction.atomic():
            qs = Subscription.objects.filter(status=Status.SUSPENDED, suspended_until__lte=now)
            subs = list(qs.select_for_update(skip_locked=True).order_by("suspended_until")[:batch])
            if not subs:
                return total
            ids = [s.pk for s in subs]
            Subscription.objects.filter(pk__in=ids).update(status=Status.SUBSCRIBED, suspended_until=None, changed_at=now,
                                                           updated_at=now, reason="")
            _write_ledger([_record(s, actor=actor, via=via, action=ConsentRecord.Action.STATUS, old_status=Status.SUSPENDED,
                                   new_status=Status.SUBSCRIBED, reason="the pause ended") for s in subs])
            total += len(subs)


# --- merge and erasure (registered with profiles in AppConfig.ready) -------------------------------


def subscriptions_merge(target: Profile, source: Profile) -> None:
    """Move source's subscriptions to target, after target's own on each channel (addresses are
    unique per resource and channel, so there is nothing to deduplicate), and its ledger."""
    subs = list(Subscription.objects.select_for_update().filter(profile=source).order_by("resource_id", "channel", "priority", "id"))
    if not subs:
        return
    tops = {
        (r, c): m for r, c, m in Subscription.objects.filter(profile=target).values_list("resource_id", "channel")
        .annotate(m=Max("priority")).values_list("resource_id", "channel", "m")
    }
    now = timezone.now()
    for sub in subs:
        key = (sub.resource_id, sub.channel)
        tops[key] = tops.get(key, 0) + 1
        sub.profile_id, sub.priority, sub.updated_at = target.pk, tops[key], now
    Subscription.objects.bulk_update(subs, ["profile", "priority", "updated_at"], batch_size=500)
    ConsentRecord.objects.filter(profile=source).update(profile=target)
    actor, via = Actor.system(), Via(source=f"merge:{source.pk}")
    _write_ledger([_record(s, actor=actor, via=via, action=ConsentRecord.Action.MOVED, old_status=s.status, new_status=s.status,
                           reason=f"merged from profile #{source.pk}") for s in subs])


def subscriptions_erase(profile: Profile) -> None:
    """Erasure: delete the subscriptions; the ledger keeps what happened, without who (no address,
    IP, user agent or profile)."""
    ConsentRecord.objects.filter(profile=profile).update(profile=None, subscription=None, address="", ip=None, user_agent="")
    subs = Subscription.objects.filter(profile=profile).order_by()
    write_count_deltas({(a, r, c, st): -n for a, r, c, st, n in subs.values_list("account_id", "resource_id", "channel", "status")
                        .annotate(n=Count("*")).values_list("account_id", "resource_id", "channel", "status", "n")})
    subs.delete()
