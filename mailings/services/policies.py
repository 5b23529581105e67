"""Sending policies (frequency caps): which cap applies to a mailing, how it reads, and the SQL
the planner embeds to skip recipients who reached it.

A cap ("at most N messages in D days", models.FrequencyCap) is set on the account, a resource or
a mailing; the narrowest that exists applies (mailing > resource > account), and transactional
mailings are exempt. What counts towards a cap: the recipient's non-transactional ledger rows that
were sent (or ambiguous: probably delivered) in the last D days, and those queued or being sent
by other runs (already promised: two broadcasts planned a minute apart must not both pass a cap
of 1). The current run's own rows never count, so re-planning a run is harmless.

Scopes (what "a recipient" is):
  profile           every message to the profile, any resource, any channel;
  profile_resource  messages of mailings of the same resource;
  profile_channel   messages on the same channel;
  address           messages to the same contact address on the channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q

from mailings.models import FrequencyCap, Mailing
from mailings.services.errors import MailingError

MAX_MESSAGES = (1, 15)
MAX_DAYS = (1, 16)


def cap_clean(*, max_messages: Any, days: Any, scope: Any) -> tuple[int, int, str]:
    """The cap's values, normalised; MailingError per field (ranges 1-15 messages, 1-16 days)."""
    errors: dict[str, str] = {}

    def number(name: str, value: Any, lo: int, hi: int) -> int:
        try:
            n = int(value)
            if isinstance(value, bool) or str(value).strip() != str(n) or not lo <= n <= hi:
                raise ValueError
        except (TypeError, ValueError):
            errors[name] = f"a whole number from {lo} to {hi}"
            return 0
        return n

    n = number("max_messages", max_messages, *MAX_MESSAGES)
    d = number("days", days, *MAX_DAYS)
    if scope not in FrequencyCap.Scope.values:
        errors["scope"] = "one of " + ", ".join(FrequencyCap.Scope.values)
    if errors:
        raise MailingError(errors)
    return n, d, str(scope)


def cap_for(mailing: Mailing) -> FrequencyCap | None:
    """The cap that applies to `mailing`: its own, else its resource's, else its account's; None
    for a transactional mailing or when there is none. One query."""
    if mailing.transactional:
        return None
    caps = list(FrequencyCap.objects.filter(account_id=mailing.account_id).filter(
        Q(mailing_id=mailing.pk) | Q(resource_id=mailing.resource_id, mailing__isnull=True)
        | Q(resource__isnull=True, mailing__isnull=True)))
    for level in ("mailing", "resource", "account"):
        for cap in caps:
            if cap.level == level:
                return cap
    return None


def cap_text(cap: FrequencyCap) -> str:
    """How a cap reads in a skip's detail and the report: "at most 3 in 7 days per recipient
    (account policy)"."""
    days = "1 day" if cap.days == 1 else f"{cap.days} days"
    return f"at most {cap.max_messages} in {days} {cap.get_scope_display()} ({cap.level} policy)"


@dataclass(frozen=True)
class CapSql:
    """A boolean SQL condition over a subscription row (alias `s`: its profile_id, address,
    channel): true when sending this run to it would break the cap. Embed with its params."""

    sql: str
    params: list[Any]
    text: str


def capped_sql(cap: FrequencyCap, *, mailing: Mailing, run_id: int | None, now: datetime, alias: str = "s") -> CapSql:
    """The planner's cap test for `mailing`'s run `run_id` (None: a preview, no run yet) at `now`.

    Set-based: one uncorrelated subquery groups the account's recent ledger rows by recipient
    and keeps those at the cap (`HAVING COUNT(*) >= max`); the database hashes it once and probes
    it per subscription (`IN`), instead of counting a recipient's rows once per subscription."""
    since = now - timedelta(days=cap.days)
    where = [
        "l.account_id = %s",
        # Non-transactional rows only: receipts never use up a marketing allowance.
        "l.mailing_id IN (SELECT m.id FROM mailings_mailing m WHERE m.account_id = %s AND NOT m.transactional)",
        "((l.status IN ('sent', 'ambiguous') AND COALESCE(l.sent_at, l.wire_at, l.updated_at) >= %s)"
        " OR (l.status IN ('queued', 'sending') AND l.created_at >= %s"
        + (" AND l.run_id <> %s))" if run_id is not None else "))"),
    ]
    params: list[Any] = [mailing.account_id, mailing.account_id, since, since]
    if run_id is not None:
        params.append(run_id)
    key, column = "l.profile_id", f"{alias}.profile_id"
    if cap.scope == FrequencyCap.Scope.PROFILE_RESOURCE:
        where.append("l.mailing_id IN (SELECT m2.id FROM mailings_mailing m2 WHERE m2.resource_id = %s)")
        params.append(mailing.resource_id)
    elif cap.scope == FrequencyCap.Scope.PROFILE_CHANNEL:
        where.append("l.channel = %s")
        params.append(mailing.channel)
    elif cap.scope == FrequencyCap.Scope.ADDRESS:
        where.append("l.channel = %s")
        params.append(mailing.channel)
        key, column = "l.address", f"{alias}.address"
    # Only constants and %s placeholders are joined here: values travel as params.
    sql = (f"{column} IN (SELECT {key} FROM mailings_ledgerentry l WHERE {' AND '.join(where)} "  # noqa: S608
           f"GROUP BY {key} HAVING COUNT(*) >= %s)")
    params.append(cap.max_messages)
    return CapSql(sql=sql, params=params, text=cap_text(cap))
