"""Smoke test of `python -m bench scenario`'s own parts at a tiny size (no workers, no timing):
the scenario it builds through the authoring services is valid, runs end to end with the engine
(Celery eager) through the send ledger, and its cleanup leaves no scenario rows behind. Runs on
SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bench import harness, render
from bench import scenario as bench_scenario
from mailings.models import LedgerEntry
from profiles.models import Profile
from scenarios.models import Participation, PathEntry, Scenario, Step, StepStat
from scenarios.selectors import scenario_report
from scenarios.services import scenario_activate, version_validate

pytestmark = pytest.mark.django_db

SIZE = 12


@pytest.fixture
def seeded():
    return render.seed(SIZE)


def test_it_is_registered_for_make_bench_with_a_small_size():
    benchmarks = harness.discover()
    assert benchmarks["scenario"].small_size == 2_000
    assert benchmarks["scenario"].help.startswith("Scenario entry -> send -> wait 0 -> condition -> send")


def test_it_builds_a_valid_welcome_scenario_with_the_authoring_services(seeded):
    built = bench_scenario.build_welcome(seeded, harness_actor())
    version = built.scenario.versions.get()
    assert version_validate(version) == []
    kinds = list(Step.objects.filter(version=version).order_by("key").values_list("key", "kind"))
    assert [k for _, k in kinds] == ["entry.segment", "send", "wait", "condition", "send", "exit"]
    assert built.send_keys == ("s2", "s5")


def test_it_runs_every_profile_through_both_sends_as_the_benchmark_expects(seeded, django_capture_on_commit_callbacks):
    actor = harness_actor()
    built = bench_scenario.build_welcome(seeded, actor)
    gold = sum(1 for p in Profile.objects.filter(database=seeded.database)
               if p.data["loyalty_points"] >= bench_scenario.GOLD)
    with django_capture_on_commit_callbacks(execute=True):
        scenario = scenario_activate(scenario=built.scenario, actor=actor)

    trips = bench_scenario.trip_counts(scenario.pk)
    assert trips == {"completed": SIZE}
    mailing_ids = bench_scenario.send_mailings(scenario)
    assert len(mailing_ids) == 2
    assert bench_scenario.ledger_counts(mailing_ids) == {"sent": SIZE + gold}
    report = scenario_report(scenario)
    assert report.step("s2").messages["sent"] == SIZE and report.step("s5").messages["sent"] == gold
    assert report.step("s4").passed == SIZE


def test_it_cleans_up_its_scenarios_so_the_account_can_go(seeded, django_capture_on_commit_callbacks):
    actor = harness_actor()
    built = bench_scenario.build_welcome(seeded, actor)
    with django_capture_on_commit_callbacks(execute=True):
        scenario_activate(scenario=built.scenario, actor=actor)
    bench_scenario.build_orders(seeded, actor)
    assert PathEntry.objects.exists()

    bench_scenario.cleanup_scenarios()

    assert not Scenario.objects.filter(account=seeded.account).exists()
    assert not Participation.objects.filter(account_id=seeded.account.pk).exists()
    assert not PathEntry.objects.exists() and not StepStat.objects.filter(account_id=seeded.account.pk).exists()
    assert LedgerEntry.objects.filter(account_id=seeded.account.pk).exists()  # the mailings' cleanup is the dispatch's


def harness_actor():
    from accounts.access import Actor

    return Actor.system()
