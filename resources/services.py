"""Writes on resources, subscriptions and suppressions. Atomic, keyword-only, and the only way a
subscription's status changes: every change is validated against TRANSITIONS and written to the
consent ledger in the same transaction.

Errors a person can fix are `ResourceError` (one message) or `ResourceValidationError` (a message
per field name).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone
from django.utils.text import slugify

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from profiles.models import Profile, ProfileDatabase
from resources.addresses import AddressError, normalise_address, normalise_domain
from resources.models import (
    SYSTEM_STATUSES,
    Channel,
    ConsentRecord,
    Resource,
    Status,
    Subscription,
    SubscriptionCount,
    Suppression,
)

# Higher apps register here in AppConfig.ready() (never a signal, never an import upward):
# - CONFIRMATION_HANDLERS: a subscription now awaits double opt-in; send it its confirmation
#   link (mailings wires a trigger mailing). Called after commit with the subscription.
# - CONSENT_HANDLERS: ledger rows were written (history records them, triggers react). Called
#   after commit with the records.
CONFIRMATION_HANDLERS: list[Callable[[Subscription], None]] = []
CONSENT_HANDLERS: list[Callable[[list[ConsentRecord]], None]] = []

PAUSE_DAYS = (14, 30, 60, 90)
# Slugs that would collide with the pages under /resources/.
RESERVED_SLUGS = frozenset({"new"})
MAX_CATEGORIES = 50
_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")


class ResourceError(Exception):
    """A request that cannot be carried out, with a message for a person."""


class ResourceValidationError(ResourceError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


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


def check_transition(old: str, new: str, *, force: bool = False, actor: Actor | None = None) -> None:
    """Raises ResourceError when `old` -> `new` is not allowed (a no-op is allowed).

    `force` (leaving a system state) is for team members and API tokens only, never for a
    subscriber on a public page or the system."""
    if new not in Status.values:
        raise ResourceError(f"Unknown status {new!r}: use one of {', '.join(Status.values)}.")
    if old == new and new != Status.SUSPENDED:
        return
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


# --- the consent ledger --------------------------------------------------------------------------


@dataclass(frozen=True)
class Via:
    """Where a change came from: the ledger's source, and the browser's IP and user agent if known."""

    source: str
    user_agent: str = ""


def _record(sub: Subscription, *, actor: Actor, via: Via, action: str, old_status: str = "", new_status: str = "",
            old_categories: list[str] | None = None, new_categories: list[str] | None = None, reason: str = "") -> ConsentRecord:
    return ConsentRecord(
        account_id=sub.account_id, resource_id=sub.resource_id, subscription=sub, profile_id=sub.profile_id,
        channel=sub.channel, address=sub.address, action=action, old_status=old_status, new_status=new_status,
        old_categories=old_categories, new_categories=new_categories, actor_type=actor.kind, actor_label=actor.label[:200],
        source=via.source[:64], reason=reason[:500], ip=actor.ip, user_agent=via.user_agent[:500],
    )


def _write_ledger(records: list[ConsentRecord]) -> None:
    """Append ledger rows and the counter deltas they imply, in the caller's transaction."""
    if not records:
        return
    ConsentRecord.objects.bulk_create(records)
    deltas: Counter[tuple[int, int, str, str]] = Counter()
    for r in records:
        if r.action in (ConsentRecord.Action.CREATED, ConsentRecord.Action.STATUS) and r.new_status:
            deltas[(r.account_id, r.resource_id, r.channel, r.new_status)] += 1
        if r.action in (ConsentRecord.Action.STATUS, ConsentRecord.Action.DELETED) and r.old_status:
            deltas[(r.account_id, r.resource_id, r.channel, r.old_status)] -= 1
    write_count_deltas(deltas)
    if CONSENT_HANDLERS:
        transaction.on_commit(lambda: [h(records) for h in CONSENT_HANDLERS])


# --- counters ------------------------------------------------------------------------------------


def write_count_deltas(deltas: dict[tuple[int, int, str, str], int]) -> None:
    """deltas: {(account id, resource id, channel, status): change}; zeros are left out."""
    rows = [SubscriptionCount(account_id=a, resource_id=r, channel=c, status=st, delta=d)
            for (a, r, c, st), d in deltas.items() if d]
    if rows:
        SubscriptionCount.objects.bulk_create(rows)


def subscription_counts_compact(*, resource_id: int | None = None, min_rows: int = 50) -> int:
    """Fold each resource's counter deltas into one row per channel and status (the scheduler runs
    this). Only resources with at least `min_rows` rows, unless one is named. Returns the rows removed.

    One statement per resource on PostgreSQL (the DELETE and the sums see one snapshot, so a delta
    committed meanwhile is either folded or left as it is, never lost); SQLite runs one writer."""
    qs = SubscriptionCount.objects.order_by()
    if resource_id is not None:
        targets = [resource_id]
    else:
        targets = list(qs.values_list("resource_id").annotate(n=Count("*")).filter(n__gte=min_rows).values_list("resource_id", flat=True))
    removed = 0
    table = SubscriptionCount._meta.db_table
    for rid in targets:
        with transaction.atomic(), connection.cursor() as cur:
            if connection.vendor == "postgresql":
                cur.execute(
                    f"WITH d AS (DELETE FROM {table} WHERE resource_id = %s RETURNING account_id, resource_id, channel, status, delta), "  # noqa: S608
                    f"i AS (INSERT INTO {table} (account_id, resource_id, channel, status, delta) SELECT account_id, resource_id, "
                    f"channel, status, sum(delta) FROM d GROUP BY 1, 2, 3, 4 HAVING sum(delta) <> 0 RETURNING 1) "
                    f"SELECT (SELECT count(*) FROM d) - (SELECT count(*) FROM i)",
                    [rid],
                )
                removed += cur.fetchone()[0]
            else:
                sums = list(SubscriptionCount.objects.filter(resource_id=rid).values("account_id", "channel", "status")
                            .annotate(total=Sum("delta")).order_by())
                before, _ = SubscriptionCount.objects.filter(resource_id=rid).delete()
                write_count_deltas({(x["account_id"], rid, x["channel"], x["status"]): x["total"] for x in sums})
                removed += before - sum(1 for x in sums if x["total"])
    return removed


def subscription_counts_rebuild(*, resource: Resource) -> None:
    """Recount a resource's subscriptions from the table itself and replace its counters (after a
    bulk load that wrote no deltas, or as the daily check). Concurrent changes stay counted: on
    PostgreSQL the DELETE and the recount share one snapshot, so a change committed after it keeps
    its own delta row."""
    table = SubscriptionCount._meta.db_table
    with transaction.atomic(), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                f"WITH d AS (DELETE FROM {table} WHERE resource_id = %s) INSERT INTO {table} "  # noqa: S608
                f"(account_id, resource_id, channel, status, delta) SELECT %s, resource_id, channel, status, count(*) "
                f"FROM resources_subscription WHERE resource_id = %s GROUP BY resource_id, channel, status",
                [resource.pk, resource.account_id, resource.pk],
            )
        else:
            SubscriptionCount.objects.filter(resource=resource).delete()
            rows = Subscription.objects.filter(resource=resource).order_by().values_list("channel", "status").annotate(n=Count("*"))
            write_count_deltas({(resource.account_id, resource.pk, c, st): n for c, st, n in rows})


# --- resources -----------------------------------------------------------------------------------


def clean_categories(raw: Iterable[Any]) -> list[dict[str, str]]:
    """[{"key", "label"}] from dicts or "key" / "key:Label" strings. Raises ResourceValidationError."""
    out: list[dict[str, str]] = []
    for item in raw:
        if isinstance(item, dict):
            key, label = str(item.get("key", "")).strip(), str(item.get("label", "")).strip()
        else:
            key, _, label = str(item).partition(":")
            key, label = key.strip(), label.strip()
        if not key:
            continue
        key_norm = slugify(key).replace("-", "_")
        if not _KEY_RE.fullmatch(key_norm):
            raise ResourceValidationError({"categories": f"{key!r}: a category key is letters, digits and _ (at most 40), starting with a letter"})
        if any(c["key"] == key_norm for c in out):
            raise ResourceValidationError({"categories": f"the category {key_norm!r} is listed twice"})
        out.append({"key": key_norm, "label": (label or key.replace("_", " ").capitalize())[:100]})
    if len(out) > MAX_CATEGORIES:
        raise ResourceValidationError({"categories": f"at most {MAX_CATEGORIES} categories"})
    return out


def _clean_resource(values: dict[str, Any], database: ProfileDatabase, resource: Resource | None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    if "name" in values:
        name = str(values["name"] or "").strip()
        if not name:
            errors["name"] = "is required"
        clean["name"] = name[:200]
    if "channels" in values:
        channels = list(dict.fromkeys(values["channels"] or []))
        unknown = [c for c in channels if c not in Channel.values]
        if unknown:
            errors["channels"] = f"unknown channel(s) {', '.join(map(str, unknown))}; use {', '.join(Channel.values)}"
        elif not channels:
            errors["channels"] = "enable at least one channel"
        clean["channels"] = [c for c in Channel.values if c in channels]
    channels = clean.get("channels", resource.channels if resource else [])
    if "double_opt_in" in values:
        doi = list(dict.fromkeys(values["double_opt_in"] or []))
        bad = [c for c in doi if c not in channels]
        if bad:
            errors["double_opt_in"] = f"{', '.join(map(str, bad))} is not an enabled channel of this resource"
        clean["double_opt_in"] = [c for c in Channel.values if c in doi]
    if "categories" in values:
        try:
            clean["categories"] = clean_categories(values["categories"] or [])
        except ResourceValidationError as exc:
            errors.update(exc.errors)
    field_names = set(database.fields.values_list("name", flat=True))
    for key in ("preference_visible_fields", "preference_editable_fields"):
        if key in values:
            names = list(dict.fromkeys(values[key] or []))
            unknown = [n for n in names if n not in field_names]
            read_only = [n for n in names if n in ("created_at", "updated_at")] if key.endswith("editable_fields") else []
            if unknown:
                errors[key] = f"no such field(s) in {database.name}: {', '.join(map(str, unknown))}"
            elif read_only:
                errors[key] = f"read-only field(s) cannot be edited: {', '.join(read_only)}"
            clean[key] = names
    if "preference_editable_fields" in clean:
        # An editable field is visible too.
        visible = clean.get("preference_visible_fields", resource.preference_visible_fields if resource else [])
        clean["preference_visible_fields"] = list(dict.fromkeys([*visible, *clean["preference_editable_fields"]]))
    if "language" in values:
        lang = str(values["language"] or "")
        if lang not in ("", "en", "ru"):
            errors["language"] = "use en, ru, or empty (the visitor's browser)"
        clean["language"] = lang
    for key in ("description", "subscribe_redirect_url"):
        if key in values:
            clean[key] = str(values[key] or "").strip()
    if clean.get("subscribe_redirect_url") and not re.match(r"https?://", clean["subscribe_redirect_url"]):
        errors["subscribe_redirect_url"] = "must be an http:// or https:// address"
    if "subscribe_enabled" in values:
        clean["subscribe_enabled"] = bool(values["subscribe_enabled"])
    if "sender_defaults" in values:
        defaults = values["sender_defaults"] or {}
        if not isinstance(defaults, dict) or any(k not in Channel.values for k in defaults):
            errors["sender_defaults"] = "an object keyed by channel"
        clean["sender_defaults"] = defaults
    if "slug" in values:
        slug = slugify(str(values["slug"] or ""))[:60]
        if not slug:
            errors["slug"] = "is required (letters, digits and -)"
        elif slug in RESERVED_SLUGS:
            errors["slug"] = f"{slug!r} is reserved; pick another"
        clean["slug"] = slug
    if errors:
        raise ResourceValidationError(errors)
    return clean


def _unique_slug(account: Account, base: str, exclude: int | None = None) -> str:
    base = slugify(base)[:50] or "resource"
    if base in RESERVED_SLUGS:
        base = f"{base}-resource"
    slug, n = base, 2
    qs = Resource.objects.filter(account=account)
    if exclude:
        qs = qs.exclude(pk=exclude)
    while qs.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def resource_create(*, account: Account, database: ProfileDatabase, values: dict[str, Any], actor: Actor) -> Resource:
    """Create a resource for `database`. values: name (required), channels (required), slug, description,
    categories, double_opt_in, preference_*_fields, language, subscribe_*. Raises ResourceValidationError."""
    if database.account_id != account.pk:
        raise ResourceValidationError({"database": "no such database in this account"})
    values = {"channels": [Channel.EMAIL], **values}
    clean = _clean_resource({"name": "", **values}, database, None)
    if "slug" in values:
        if Resource.objects.filter(account=account, slug=clean["slug"]).exists():
            raise ResourceValidationError({"slug": f"another resource already uses {clean['slug']!r}"})
    else:
        clean["slug"] = _unique_slug(account, clean["name"])
    resource = Resource.objects.create(account=account, database=database, **clean)
    audit_log(account=account, actor=actor, verb="resource.created", target=resource,
              data={"database": database.slug, "channels": resource.channels})
    return resource


@transaction.atomic
def resource_update(*, resource: Resource, values: dict[str, Any], actor: Actor) -> dict[str, list[Any]]:
    """Change a resource's settings; returns {name: [old, new]}. Raises ResourceValidationError.

    A channel with subscriptions cannot be disabled (the subscriptions would be orphaned): stop
    sending on it, or delete them, first."""
    locked = Resource.objects.select_for_update().get(pk=resource.pk)
    clean = _clean_resource(values, locked.database, locked)
    if "slug" in clean and clean["slug"] != locked.slug and Resource.objects.filter(
            account_id=locked.account_id, slug=clean["slug"]).exclude(pk=locked.pk).exists():
        raise ResourceValidationError({"slug": f"another resource already uses {clean['slug']!r}"})
    if "channels" in clean:
        removed = set(locked.channels) - set(clean["channels"])
        used = sorted(set(Subscription.objects.filter(resource=locked, channel__in=removed).values_list("channel", flat=True)))
        if used:
            raise ResourceValidationError({"channels": f"{', '.join(Channel(c).label for c in used)} still has subscriptions: delete them first"})
        if "double_opt_in" not in clean:
            clean["double_opt_in"] = [c for c in locked.double_opt_in if c in clean["channels"]]
    # Opt-outs of a category that is removed stay on the subscriptions (harmless, and not worth
    # rewriting a million rows): nothing is sent in a category that does not exist.
    diff = {k: [getattr(locked, k), v] for k, v in clean.items() if getattr(locked, k) != v}
    if not diff:
        return {}
    for k, (_, v) in diff.items():
        setattr(locked, k, v)
    locked.save()
    audit_log(account=locked.account, actor=actor, verb="resource.updated", target=locked, data={"fields": sorted(diff)})
    resource.__dict__.update({k: v for k, v in locked.__dict__.items() if not k.startswith("_")})
    return diff


@transaction.atomic
def resource_rotate_public_key(*, resource: Resource, actor: Actor) -> str:
    """A new key for the public subscribe endpoint; forms with the old key stop working."""
    from resources.models import new_public_key

    resource.public_key = new_public_key()
    resource.save(update_fields=["public_key", "updated_at"])
    audit_log(account=resource.account, actor=actor, verb="resource.key_rotated", target=resource)
    return resource.public_key


@transaction.atomic
def resource_delete(*, resource: Resource, actor: Actor) -> None:
    """Delete a resource with its subscriptions (the ledger rows go with it). Audited with the counts."""
    count = Subscription.objects.filter(resource=resource).count()
    audit_log(account=resource.account, actor=actor, verb="resource.deleted", target_label=resource.name,
              data={"slug": resource.slug, "subscriptions": count})
    resource.delete()


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


# --- suppressions --------------------------------------------------------------------------------


def clean_suppression(kind: str, value: Any, *, region: str = "") -> str:
    """Raises ResourceValidationError."""
    try:
        if kind == Suppression.Kind.EMAIL:
            return normalise_address(Channel.EMAIL, value)
        if kind == Suppression.Kind.PHONE:
            return normalise_address(Channel.SMS, value, region=region)
        if kind == Suppression.Kind.DOMAIN:
            return normalise_domain(value)
    except AddressError as exc:
        raise ResourceValidationError({"value": str(exc)}) from None
    raise ResourceValidationError({"kind": f"unknown kind {kind!r}; use email, domain or phone"})


def guess_kind(value: str) -> str:
    """email for a@b.c, domain for @b.c or b.c, phone for the rest."""
    text = str(value).strip()
    if "@" in text[1:]:
        return Suppression.Kind.EMAIL
    if text.startswith("@") or re.search(r"[a-zA-Z]", text):
        return Suppression.Kind.DOMAIN
    return Suppression.Kind.PHONE


@transaction.atomic
def suppression_add(
    *, account: Account, kind: str, value: Any, actor: Actor, reason: str = Suppression.Reason.MANUAL,
    note: str = "", source: str = "ui",
) -> tuple[Suppression, bool]:
    """Add an address, domain or phone to the account's suppression list; returns (row, created).
    Adding one that is listed already changes nothing. Raises ResourceValidationError."""
    if reason not in Suppression.Reason.values:
        raise ResourceValidationError({"reason": f"use one of {', '.join(Suppression.Reason.values)}"})
    clean = clean_suppression(kind, value, region=account.default_phone_region or "")
    row, created = Suppression.objects.get_or_create(
        account=account, kind=kind, value=clean,
        defaults={"reason": reason, "note": note[:500], "source": source[:64], "created_by_label": actor.label[:200]},
    )
    if created:
        audit_log(account=account, actor=actor, verb="suppression.added", target=row, target_label=clean,
                  data={"kind": kind, "reason": reason})
    return row, created


@transaction.atomic
def suppression_remove(*, suppression: Suppression, actor: Actor) -> None:
    audit_log(account=suppression.account, actor=actor, verb="suppression.removed", target_label=suppression.value,
              data={"kind": suppression.kind, "reason": suppression.reason})
    suppression.delete()

