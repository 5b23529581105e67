"""F16: a daily regular mailing across both DST changes of its account's timezone makes exactly
one run per local day (the tick runs every 10 minutes of simulated time, twice each time, as two
schedulers would)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.faults.stack import add_subscribers, mailing_values

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

BERLIN = ZoneInfo("Europe/Berlin")
# 2027-03-28 02:00 -> 03:00 (02:30 does not exist); 2027-10-31 03:00 -> 02:00 (02:30 happens twice).
WINDOWS = [(date(2027, 3, 26), date(2027, 3, 30)), (date(2027, 10, 29), date(2027, 11, 2))]


@pytest.mark.parametrize("at", ["02:30", "10:00"])
def test_it_runs_a_daily_mailing_once_per_local_day_across_dst_changes(stack, world, at):
    from mailings.models import Mailing, Run
    from mailings.services.lifecycle import mailing_create, mailing_launch, mailings_tick

    world.account.timezone = "Europe/Berlin"
    world.account.save(update_fields=["timezone"])
    add_subscribers(world, 5)
    mailing = mailing_create(account=world.account, actor=world.actor, values=mailing_values(
        world, name=f"Daily at {at}", kind="regular", schedule={"daily_at": at}))
    mailing_launch(mailing=mailing, actor=world.actor)
    for first, last in WINDOWS:
        # As if the mailing had run every day until the window: its next run is the window's first day.
        start = datetime.combine(first, datetime.min.time(), BERLIN)
        Mailing.objects.filter(pk=mailing.pk).update(next_run_at=start)
        Run.objects.filter(mailing_id=mailing.pk).delete()
        now = start
        end = datetime.combine(last + timedelta(days=1), datetime.min.time(), BERLIN)
        ticks = 0
        while now < end and ticks < 2000:
            mailings_tick(now=now)
            mailings_tick(now=now)
            now += timedelta(minutes=10)
            ticks += 1
        runs = list(Run.objects.filter(mailing_id=mailing.pk).values_list("slot", "scheduled_for"))
        local_days = sorted(s.astimezone(BERLIN).date() for _, s in runs)
        expected = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        assert local_days == expected, (at, sorted(runs))
        assert len({slot for slot, _ in runs}) == len(runs)
        if at == "10:00":
            assert all(s.astimezone(BERLIN).hour == 10 for _, s in runs), runs
