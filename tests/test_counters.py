"""cdp.counters.deltas_compact: the one compaction of counter deltas (mailings' MailingStat,
scenarios' StepStat, resources' SubscriptionCount), on both databases."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from cdp.counters import deltas_compact
from mailings.models import MailingStat
from mailings.services.stats import stats_compact
from scenarios.engine.stats import stats_compact as step_stats_compact
from scenarios.models import StepStat

H0 = datetime(2026, 11, 1, 10, tzinfo=UTC)
H1 = H0 + timedelta(hours=1)


def _sums(mailing_id: int) -> Counter:
    out: Counter = Counter()
    for row in MailingStat.objects.filter(mailing_id=mailing_id):
        out[(row.account_id, row.run_id, row.metric, row.link_id, row.bucket)] += row.delta
    return +out  # zero sums are no counter


def _stat(mailing_id: int, metric: str, delta: int, *, run_id: int | None = 7, link_id: int | None = None,
          bucket: datetime = H0) -> MailingStat:
    return MailingStat(account_id=1, mailing_id=mailing_id, run_id=run_id, metric=metric, link_id=link_id,
                       bucket=bucket, delta=delta)


@pytest.mark.django_db
def test_folding_keeps_every_sum_per_key_including_empty_run_and_link_and_drops_zero_sums() -> None:
    rows = [_stat(100, "sent", 1) for _ in range(5)]
    rows += [_stat(100, "sent", 2, bucket=H1), _stat(100, "click", 1, link_id=3), _stat(100, "click", 1, link_id=3),
             _stat(100, "click", 1, link_id=4), _stat(100, "planned", 4, run_id=None), _stat(100, "planned", 1, run_id=None),
             _stat(100, "queued", 3), _stat(100, "queued", -3)]
    rows += [_stat(200, "sent", 1) for _ in range(3)]  # another mailing: below the threshold, untouched
    MailingStat.objects.bulk_create(rows)
    before, other = _sums(100), list(MailingStat.objects.filter(mailing_id=200).values_list("id", flat=True))

    removed = stats_compact(min_rows=10)

    assert _sums(100) == before
    assert before[(1, 7, "sent", None, H0)] == 5 and before[(1, None, "planned", None, H0)] == 5
    kept = MailingStat.objects.filter(mailing_id=100)
    assert kept.count() == 5  # sent@H0, sent@H1, click link 3, click link 4, planned (queued summed to zero)
    assert removed == 13 - 5  # 13 rows in, 5 out
    assert list(MailingStat.objects.filter(mailing_id=200).values_list("id", flat=True)) == other


@pytest.mark.django_db
def test_a_named_owner_is_folded_whatever_its_size_and_folding_twice_changes_nothing() -> None:
    MailingStat.objects.bulk_create([_stat(300, "sent", 1), _stat(300, "sent", 1), _stat(301, "sent", 1),
                                     _stat(301, "sent", 1)])
    assert stats_compact(mailing_id=300, min_rows=1000) == 1
    assert MailingStat.objects.filter(mailing_id=300).count() == 1
    assert MailingStat.objects.filter(mailing_id=301).count() == 2  # not named, below the threshold
    assert stats_compact(mailing_id=300) == 0
    assert _sums(300) == Counter({(1, 7, "sent", None, H0): 2})


@pytest.mark.django_db
def test_extra_constant_fields_are_set_on_the_folded_rows() -> None:
    StepStat.objects.bulk_create([StepStat(account_id=1, scenario_id=9, step_key="s2", metric="entered", n=1)
                                  for _ in range(4)])
    assert step_stats_compact(scenario_id=9) == 3
    (row,) = StepStat.objects.filter(scenario_id=9)
    assert (row.step_key, row.metric, row.n, row.compacted) == ("s2", "entered", 4, True)


@pytest.mark.django_db
def test_nothing_to_fold_removes_nothing() -> None:
    assert deltas_compact(MailingStat, owner="mailing_id", keys=("metric",), value="delta", min_rows=1) == 0
