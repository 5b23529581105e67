"""Two requests at once on PostgreSQL: one draft, one published version, one set of step mailings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from mailings.models import Mailing
from scenarios.models import Scenario, ScenarioVersion
from scenarios.services import ScenarioError, draft_get_or_create, scenario_activate
from scenarios.tests.factories import make_scenario

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency: PostgreSQL"),
]


def twice_at_once(fn: Callable[[], Any]) -> list[Any]:
    """Run `fn` in two threads released together; each result, or the exception it raised."""
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(fn())
        except Exception as exc:
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_two_editors_opening_a_live_scenario_share_one_draft(world):
    scenario = make_scenario(world)
    results = twice_at_once(lambda: draft_get_or_create(scenario=Scenario.objects.get(pk=scenario.pk)).pk)
    assert len(results) == 2 and results[0] == results[1]
    assert ScenarioVersion.objects.filter(scenario=scenario, state="draft").count() == 1


def test_two_activations_at_once_publish_once(world):
    scenario = make_scenario(world, active=False)
    results = twice_at_once(lambda: scenario_activate(scenario=Scenario.objects.get(pk=scenario.pk),
                                                      actor=world.actor).state)
    won = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, ScenarioError)]
    assert won == ["active"] and len(refused) == 1, results
    assert "already active" in refused[0].text
    assert ScenarioVersion.objects.filter(scenario=scenario, state="published").count() == 1
    assert Mailing.objects.filter(trigger__scenario_id=scenario.pk).count() == 1  # the one send step's
