"""version_validate: what stops a version from being published, said with the step and the field."""

from __future__ import annotations

import pytest

from mailings.tests.factories import SYSTEM, make_template
from scenarios.models import Scenario
from scenarios.services import version_validate
from scenarios.tests.factories import make_scenario

pytestmark = pytest.mark.django_db

ENTRY = ("s1", "entry.api", {})


def problems(world, steps, edges, **kw) -> dict[tuple[str, str], str]:
    scenario = make_scenario(world, steps=steps, edges=edges, active=False, **kw)
    return {(p.step_key, p.field): p.message for p in version_validate(scenario.versions.get())}


def test_it_passes_a_sound_welcome_journey(world):
    from profiles.services import field_add

    field_add(database=world.database, name="customer_stage", label="Customer stage", type="string", actor=SYSTEM)
    steps = [
        ENTRY, ("s2", "send", {}, "Welcome"), ("s3", "wait", {"mode": "duration", "seconds": 2 * 86400}),
        ("s4", "condition", {"test": "message", "step": "s2", "what": "opened"}),
        ("s5", "send", {}, "Top picks"), ("s6", "send", {"channel": "sms"}, "Did you miss this?"),
        ("s7", "wait_event", {"type": "order.placed", "filters": [], "timeout_seconds": 7 * 86400}),
        ("s8", "update", {"values": {"customer_stage": "buyer"}}), ("s9", "exit", {}),
        ("s10", "split", {"branches": [{"exit": "a", "label": "A", "weight": 50},
                                       {"exit": "b", "label": "B", "weight": 50}]}),
        ("s11", "send", {}), ("s12", "send", {}),
    ]
    edges = [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4"), ("s4", "yes", "s5"),
             ("s4", "no", "s6"), ("s5", "next", "s7"), ("s6", "next", "s7"), ("s7", "event", "s8"),
             ("s8", "next", "s9"), ("s7", "timeout", "s10"), ("s10", "a", "s11"), ("s10", "b", "s12"),
             ("s11", "next", "s9"), ("s12", "next", "s9")]
    assert problems(world, steps, edges, goal={"type": "order.placed", "filters": []}) == {}


def test_it_names_unconnected_exits_and_unreachable_steps(world):
    found = problems(world, [
        ENTRY, ("s2", "wait_event", {"type": "order.placed", "timeout_seconds": 60}, "Order or a minute"),
        ("s3", "condition", {"test": "message", "step": "s9", "what": "opened"}, "Opened?"),
        ("s4", "exit", {}), ("s5", "exit", {}, "Orphan"),
    ], [("s1", "next", "s2"), ("s2", "event", "s3"), ("s3", "yes", "s4")])
    assert found[("s2", "exits.timeout")] == "Step s2 “Order or a minute”: the exit “timeout” goes nowhere"
    assert found[("s3", "exits.no")] == "Step s3 “Opened?”: the exit “no” goes nowhere"
    assert found[("s5", "")] == "Step s5 “Orphan”: no entry leads here: connect it or delete it"
    assert "choose a send step" in found[("s3", "step")]


def test_it_wants_an_entry_step(world):
    found = problems(world, [("s1", "exit", {})], [])
    assert "no entry step" in found[("", "steps")]


def test_it_refuses_a_loop_without_a_wait_but_allows_one_through_a_wait(world):
    split = {"branches": [{"exit": "a", "weight": 50}, {"exit": "b", "weight": 50}]}
    spin = problems(world, [ENTRY, ("s2", "update", {"values": {"first_name": "X"}}), ("s3", "split", split),
                            ("s4", "exit", {})],
                    [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "a", "s2"), ("s3", "b", "s4")])
    assert [m for m in spin.values() if "loop" in m] == [
        "Step s2 “Update profile”: the loop s2 → s3 → s2 passes no wait step: a profile would go round it without "
        "pause (add a wait)"]
    calm = problems(world, [ENTRY, ("s2", "update", {"values": {"first_name": "X"}}), ("s3", "split", split),
                            ("s4", "wait", {"mode": "duration", "seconds": 3600}), ("s5", "exit", {})],
                    [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "a", "s4"), ("s4", "next", "s2"),
                     ("s3", "b", "s5")], name="Calm")
    assert calm == {}


def test_it_checks_what_a_send_step_names(world, other_world):
    from django.utils import timezone

    from content.models import Template

    email_only = make_template(world.account, world.database, name="Mail only", channels=["email"])
    archived = make_template(world.account, world.database, name="Old")
    Template.objects.filter(pk=archived.pk).update(archived_at=timezone.now())
    found = problems(world, [
        ENTRY,
        ("s2", "send", {"template_id": other_world.template.pk}),
        ("s3", "send", {"channel": "sms", "template_id": email_only.pk}),
        ("s4", "send", {"template_id": archived.pk, "sender_id": other_world.sender.pk}),
        ("s5", "send", {"resource_id": other_world.resource.pk, "channel": "fax"}),
        ("s6", "exit", {}),
    ], [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4"), ("s4", "next", "s5"), ("s5", "next", "s6")])
    assert found[("s2", "template_id")] == "Step s2 “Send message”: the template it names no longer exists"
    assert found[("s3", "template_id")] == "Step s3 “Send message”: the template “Mail only” has no SMS version"
    assert "archived" in found[("s4", "template_id")] and "no longer exists" in found[("s4", "sender_id")]
    assert "resource" in found[("s5", "resource_id")] and "choose a channel" in found[("s5", "channel")]


def test_it_checks_segments_fields_events_and_shapes(world):
    from profiles.services import field_add
    from segments.services.segments import segment_create

    static = segment_create(database=world.database, name="VIP", kind="static", actor=SYSTEM, compute=False)
    updatable = segment_create(database=world.database, name="Movers", kind="updatable", actor=SYSTEM, compute=False,
                               schedule={"every_hours": 6},
                               conditions={"type": "group", "op": "and", "items": [
                                   {"type": "field", "field": "first_name", "operator": "set"}]})
    field_add(database=world.database, name="points", label="Points", type="integer", actor=SYSTEM)
    found = problems(world, [
        ("s1", "entry.segment", {"segment_id": static.pk, "members_at_start": False}),
        ("s2", "entry.segment", {"segment_id": updatable.pk}),
        ("s3", "entry.event", {"type": "no_such_event"}),
        ("s4", "segment", {"segment_id": updatable.pk, "action": "add"}),
        ("s5", "update", {"values": {"points": "many", "nope": 1}}),
        ("s6", "wait", {"mode": "field", "field": "points"}),
        ("s7", "wait", {"mode": "duration", "seconds": 400 * 86400}),
        ("s8", "wait", {"mode": "time_of_day", "time": "25:00", "weekdays": [7]}),
        ("s9", "split", {"branches": [{"exit": "a", "weight": 70}, {"exit": "b", "weight": 20}]}),
        ("s10", "condition", {"test": "segments", "conditions": {"type": "group", "op": "and", "items": [
            {"type": "field", "field": "shoe_size", "operator": "eq", "value": 42}]}}),
        ("s11", "exit", {}),
    ], [("s1", "next", "s4"), ("s2", "next", "s4"), ("s3", "next", "s4"), ("s4", "next", "s5"), ("s5", "next", "s6"),
        ("s6", "next", "s7"), ("s7", "next", "s8"), ("s8", "next", "s9"), ("s9", "a", "s10"), ("s9", "b", "s11"),
        ("s10", "yes", "s11"), ("s10", "no", "s11")], goal={"type": "never.happens"})
    assert "static: only an updatable segment" in found[("s1", "segment_id")]
    assert ("s2", "segment_id") not in found
    assert "no event type “no_such_event”" in found[("s3", "type")]
    assert "updatable: profiles can be added to and removed from a static segment only" in found[("s4", "segment_id")]
    assert found[("s5", "values.points")].startswith("Step s5 “Update profile”: the field “points”:")
    assert "no such field" in found[("s5", "values.nope")]
    assert "not a date" in found[("s6", "field")]
    assert "a year" in found[("s7", "seconds")]
    assert "HH:MM" in found[("s8", "time")] and "0 (Monday)" in found[("s8", "weekdays")]
    assert "add up to 90, not 100" in found[("s9", "branches")]
    assert "cannot be used" in found[("s10", "conditions")]
    assert "never.happens" in found[("", "goal")]


def test_it_refuses_a_webhook_to_a_private_address_unless_the_scenario_allows_it(world):
    steps = [ENTRY, ("s2", "webhook", {"url": "http://127.0.0.1:8080/hook", "timeout_seconds": 5, "retries": 2}),
             ("s3", "webhook", {"url": "ftp://93.184.216.34/x", "timeout_seconds": 60}), ("s4", "exit", {})]
    edges = [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4")]
    found = problems(world, steps, edges)
    assert "private" in found[("s2", "url")]
    assert ("s3", "url") in found and "1 to 30 seconds" in found[("s3", "timeout_seconds")]
    allowed = problems(world, steps, edges, name="On premises", webhooks_private_ok=True)
    assert ("s2", "url") not in allowed and ("s3", "url") in allowed


def test_it_sees_a_template_deleted_after_the_draft_was_made(world):
    doomed = make_template(world.account, world.database, name="Doomed")
    scenario = make_scenario(world, steps=[ENTRY, ("s2", "send", {"template_id": doomed.pk}), ("s3", "exit", {})],
                             edges=[("s1", "next", "s2"), ("s2", "next", "s3")], active=False)
    assert version_validate(scenario.versions.get()) == []
    doomed.delete()
    [problem] = version_validate(Scenario.objects.get(pk=scenario.pk).versions.get())
    assert (problem.step_key, problem.field) == ("s2", "template_id")
