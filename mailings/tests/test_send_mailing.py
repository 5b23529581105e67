"""manage.py send_mailing: launch, follow to the end (eager Celery: the run is planned and sent
inside the launch's commit), resume, refusals, and Ctrl-C stopping the following only."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from delivery.backends import locmem
from mailings.models import LedgerEntry, Mailing, Run
from mailings.tests.factories import make_mailing, make_run, queue_entries


def run_command(*args: object) -> str:
    out = StringIO()
    call_command("send_mailing", *[str(a) for a in args], "--interval", "0.05", "--timeout", "20", stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_it_launches_and_follows_a_broadcast_to_the_end(world):
    mailing = make_mailing(world)
    output = run_command(mailing.pk)
    assert "Launched “Spring sale”" in output
    assert "Done: 5 sent, 0 failed, 0 skipped" in output
    assert "sent 5" in output  # a progress line
    assert len(locmem.outbox) == 5
    assert set(LedgerEntry.objects.filter(mailing_id=mailing.pk).values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_it_refuses_what_cannot_be_launched(world):
    mailing = make_mailing(world, template=None)
    with pytest.raises(CommandError, match="template"):
        run_command(mailing.pk)
    assert Mailing.objects.get(pk=mailing.pk).state == "draft"
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.DONE)
    with pytest.raises(CommandError, match="duplicate it"):
        run_command(mailing.pk)
    with pytest.raises(CommandError, match="no mailing"):
        run_command(99999999)


@pytest.mark.django_db
def test_it_launches_without_following(world):
    mailing = make_mailing(world, schedule={"mode": "at", "at": (timezone.now() + timezone.timedelta(days=1)).isoformat()})
    out = StringIO()
    call_command("send_mailing", str(mailing.pk), "--no-follow", stdout=out)
    assert "Launched" in out.getvalue()
    assert Mailing.objects.get(pk=mailing.pk).state == "scheduled"


@pytest.mark.django_db
def test_it_stops_following_on_ctrl_c_and_the_mailing_goes_on(world, monkeypatch):
    from mailings.management.commands import send_mailing

    mailing = make_mailing(world)
    run = make_run(mailing)
    queue_entries(run)
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.PAUSED)
    Run.objects.filter(pk=run.pk).update(state=Run.State.PAUSED)

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(send_mailing.time, "sleep", interrupt)
    output = run_command(mailing.pk)
    assert "Resumed" in output and "Stopped following" in output
    assert Mailing.objects.get(pk=mailing.pk).state == "sending"
