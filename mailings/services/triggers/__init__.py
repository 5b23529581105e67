"""Trigger mailings: ledger rows added as events arrive, by API call, or for a double opt-in.

A trigger mailing (kind "trigger") listens while its state is `sending` (a paused or cancelled
one ignores what happens meanwhile). Its definition, `Mailing.trigger`:

    {"on": "event", "event": "<type name>", "filters": [{"property", "op", "value"}], "delay_seconds": N}
    {"on": "subscription", "delay_seconds": N}     # a new (or confirmed / renewed) subscription
    {"on": "confirmation"}                          # double opt-in: the confirmation message
    {"on": "api"}                                   # only POST /mailings/{id}/trigger

Every fired trigger is ONE ledger row (for the profile's best subscription on the mailing's
resource and channel) in the mailing's run of the UTC day (slot "day:YYYY-MM-DD", unique per
mailing), carrying a `trigger_key` unique per mailing: "ev:<event id>", "api:<Idempotency-Key>",
"confirm:<subscription id>:<round>". The key is what makes a redelivered event, a retried API
call or a doubled handler call insert nothing: the INSERT is `ON CONFLICT DO NOTHING RETURNING`,
and only the rows it returns count (Run.planned, the planned/skipped counters, the sends).

Rows are inserted already `skipped` when the subscription may not be sent to right now
(unsubscribed, unconfirmed except for a confirmation, suspended, bounced..., suppressed, opted
out of the mailing's category), so the recipient log explains them; the dispatch re-checks
consent at claim anyway. Due rows go to `dispatch.entries_send_now` after commit (the trigger
queue: a welcome e-mail never waits behind a broadcast); delayed rows carry `not_before` and
are handed out by the tick once due.

`interesting_types()` is on the hot path of every event ingest (history asks whether a stored
batch is owed to a handler): a per-process set kept in a `cdp.confcache` cache, refreshed when
the configuration generation moves. Whoever changes a trigger mailing's state or definition
calls `confcache.changed()` (mailings.services.lifecycle does).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from cdp import confcache
from history.catalogue import BY_ID, FIRST_CUSTOM_ID
from mailings.models import LedgerEntry, Mailing
from mailings.services.errors import MailingError
from mailings.services.triggers.definition import (
    FILTER_OPS,
    ON_API,
    ON_CONFIRMATION,
    ON_EVENT,
    ON_SCENARIO,
    ON_SUBSCRIPTION,
    SUBSCRIPTION_TYPES,
    TRIGGER_KINDS,
    WELCOME_FROM,
    delay_of,
    filter_matches,
    filters_match,
)
from mailings.services.triggers.firing import Fire, Inserted, fires_insert, rows_by_key, to_json
from resources.models import Status, Subscription

if TYPE_CHECKING:
    from accounts.access import Actor
    from history.models import Event
    from profiles.models import Profile

__all__ = [
    "FILTER_OPS",
    "MAX_DELAY_SECONDS",
    "ON_API",
    "ON_CONFIRMATION",
    "ON_EVENT",
    "ON_SCENARIO",
    "ON_SUBSCRIPTION",
    "TRIGGER_KINDS",
    "Fire",
    "Inserted",
    "delay_of",
    "filter_matches",
    "filters_match",
    "fires_insert",
    "interesting_types",
    "is_confirmation_row",
    "on_confirmation",
    "on_events",
    "trigger_errors",
    "trigger_firable",
    "trigger_fire",
    "triggers_fire_bulk",
]

log = logging.getLogger(__name__)

MAX_DATA_BYTES = 64 * 1024  # template data of one trigger (an order with its items)
MAX_KEY_LENGTH = 120  # trigger_key is 160 characters: "api:" + this, with room to spare
CONFIRM_RESEND_AFTER = timedelta(seconds=60)  # one confirmation message a minute per subscription at most


# --- what live trigger mailings listen to --------------------------------------------------------

_INTEREST: dict[str, frozenset[str]] = confcache.register({})


def _listening() -> Any:
    return Mailing.objects.filter(kind=Mailing.Kind.TRIGGER, state=Mailing.State.SENDING)


def _types_of(trigger: Any) -> set[str]:
    if not isinstance(trigger, Mapping):
        return set()
    on = trigger.get("on")
    if on == ON_EVENT and isinstance(trigger.get("event"), str):
        return {trigger["event"]}
    if on == ON_SUBSCRIPTION:
        return set(SUBSCRIPTION_TYPES)
    return set()


def _load_types() -> frozenset[str]:
    names: set[str] = set()
    for trigger in _listening().values_list("trigger", flat=True):
        names |= _types_of(trigger)
    return frozenset(names)


def interesting_types() -> frozenset[str]:
    """The event type names some listening trigger mailing (of any account) wants. A dict lookup
    while the configuration generation stands (checked at most once a second); a query when the
    shared cache is unreachable (then nothing is cached, so nothing is stale)."""
    if not confcache.check(fresh_within=1.0):
        return _load_types()
    types = _INTEREST.get("types")
    if types is None:
        types = _INTEREST["types"] = _load_types()
    return types


# --- events --------------------------------------------------------------------------------------


def _type_names(events: Sequence[Event]) -> dict[int, str]:
    names = {e.type_id: BY_ID[e.type_id].name for e in events if e.type_id in BY_ID}
    custom = {e.type_id for e in events if e.type_id >= FIRST_CUSTOM_ID and e.type_id not in names}
    if custom:
        from history.models import EventType

        names.update(EventType.objects.filter(id__in=custom).values_list("id", "name"))
    return names


def _wants(mailing: Mailing, event: Event, name: str) -> bool:
    trigger = mailing.trigger or {}
    on = trigger.get("on")
    props = event.properties or {}
    if on == ON_EVENT:
        if trigger.get("event") != name:
            return False
    elif on == ON_SUBSCRIPTION:
        if name not in SUBSCRIPTION_TYPES or event.resource_id != mailing.resource_id or event.channel != mailing.channel:
            return False
        if props.get("status") != Status.SUBSCRIBED:
            return False
        if name == "subscription.changed" and props.get("old_status") not in WELCOME_FROM:
            return False
    else:
        return False
    return filters_match(props, trigger.get("filters"))


def on_events(events: list[Event]) -> None:
    """The history handler of trigger mailings: for each event, the listening trigger mailings of
    its account whose type and property filters match get a row (trigger key "ev:<event id>",
    data {"event": properties}, not_before = occurred_at + delay). Idempotent: a redelivered
    event inserts nothing. One query for the mailings, then `fires_insert`."""
    if not events:
        return
    names = _type_names(events)
    wanted = set(names.values())
    mailings_by_account: dict[int, list[Mailing]] = defaultdict(list)
    for m in _listening().filter(account_id__in={e.account_id for e in events}):
        if _types_of(m.trigger) & wanted:
            mailings_by_account[m.account_id].append(m)
    if not mailings_by_account:
        return
    fires: list[Fire] = []
    for e in events:
        name = names.get(e.type_id, "")
        for m in mailings_by_account.get(e.account_id, ()):
            if m.database_id != e.database_id or not _wants(m, e, name):
                continue
            delay = delay_of(m)
            fires.append(Fire(
                mailing=m, profile_id=e.profile_id, key=f"ev:{e.pk}", data={"event": e.properties or {}},
                not_before=e.occurred_at + delay if delay else None,
                address=str((e.properties or {}).get("address") or "") if name in SUBSCRIPTION_TYPES else "",
            ))
    fires_insert(fires)


# --- API calls -----------------------------------------------------------------------------------


def _check_data(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise MailingError({"data": "expected an object (the template reads it as data.<name>)"})
    text = to_json(dict(data)) or ""
    if len(text.encode()) > MAX_DATA_BYTES:
        raise MailingError({"data": f"at most {MAX_DATA_BYTES // 1024} KB of template data"})
    return json.loads(text)


def _check_key(key: str | None) -> str:
    if key is None:
        return f"api:auto:{uuid.uuid4().hex}"
    key = str(key).strip()
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise MailingError({"key": f"1 to {MAX_KEY_LENGTH} printable characters"})
    return f"api:{key}"


def trigger_firable(mailing: Mailing) -> None:
    """Raise MailingError unless the mailing can be fired by an API call now."""
    if mailing.kind != Mailing.Kind.TRIGGER:
        raise MailingError({"mailing": f"“{mailing.name}” is a {mailing.get_kind_display().lower()} mailing, "
                                       "not a trigger mailing"})
    if mailing.is_confirmation:
        raise MailingError({"mailing": "a confirmation mailing is sent by the double opt-in itself"})
    if (mailing.trigger or {}).get("on") == ON_SCENARIO:
        raise MailingError({"mailing": f"“{mailing.name}” is sent by a scenario's step, not through this API"})
    if mailing.state != Mailing.State.SENDING:
        raise MailingError({"mailing": f"“{mailing.name}” is {mailing.get_state_display().lower()}: launch "
                                       "(or resume) it first"})


def _existing(mailing: Mailing, key: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(mailing_id=mailing.pk, trigger_key=key).first()


@transaction.atomic
def trigger_fire(*, mailing: Mailing, profile: Profile, data: Mapping[str, Any] | None = None, key: str | None = None,
                 actor: Actor | None = None) -> LedgerEntry:
    """Fire a trigger mailing for one profile (the API): its ledger row, queued (sent within a
    second, after commit) or skipped with the reason. `key` (an Idempotency-Key) makes it once:
    the same key again returns the same row, whatever `data` says. Raises MailingError when the
    mailing cannot be fired, the data is not an object, or the profile has no subscription on
    the mailing's resource and channel. `actor` is accepted for the audit trail of callers; one
    fired message is not an audit event (the ledger row is its record).

    On the hot path of the trigger API, so the common case is a few round trips: the insert is
    tried first (`ON CONFLICT DO NOTHING` on the trigger key is what makes a repeat insert
    nothing, so no look-up before it is needed), the day run's `planned` is raised last (the row
    lock every concurrent call takes is held for that one statement and the commit), and the row
    is read by primary key before the commit: the answer is the row as fired (`queued`), not
    whatever a fast trigger worker made of it after the commit hand-off. Only a repeat (nothing
    inserted) or bad data looks the key up."""
    trigger_firable(mailing)
    if profile.database_id != mailing.database_id or profile.account_id != mailing.account_id:
        raise MailingError({"profile": "the profile is not in the mailing's database"})
    trigger_key = _check_key(key)
    try:
        clean = _check_data(data)
    except MailingError:
        found = _existing(mailing, trigger_key)  # a repeat answers its row whatever `data` says
        if found is not None:
            return found
        raise
    inserted = fires_insert([Fire(mailing=mailing, profile_id=profile.pk, key=trigger_key, data=clean)], savepoint=False)
    found = (LedgerEntry.objects.filter(pk=inserted[0].id).first() if inserted
             else _existing(mailing, trigger_key))
    if found is None:
        channel = Mailing.Channel(mailing.channel).label if mailing.channel in Mailing.Channel.values else mailing.channel
        raise MailingError({"profile": f"the profile has no {channel} subscription on “{mailing.resource}”"})
    return found


@dataclass
class BulkItem:
    profile: Profile | None
    data: Any = None
    key: str | None = None


@dataclass
class BulkResult:
    index: int
    entry: LedgerEntry | None = None
    errors: dict[str, str] | None = None


def triggers_fire_bulk(*, mailing: Mailing, items: Sequence[BulkItem], actor: Actor | None = None) -> list[BulkResult]:
    """Fire a trigger mailing for many profiles (the bulk API): one result per item, in order; an
    item that fails (no profile, bad data, no subscription) fails alone. Set-based: one
    `fires_insert` for the valid items, one query to read their rows back by id (items with a key
    seen before answer that row: `rows_by_key` finds it). Raises MailingError only when the
    mailing cannot be fired at all."""
    trigger_firable(mailing)
    results = [BulkResult(i) for i in range(len(items))]
    fires: list[Fire] = []
    keys: dict[int, str] = {}
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        try:
            if item.profile is None:
                raise MailingError({"profile": "no such profile"})
            key = _check_key(item.key)
            if key in seen:
                raise MailingError({"key": f"repeats the key of item {seen[key]}"})
            data = _check_data(item.data)
        except MailingError as exc:
            results[i].errors = exc.errors
            continue
        seen[key] = i
        keys[i] = key
        fires.append(Fire(mailing=mailing, profile_id=item.profile.pk, key=key, data=data))
    with transaction.atomic():
        ids = {row.key: row.id for row in fires_insert(fires)}
        rest = [key for key in keys.values() if key not in ids]  # repeats, or no subscription
        ids.update({key: row[0] for key, row in rows_by_key(mailing.pk, rest).items()})
        entries = {e.trigger_key: e for e in LedgerEntry.objects.filter(pk__in=list(ids.values()))}
    for i, key in keys.items():
        entry = entries.get(key)
        if entry is None:
            results[i].errors = {"profile": f"the profile has no {mailing.channel} subscription on “{mailing.resource}”"}
        else:
            results[i].entry = entry
    return results


# --- double opt-in -------------------------------------------------------------------------------


def confirmation_mailing(subscription: Subscription) -> Mailing | None:
    """The listening confirmation trigger mailing of the subscription's resource and channel."""
    return (_listening().filter(account_id=subscription.account_id, resource_id=subscription.resource_id,
                                channel=subscription.channel, trigger__on=ON_CONFIRMATION)
            .order_by("-launched_at", "-id").first())


def on_confirmation(subscription: Subscription) -> LedgerEntry | None:
    """Send the double opt-in message of a subscription that awaits confirmation (called after
    commit by resources.services): a row of the resource's confirmation mailing for exactly that
    subscription, allowed although unconfirmed, trigger key "confirm:<subscription>:<round>".
    Asked again within a minute (a doubled form post, a refresh) it answers the row it made
    instead of sending again. None when no confirmation mailing listens (logged: the address
    stays unconfirmed until someone sets one up) or the subscription is no longer unconfirmed."""
    if subscription.status != Status.UNCONFIRMED:
        return None
    mailing = confirmation_mailing(subscription)
    if mailing is None:
        log.warning("double opt-in: resource %s has no live confirmation mailing on %s; subscription %s is not sent "
                    "a confirmation", subscription.resource_id, subscription.channel, subscription.pk)
        return None
    prefix = f"confirm:{subscription.pk}:"
    with transaction.atomic():
        previous = list(LedgerEntry.objects.filter(mailing_id=mailing.pk, trigger_key__startswith=prefix)
                        .order_by("-id").values_list("id", "created_at"))
        if previous and timezone.now() - previous[0][1] < CONFIRM_RESEND_AFTER:
            return LedgerEntry.objects.get(pk=previous[0][0])
        key = f"{prefix}{len(previous) + 1}"
        fires_insert([Fire(mailing=mailing, profile_id=subscription.profile_id, key=key,
                           subscription_id=subscription.pk)])
        return _existing(mailing, key)


def is_confirmation_row(trigger_key: str | None) -> bool:
    """Whether a ledger row is a double opt-in message (it may go to an unconfirmed subscription,
    and its template gets `links.confirm`)."""
    return bool(trigger_key) and trigger_key.startswith("confirm:")

