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

from django.db import connection, transaction
from django.utils import timezone

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
    """Fold the deltas of each mailing with at least `min_rows` rows into one row per (run, metric,
    link, bucket). Safe beside concurrent writers: it replaces only the rows it read, in one
    transaction. Returns how many rows it removed."""
    qs = MailingStat.objects.all()
    if mailing_id is not None:
        qs = qs.filter(mailing_id=mailing_id)
    from django.db.models import Count, Sum

    heavy = [r["mailing_id"] for r in qs.values("mailing_id").annotate(n=Count("id")).filter(n__gte=min_rows)]
    removed = 0
    for mid in heavy:
        with transaction.atomic():
            top = MailingStat.objects.filter(mailing_id=mid).order_by("-id").values_list("id", flat=True).first()
            if top is None:
                continue
            base = MailingStat.objects.filter(mailing_id=mid, id__lte=top)
            if connection.vendor == "postgresql":
                # Lock exactly the rows folded, so two compactions never fold the same rows twice.
                list(base.select_for_update().values_list("id", flat=True))
            sums = list(base.values("account_id", "run_id", "metric", "link_id", "bucket").annotate(total=Sum("delta")))
            n, _ = base.delete()
            MailingStat.objects.bulk_create([
                MailingStat(account_id=s["account_id"], mailing_id=mid, run_id=s["run_id"], metric=s["metric"],
                            link_id=s["link_id"], bucket=s["bucket"], delta=s["total"])
                for s in sums if s["total"]
            ])
            removed += n - sum(1 for s in sums if s["total"])
    return removed
