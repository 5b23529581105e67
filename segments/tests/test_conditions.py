"""Validation of condition trees and schedules: every refusal names the offending node's path."""

from __future__ import annotations

import pytest

from history.services import eventtype_create
from resources.services import resource_create
from segments.conditions import Catalog, ConditionError, clean_conditions, conditions_warnings
from segments.models import Segment
from segments.schedule import clean_schedule, next_run
from segments.services import segment_create, segment_update
from segments.tests.conftest import NOW, SYSTEM, event, field, group


def errors_of(tree, catalog, **kw) -> dict[str, str]:
    with pytest.raises(ConditionError) as exc:
        clean_conditions(tree, catalog, **kw)
    return exc.value.errors


def test_it_normalises_a_valid_tree(shop, news, cart):
    tree = group(
        field("city", "eq", " Berlin "),
        field("points", "between", "10", 20),
        field("email", "eq", "Anna@Example.COM"),
        field("plan", "in", ["PRO", "team", "pro"]),
        {"type": "subscription", "resource": news.pk, "channel": "email"},
        event("cart_abandoned", "at_least", 2, {"last_days": "30"},
              {"properties": [{"name": "price", "operator": "gt", "value": "9.5"}]}),
        {"type": "sample", "percent": 10},
        group(field("vip", "eq", "yes"), op="or", negate=True),
    )
    clean = clean_conditions(tree, Catalog.load(shop))
    items = clean["items"]
    assert items[0] == {"type": "field", "field": "city", "operator": "eq", "value": "Berlin"}
    assert items[1]["value"] == 10 and items[1]["value2"] == 20
    assert items[2]["value"] == "anna@example.com"
    assert items[3]["value"] == ["pro", "team"]
    assert items[4] == {"type": "subscription", "resource": news.pk, "channel": "email", "statuses": ["subscribed"],
                        "category": None, "negate": False}
    assert items[5]["count"] == {"op": "at_least", "n": 2} and items[5]["window"] == {"last_days": 30}
    assert items[5]["where"]["properties"] == [{"name": "price", "operator": "gt", "value": 9.5}]
    assert len(items[6]["salt"]) == 16
    assert items[7] == {"type": "group", "op": "or", "negate": True,
                        "items": [{"type": "field", "field": "vip", "operator": "eq", "value": True}]}
    # Cleaning is idempotent (a saved tree re-validates to itself, salts kept).
    assert clean_conditions(clean, Catalog.load(shop), fill_salts=False) == clean


@pytest.mark.parametrize(("node", "path", "says"), [
    (field("nope", "eq", "x"), "items[0].field", "no field 'nope'"),
    (field("points", "contains", "x"), "items[0].operator", "does not apply to Points"),
    (field("points", "eq", "many"), "items[0].value", "not a whole number"),
    (field("signup", "eq", "2026-02-30"), "items[0].value", "not a real date"),
    (field("signup", "in_last_days", 10**9), "items[0].value", "between 0 and 36,500"),
    (field("signup", "anniversary_in_days", 400), "items[0].value", "between 0 and 366"),
    (field("plan", "eq", "gold"), "items[0].value", "not one of"),
    (field("points", "between", 5, 1), "items[0].value2", "not be less"),
    (field("city", "in", []), "items[0].value", "one or more"),
    (field("city", "eq"), "items[0].value", "required"),
    (field("last_seen", "eq", "2026-01-01"), "items[0].operator", "does not apply"),
    (event("no_such_type"), "items[0].event", "no event type"),
    (event("message.opened", window={"last_days": 10**9}), "items[0].window.last_days", "between 1 and 36,500"),
    (event("message.opened", window={"from": "2026-02-01", "to": "2026-01-01"}), "items[0].window.to", "before"),
    (event("message.opened", "at_least", 0), "items[0].count.n", "between 1"),
    (event("message.opened", where={"channel": "pigeon"}), "items[0].where.channel", "not a channel"),
    (event("message.opened", where={"color": "red"}), "items[0].where.color", "not a filter"),
    ({"type": "subscription", "resource": 999999, "channel": "email"}, "items[0].resource", "no resource"),
    ({"type": "segment", "segment": 999999}, "items[0].segment", "no segment"),
    ({"type": "sample", "percent": 101, "salt": "x"}, "items[0].percent", "between 0 and 100"),
    ({"type": "wat"}, "items[0].type", "not a condition type"),
    ("text", "items[0]", "must be a condition"),
])
def test_it_refuses_bad_conditions_with_the_path_of_the_node(shop, node, path, says):
    errors = errors_of(group(field("city", "set"), group(node)), Catalog.load(shop))
    nested = "items[1]." + path
    assert nested in errors, errors
    assert says in errors[nested]


def test_it_points_at_property_filters_and_subscription_details(shop, news, cart):
    catalog = Catalog.load(shop)
    errors = errors_of(group(event("cart_abandoned", where={"properties": [
        {"name": "sku", "operator": "eq", "value": "A"},
        {"name": "price", "operator": "gt", "value": "cheap"},
    ]})), catalog)
    assert errors == {"items[0].where.properties[1].value": "'cheap' is not a number"}
    errors = errors_of(group(event("cart_abandoned", where={"properties": [{"name": "colour", "operator": "eq", "value": "A"}]})),
                       catalog)
    assert "has no property 'colour'" in errors["items[0].where.properties[0].name"]
    errors = errors_of(group({"type": "subscription", "resource": news.pk, "channel": "telegram"}), catalog)
    assert "has no channel 'telegram'" in errors["items[0].channel"]
    errors = errors_of(group({"type": "subscription", "resource": news.pk, "channel": "email", "category": "gossip"}), catalog)
    assert "no category 'gossip'" in errors["items[0].category"]
    errors = errors_of(group({"type": "subscription", "resource": news.pk, "channel": "email", "statuses": ["happy"]}), catalog)
    assert "items[0].statuses" in errors


def test_it_reports_every_bad_node_at_once(shop):
    errors = errors_of(group(field("nope", "eq", 1), field("points", "gt", "x"), field("city", "eq", "ok")), Catalog.load(shop))
    assert set(errors) == {"items[0].field", "items[1].value"}


def test_it_refuses_a_root_that_is_not_a_group_and_trees_too_deep_or_big(shop):
    catalog = Catalog.load(shop)
    assert errors_of(field("city", "set"), catalog) == {"": 'the conditions must be a group: {"type": "group", "op": "and", "items": [...]}'}
    deep = field("city", "set")
    for _ in range(10):
        deep = group(deep)
    assert any("nest at most" in m for m in errors_of(deep, catalog).values())
    big = group(*[field("city", "set") for _ in range(250)])
    assert any("at most 200 conditions" in m for m in errors_of(big, catalog).values())


def test_it_refuses_another_accounts_types_resources_and_segments(shop, globex, globex_db):
    other_type = eventtype_create(account=globex, name="globex_thing", actor=SYSTEM)
    other_resource = resource_create(account=globex, database=globex_db, actor=SYSTEM, values={"name": "G news"})
    other_segment = segment_create(database=globex_db, name="G seg", kind="dynamic", conditions=group(), actor=SYSTEM,
                                   compute=False)
    catalog = Catalog.load(shop)
    errors = errors_of(group(
        event(other_type.name),
        {"type": "subscription", "resource": other_resource.pk, "channel": "email"},
        {"type": "segment", "segment": other_segment.pk},
        event("message.opened", where={"resource_id": other_resource.pk}),
    ), catalog)
    assert set(errors) == {"items[0].event", "items[1].resource", "items[2].segment", "items[3].where.resource_id"}


def test_it_refuses_cycles_between_segments(shop):
    a = segment_create(database=shop, name="A", kind="dynamic", conditions=group(field("city", "set")), actor=SYSTEM, compute=False)
    b = segment_create(database=shop, name="B", kind="dynamic", conditions=group({"type": "segment", "segment": a.pk}),
                       actor=SYSTEM, compute=False)
    c = segment_create(database=shop, name="C", kind="updatable", schedule={"every_hours": 1},
                       conditions=group({"type": "segment", "segment": b.pk}), actor=SYSTEM, compute=False)
    with pytest.raises(ConditionError) as exc:
        segment_update(segment=a, actor=SYSTEM, conditions=group(field("city", "set"), {"type": "segment", "segment": c.pk}))
    assert exc.value.path == "items[1].segment"
    assert "“C” uses this segment" in exc.value.message
    with pytest.raises(ConditionError) as exc:
        segment_update(segment=a, actor=SYSTEM, conditions=group({"type": "segment", "segment": a.pk}))
    assert exc.value.errors == {"items[0].segment": "a segment cannot contain itself"}
    assert Segment.objects.get(pk=a.pk).conditions == group(field("city", "set"))


@pytest.mark.parametrize(("raw", "path", "says"), [
    ({"cron": "* * * * *"}, "schedule.cron", "more often than once an hour"),
    ({"cron": "*/5 * * * *"}, "schedule.cron", "more often than once an hour"),
    ({"cron": "0,30 * * * *"}, "schedule.cron", "more often than once an hour"),
    ({"cron": "0 * * * * *"}, "schedule.cron", "five fields"),
    ({"cron": "61 * * * *"}, "schedule.cron", "not a valid cron"),
    ({"every_hours": 0}, "schedule.every_hours", "at most once an hour"),
    ({"every_seconds": 1}, "schedule", "not a kind of schedule"),
    ({"daily_at": "25:00"}, "schedule.daily_at", "HH:MM"),
    ("hourly", "schedule", "must be"),
])
def test_it_refuses_schedules_that_run_more_than_hourly_or_make_no_sense(raw, path, says):
    with pytest.raises(ConditionError) as exc:
        clean_schedule(raw)
    assert path in exc.value.errors
    assert says in exc.value.errors[path]


def test_schedules_follow_the_accounts_timezone_and_skip_missed_slots():
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    assert clean_schedule({"cron": " 15  */2 * * 1-5 "}) == {"cron": "15 */2 * * 1-5"}
    assert clean_schedule({"daily_at": "6:30"}) == {"daily_at": "06:30"}
    # Daily at 06:30 Berlin = 05:30 UTC in winter.
    assert next_run({"daily_at": "06:30"}, NOW, berlin) == datetime(2026, 11, 29, 6, 30, tzinfo=berlin)
    # Across the spring DST change the wall time stays 02:30-ish and runs once a day.
    spring = datetime(2026, 3, 28, 12, tzinfo=berlin)
    first = next_run({"daily_at": "02:30"}, spring, berlin)
    second = next_run({"daily_at": "02:30"}, first, berlin)
    assert first.date().isoformat() == "2026-03-29" and second.date().isoformat() == "2026-03-30"
    # every_hours keeps its rhythm from the slot, and a scheduler down for a day runs once.
    slot = NOW - timedelta(hours=25, minutes=10)
    assert next_run({"every_hours": 6}, NOW, berlin, slot=slot) == slot + timedelta(hours=30)
    assert next_run({"cron": "0 9 * * *"}, NOW, berlin) == datetime(2026, 11, 29, 9, 0, tzinfo=berlin)


def test_it_warns_about_costly_conditions(shop):
    catalog = Catalog.load(shop)
    tree = clean_conditions(group(event("message.opened"), field("city", "contains", "ber"),
                                  event("message.clicked", window={"last_days": 30})), catalog)
    warnings = dict(conditions_warnings(tree, catalog))
    assert "items[0]" in warnings and "no time window" in warnings["items[0]"]
    assert "every profile is read" in warnings["items[1]"]
    assert "items[2]" not in warnings
