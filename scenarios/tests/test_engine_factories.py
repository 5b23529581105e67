"""The shared factories build what the other tests rely on."""

from __future__ import annotations

from mailings.models import Mailing
from scenarios.models import ScenarioVersion, Transition
from scenarios.tests.factories import add_version, make_scenario, step_of


def test_it_builds_an_active_scenario_with_a_live_version_and_a_send_mailing(world, scenario):
    assert scenario.live_version.state == ScenarioVersion.State.PUBLISHED
    send = step_of(scenario, "s2")
    assert send.mailing.kind == Mailing.Kind.TRIGGER
    assert send.mailing.trigger["scenario_id"] == scenario.pk and send.mailing.trigger["step"] == "s2"
    assert send.config["template_id"] == world.template.pk
    assert Transition.objects.filter(version=scenario.live_version).count() == 3


def test_it_builds_a_draft_without_mailings_and_a_next_version_reusing_them(world, draft_scenario):
    assert draft_scenario.live_version is None
    assert step_of(draft_scenario.versions.get(), "s2").mailing_id is None
    scenario = make_scenario(world, name="Other")
    v2 = add_version(world, scenario, steps=[("s1", "entry.api", {}), ("s2", "send", {}), ("s9", "exit", {})],
                     edges=[("s1", "next", "s2"), ("s2", "next", "s9")])
    assert v2.number == 2 and scenario.live_version == v2
    assert step_of(v2, "s2").mailing_id == step_of(scenario.versions.get(number=1), "s2").mailing_id
