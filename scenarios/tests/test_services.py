"""The authoring services: creating, editing the draft, publishing with the send steps' mailings,
the state machine, deleting, and the "scenario" trigger kind in mailings."""

from __future__ import annotations

import pytest

from accounts.access import Actor
from accounts.models import AuditEvent
from mailings.models import LedgerEntry, Mailing
from scenarios.models import Participation, Scenario, ScenarioVersion, Step, Transition
from scenarios.services import (
    ScenarioError,
    draft_get_or_create,
    scenario_activate,
    scenario_create,
    scenario_delete,
    scenario_pause,
    scenario_resume,
    scenario_stop,
    scenario_update,
    step_add,
    step_delete,
    step_move,
    step_update,
    transition_delete,
    transition_set,
    version_publish,
)
from scenarios.tests.factories import make_participation, make_scenario, send_config

pytestmark = pytest.mark.django_db


def build_chain(world, *, name: str = "Welcome journey", entry: str = "entry.api") -> Scenario:
    """entry -> send (e-mail) -> wait 1 day -> exit, built through the services."""
    scenario = scenario_create(account=world.account, database=world.database, name=name, actor=world.actor,
                               starter=entry)
    draft = draft_get_or_create(scenario=scenario)
    s1 = Step.objects.get(version=draft, key="s1")
    s2 = step_add(version=draft, kind="send", title="Welcome", config=send_config(world), actor=world.actor)
    s3 = step_add(version=draft, kind="wait", title="Wait a day", config={"mode": "duration", "seconds": 86400})
    s4 = step_add(version=draft, kind="exit")
    transition_set(source=s1, exit="next", target=s2)
    transition_set(source=s2, exit="next", target=s3)
    transition_set(source=s3, exit="next", target=s4)
    return scenario


def test_it_creates_a_draft_scenario_with_its_first_version(world):
    scenario = scenario_create(account=world.account, database=world.database, name="  Welcome journey ",
                               actor=world.actor, reentry="after_exit", goal={"type": "order.placed"},
                               starter="entry.api")
    assert (scenario.name, scenario.state, scenario.reentry) == ("Welcome journey", "draft", "after_exit")
    assert scenario.goal == {"type": "order.placed", "filters": []} and scenario.webhook_secret
    version = ScenarioVersion.objects.get(scenario=scenario)
    assert (version.number, version.state) == (1, "draft")
    assert list(Step.objects.filter(version=version).values_list("key", "kind")) == [("s1", "entry.api")]
    assert AuditEvent.objects.filter(verb="scenario.created", target_id=str(scenario.pk)).exists()


def test_it_refuses_bad_settings_per_field(world, other_world):
    with pytest.raises(ScenarioError) as exc:
        scenario_create(account=world.account, database=other_world.database, name="", actor=world.actor,
                        reentry="sometimes", goal={"type": "no.such_type"}, starter="send")
    assert set(exc.value.errors) == {"database", "name", "reentry", "goal", "starter"}
    assert "no.such_type" in exc.value.errors["goal"]


def test_it_lets_only_admins_allow_private_webhooks(world, adam):
    scenario = build_chain(world)
    with pytest.raises(ScenarioError) as exc:
        scenario_update(scenario=scenario, actor=world.actor, values={"webhooks_private_ok": True})
    assert "admin" in exc.value.errors["webhooks_private_ok"]
    scenario_update(scenario=scenario, actor=Actor(user=adam), values={"webhooks_private_ok": True, "step_limit": 20})
    scenario.refresh_from_db()
    assert (scenario.webhooks_private_ok, scenario.step_limit) == (True, 20)


def test_it_keys_new_steps_after_every_key_any_version_used(world):
    scenario = build_chain(world)
    draft = draft_get_or_create(scenario=scenario)
    step_delete(step=Step.objects.get(version=draft, key="s4"))
    exit_ = step_add(version=draft, kind="exit")
    assert exit_.key == "s4"  # never published: the key is free again
    transition_set(source=Step.objects.get(version=draft, key="s3"), exit="next", target=exit_)
    scenario_activate(scenario=scenario, actor=world.actor)
    new_draft = draft_get_or_create(scenario=scenario)
    step_delete(step=Step.objects.get(version=new_draft, key="s4"))
    assert step_add(version=new_draft, kind="exit").key == "s5"  # s4 lives on in v1


def test_it_copies_the_live_version_into_a_new_draft(world):
    scenario = build_chain(world)
    scenario_activate(scenario=scenario, actor=world.actor)
    live = Scenario.objects.get(pk=scenario.pk).live_version
    draft = draft_get_or_create(scenario=scenario)
    assert draft.number == 2 and draft.state == "draft" and draft.pk != live.pk
    assert draft_get_or_create(scenario=scenario).pk == draft.pk  # one draft at a time

    def shape(version):
        steps = [(s.key, s.kind, s.title, s.config, s.col, s.row)
                 for s in Step.objects.filter(version=version).order_by("key")]
        edges = sorted(Transition.objects.filter(version=version).values_list("source__key", "exit", "target__key"))
        return steps, edges

    assert shape(draft) == shape(live)
    assert not Step.objects.filter(version=draft, mailing__isnull=False).exists()  # publishing decides


def test_it_edits_only_the_draft(world):
    scenario = build_chain(world)
    scenario_activate(scenario=scenario, actor=world.actor)
    live_step = Step.objects.get(version=Scenario.objects.get(pk=scenario.pk).live_version, key="s3")
    for edit in (lambda: step_update(step=live_step, title="Wait two days"),
                 lambda: step_move(step=live_step, col=4, row=1),
                 lambda: step_delete(step=live_step),
                 lambda: step_add(version=live_step.version, kind="exit")):
        with pytest.raises(ScenarioError, match="only the draft can be edited"):
            edit()


def test_it_refuses_connections_that_cannot_be(world):
    scenario = build_chain(world)
    draft = draft_get_or_create(scenario=scenario)
    s1, s2, s3 = (Step.objects.get(version=draft, key=k) for k in ("s1", "s2", "s3"))
    with pytest.raises(ScenarioError) as exc:
        transition_set(source=s3, exit="timeout", target=s2)
    assert "has no exit “timeout”" in exc.value.errors["exit"]
    with pytest.raises(ScenarioError, match="entry"):
        transition_set(source=s3, exit="next", target=s1)
    other = make_scenario(world, active=False, name="Other")
    with pytest.raises(ScenarioError, match="same version"):
        transition_set(source=s3, exit="next", target=Step.objects.get(version__scenario=other, key="s2"))
    assert transition_delete(source=s3, exit="next") is True
    assert transition_delete(source=s3, exit="next") is False


def test_it_drops_the_connections_of_a_removed_split_branch_and_of_a_deleted_step(world):
    scenario = build_chain(world)
    draft = draft_get_or_create(scenario=scenario)
    split = step_add(version=draft, kind="split")
    a, b = step_add(version=draft, kind="exit"), step_add(version=draft, kind="exit")
    transition_set(source=split, exit="a", target=a)
    transition_set(source=split, exit="b", target=b)
    step_update(step=split, config={"branches": [{"exit": "a", "label": "A", "weight": 100}]})
    assert list(Transition.objects.filter(source=split).values_list("exit", flat=True)) == ["a"]
    step_delete(step=a)
    assert not Transition.objects.filter(source=split).exists()


def test_it_publishes_with_a_listening_trigger_mailing_per_send_step(world):
    scenario = build_chain(world)
    version = version_publish(scenario=scenario, actor=world.actor)
    assert version.state == "published" and Scenario.objects.get(pk=scenario.pk).live_version_id == version.pk
    assert Scenario.objects.get(pk=scenario.pk).state == "draft"  # publishing is not activating
    step = Step.objects.select_related("mailing").get(version=version, key="s2")
    m = step.mailing
    assert (m.kind, m.state, m.channel, m.resource_id, m.template_id, m.sender_id) == (
        "trigger", "scheduled", "email", world.resource.pk, world.template.pk, world.sender.pk)
    assert m.trigger == {"on": "scenario", "kind": "scenario", "scenario_id": scenario.pk, "step": "s2"}
    assert m.name == "Welcome journey · Welcome"
    assert not ScenarioVersion.objects.filter(scenario=scenario, state="draft").exists()  # the next edit makes one
    with pytest.raises(ScenarioError, match="no draft"):
        version_publish(scenario=scenario, actor=world.actor)


def test_it_reuses_a_send_steps_mailing_until_what_it_sends_changes(world):
    from mailings.tests.factories import make_template

    scenario = build_chain(world)
    first = version_publish(scenario=scenario, actor=world.actor)
    mailing_v1 = Step.objects.get(version=first, key="s2").mailing_id
    draft = draft_get_or_create(scenario=scenario)
    step_update(step=Step.objects.get(version=draft, key="s2"), title="Hello",
                config=send_config(world, {"track_clicks": False}))
    second = version_publish(scenario=scenario, actor=world.actor)
    assert Step.objects.get(version=second, key="s2").mailing_id == mailing_v1
    assert (Mailing.objects.get(pk=mailing_v1).name, Mailing.objects.get(pk=mailing_v1).track_clicks) == (
        "Welcome journey · Hello", False)
    other = make_template(world.account, world.database, name="Top picks")
    draft = draft_get_or_create(scenario=scenario)
    step_update(step=Step.objects.get(version=draft, key="s2"), config=send_config(world, {"template_id": other.pk}))
    third = version_publish(scenario=scenario, actor=world.actor)
    mailing_v3 = Step.objects.get(version=third, key="s2").mailing
    assert mailing_v3.pk != mailing_v1 and mailing_v3.template_id == other.pk
    assert Mailing.objects.get(pk=mailing_v1).state == "scheduled"  # profiles on v2 still send through it


def test_it_refuses_to_publish_what_does_not_validate_and_changes_nothing(world):
    scenario = build_chain(world)
    draft = draft_get_or_create(scenario=scenario)
    transition_delete(source=Step.objects.get(version=draft, key="s3"), exit="next")
    with pytest.raises(ScenarioError) as exc:
        scenario_activate(scenario=scenario, actor=world.actor)
    assert exc.value.errors["s3"] == "Step s3 “Wait a day”: the exit “next” goes nowhere"
    assert [(p.step_key, p.field) for p in exc.value.problems] == [("s3", "exits.next"), ("s4", "")]
    assert Scenario.objects.get(pk=scenario.pk).state == "draft"
    assert not Mailing.objects.filter(kind="trigger", trigger__on="scenario").exists()


def test_it_walks_the_state_machine_and_refuses_wrong_transitions(world):
    scenario = build_chain(world)
    with pytest.raises(ScenarioError, match="Only an active scenario can be paused"):
        scenario_pause(scenario=scenario, actor=world.actor)
    scenario_activate(scenario=scenario, actor=world.actor)
    assert scenario.state == "active" and scenario.activated_at is not None
    with pytest.raises(ScenarioError, match="already active and has no draft"):
        scenario_activate(scenario=scenario, actor=world.actor)
    scenario_pause(scenario=scenario, actor=world.actor)
    with pytest.raises(ScenarioError, match="Only an active scenario can be paused"):
        scenario_pause(scenario=scenario, actor=world.actor)
    scenario_resume(scenario=scenario, actor=world.actor)
    scenario_stop(scenario=scenario, actor=world.actor)
    assert Scenario.objects.get(pk=scenario.pk).state == "stopped"
    for action in (scenario_pause, scenario_resume, scenario_stop, scenario_activate):
        with pytest.raises(ScenarioError):
            action(scenario=scenario, actor=world.actor)
    with pytest.raises(ScenarioError, match="stopped"):
        draft_get_or_create(scenario=scenario)
    verbs = set(AuditEvent.objects.filter(target_id=str(scenario.pk), verb__startswith="scenario.")
                .values_list("verb", flat=True))
    assert {"scenario.activated", "scenario.paused", "scenario.resumed", "scenario.stopped",
            "scenario.published"} <= verbs


def test_it_publishes_the_draft_of_a_running_scenario_and_moves_profiles_by_mapping(world):
    scenario = build_chain(world)
    scenario_activate(scenario=scenario, actor=world.actor)
    v1 = Scenario.objects.get(pk=scenario.pk).live_version
    waiting = make_participation(scenario, world.profile_ids[0], step_key="s3", state="waiting")
    staying = make_participation(scenario, world.profile_ids[1], step_key="s2")
    draft = draft_get_or_create(scenario=scenario)
    wait2 = step_add(version=draft, kind="wait", title="Wait two days", config={"mode": "duration", "seconds": 172800})
    transition_set(source=Step.objects.get(version=draft, key="s2"), exit="next", target=wait2)
    transition_set(source=wait2, exit="next", target=Step.objects.get(version=draft, key="s4"))
    step_delete(step=Step.objects.get(version=draft, key="s3"))
    with pytest.raises(ScenarioError) as exc:
        scenario_activate(scenario=scenario, actor=world.actor, mapping={"s3": "s99"})
    assert "mapping.s3" in exc.value.errors
    scenario_activate(scenario=scenario, actor=world.actor, mapping={"s3": wait2.key})
    scenario.refresh_from_db()
    assert scenario.live_version.number == 2 and scenario.state == "active"
    moved, stayed = Participation.objects.get(pk=waiting.pk), Participation.objects.get(pk=staying.pk)
    assert (moved.version_id, moved.step.key) == (scenario.live_version_id, wait2.key)
    assert stayed.version_id == v1.pk  # unmapped: finishes on its version


def test_it_stops_everyone_inside_and_the_step_mailings_stop_listening(world):
    scenario = build_chain(world)
    scenario_activate(scenario=scenario, actor=world.actor)
    inside = [make_participation(scenario, pid, step_key="s3", state="waiting") for pid in world.profile_ids[:3]]
    mailing = Step.objects.get(version=Scenario.objects.get(pk=scenario.pk).live_version, key="s2").mailing
    scenario_stop(scenario=scenario, actor=world.actor)
    states = set(Participation.objects.filter(pk__in=[p.pk for p in inside]).values_list("state", "exit_reason"))
    assert states == {("exited", "stopped")}
    assert Mailing.objects.get(pk=mailing.pk).state == "done"


def test_it_deletes_a_draft_or_stopped_scenario_unless_its_messages_are_on_record(world):
    from mailings.tests.factories import make_run, queue_entries

    draft = build_chain(world, name="Never run")
    scenario_delete(scenario=draft, actor=world.actor)
    assert not Scenario.objects.filter(pk=draft.pk).exists()

    quiet = build_chain(world, name="Quiet")
    scenario_activate(scenario=quiet, actor=world.actor)
    with pytest.raises(ScenarioError, match="Only a draft or stopped scenario can be deleted"):
        scenario_delete(scenario=quiet, actor=world.actor)
    make_participation(quiet, world.profile_ids[0], step_key="s3", state="waiting")
    quiet_mailing = Step.objects.get(version=Scenario.objects.get(pk=quiet.pk).live_version, key="s2").mailing_id
    scenario_stop(scenario=quiet, actor=world.actor)
    scenario_delete(scenario=quiet, actor=world.actor)
    assert not Mailing.objects.filter(pk=quiet_mailing).exists()
    assert not Participation.objects.filter(scenario_id=quiet.pk).exists()

    sent = build_chain(world, name="Sent")
    scenario_activate(scenario=sent, actor=world.actor)
    mailing = Step.objects.get(version=Scenario.objects.get(pk=sent.pk).live_version, key="s2").mailing
    queue_entries(make_run(mailing, slot="day:2026-01-01"), subscriptions=world.subscriptions()[:1], status="sent")
    scenario_stop(scenario=sent, actor=world.actor)
    with pytest.raises(ScenarioError, match="sent messages"):
        scenario_delete(scenario=sent, actor=world.actor)
    assert Scenario.objects.filter(pk=sent.pk).exists() and LedgerEntry.objects.filter(mailing_id=mailing.pk).exists()


# --- the "scenario" trigger kind in mailings -------------------------------------------------------


def test_mailings_leave_a_scenarios_mailing_to_its_step(world):
    from mailings.services.errors import MailingError
    from mailings.services.lifecycle import mailing_create
    from mailings.services.triggers import interesting_types, trigger_firable

    scenario = build_chain(world)
    scenario_activate(scenario=scenario, actor=world.actor)
    mailing = Step.objects.get(version=Scenario.objects.get(pk=scenario.pk).live_version, key="s2").mailing
    Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.SENDING)  # even while sending
    mailing.refresh_from_db()
    with pytest.raises(MailingError, match="sent by a scenario's step"):
        trigger_firable(mailing)
    assert interesting_types() == frozenset()
    with pytest.raises(MailingError) as exc:
        mailing_create(account=world.account, actor=world.actor, values={
            "name": "Sneaky", "kind": "trigger", "resource": world.resource.pk,
            "trigger": {"on": "scenario", "scenario_id": scenario.pk, "step": "s2"}})
    assert "scenario's send step" in exc.value.errors["trigger"]


# --- activation with the real entries and engine -----------------------------------------------------


def test_it_lets_a_segments_members_in_at_activation_and_they_get_the_welcome(world, django_capture_on_commit_callbacks):
    from segments.services.members import segment_members_add
    from segments.services.segments import segment_create

    vip = segment_create(database=world.database, name="VIP", kind="static", actor=world.actor, compute=False)
    segment_members_add(segment=vip, profile_ids=world.profile_ids[:3], actor=world.actor)
    scenario = scenario_create(account=world.account, database=world.database, name="VIP welcome", actor=world.actor)
    draft = draft_get_or_create(scenario=scenario)
    s1 = step_add(version=draft, kind="entry.segment", config={"segment_id": vip.pk, "members_at_start": True})
    s2 = step_add(version=draft, kind="send", title="Welcome", config=send_config(world))
    s3 = step_add(version=draft, kind="exit")
    transition_set(source=s1, exit="next", target=s2)
    transition_set(source=s2, exit="next", target=s3)
    with django_capture_on_commit_callbacks(execute=True):
        scenario_activate(scenario=scenario, actor=world.actor)
    trips = Participation.objects.filter(scenario=scenario)
    assert sorted(trips.values_list("profile_id", flat=True)) == sorted(world.profile_ids[:3])
    mailing = Step.objects.get(version=Scenario.objects.get(pk=scenario.pk).live_version, key=s2.key).mailing
    sent_to = set(LedgerEntry.objects.filter(mailing_id=mailing.pk).values_list("profile_id", flat=True))
    assert sent_to == set(world.profile_ids[:3])  # the step's mailing carries the messages, once each
    assert set(trips.values_list("state", flat=True)) == {"completed"}


def test_mailings_refuse_to_change_what_a_scenario_step_sends(world):
    from mailings.services.errors import MailingError
    from mailings.services.lifecycle import mailing_update

    scenario = build_chain(world)
    version = version_publish(scenario=scenario, actor=world.actor)
    mailing = Step.objects.get(version=version, key="s2").mailing
    with pytest.raises(MailingError) as exc:
        mailing_update(mailing=mailing, actor=world.actor, values={"template": world.template.pk, "name": "Hi"})
    assert exc.value.errors == {"template": "set by step s2 of its scenario: change the step there"}
    assert mailing_update(mailing=mailing, actor=world.actor, values={"description": "The welcome"}).description


def test_it_finishes_the_mailings_of_retired_versions_only(world):
    from mailings.tests.factories import make_template
    from scenarios.services.publishing import step_mailings_release

    scenario = build_chain(world)
    v1 = version_publish(scenario=scenario, actor=world.actor)
    draft = draft_get_or_create(scenario=scenario)
    other = make_template(world.account, world.database, name="Welcome 2")
    step_update(step=Step.objects.get(version=draft, key="s2"), config=send_config(world, {"template_id": other.pk}))
    v2 = version_publish(scenario=scenario, actor=world.actor)
    old, new = (Step.objects.get(version=v, key="s2").mailing_id for v in (v1, v2))
    assert step_mailings_release(scenario=scenario) == 0  # v1 is still published: profiles may be on it
    ScenarioVersion.objects.filter(pk=v1.pk).update(state=ScenarioVersion.State.RETIRED)
    assert step_mailings_release(scenario=scenario) == 1
    assert (Mailing.objects.get(pk=old).state, Mailing.objects.get(pk=new).state) == ("done", "scheduled")
