"""The scenarios API: every route, its permissions, another account's ids, and the error shape."""

from __future__ import annotations

import pytest

from accounts.permissions import Role
from scenarios.models import Participation, Scenario
from scenarios.tests.factories import make_participation, make_scenario, send_config

pytestmark = pytest.mark.django_db

BASE = "/api/v1/scenarios"


@pytest.fixture
def marketer(world, caller):
    return caller(world.account, Role.MARKETER)


@pytest.fixture
def analyst(world, caller):
    return caller(world.account, Role.ANALYST)


@pytest.fixture
def outsider(other_world, caller):
    return caller(other_world.account, Role.ADMIN, name="globex sync")


def graph(world) -> dict:
    return {
        "steps": [{"key": "s1", "kind": "entry.api"},
                  {"key": "s2", "kind": "send", "title": "Welcome", "config": send_config(world), "col": 1},
                  {"key": "s3", "kind": "wait", "title": "Two days", "config": {"mode": "duration", "seconds": 172800},
                   "col": 2},
                  {"key": "s4", "kind": "exit", "col": 3}],
        "transitions": [{"source": "s1", "exit": "next", "target": "s2"}, {"source": "s2", "target": "s3"},
                        {"source": "s3", "exit": "next", "target": "s4"}],
    }


def test_it_creates_reads_lists_and_activates_a_scenario(world, marketer):
    r = marketer.post(BASE, {"name": "Welcome journey", "database": world.database.slug, "reentry": "after_exit",
                             "goal": {"type": "order.placed"}, **graph(world)})
    assert r.status_code == 201, r.json()
    body = r.json()
    sid = body["id"]
    assert (body["state"], body["reentry"], body["graph_version"], body["problems"]) == ("draft", "after_exit", 1, [])
    assert [s["key"] for s in body["steps"]] == ["s1", "s2", "s3", "s4"]
    assert {"source": "s2", "exit": "next", "target": "s3"} in body["transitions"]
    assert marketer.get(f"{BASE}/{sid}").json()["name"] == "Welcome journey"
    page = marketer.get(BASE, {"state": "draft"}).json()
    assert [s["id"] for s in page["items"]] == [sid] and page["next_cursor"] is None
    r = marketer.post(f"{BASE}/{sid}/activate")
    assert r.status_code == 200, r.json()
    body = r.json()
    assert (body["state"], body["live_version"]) == ("active", 1)
    assert body["steps"][1]["mailing"] is not None
    assert marketer.get(BASE, {"state": "draft"}).json()["items"] == []


def test_it_replaces_the_draft_graph_and_names_what_stops_publishing(world, marketer):
    sid = marketer.post(BASE, {"name": "J", "database": world.database.slug, "starter": "entry.api"}).json()["id"]
    g = graph(world)
    g["transitions"] = g["transitions"][:2]  # the wait's exit goes nowhere, the exit step is unreachable
    r = marketer.patch(f"{BASE}/{sid}", {"name": "Journey", **g})
    assert r.status_code == 200, r.json()
    assert r.json()["name"] == "Journey"
    assert [(p["step"], p["field"]) for p in r.json()["problems"]] == [("s3", "exits.next"), ("s4", "")]
    r = marketer.post(f"{BASE}/{sid}/activate")
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["message"].startswith("The scenario was not activated: Step s3 “Two days”: the exit “next” goes "
                                       "nowhere (and 1 more problem)")
    assert ["steps", "s3", "exits.next"] in [d["loc"] for d in error["details"]]
    r = marketer.patch(f"{BASE}/{sid}", {"steps": [{"kind": "teleport"}], "transitions": [
        {"source": "s1", "exit": "next", "target": "s9"}]})
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["error"]["details"]]
    assert ["steps", 0, "kind"] in locs and ["transitions", 0, "source"] in locs


def test_it_answers_wrong_transitions_with_a_conflict(world, marketer):
    scenario = make_scenario(world)
    assert marketer.post(f"{BASE}/{scenario.pk}/resume").status_code == 409
    r = marketer.post(f"{BASE}/{scenario.pk}/pause")
    assert r.status_code == 200 and r.json()["state"] == "paused"
    r = marketer.post(f"{BASE}/{scenario.pk}/pause")
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert marketer.post(f"{BASE}/{scenario.pk}/resume").json()["state"] == "active"
    make_participation(scenario, world.profile_ids[0], step_key="s3", state="waiting")
    r = marketer.post(f"{BASE}/{scenario.pk}/stop")
    assert r.status_code == 200 and r.json()["state"] == "stopped"
    assert Participation.objects.get(scenario=scenario).exit_reason == "stopped"
    assert marketer.post(f"{BASE}/{scenario.pk}/activate").status_code == 409
    assert marketer.delete(f"{BASE}/{scenario.pk}").status_code == 204
    assert not Scenario.objects.filter(pk=scenario.pk).exists()


def test_it_lets_a_profile_in_once_per_idempotency_key(world, marketer):
    scenario = make_scenario(world, steps=[("s1", "entry.api", {}), ("s2", "wait", {"mode": "duration",
                                                                                      "seconds": 3600}),
                                           ("s3", "exit", {})],
                             edges=[("s1", "next", "s2"), ("s2", "next", "s3")], reentry="always")
    body = {"profile": {"email": "person0@example.com"}, "data": {"order": "A-1"}}
    r = marketer.post(f"{BASE}/{scenario.pk}/enter", body, HTTP_IDEMPOTENCY_KEY="order-A-1")
    assert r.status_code == 202, r.json()
    pid = r.json()["participation_id"]
    again = marketer.post(f"{BASE}/{scenario.pk}/enter", body, HTTP_IDEMPOTENCY_KEY="order-A-1")
    assert again.status_code == 202 and again.json()["participation_id"] == pid
    p = Participation.objects.get(pk=pid)
    assert (p.profile_id, p.context.get("data")) == (world.profile_ids[0], {"order": "A-1"})
    r = marketer.post(f"{BASE}/{scenario.pk}/enter", {"profile": {"email": "nobody@example.com"}})
    assert r.status_code == 422
    page = marketer.get(f"{BASE}/{scenario.pk}/participants", {"state": "open"}).json()
    assert [row["id"] for row in page["items"]] == [pid]
    assert page["items"][0]["step_key"] in ("s1", "s2")


def test_it_reports_and_exports_and_imports(world, marketer):
    scenario = make_scenario(world)
    make_participation(scenario, world.profile_ids[0], step_key="s3", state="waiting")
    report = marketer.get(f"{BASE}/{scenario.pk}/report")
    assert report.status_code == 200
    assert {s["key"]: s["in_now"] for s in report.json()["steps"]}["s3"] == 1
    doc = marketer.get(f"{BASE}/{scenario.pk}/export").json()
    assert doc["format"] == "cdp.scenario" and len(doc["steps"]) == 4
    r = marketer.post(f"{BASE}/import?name=Copy", doc)
    assert r.status_code == 201, r.json()
    assert (r.json()["name"], r.json()["state"], len(r.json()["steps"])) == ("Copy", "draft", 4)
    doc["steps"][2]["kind"] = "teleport"
    r = marketer.post(f"{BASE}/import", doc)
    assert r.status_code == 422 and ["steps", 2, "kind"] in [d["loc"] for d in r.json()["error"]["details"]]


def test_an_analyst_reads_but_does_not_change(world, analyst):
    scenario = make_scenario(world)
    assert analyst.get(f"{BASE}/{scenario.pk}").status_code == 200
    assert analyst.get(f"{BASE}/{scenario.pk}/report").status_code == 200
    assert analyst.get(f"{BASE}/{scenario.pk}/participants").status_code == 200
    for path, body in ((BASE, {"name": "X", "database": world.database.slug}), (f"{BASE}/{scenario.pk}/pause", None),
                       (f"{BASE}/{scenario.pk}/stop", None),
                       (f"{BASE}/{scenario.pk}/enter", {"profile": {"email": "person0@example.com"}})):
        assert analyst.post(path, body).status_code == 403, path
    assert analyst.patch(f"{BASE}/{scenario.pk}", {"name": "Mine"}).status_code == 403
    assert Scenario.objects.get(pk=scenario.pk).state == "active"


def test_another_accounts_scenario_is_a_404_on_every_route(world, other_world, outsider):
    scenario = make_scenario(world)
    sid = scenario.pk
    for path in (f"{BASE}/{sid}", f"{BASE}/{sid}/report", f"{BASE}/{sid}/participants", f"{BASE}/{sid}/export"):
        assert outsider.get(path).status_code == 404, path
    for action in ("activate", "pause", "resume", "stop"):
        assert outsider.post(f"{BASE}/{sid}/{action}").status_code == 404, action
    assert outsider.post(f"{BASE}/{sid}/enter", {"profile": {"email": "person0@example.com"}}).status_code == 404
    assert outsider.patch(f"{BASE}/{sid}", {"name": "Mine"}).status_code == 404
    assert outsider.delete(f"{BASE}/{sid}").status_code == 404
    assert outsider.get(BASE).json()["items"] == []
    # The same slug names globex's own database: the scenario is made there, never in acme's.
    r = outsider.post(BASE, {"name": "X", "database": world.database.slug})
    assert r.status_code == 201 and Scenario.objects.get(pk=r.json()["id"]).database_id == other_world.database.pk
    assert outsider.post(BASE, {"name": "X", "database": "nope"}).status_code == 422
    assert Scenario.objects.get(pk=sid).state == "active"


def test_an_api_entry_reaches_the_send_ledger_through_the_engine(world, marketer, django_capture_on_commit_callbacks):
    from mailings.models import LedgerEntry

    scenario = make_scenario(world)  # entry.api -> send -> wait 0 -> exit
    with django_capture_on_commit_callbacks(execute=True):
        r = marketer.post(f"{BASE}/{scenario.pk}/enter", {"profile": {"id": world.profile_ids[1]},
                                                          "data": {"coupon": "HELLO10"}})
    assert r.status_code == 202, r.json()
    pid = r.json()["participation_id"]
    entry = LedgerEntry.objects.get(trigger_key__startswith=f"scn:{pid}:")
    assert (entry.profile_id, entry.data) == (world.profile_ids[1], {"coupon": "HELLO10"})
    assert marketer.get(f"{BASE}/{scenario.pk}/participants", {"state": "completed"}).json()["items"][0]["id"] == pid


def test_it_documents_every_route_with_examples():
    from cdp.api.v1 import api

    schema = api.get_openapi_schema()
    paths = {p for p in schema["paths"] if p.startswith("/api/v1/scenarios")}
    assert paths == {"/api/v1/scenarios", "/api/v1/scenarios/{scenario_id}", "/api/v1/scenarios/import",
                     *(f"/api/v1/scenarios/{{scenario_id}}/{a}" for a in (
                         "activate", "pause", "resume", "stop", "enter", "participants", "report", "export"))}
    for name in ("ScenarioIn", "EnterIn"):
        assert schema["components"]["schemas"][name].get("examples"), name
