"""Export and import of a scenario as JSON: the round trip, references mapped by name into another
account, and faults named by their path."""

from __future__ import annotations

import json

import pytest

from scenarios.models import Scenario, ScenarioVersion, Step, Transition
from scenarios.services import ScenarioError, scenario_export, scenario_import, version_validate
from scenarios.tests.factories import make_scenario

pytestmark = pytest.mark.django_db

STEPS = [("s1", "entry.api", {}), ("s2", "send", {}, "Welcome"),
         ("s3", "wait_event", {"type": "order.placed", "filters": [], "timeout_seconds": 86400}, "Order or a day"),
         ("s4", "exit", {}), ("s5", "send", {}, "Reminder")]
EDGES = [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "event", "s4"), ("s3", "timeout", "s5"),
         ("s5", "next", "s4")]


def graph_of(scenario: Scenario) -> tuple[list, list]:
    version = ScenarioVersion.objects.get(scenario=scenario, state="draft")
    steps = [(s.key, s.kind, s.title, s.col, s.row) for s in Step.objects.filter(version=version).order_by("key")]
    edges = sorted(Transition.objects.filter(version=version).values_list("source__key", "exit", "target__key"))
    return steps, edges


def test_it_exports_the_live_graph_with_the_names_of_what_it_refers_to(world):
    scenario = make_scenario(world, steps=STEPS, edges=EDGES, goal={"type": "order.placed", "filters": []})
    doc = json.loads(json.dumps(scenario_export(scenario)))  # JSON-ready
    assert (doc["format"], doc["format_version"], doc["name"], doc["graph"]) == (
        "cdp.scenario", 1, "Welcome journey", {"version": 1, "state": "published"})
    assert [s["key"] for s in doc["steps"]] == ["s1", "s2", "s3", "s4", "s5"]
    assert {"source": "s3", "exit": "timeout", "target": "s5"} in doc["transitions"]
    assert doc["references"]["templates"] == {str(world.template.pk): world.template.name}
    assert doc["references"]["senders"] == {str(world.sender.pk): world.sender.from_address}
    assert doc["references"]["resources"] == {str(world.resource.pk): world.resource.name}


def test_it_imports_a_copy_as_a_new_draft_in_the_same_account(world):
    scenario = make_scenario(world, steps=STEPS, edges=EDGES)
    copy = scenario_import(account=world.account, data=scenario_export(scenario), actor=world.actor,
                           name="Welcome journey (copy)")
    assert copy.pk != scenario.pk and (copy.state, copy.name, copy.database_id) == (
        "draft", "Welcome journey (copy)", world.database.pk)
    original = ScenarioVersion.objects.get(scenario=scenario)
    steps = [(s.key, s.kind, s.title, s.col, s.row) for s in Step.objects.filter(version=original).order_by("key")]
    edges = sorted(Transition.objects.filter(version=original).values_list("source__key", "exit", "target__key"))
    assert graph_of(copy) == (steps, edges)
    draft = ScenarioVersion.objects.get(scenario=copy)
    assert draft.note == "" and version_validate(draft) == []


def test_it_maps_references_by_name_into_another_account(world, other_world):
    scenario = make_scenario(world, steps=STEPS, edges=EDGES)
    doc = scenario_export(scenario)
    # globex has a template "Spring sale" and a resource "Shop news" too, but no sender news@shop.example.
    imported = scenario_import(account=other_world.account, data=doc, actor=other_world.actor)
    assert imported.account_id == other_world.account.pk and imported.database_id == other_world.database.pk
    send = Step.objects.get(version__scenario=imported, key="s2")
    assert (send.config["template_id"], send.config["resource_id"]) == (other_world.template.pk,
                                                                        other_world.resource.pk)
    assert send.config["sender_id"] is None
    draft = ScenarioVersion.objects.get(scenario=imported)
    assert draft.note.startswith("Not found in this account: sender “news@shop.example”")


def test_it_names_each_fault_of_a_document_by_its_path(world):
    scenario = make_scenario(world, steps=STEPS, edges=EDGES)
    doc = scenario_export(scenario)
    doc["steps"][3]["kind"] = "teleport"
    doc["steps"][1]["config"]["template_id"] = "Welcome"
    doc["transitions"].append({"source": "s9", "exit": "next", "target": "s1"})
    doc["reentry"] = "sometimes"
    with pytest.raises(ScenarioError) as exc:
        scenario_import(account=world.account, data=doc, actor=world.actor)
    errors = exc.value.errors
    assert "teleport" in errors["steps[3].kind"]
    assert errors["steps[1].config.template_id"] == "an id number or null"
    assert "s9" in errors[f"transitions[{len(doc['transitions']) - 1}].source"]
    assert "reentry" in errors
    with pytest.raises(ScenarioError) as exc:
        scenario_import(account=world.account, data={"name": "x"}, actor=world.actor)
    assert "format" in exc.value.errors
    assert Scenario.objects.filter(account=world.account).count() == 1


def test_it_maps_the_segments_a_condition_names(world, other_world):
    from mailings.tests.factories import SYSTEM
    from segments.services.segments import segment_create

    acme_vip = segment_create(database=world.database, name="VIP", kind="static", actor=SYSTEM, compute=False)
    globex_vip = segment_create(database=other_world.database, name="VIP", kind="static", actor=SYSTEM, compute=False)
    tree = {"type": "group", "op": "and", "items": [
        {"type": "segment", "segment": acme_vip.pk, "negate": False},
        {"type": "subscription", "resource": world.resource.pk, "channel": "email", "statuses": ["subscribed"]}]}
    scenario = make_scenario(world, steps=[("s1", "entry.api", {}), ("s2", "condition", {"test": "segments",
                                                                                          "conditions": tree}),
                                           ("s3", "exit", {})],
                             edges=[("s1", "next", "s2"), ("s2", "yes", "s3"), ("s2", "no", "s3")])
    doc = scenario_export(scenario)
    assert doc["references"]["segments"] == {str(acme_vip.pk): "VIP"}
    imported = scenario_import(account=other_world.account, data=doc, actor=other_world.actor)
    items = Step.objects.get(version__scenario=imported, key="s2").config["conditions"]["items"]
    assert (items[0]["segment"], items[1]["resource"]) == (globex_vip.pk, other_world.resource.pk)
    assert version_validate(ScenarioVersion.objects.get(scenario=imported)) == []
    assert Step.objects.get(version__scenario=scenario, key="s2").config["conditions"] == tree  # untouched
