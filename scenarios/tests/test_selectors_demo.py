"""The demo scenario (scenarios/demo.py) and what the report shows of it: the issue's welcome
journey over the demo shop, valid and active, its first subscribers past the welcome e-mail and
waiting two days; a second run changes nothing."""

from __future__ import annotations

import pytest

from mailings.models import LedgerEntry
from scenarios.models import Participation, Scenario
from scenarios.selectors import scenario_report
from scenarios.services import version_validate

pytestmark = pytest.mark.django_db


def test_it_seeds_the_welcome_journey_once_with_its_first_travellers(acme, olivia, django_capture_on_commit_callbacks):
    from content.demo import demo_content
    from delivery.demo import demo_delivery
    from history.demo import demo_history
    from mailings.demo import seed_demo as demo_mailings
    from profiles.demo import demo_profiles
    from resources.demo import demo_resources
    from scenarios.demo import FIRST_ENTRIES, NAME, seed_demo
    from segments.demo import demo_segments

    with django_capture_on_commit_callbacks(execute=True):
        for hook in (demo_profiles, demo_resources, demo_history, demo_segments, demo_content, demo_delivery,
                     demo_mailings):
            hook(acme, olivia)
        summary = seed_demo(acme, olivia)

    assert summary == f"scenarios: “{NAME}” active, {FIRST_ENTRIES} subscribers on their way"
    scenario = Scenario.objects.for_account(acme).get(name=NAME)
    assert scenario.state == Scenario.State.ACTIVE
    assert version_validate(scenario.live_version) == []
    kinds = [s.kind for s in scenario.live_version.steps.order_by("id")]
    assert kinds == ["entry.subscription", "send", "wait", "condition", "send", "send", "wait_event", "update", "exit",
                     "split", "send", "send", "exit"]

    report = scenario_report(scenario)
    assert report.step("s3").waiting == FIRST_ENTRIES
    assert report.step("s2").passed == FIRST_ENTRIES
    assert report.step("s2").messages["planned"] == FIRST_ENTRIES
    assert report.step("s7").exits == {"event": "s8", "timeout": "s10"}
    assert report.step("s10").exits == {"a": "s11", "b": "s12"}
    assert report.totals["waiting"] == FIRST_ENTRIES
    welcome = scenario.live_version.steps.get(key="s2").mailing
    assert LedgerEntry.objects.filter(mailing_id=welcome.pk).count() == FIRST_ENTRIES

    assert seed_demo(acme, olivia) == "scenarios: already there"
    assert Participation.objects.filter(scenario=scenario).count() == FIRST_ENTRIES
