"""Reads shared by views, tasks, the API and (later) mailings: counters, a profile's subscriptions,
the ledger, and THE suppression check.

Suppression is checked by one function family here, used at planning (a set-based exclusion,
`suppressed_exists`) and at claim time (`suppression_for` / `suppressed_among`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.functions import StrIndex, Substr

from accounts.models import Account
from profiles.models import Profile
from resources.addresses import email_domain
from resources.models import (
    Channel,
    ConsentRecord,
    Resource,
    Status,
    Subscription,
    SubscriptionCount,
    Suppression,
)

# --- counters ------------------------------------------------------------------------------------


def resource_counts(resource: Resource) -> dict[str, dict[str, int]]:
    """{channel: {status: n, ..., "total": n}} for every enabled channel: the sum of the counter
    deltas (a few rows per channel and status once compacted), not a scan of the subscriptions."""
    counts: dict[str, dict[str, int]] = {c: dict.fromkeys(Status.values, 0) | {"total": 0} for c in resource.channels}
    rows = (
        SubscriptionCount.objects.filter(resource=resource).order_by().values_list("channel", "status").annotate(n=Sum("delta"))
    )
    for channel, status, n in rows:
        bucket = counts.setdefault(channel, dict.fromkeys(Status.values, 0) | {"total": 0})
        bucket[status] = n
        bucket["total"] += n
    return counts


def resources_subscribed_counts(account: Account) -> dict[int, int]:
    """resource id -> subscribed subscriptions, for the resource list."""
    rows = (
        SubscriptionCount.objects.filter(account=account, status=Status.SUBSCRIBED).order_by()
        .values_list("resource_id").annotate(n=Sum("delta"))
    )
    return dict(rows)


# --- a profile's subscriptions and ledger --------------------------------------------------------


def profile_subscriptions(profile: Profile) -> list[dict[str, Any]]:
    """[{resource, channels: [{channel, subscriptions: [...]}]}] for the card: every resource of the
    profile's database, with the channels it has subscriptions on first."""
    subs = list(Subscription.objects.filter(profile=profile).select_related("resource").order_by("resource__name", "channel", "priority", "id"))
    resources = list(Resource.objects.filter(database_id=profile.database_id).order_by("name", "id"))
    by_resource: dict[int, dict[str, list[Subscription]]] = defaultdict(lambda: defaultdict(list))
    for s in subs:
        by_resource[s.resource_id][s.channel].append(s)
    out = []
    for r in resources:
        channels = by_resource.get(r.pk, {})
        out.append({
            "resource": r,
            "count": sum(len(v) for v in channels.values()),
            "channels": [{"channel": c, "label": Channel(c).label, "subscriptions": channels[c]} for c in Channel.values if c in channels],
        })
    return out


def profile_ledger(profile: Profile, *, limit: int | None = 100) -> QuerySet[ConsentRecord]:
    qs = ConsentRecord.objects.filter(profile=profile).select_related("resource").order_by("-created_at", "-id")
    return qs[:limit] if limit else qs


# --- suppression: the one check ------------------------------------------------------------------


def _kinds(channel: str) -> tuple[str, ...]:
    if channel == Channel.EMAIL:
        return (Suppression.Kind.EMAIL, Suppression.Kind.DOMAIN)
    if channel == Channel.SMS:
        return (Suppression.Kind.PHONE,)
    return ()


def suppressed_exists(account_id: Any, channel: str, address: Any = None) -> Q:
    """A Q for Subscription querysets (or anything with an `address` column, via `address`
    expressions) that is true where the address is suppressed; planning excludes with ~Q.
    For channels without suppression lists it is always false."""
    address = address if address is not None else OuterRef("address")
    if channel == Channel.EMAIL:
        domain = Substr(address, StrIndex(address, Value("@")) + 1)
        return Q(Exists(Suppression.objects.filter(account_id=account_id, kind=Suppression.Kind.EMAIL, value=address))) | Q(
            Exists(Suppression.objects.filter(account_id=account_id, kind=Suppression.Kind.DOMAIN, value=domain))
        )
    if channel == Channel.SMS:
        return Q(Exists(Suppression.objects.filter(account_id=account_id, kind=Suppression.Kind.PHONE, value=address)))
    return Q(pk__in=[])


def suppressed_among(account_id: int, channel: str, addresses: Iterable[str]) -> dict[str, Suppression]:
    """address -> the suppression that blocks it, for a batch of addresses (claim time): one query."""
    addresses = list(addresses)
    kinds = _kinds(channel)
    if not kinds or not addresses:
        return {}
    values = set(addresses)
    if channel == Channel.EMAIL:
        values |= {email_domain(a) for a in addresses}
    rows = {(s.kind, s.value): s for s in Suppression.objects.filter(account_id=account_id, kind__in=kinds, value__in=values)}
    out = {}
    for a in addresses:
        if channel == Channel.EMAIL:
            hit = rows.get((Suppression.Kind.EMAIL, a)) or rows.get((Suppression.Kind.DOMAIN, email_domain(a)))
        else:
            hit = rows.get((Suppression.Kind.PHONE, a))
        if hit is not None:
            out[a] = hit
    return out


def suppression_for(account_id: int, channel: str, address: str) -> Suppression | None:
    return suppressed_among(account_id, channel, [address]).get(address)


def suppression_counts(account: Account) -> dict[str, int]:
    rows = Suppression.objects.filter(account=account).order_by().values_list("kind").annotate(n=Count("*"))
    return dict.fromkeys(Suppression.Kind.values, 0) | dict(rows)
