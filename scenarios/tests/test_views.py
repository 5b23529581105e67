"""The scenario pages: the list, a new scenario, the editor (diagram, palette, step forms, move,
delete, validation), the lifecycle buttons, publishing with a mapping, import/export, participants
and paths, the report. alice (marketer) writes, bob (analyst) reads but cannot write, charlie
(another account) gets 404 on every object."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse

from cdp.secrets import SecretError
from scenarios.models import Participation, PathEntry, Scenario, ScenarioVersion, Step, StepStat, Transition
from scenarios.tests.factories import make_participation, make_scenario, step_of

HTMX = {"HX-Request": "true"}


def _url(name: str, *args) -> str:
    return reverse(f"scenarios:{name}", args=args)


def _step(scenario: Scenario, key: str) -> Step:
    return Step.objects.get(version__scenario=scenario, version__state="draft", key=key)


def _edges(version: ScenarioVersion) -> set[tuple[str, str, str]]:
    return {(t.source.key, t.exit, t.target.key) for t in Transition.objects.filter(version=version)
            .select_related("source", "target")}


# --- the list ------------------------------------------------------------------------------------------


def test_it_shows_the_empty_state_with_a_new_scenario_action(login, alice, world):
    body = login(alice).get(_url("list")).content.decode()
    assert "No scenarios yet" in body
    assert _url("create") in body


def test_it_lists_scenarios_with_state_entries_and_figures(login, alice, world, scenario, draft_scenario):
    make_participation(scenario, world.profile_ids[0], step_key="s3", state="waiting")
    make_participation(scenario, world.profile_ids[1], step_key="s4", state="completed")
    body = login(alice).get(_url("list")).content.decode()
    assert "Welcome journey" in body and "Draft journey" in body
    assert "s-state-active" in body and "s-state-draft" in body
    assert "API call" in body  # the entry kind
    row = body.split(f'data-scenario="{scenario.pk}"')[1].split("</tr>")[0]
    assert 'data-testid="in-now">1<' in row
    assert 'data-testid="completed">1<' in row


def test_the_list_keeps_its_query_budget(login, alice, world, scenario, draft_scenario, django_assert_max_num_queries):
    client = login(alice)
    client.get(_url("list"))
    # session, user, memberships with their accounts, the page, its figures (participants by state,
    # entry kinds), the import form's databases; no count: the page holds every row
    with django_assert_max_num_queries(7):
        body = client.get(_url("list")).content.decode()
    assert body.count("data-scenario=") == 2 and 'data-testid="count">2 results<' in body


def test_the_list_answers_when_a_webhook_secret_cannot_be_decrypted(login, alice, api_token, world, scenario):
    # A secret written under a key that is gone (SECRET_KEY rotated without CDP_SECRETS_KEY): the
    # list pages show no secret, so they do not decrypt it and still answer.
    with connection.cursor() as cur:  # raw: the field would encrypt what the ORM writes
        cur.execute("UPDATE scenarios_scenario SET webhook_secret = %s WHERE id = %s",
                    ["gAAAAABnot-a-token-of-any-key-we-have", scenario.pk])
    with pytest.raises(SecretError):
        Scenario.objects.get(pk=scenario.pk)  # what a page that needs the secret gets (and logs)
    assert "Welcome journey" in login(alice).get(_url("list")).content.decode()
    response = Client().get("/api/v1/scenarios", HTTP_AUTHORIZATION=f"Bearer {api_token(world.account)}")
    assert response.status_code == 200 and [s["id"] for s in response.json()["items"]] == [scenario.pk]


def test_it_searches_the_list(login, alice, world, scenario, draft_scenario):
    body = login(alice).get(_url("list"), {"q": "draft"}).content.decode()
    assert "Draft journey" in body and "Welcome journey" not in body


def test_an_analyst_sees_no_new_or_import_buttons(login, bob, world, scenario):
    body = login(bob).get(_url("list")).content.decode()
    assert "Welcome journey" in body
    assert 'data-testid="new-scenario"' not in body and 'data-testid="import-form"' not in body


# --- create and settings ------------------------------------------------------------------------------


def test_it_creates_a_draft_scenario_and_opens_its_editor(login, alice, world):
    response = login(alice).post(_url("create"), {
        "name": "Welcome journey", "database": world.database.pk, "reentry": "after_exit", "goal_type": ""})
    scenario = Scenario.objects.get(name="Welcome journey")
    assert response.status_code == 302 and response["Location"] == _url("detail", scenario.pk)
    assert scenario.state == "draft" and scenario.reentry == "after_exit"
    assert scenario.versions.get().state == "draft"


def test_it_says_what_is_missing_on_the_new_scenario_form(login, alice, world):
    response = login(alice).post(_url("create"), {"name": "", "database": "", "reentry": "never"})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not Scenario.objects.exists()


def test_it_saves_the_settings_with_a_goal(login, alice, world, draft_scenario):
    from history.models import EventType

    EventType.objects.get_or_create(account=world.account, name="order.placed", defaults={"label": "Order placed"})
    response = login(alice).post(_url("settings", draft_scenario.pk), {
        "name": "Welcome", "reentry": "never", "goal_type": "order.placed", "g0_property": "total", "g0_op": "gt",
        "g0_value": "10"})
    assert response.status_code == 302, response.content.decode()[:2000]
    draft_scenario.refresh_from_db()
    assert draft_scenario.name == "Welcome"
    assert draft_scenario.goal == {"type": "order.placed", "filters": [{"property": "total", "op": "gt", "value": 10}]}


# --- the editor -------------------------------------------------------------------------------------------


def test_it_draws_the_steps_and_labelled_connectors(login, alice, world):
    scenario = make_scenario(world, active=False, steps=[
        ("s1", "entry.api", {}), ("s2", "condition", {"test": "message", "step": "s1", "what": "opened"}),
        ("s3", "exit", {}), ("s4", "exit", {})], edges=[("s1", "next", "s2"), ("s2", "yes", "s3")])
    body = login(alice).get(_url("detail", scenario.pk)).content.decode()
    for key in ("s1", "s2", "s3", "s4"):
        assert f'data-testid="step-{key}"' in body
    assert 'data-edge="s1:next:s2"' in body and 'data-edge="s2:yes:s3"' in body
    assert ">yes</text>" in body
    # The unconnected "no" exit is a stub with its label and an "add after" button.
    assert ">no</text>" in body and 'data-testid="add-after-s2-no"' in body
    # ... and the validation panel says so, with the step outlined.
    assert "s-has-problem" in body and "no" in body and 'data-testid="problems"' in body


def test_it_opens_the_palette_and_a_step_form_in_the_side_panel(login, alice, world, draft_scenario):
    client = login(alice)
    palette = client.get(_url("palette", draft_scenario.pk), {"after": "s2", "exit": "next"}, headers=HTMX)
    assert palette.status_code == 200
    body = palette.content.decode()
    assert "<html" not in body and 'data-testid="kind-wait_event"' in body
    assert 'data-testid="kind-entry.api"' not in body  # nothing is added after a step as an entry
    form = client.get(_url("step_add", draft_scenario.pk), {"kind": "send", "after": "s2", "exit": "next"},
                      headers=HTMX).content.decode()
    assert 'name="template"' in form and world.template.name in form
    assert 'name="resource"' in form and "Shop news" in form
    # Without htmx the same URL is the whole page with the panel open.
    page = client.get(_url("step_add", draft_scenario.pk), {"kind": "wait"}).content.decode()
    assert "<html" in page and 'name="mode"' in page and 'data-testid="diagram"' in page


def test_it_adds_a_step_after_an_exit_and_connects_it(login, alice, world):
    scenario = make_scenario(world, active=False, steps=[("s1", "entry.api", {}), ("s2", "exit", {})], edges=[])
    response = login(alice).post(_url("step_add", scenario.pk), {
        "kind": "wait", "after": "s1", "exit": "next", "title": "Wait 2 days", "mode": "duration", "amount": "2",
        "unit": "86400", "exit_next": "s2"}, headers=HTMX)
    assert response.status_code == 200, response.content.decode()[:3000]
    new = Step.objects.get(version__scenario=scenario, kind="wait")
    assert new.key == "s3" and new.title == "Wait 2 days"
    assert new.config == {"mode": "duration", "seconds": 172800}
    assert (new.col, new.row) == (1, 0) or new.col >= 1
    assert _edges(new.version) == {("s1", "next", "s3"), ("s3", "next", "s2")}
    body = response.content.decode()
    assert 'id="editor"' in body and "Wait 2 days" in body and "<html" not in body


def test_it_keeps_the_form_with_its_errors(login, alice, world, draft_scenario):
    client = login(alice)
    data = {"kind": "split", "a_weight": "60", "b_weight": "30"}
    # htmx swaps only 2xx answers: the partial with the errors comes back as 200; without htmx, 400.
    response = client.post(_url("step_add", draft_scenario.pk), data, headers=HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "The weights add up to 90%, not 100%." in body and 'data-testid="step-form"' in body
    assert client.post(_url("step_add", draft_scenario.pk), data).status_code == 400
    assert not Step.objects.filter(version__scenario=draft_scenario, kind="split").exists()


def test_it_edits_a_step_and_its_connections(login, alice, world):
    scenario = make_scenario(world, active=False, steps=[
        ("s1", "entry.api", {}), ("s2", "wait_event", {"type": "", "filters": [], "timeout_seconds": 3600}),
        ("s3", "exit", {}), ("s4", "exit", {})], edges=[("s1", "next", "s2")])
    from history.models import EventType

    EventType.objects.get_or_create(account=world.account, name="order.placed", defaults={"label": "Order placed"})
    client = login(alice)
    form = client.get(_url("step_edit", scenario.pk, "s2"), headers=HTMX).content.decode()
    assert "order.placed" in form and 'name="exit_event"' in form and 'name="exit_timeout"' in form
    response = client.post(_url("step_edit", scenario.pk, "s2"), {
        "title": "Order or 7 days", "type": "order.placed", "f0_property": "total", "f0_op": "gte", "f0_value": "20",
        "amount": "7", "unit": "86400", "exit_event": "s3", "exit_timeout": "s4"})
    assert response.status_code == 302
    s2 = _step(scenario, "s2")
    assert s2.title == "Order or 7 days"
    assert s2.config == {"type": "order.placed", "filters": [{"property": "total", "op": "gte", "value": 20}],
                         "timeout_seconds": 7 * 86400}
    assert _edges(s2.version) == {("s1", "next", "s2"), ("s2", "event", "s3"), ("s2", "timeout", "s4")}


def test_it_moves_a_step_and_swaps_with_the_one_in_the_way(login, alice, world, draft_scenario):
    client = login(alice)
    s2, s3 = _step(draft_scenario, "s2"), _step(draft_scenario, "s3")
    assert (s2.col, s3.col) == (1, 2)
    client.post(_url("step_move", draft_scenario.pk, "s2"), {"direction": "right"}, headers=HTMX)
    s2.refresh_from_db()
    s3.refresh_from_db()
    assert (s2.col, s2.row, s3.col, s3.row) == (2, 0, 1, 0)
    client.post(_url("step_move", draft_scenario.pk, "s2"), {"direction": "down"})
    s2.refresh_from_db()
    assert (s2.col, s2.row) == (2, 1)


def test_it_deletes_a_step_after_confirming(login, alice, world, draft_scenario):
    client = login(alice)
    confirm = client.get(_url("step_delete", draft_scenario.pk, "s3"), headers=HTMX).content.decode()
    assert "Delete s3" in confirm and 'data-testid="confirm-delete-step"' in confirm
    assert _step(draft_scenario, "s3")
    client.post(_url("step_delete", draft_scenario.pk, "s3"), headers=HTMX)
    assert not Step.objects.filter(version__scenario=draft_scenario, key="s3").exists()


def test_a_published_version_is_read_only(login, alice, world, scenario):
    client = login(alice)
    body = client.get(_url("detail", scenario.pk)).content.decode()
    assert 'data-testid="edit"' in body and "s-tools" not in body and 'data-testid="palette"' not in body
    assert client.post(_url("step_add", scenario.pk), {"kind": "exit"}).status_code == 404
    assert client.post(_url("step_edit", scenario.pk, "s2"), {"title": "x"}).status_code == 404


def test_editing_a_live_scenario_makes_a_draft_copy(login, alice, world, scenario):
    response = login(alice).post(_url("draft", scenario.pk))
    assert response.status_code == 302
    draft = scenario.versions.get(state="draft")
    assert draft.number == 2
    assert sorted(draft.steps.values_list("key", flat=True)) == ["s1", "s2", "s3", "s4"]


def test_it_shows_an_older_version_read_only(login, alice, world, scenario):
    login(alice).post(_url("draft", scenario.pk))
    body = login(alice).get(_url("detail", scenario.pk), {"v": "1"}).content.decode()
    assert 'data-testid="read-only"' in body and "Edit the draft, version 2" in body
    assert 'data-testid="step-s2"' in body
    assert login(alice).get(_url("detail", scenario.pk), {"v": "9"}).status_code == 404


# --- lifecycle --------------------------------------------------------------------------------------------


def test_it_refuses_to_activate_an_invalid_draft_with_the_reason(login, alice, world):
    scenario = make_scenario(world, active=False, steps=[("s1", "entry.api", {}), ("s2", "wait", {"mode": "duration",
                                                                                                  "seconds": 60})],
                             edges=[("s1", "next", "s2")])
    client = login(alice)
    response = client.post(_url("activate", scenario.pk), follow=True)
    scenario.refresh_from_db()
    assert scenario.state == "draft"
    assert "It cannot be activated yet" in response.content.decode()


def test_it_activates_pauses_resumes_and_stops(login, alice, world, draft_scenario):
    client = login(alice)
    client.post(_url("activate", draft_scenario.pk))
    draft_scenario.refresh_from_db()
    assert draft_scenario.state == "active" and draft_scenario.live_version_id
    body = client.get(_url("detail", draft_scenario.pk)).content.decode()
    assert 'data-testid="pause"' in body and 'data-testid="totals"' in body
    client.post(_url("pause", draft_scenario.pk))
    draft_scenario.refresh_from_db()
    assert draft_scenario.state == "paused"
    client.post(_url("resume", draft_scenario.pk))
    draft_scenario.refresh_from_db()
    assert draft_scenario.state == "active"
    client.post(_url("stop", draft_scenario.pk))
    draft_scenario.refresh_from_db()
    assert draft_scenario.state == "stopped"


def test_it_publishes_a_new_version_moving_the_mapped_profiles(login, alice, world, scenario):
    p = make_participation(scenario, world.profile_ids[0], step_key="s3", state="waiting")
    client = login(alice)
    client.post(_url("draft", scenario.pk))
    page = client.get(_url("publish", scenario.pk)).content.decode()
    assert 'name="map_s3"' in page and "1 inside" in page
    response = client.post(_url("publish", scenario.pk), {"map_s3": "s3"})
    assert response.status_code == 302, response.content.decode()[:3000]
    scenario.refresh_from_db()
    live = scenario.live_version
    assert live.number == 2 and live.state == "published"
    p.refresh_from_db()
    assert p.version_id == live.pk


# --- import / export ---------------------------------------------------------------------------------------


def test_it_exports_and_imports_a_scenario(login, alice, world, draft_scenario):
    client = login(alice)
    response = client.get(_url("export", draft_scenario.pk))
    assert response["Content-Disposition"].startswith("attachment")
    data = json.loads(response.content)
    upload = SimpleUploadedFile("s.json", json.dumps(data).encode(), content_type="application/json")
    response = client.post(_url("import"), {"file": upload, "database": world.database.pk})
    assert response.status_code == 302
    copy = Scenario.objects.exclude(pk=draft_scenario.pk).get()
    assert response["Location"] == _url("detail", copy.pk)
    assert copy.state == "draft" and copy.versions.get().steps.count() == 4


def test_it_refuses_an_import_that_is_not_json(login, alice, world):
    upload = SimpleUploadedFile("s.json", b"{nope", content_type="application/json")
    response = login(alice).post(_url("import"), {"file": upload, "database": world.database.pk}, follow=True)
    assert "This is not JSON" in response.content.decode()
    assert not Scenario.objects.exists()


# --- participants, path, profile, report -------------------------------------------------------------------


def test_it_lists_participants_with_filters_and_shows_a_path(login, alice, world, scenario):
    waiting = make_participation(scenario, world.profile_ids[0], step_key="s3", state="waiting")
    make_participation(scenario, world.profile_ids[1], step_key="s4", state="completed")
    PathEntry.objects.filter(participation=waiting).delete()  # the factory's own row; this test writes the path
    PathEntry.objects.create(participation=waiting, version_number=1, step_key="s1", seq=0, exit="next",
                             left_at=waiting.entered_at, outcome="")
    PathEntry.objects.create(participation=waiting, version_number=1, step_key="s2", seq=1, exit="next",
                             left_at=waiting.entered_at, outcome="queued: ledger #1")
    PathEntry.objects.create(participation=waiting, version_number=1, step_key="s3", seq=2)
    Participation.objects.filter(pk=waiting.pk).update(seq=2)
    client = login(alice)
    body = client.get(_url("participants", scenario.pk)).content.decode()
    assert body.count("data-participation=") == 2
    body = client.get(_url("participants", scenario.pk), {"state": "waiting"}).content.decode()
    assert body.count("data-participation=") == 1 and f'data-participation="{waiting.pk}"' in body
    body = client.get(_url("participants", scenario.pk), {"step": "s4"}).content.decode()
    assert body.count("data-participation=") == 1
    partial = client.get(_url("participants", scenario.pk), {"state": "waiting"},
                         headers={**HTMX, "HX-Target": "participants"}).content.decode()
    assert partial.lstrip().startswith('<div id="participants"') and partial.count("data-participation=") == 1
    path = client.get(_url("participation", scenario.pk, waiting.pk)).content.decode()
    assert path.count('class="s-tl-item') == 3 and "queued: ledger #1" in path and "here now" in path
    trips = client.get(_url("profile_trips", world.profile_ids[0])).content.decode()
    assert "Welcome journey" in trips
    # The profile card links to them.
    card = client.get(reverse("profiles:profile_detail", args=[world.database.slug, world.profile_ids[0]]))
    assert f'href="{_url("profile_trips", world.profile_ids[0])}"' in card.content.decode()


def test_it_pages_participants_by_cursor(login, alice, world, scenario):
    for pid in world.profile_ids:
        make_participation(scenario, pid, step_key="s3", state="waiting")
    from scenarios.views import participants

    old = participants.PAGE
    participants.PAGE = 2
    try:
        client = login(alice)
        first = client.get(_url("participants", scenario.pk)).content.decode()
        assert first.count("data-participation=") == 2 and 'data-testid="next-page"' in first
        cursor = first.split("cursor=")[1].split('"')[0]
        second = client.get(_url("participants", scenario.pk), {"cursor": cursor}).content.decode()
        assert second.count("data-participation=") == 2
        assert set(first.split("data-participation=")[1:]) != set(second.split("data-participation=")[1:])
    finally:
        participants.PAGE = old


def test_the_scenario_page_shows_the_step_figures(login, alice, world, scenario):
    make_participation(scenario, world.profile_ids[0], step_key="s3", state="waiting")
    StepStat.objects.create(account_id=world.account.pk, scenario_id=scenario.pk, step_key="s2", metric="passed", n=4)
    body = login(alice).get(_url("detail", scenario.pk)).content.decode()
    assert 'data-testid="now-s3">1<' in body
    assert 'data-testid="passed-s2">4<' in body
    assert 'data-testid="messages-s2"' in body  # the send step's message figures
    report = login(alice).get(_url("report", scenario.pk)).content.decode()
    assert f'href="{reverse("mailings:report", args=[step_of(scenario, "s2").mailing_id])}"' in report


# --- roles and accounts --------------------------------------------------------------------------------------


def test_an_analyst_reads_but_cannot_edit(login, bob, world, scenario, draft_scenario):
    client = login(bob)
    body = client.get(_url("detail", draft_scenario.pk)).content.decode()
    assert 'data-testid="diagram"' in body
    assert "s-tools" not in body and 'data-testid="palette"' not in body and 'data-testid="activate"' not in body
    form = client.get(_url("step_edit", draft_scenario.pk, "s2"), headers=HTMX).content.decode()
    assert "<fieldset disabled>" in form and 'data-testid="save-step"' not in form
    assert client.post(_url("step_edit", draft_scenario.pk, "s2"), {"title": "x"}).status_code == 403
    assert client.post(_url("step_add", draft_scenario.pk), {"kind": "exit"}).status_code == 403
    assert client.post(_url("activate", draft_scenario.pk)).status_code == 403
    assert client.post(_url("pause", scenario.pk)).status_code == 403
    assert client.get(_url("create")).status_code == 403
    assert _step(draft_scenario, "s2").title != "x"


@pytest.mark.parametrize("name,method,extra", [
    ("detail", "get", ()), ("settings", "get", ()), ("export", "get", ()), ("delete", "get", ()),
    ("palette", "get", ()), ("participants", "get", ()), ("report", "get", ()), ("publish", "get", ()),
    ("step_edit", "get", ("s2",)), ("step_delete", "get", ("s2",)), ("step_move", "post", ("s2",)),
    ("step_edit", "post", ("s2",)), ("step_add", "post", ()), ("draft", "post", ()), ("activate", "post", ()),
    ("pause", "post", ()), ("resume", "post", ()), ("stop", "post", ()),
])
def test_another_accounts_scenario_is_a_404(login, charlie, other_world, world, draft_scenario, name, method, extra):
    client = login(charlie)
    response = getattr(client, method)(_url(name, draft_scenario.pk, *extra), {"kind": "exit", "direction": "up"})
    assert response.status_code == 404
    draft_scenario.refresh_from_db()
    assert draft_scenario.state == "draft"


def test_another_accounts_participation_and_profile_are_404(login, charlie, other_world, world, scenario):
    p = make_participation(scenario, world.profile_ids[0], step_key="s3", state="waiting")
    client = login(charlie)
    assert client.get(_url("participation", scenario.pk, p.pk)).status_code == 404
    assert client.get(_url("profile_trips", world.profile_ids[0])).status_code == 404
    # charlie's own scenario does not open acme's participation either.
    own = make_scenario(other_world)
    assert client.get(_url("participation", own.pk, p.pk)).status_code == 404


# --- query counts ----------------------------------------------------------------------------------------------


def _big(world, n: int, *, active: bool) -> Scenario:
    steps = [("s1", "entry.api", {})] + [
        (f"s{i}", "send" if i % 3 == 0 else "wait", {} if i % 3 == 0 else {"mode": "duration", "seconds": 60})
        for i in range(2, n)] + [(f"s{n}", "exit", {})]
    edges = [(f"s{i}", "next", f"s{i + 1}") for i in range(1, n)]
    return make_scenario(world, steps=steps, edges=edges, active=active, name=f"Big {n} {active}")


@pytest.mark.parametrize("active", [True, False])
def test_the_scenario_page_queries_do_not_grow_with_the_steps(login, alice, world, django_assert_max_num_queries,
                                                               active):
    small, big = _big(world, 6, active=active), _big(world, 30, active=active)
    client = login(alice)
    client.get(_url("detail", small.pk))
    # 18 (live: figures) / 23 (draft: validation) today; the pin leaves a little room, not a loop.
    with django_assert_max_num_queries(26) as small_ctx:
        assert client.get(_url("detail", small.pk)).status_code == 200
    with django_assert_max_num_queries(26) as big_ctx:
        body = client.get(_url("detail", big.pk)).content.decode()
    assert body.count('class="s-node ') == 30
    assert len(big_ctx.captured_queries) <= len(small_ctx.captured_queries) + 2
