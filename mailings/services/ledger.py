"""The ledger's part in a profile's merge and erasure (registered in profiles' MERGE_HANDLERS and
ERASURE_HANDLERS by mailings/apps.py; called inside their transaction)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from mailings.models import HandledEvent, LedgerEntry
from mailings.services.stats import StatKey, stats_add
from profiles.models import Profile


def ledger_merge(target: Profile, source: Profile) -> None:
    """What was sent to the source profile was sent to the merged one: caps and the recipient log
    keep counting it."""
    LedgerEntry.objects.filter(profile_id=source.pk).update(profile_id=target.pk)


def ledger_erase(profile: Profile) -> None:
    """Erasure: rows not yet claimed are skipped (reason erased) so nothing more is sent, and every
    row of the profile loses its personal data (the address, trigger data). The rows stay, so a
    mailing's figures still add up; they no longer say to whom."""
    now = timezone.now()
    queued = LedgerEntry.objects.filter(profile_id=profile.pk, status=LedgerEntry.Status.QUEUED)
    deltas: Counter[StatKey] = Counter()
    for account_id, mailing_id, run_id in queued.values_list("account_id", "mailing_id", "run_id"):
        deltas[(account_id, mailing_id, run_id, "skipped", None)] += 1
        deltas[(account_id, mailing_id, run_id, f"skipped:{LedgerEntry.Reason.ERASED}", None)] += 1
    if deltas:
        queued.update(status=LedgerEntry.Status.SKIPPED, reason=LedgerEntry.Reason.ERASED, detail="",
                      lease_until=None, updated_at=now)
        stats_add(deltas)
    LedgerEntry.objects.filter(profile_id=profile.pk).update(address="", data=None, detail="")


def handled_events_prune(*, now: datetime | None = None, batch: int = 10_000) -> int:
    """Forget the handled-event marks older than MAILINGS_HANDLED_EVENT_DAYS (long past any
    redelivery of the events they stand for), a batch at a time. Returns how many went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.MAILINGS_HANDLED_EVENT_DAYS)
    total = 0
    while True:
        ids = list(HandledEvent.objects.filter(created_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:batch])
        if not ids:
            return total
        total += HandledEvent.objects.filter(id__in=ids).delete()[0]
