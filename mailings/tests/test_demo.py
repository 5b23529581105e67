"""The demo mailings: one of each kind over the demo shop, a sent newsletter whose report adds up,
and a second run that changes nothing."""

from __future__ import annotations

import pytest

from mailings.models import LedgerEntry, Mailing, Run
from mailings.selectors import mailing_report

pytestmark = pytest.mark.django_db


def test_it_seeds_the_demo_mailings_once(acme, olivia, django_capture_on_commit_callbacks):
    from content.demo import demo_content
    from delivery.demo import demo_delivery
    from history.demo import demo_history
    from mailings.demo import seed_demo
    from mailings.services import triggers
    from profiles.demo import demo_profiles
    from resources.demo import demo_resources
    from segments.demo import demo_segments

    with django_capture_on_commit_callbacks(execute=True):
        for hook in (demo_profiles, demo_resources, demo_history, demo_segments, demo_content, demo_delivery):
            hook(acme, olivia)
        summary = seed_demo(acme, olivia)
    assert "sent newsletter" in summary and "draft" in summary
    mailings = {m.name: m for m in Mailing.objects.for_account(acme)}
    assert {(m.kind, m.state) for m in mailings.values()} == {
        ("broadcast", "done"), ("regular", "scheduled"), ("trigger", "sending"), ("broadcast", "draft")}
    assert mailings["Birthday greetings"].next_run_at is not None
    assert mailings["Birthday greetings"].include_segments.get().slug == "birthday-today"
    assert mailings["Abandoned cart"].trigger["delay_seconds"] == 3600
    assert {"cart_abandoned", "subscription.subscribed"} <= triggers.interesting_types()

    newsletter = mailings["November newsletter"]
    run = Run.objects.get(mailing=newsletter)
    rows = LedgerEntry.objects.filter(run=run)
    assert run.planned == rows.count() > 1000
    report = mailing_report(mailing=newsletter)
    f = report.figures
    assert f["planned"] == run.planned
    assert f["sent"] + f["failed"] + f["skipped"] + f["ambiguous"] == f["planned"] and f["queued"] == 0
    assert f["sent"] == rows.filter(status="sent").count()
    assert 0 < f["bounced_hard"] < f["sent"] // 20
    assert f["opened_unique"] == rows.exclude(opened_at=None).count() > f["clicked_unique"] > 0
    assert report.links and len(report.series) > 3 and report.skipped
    assert 30 < report.rates["open"] < 55

    assert seed_demo(acme, olivia) == "mailings: already there"
    assert Mailing.objects.for_account(acme).count() == len(mailings)
    assert LedgerEntry.objects.filter(run=run).count() == run.planned


def test_it_is_a_demo_hook():
    from accounts.demo import DEMO_HOOKS
    from mailings.demo import seed_demo

    assert seed_demo in DEMO_HOOKS
