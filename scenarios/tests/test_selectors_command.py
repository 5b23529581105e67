"""`manage.py scenario_report ID`: the per-step figures on the terminal and as JSON."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from scenarios.models import Participation, StepStat
from scenarios.tests.factories import add_version, make_participation, make_scenario

pytestmark = pytest.mark.django_db


def _run(*args: object) -> str:
    out = StringIO()
    call_command("scenario_report", *map(str, args), stdout=out)
    return out.getvalue()


def test_it_prints_each_steps_figures_and_the_totals(world):
    scenario = make_scenario(world)
    make_participation(scenario, world.profile_ids[0], step_key="s3", state=Participation.State.WAITING)
    StepStat.objects.create(account_id=scenario.account_id, scenario_id=scenario.pk, step_key="s1", metric="entered", n=1234)

    text = _run(scenario.pk)

    lines = text.splitlines()
    assert lines[0].startswith(f"Welcome journey (#{scenario.pk}, active, ") and lines[0].endswith("version 1")
    s1 = next(line for line in lines if line.startswith("s1 "))
    assert s1.split()[-5:] == ["0", "1,234", "0", "0", "0"]
    s3 = next(line for line in lines if line.startswith("s3 "))
    assert s3.split()[-5] == "1"
    assert "messages: sent 0, delivered 0, opened 0, clicked 0, skipped 0, failed 0, queued 0" in text
    assert "Totals: entered 1, in it now 1 (active 0, waiting 1), completed 0, exited 0, failed 0" in text


def test_it_answers_json_and_an_older_version(world):
    scenario = make_scenario(world)
    add_version(world, scenario, steps=[("s1", "entry.api", {}), ("s5", "exit", {})], edges=[("s1", "next", "s5")])

    data = json.loads(_run(scenario.pk, "--json"))
    assert data["version_number"] == 2 and [s["key"] for s in data["steps"]] == ["s1", "s5"]
    assert "s3 Wait" in _run(scenario.pk, "--of-version", 1)
    assert "Versions: v2 published (0 in it now), v1 published (0 in it now)" in _run(scenario.pk)


def test_it_refuses_an_unknown_scenario_or_version(scenario):
    with pytest.raises(CommandError, match="No scenario with the id 999999"):
        _run(999999)
    with pytest.raises(CommandError, match=f"Scenario {scenario.pk} has no version 7"):
        _run(scenario.pk, "--of-version", 7)


def test_it_says_a_draft_send_step_has_no_mailing_yet(draft_scenario):
    assert "messages: no mailing yet (publish the scenario)" in _run(draft_scenario.pk)
