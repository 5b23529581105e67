"""Data steps: profile fields, subscriptions and static segment membership, for a whole group."""

from __future__ import annotations

import pytest

from profiles.models import Profile, ProfileChange
from profiles.services import field_add
from resources.models import ConsentRecord, Subscription
from scenarios.tests.factories import SYSTEM
from scenarios.tests.test_steps_support import enter, one_step, run
from segments.models import Segment, SegmentMember
from segments.services.segments import segment_create

pytestmark = pytest.mark.django_db


# --- update ----------------------------------------------------------------------------------------


@pytest.fixture
def stage(world):
    return field_add(database=world.database, name="customer_stage", label="Customer stage", type="enum",
                     choices=["lead", "buyer"], actor=SYSTEM)


def test_it_sets_field_values_on_every_profile_of_the_group(world, stage, django_assert_max_num_queries):
    scenario = one_step(world, "update", {"values": {"customer_stage": "buyer", "last_name": "Doe"}})
    parts = enter(scenario, world.profile_ids[:4])
    Profile.objects.filter(pk=world.profile_ids[0]).update(data={"customer_stage": "buyer"}, last_name="Doe")
    with django_assert_max_num_queries(14):
        outcomes = run(scenario, parts)
    assert [o.exit for o in outcomes] == ["next"] * 4
    assert outcomes[0].outcome == "unchanged"
    assert outcomes[1].outcome == "updated: customer_stage, last_name"
    for p in Profile.objects.filter(pk__in=world.profile_ids[:4]):
        assert (p.data.get("customer_stage"), p.last_name) == ("buyer", "Doe")
    changes = ProfileChange.objects.filter(profile_id__in=world.profile_ids[:4])
    assert changes.count() == 3
    assert {c.source for c in changes} == {f"scenario:{scenario.pk}:s2"}
    assert changes.first().changes["customer_stage"] == [None, "buyer"]


def test_it_changes_nothing_more_when_run_again(world, stage):
    scenario = one_step(world, "update", {"values": {"customer_stage": "buyer"}})
    parts = enter(scenario, world.profile_ids[:2])
    run(scenario, parts)
    again = run(scenario, parts)
    assert [o.outcome for o in again] == ["unchanged", "unchanged"]
    assert ProfileChange.objects.count() == 2


def test_it_fails_a_value_the_field_cannot_hold_naming_the_field(world, stage):
    scenario = one_step(world, "update", {"values": {"customer_stage": "astronaut"}})
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert o.exit is None and o.fail.startswith("the update cannot be applied: field “customer_stage”:")
    assert Profile.objects.get(pk=world.profile_ids[0]).data.get("customer_stage") is None


def test_it_fails_only_the_profiles_whose_new_value_clashes(world):
    scenario = one_step(world, "update", {"values": {"email": "shared@example.com"}})
    outcomes = run(scenario, enter(scenario, world.profile_ids[:2]))
    assert outcomes[0].exit == "next" and outcomes[0].outcome == "updated: email"
    assert outcomes[1].fail == "the update cannot be applied: field “email”: another profile already has this value"
    assert Profile.objects.filter(email="shared@example.com").count() == 1


def test_the_lowest_id_wins_a_clash_whatever_order_the_rows_come_back_in(world):
    """The profiles are locked by id (concurrent groups cannot deadlock on shared profiles), so
    the first profile gets the unique value even when its row was rewritten last (on PostgreSQL a
    rewritten row comes back after the others from a table scan)."""
    first, second = world.profile_ids[:2]
    Profile.objects.filter(pk=first).update(last_name="Moved")
    scenario = one_step(world, "update", {"values": {"email": "shared@example.com"}})
    outcomes = run(scenario, enter(scenario, [second, first]))
    assert outcomes[1].outcome == "updated: email" and outcomes[0].fail
    assert Profile.objects.get(email="shared@example.com").pk == first


def test_it_never_touches_another_databases_profile(world, other_world, stage):
    scenario = one_step(world, "update", {"values": {"last_name": "Doe"}})
    [o] = run(scenario, enter(scenario, other_world.profile_ids[:1]))
    assert o.outcome == "no such profile: nothing updated"
    assert Profile.objects.get(pk=other_world.profile_ids[0]).last_name == ""


# --- subscription ----------------------------------------------------------------------------------


def test_it_unsubscribes_through_the_consent_ledger(world):
    scenario = one_step(world, "subscription", {"resource_id": world.resource.pk, "channel": "email",
                                                "status": "unsubscribed"})
    a, b = world.profile_ids[:2]
    parts = enter(scenario, [a, b])
    outcomes = run(scenario, parts)
    assert [o.outcome for o in outcomes] == ["subscription unsubscribed"] * 2
    assert set(world.subscriptions("email").filter(profile_id__in=[a, b]).values_list("status", flat=True)) == \
        {"unsubscribed"}
    assert world.subscriptions("sms").get(profile_id=a).status == "subscribed"
    records = ConsentRecord.objects.filter(profile_id__in=[a, b], new_status="unsubscribed")
    assert records.count() == 2 and {r.source for r in records} == {f"scenario:{scenario.pk}:s2"}
    again = run(scenario, parts)  # a repeated call: nothing moves, nothing is recorded twice
    assert [o.outcome for o in again] == ["subscription already unsubscribed"] * 2
    assert ConsentRecord.objects.filter(profile_id__in=[a, b], new_status="unsubscribed").count() == 2


def test_it_goes_on_for_profiles_it_cannot_or_need_not_change(world):
    from mailings.tests.factories import add_profiles_without_subscription

    scenario = one_step(world, "subscription", {"resource_id": world.resource.pk, "channel": "email",
                                                "status": "subscribed"})
    bounced, already = world.profile_ids[:2]
    Subscription.objects.filter(profile_id=bounced, channel="email").update(status="bounced")
    [bare] = add_profiles_without_subscription(world.database, 1)
    outcomes = run(scenario, enter(scenario, [bounced, already, bare]))
    assert [o.exit for o in outcomes] == ["next"] * 3
    assert [o.outcome for o in outcomes] == ["subscription unchanged: bounced cannot become subscribed",
                                             "subscription already subscribed", "no subscription on Shop news email"]
    assert world.subscriptions("email").get(profile_id=bounced).status == "bounced"


def test_subscribing_never_confirms_for_the_person_nor_undoes_their_unsubscribe(world):
    scenario = one_step(world, "subscription", {"resource_id": world.resource.pk, "channel": "email",
                                                "status": "subscribed"})
    waiting, left, paused = world.profile_ids[:3]
    Subscription.objects.filter(profile_id=waiting, channel="email").update(status="unconfirmed")
    Subscription.objects.filter(profile_id=left, channel="email").update(status="unsubscribed")
    Subscription.objects.filter(profile_id=paused, channel="email").update(status="suspended")
    outcomes = run(scenario, enter(scenario, [waiting, left, paused]))
    assert [o.outcome for o in outcomes] == ["subscription awaits the person's confirmation",
                                             "subscription unchanged: only the person can undo their unsubscribe",
                                             "subscription subscribed"]
    status = dict(world.subscriptions("email").filter(profile_id__in=[waiting, left, paused])
                  .values_list("profile_id", "status"))
    assert status == {waiting: "unconfirmed", left: "unsubscribed", paused: "subscribed"}


def test_on_a_double_opt_in_channel_the_unsubscribed_are_asked_to_confirm(world, monkeypatch, django_capture_on_commit_callbacks):
    from resources.services import subscriptions as subs_service

    asked = []
    monkeypatch.setattr(subs_service, "CONFIRMATION_HANDLERS", [lambda sub: asked.append((sub.profile_id, sub.status))])
    world.resource.double_opt_in = ["email"]
    world.resource.save(update_fields=["double_opt_in"])
    scenario = one_step(world, "subscription", {"resource_id": world.resource.pk, "channel": "email",
                                                "status": "subscribed"})
    left = world.profile_ids[0]
    Subscription.objects.filter(profile_id=left, channel="email").update(status="unsubscribed")
    with django_capture_on_commit_callbacks(execute=True):
        [o] = run(scenario, enter(scenario, [left]))
    assert o.outcome == "subscription unconfirmed: the confirmation message was sent"
    assert world.subscriptions("email").get(profile_id=left).status == "unconfirmed"
    assert asked == [(left, "unconfirmed")]
    record = ConsentRecord.objects.filter(profile_id=left).order_by("-id").first()
    assert (record.old_status, record.new_status) == ("unsubscribed", "unconfirmed")


def test_it_pauses_a_subscription_for_the_configured_days(world):
    scenario = one_step(world, "subscription", {"resource_id": world.resource.pk, "channel": "email",
                                                "status": "suspended", "days": 14})
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    sub = world.subscriptions("email").get(profile_id=world.profile_ids[0])
    assert o.outcome == "subscription suspended" and sub.status == "suspended"
    assert 13 <= (sub.suspended_until - sub.changed_at).days <= 14


def test_it_fails_when_the_resource_is_another_accounts(world, other_world):
    scenario = one_step(world, "subscription", {"resource_id": other_world.resource.pk, "channel": "email",
                                                "status": "unsubscribed"})
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert o.fail == "the step's resource no longer exists"


# --- segment ---------------------------------------------------------------------------------------


def test_it_adds_and_removes_the_group_in_a_static_segment(world):
    vip = segment_create(database=world.database, name="VIP", kind=Segment.Kind.STATIC, actor=SYSTEM)
    adding = one_step(world, "segment", {"segment_id": vip.pk, "action": "add"})
    outcomes = run(adding, enter(adding, world.profile_ids[:3]))
    assert [o.outcome for o in outcomes] == ["added to VIP"] * 3
    assert set(SegmentMember.objects.filter(segment=vip).values_list("profile_id", flat=True)) == \
        set(world.profile_ids[:3])
    removing = one_step(world, "segment", {"segment_id": vip.pk, "action": "remove"}, name="Cleanup")
    run(removing, enter(removing, world.profile_ids[:1]))
    assert SegmentMember.objects.filter(segment=vip).count() == 2
    vip.refresh_from_db()
    assert vip.size == 2


def test_it_fails_for_a_segment_that_is_not_static(world):
    tree = {"type": "group", "op": "and", "items": [
        {"type": "field", "field": "first_name", "operator": "eq", "value": "P1"}]}
    dynamic = segment_create(database=world.database, name="P1s", kind=Segment.Kind.DYNAMIC, actor=SYSTEM,
                             conditions=tree, compute=False)
    scenario = one_step(world, "segment", {"segment_id": dynamic.pk, "action": "add"})
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert o.fail.startswith("the segment step cannot run:") and "its members follow its conditions" in o.fail
