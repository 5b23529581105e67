"""Mailing counters as deltas (models.MailingStat): written in bulk by whoever changes a figure
(the planner, the dispatch batches, the tracking and bounce handlers), in the transaction that
changes it; summed by the report; compacted by the tick so a mailing keeps a few rows per metric
and hour however many messages it sent.

Metric names (a report reads exactly these):
  planned, queued, sent, failed, ambiguous, skipped, skipped:<reason>, failed:<reason>,
  delivered, opened, opened_unique, opened_machine, clicked, clicked_unique, clicked_machine,
  link_clicked (with link_id), unsubscribed, complained, bounced_hard, bounced_soft
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone

from cdp.counters import deltas_compact
from mailings.models import MailingStat

StatKey = tuple[int, int, int | None, str, int | None]  # account, mailing, run, metric, link


def hour(when: datetime | None = None) -> datetime:
    when = when or timezone.now()
    return when.replace(minute=0, second=0, microsecond=0)


def stats_add(deltas: Counter[StatKey] | dict[StatKey, int] | Iterable[tuple[StatKey, int]], *,
              when: datetime | None = None) -> int:
    """Add counter deltas (zero deltas are dropped): one INSERT for all of them. Returns rows written."""
    items = deltas.items() if isinstance(deltas, dict) else deltas
    bucket = hour(when)
    rows = [MailingStat(account_id=a, mailing_id=m, run_id=r, metric=metric, link_id=link, bucket=bucket, delta=d)
            for (a, m, r, metric, link), d in items if d]
    if rows:
        MailingStat.objects.bulk_create(rows)
    return len(rows)


def stats_compact(*, mailing_id: int | None = None, min_rows: int = 200) -> int:
    """Fold the deltas of each mailing with at least `min_rows` rows (or of the one named) into one
    row per (run, metric, link, bucket): `cdp.counters.deltas_compact`. Safe beside concurrent
    writers. Returns how many rows it removed."""
    return deltas_compact(MailingStat, owner="mailing_id", keys=("account_id", "run_id", "metric", "link_id", "bucket"),
                          value="delta", owner_id=mailing_id, min_rows=min_rows)
