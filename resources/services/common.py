"""What every resources service shares: the errors, where a change came from (Via), the consent
ledger (every status or category change is appended here, in the caller's transaction) and the
subscriber counters' deltas that the ledger rows imply."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.db.models import Count

from accounts.access import Actor
from cdp.counters import deltas_compact
from resources.models import ConsentRecord, Resource, Subscription, SubscriptionCount

if TYPE_CHECKING:
    from django.http import HttpRequest

# Higher apps register here in AppConfig.ready() (never a signal, never an import upward):
# CONSENT_HANDLERS: ledger rows were written (history records them, triggers react). Called
# after commit with the records.
CONSENT_HANDLERS: list[Callable[[list[ConsentRecord]], None]] = []


class ResourceError(Exception):
    """A request that cannot be carried out, with a message for a person."""


class ResourceValidationError(ResourceError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


# --- the consent ledger --------------------------------------------------------------------------


@dataclass(frozen=True)
class Via:
    """Where a change came from: the ledger's source, and the browser's IP and user agent if known."""

    source: str
    user_agent: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest, source: str) -> Via:
        return cls(source=source, user_agent=request.headers.get("User-Agent", ""))


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
    this): `cdp.counters.deltas_compact`. Only resources with at least `min_rows` rows, unless one
    is named. Returns the rows removed."""
    return deltas_compact(SubscriptionCount, owner="resource_id", keys=("account_id", "channel", "status"), value="delta",
                          owner_id=resource_id, min_rows=min_rows)


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
