"""Branching steps: conditions over profile data and this trip's message, and random splits."""

from __future__ import annotations

from collections import Counter

import pytest
from django.utils import timezone

from mailings.models import LedgerEntry
from profiles.models import Field
from scenarios.engine.steps import Item
from scenarios.engine.steps.logic import split_bucket
from scenarios.tests.factories import make_scenario
from scenarios.tests.test_steps_support import enter, item_of, one_step, run

pytestmark = pytest.mark.django_db


def first_name_is(value: str) -> dict:
    return {"type": "group", "op": "and", "items": [
        {"type": "field", "field": "first_name", "operator": "eq", "value": value}]}


def test_it_answers_yes_for_the_profiles_the_conditions_match(world):
    scenario = one_step(world, "condition", {"test": "segments", "conditions": first_name_is("P1")},
                        exits=("yes", "no"))
    outcomes = run(scenario, enter(scenario, world.profile_ids[:3]))
    assert [o.exit for o in outcomes] == ["no", "yes", "no"]
    assert outcomes[1].outcome == "condition: yes"


def test_it_asks_the_database_once_for_the_whole_group(world, django_assert_max_num_queries):
    scenario = one_step(world, "condition", {"test": "segments", "conditions": first_name_is("P1")},
                        exits=("yes", "no"))
    parts = enter(scenario, world.profile_ids)
    with django_assert_max_num_queries(12):  # the catalogue (a few), the scenario, one match query
        outcomes = run(scenario, parts)
    assert Counter(o.exit for o in outcomes) == {"no": 4, "yes": 1}


def test_it_fails_the_trips_when_the_conditions_name_a_deleted_field(world):
    from profiles.services import field_add
    from scenarios.tests.factories import SYSTEM

    field_add(database=world.database, name="tier", label="Tier", type="string", actor=SYSTEM)
    tree = {"type": "group", "op": "and", "items": [{"type": "field", "field": "tier", "operator": "eq", "value": "gold"}]}
    scenario = one_step(world, "condition", {"test": "segments", "conditions": tree}, exits=("yes", "no"))
    Field.objects.filter(database=world.database, name="tier").delete()
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert o.exit is None and o.fail.startswith("the condition cannot be evaluated") and "tier" in o.fail


@pytest.fixture
def opened_scenario(world):
    return make_scenario(world, steps=[
        ("s1", "entry.api", {}), ("s2", "send", {}), ("s3", "condition", {"test": "message", "step": "s2", "what": "opened"}),
        ("s4", "exit", {}), ("s5", "exit", {}),
    ], edges=[("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "yes", "s4"), ("s3", "no", "s5")])


def test_it_tests_what_this_trips_message_did(world, opened_scenario):
    parts = enter(opened_scenario, world.profile_ids[:3], key="s2")
    sent = run(opened_scenario, parts, key="s2")
    items = []
    for p, o in zip(parts, sent, strict=True):
        item = item_of(p)
        item.context.update(o.context or {})
        items.append(item)
    opened_id = sent[0].context["messages"]["s2"]
    clicked_id = sent[1].context["messages"]["s2"]
    LedgerEntry.objects.filter(pk=opened_id).update(status="sent", opened_at=timezone.now())
    LedgerEntry.objects.filter(pk=clicked_id).update(status="sent", clicked_at=timezone.now())  # a click proves an open
    outcomes = run(opened_scenario, items, key="s3")
    assert [o.exit for o in outcomes] == ["yes", "yes", "no"]
    assert outcomes[2].outcome == f"condition: no (opened: ledger #{sent[2].context['messages']['s2']})"


def test_it_answers_no_when_the_trip_sent_nothing_from_that_step(world, opened_scenario):
    [p] = enter(opened_scenario, world.profile_ids[:1], key="s3")
    [o] = run(opened_scenario, [p], key="s3")
    assert (o.exit, o.outcome) == ("no", "condition: no (no message from s2)")


def test_it_never_reads_another_accounts_ledger_row(world, other_world, opened_scenario):
    other = make_scenario(other_world, steps=[("s1", "entry.api", {}), ("s2", "send", {}), ("s3", "exit", {})],
                          edges=[("s1", "next", "s2"), ("s2", "next", "s3")])
    [theirs] = run(other, enter(other, other_world.profile_ids[:1], key="s2"), key="s2")
    their_row = theirs.context["messages"]["s2"]
    LedgerEntry.objects.filter(pk=their_row).update(status="sent", opened_at=timezone.now())
    [p] = enter(opened_scenario, world.profile_ids[:1], key="s3", context={"messages": {"s2": their_row}})
    [o] = run(opened_scenario, [p], key="s3")
    assert o.exit == "no"


SPLIT = {"branches": [{"exit": "a", "label": "A", "weight": 70}, {"exit": "b", "label": "B", "weight": 30}]}


def test_it_splits_by_weight_and_always_the_same_way_for_a_trip(world):
    scenario = one_step(world, "split", SPLIT, exits=("a", "b"))
    [p] = enter(scenario, world.profile_ids[:1])
    template = item_of(p)
    items = [Item(**{**template.__dict__, "id": n}) for n in range(1, 2001)]
    outcomes = run(scenario, items)
    again = run(scenario, items)
    assert [o.exit for o in outcomes] == [o.exit for o in again]
    share = Counter(o.exit for o in outcomes)["a"] / len(items)
    assert 0.66 < share < 0.74
    assert {o.outcome for o in outcomes} == {"split: A", "split: B"}


def test_it_puts_the_same_trip_in_different_buckets_at_different_steps():
    assert len({split_bucket(42, f"s{n}") for n in range(1, 20)}) > 10


def test_it_fails_a_split_without_weights(world):
    scenario = one_step(world, "split", {"branches": [{"exit": "a", "weight": 0}, {"exit": "b", "weight": 0}]},
                        exits=("a", "b"))
    [o] = run(scenario, enter(scenario, world.profile_ids[:1]))
    assert o.fail == "the split has no branch with a weight"
