"""The history handler of scenarios: event and subscription entries, event waits and goals,
through the real ingest -> outbox -> drain path (Celery eager), once per event, per account."""

from __future__ import annotations

import pytest

from accounts.access import Actor
from history.models import Event
from history.services import EventIn, TypeBook, events_ingest, eventtype_create
from profiles.models import Profile
from scenarios import handlers
from scenarios.models import Participation, Scenario
from scenarios.tests.factories import make_scenario, participations_of

pytestmark = pytest.mark.django_db

HOUR = {"mode": "duration", "seconds": 3600}


@pytest.fixture
def cart_type(world):
    return eventtype_create(account=world.account, name="cart_abandoned", label="Cart abandoned", actor=Actor.system(),
                            properties=[{"name": "sku", "type": "string", "required": True},
                                        {"name": "price", "type": "decimal"}])


def ingest(world, *events: EventIn) -> list[Event]:
    results = events_ingest(account=world.account, events=list(events), source="test", book=TypeBook.load(world.account))
    assert all(r.status == "stored" for r in results), [r.as_dict() for r in results]
    return list(Event.objects.filter(id__in=[r.id for r in results]).order_by("id"))


def cart(profile_id: int, key: str | None, **props) -> EventIn:
    return EventIn("cart_abandoned", profile_id, None, {"sku": "SH-100", "price": "89.90", **props}, key=key)


def order(profile_id: int, key: str | None, **props) -> EventIn:
    return EventIn("order.placed", profile_id, None, {"order_id": key or "o", "total": "120.00", **props}, key=key)


def event_scenario(world, *, event: str = "cart_abandoned", filters=None, **kw) -> Scenario:
    """entry.event -> wait an hour -> exit: who entered stays visible, waiting at s2."""
    scenario = make_scenario(world, steps=[("s1", "entry.event", {"type": event, "filters": filters or []}),
                                           ("s2", "wait", HOUR), ("s3", "exit", {})],
                             edges=[("s1", "next", "s2"), ("s2", "next", "s3")], **kw)
    handlers.interest_changed()  # what activating does
    return scenario


def test_it_enters_profiles_whose_events_match_through_the_outbox(world, cart_type, django_capture_on_commit_callbacks):
    scenario = event_scenario(world, filters=[{"property": "price", "op": "gte", "value": 50}])
    assert "cart_abandoned" in handlers.interesting_types()
    a, b = world.profile_ids[:2]
    with django_capture_on_commit_callbacks(execute=True):
        events = ingest(world, cart(a, "c1"), cart(b, "c2", price="9.90"))
    trips = participations_of(scenario)
    assert [(p.profile_id, p.entry_key, p.entry) for p in trips] == [(a, f"event:{events[0].pk}", f"event:{events[0].pk}")]
    assert trips[0].context["data"] == events[0].properties and trips[0].context["data"]["sku"] == "SH-100"
    assert trips[0].context["event"]["type"] == "cart_abandoned"
    # The first step ran right after commit: the trip waits in s2.
    assert (trips[0].step.key, trips[0].state) == ("s2", Participation.State.WAITING)


def test_it_enters_nobody_twice_when_the_drain_redelivers(world, cart_type):
    scenario = event_scenario(world, reentry=Scenario.Reentry.ALWAYS)
    events = ingest(world, cart(world.profile_ids[0], "c1"), cart(world.profile_ids[1], "c2"))
    handlers.on_events(events)
    handlers.on_events(events)
    assert sorted(p.profile_id for p in participations_of(scenario)) == sorted(world.profile_ids[:2])


def test_it_never_lets_another_accounts_events_in(world, other_world, cart_type):
    scenario = event_scenario(world, event="order.placed")
    results = events_ingest(account=other_world.account, events=[order(other_world.profile_ids[0], "g1")],
                            source="test", book=TypeBook.load(other_world.account))
    handlers.on_events(list(Event.objects.filter(id=results[0].id)))
    assert participations_of(scenario) == []
    handlers.on_events(ingest(world, order(world.profile_ids[0], "a1")))
    assert [p.profile_id for p in participations_of(scenario)] == [world.profile_ids[0]]


def test_it_lets_nobody_in_while_paused(world, cart_type):
    scenario = event_scenario(world, state=Scenario.State.PAUSED)
    handlers.on_events(ingest(world, cart(world.profile_ids[0], "c1")))
    assert participations_of(scenario) == []


def test_it_only_listens_to_the_types_live_scenarios_name(world, cart_type):
    handlers.interest_changed()
    assert handlers.interesting_types() == frozenset()
    make_scenario(world, goal={"type": "order.paid"},
                  steps=[("s1", "entry.event", {"type": "cart_abandoned"}), ("s2", "exit", {})], edges=[("s1", "next", "s2")])
    make_scenario(world, name="Waits", steps=[("s1", "entry.api", {}),
                                              ("s2", "wait_event", {"type": "promo.redeemed", "timeout_seconds": 60}),
                                              ("s3", "exit", {})],
                  edges=[("s1", "next", "s2"), ("s2", "event", "s3"), ("s2", "timeout", "s3")])
    make_scenario(world, name="Draft", active=False, steps=[("s1", "entry.event", {"type": "page.viewed"})], edges=[])
    assert handlers.interesting_types() == frozenset()  # cached until the configuration changes
    handlers.interest_changed()
    assert handlers.interesting_types() == {"cart_abandoned", "order.paid", "promo.redeemed"}


def test_it_enters_new_and_confirmed_subscribers(world, django_capture_on_commit_callbacks):
    from resources.services import Via, subscription_confirm, subscription_subscribe

    scenario = make_scenario(world, steps=[("s1", "entry.subscription", {"resource_id": world.resource.pk,
                                                                         "channel": "email"}),
                                           ("s2", "wait", HOUR), ("s3", "exit", {})],
                             edges=[("s1", "next", "s2"), ("s2", "next", "s3")])
    handlers.interest_changed()
    world.resource.double_opt_in = ["email"]
    world.resource.save(update_fields=["double_opt_in"])
    profile = Profile.objects.create(account=world.account, database=world.database, email="new@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        sub, _ = subscription_subscribe(profile=profile, resource=world.resource, channel="email",
                                        address="new@example.com", actor=Actor.system(), via=Via("form"))
    assert sub.status == "unconfirmed"
    assert participations_of(scenario) == []  # not sendable yet
    with django_capture_on_commit_callbacks(execute=True):
        subscription_confirm(subscription=sub, actor=Actor(subscriber=True), via=Via("confirmation"))  # the link's click
    trips = participations_of(scenario)
    assert [(p.profile_id, p.entry_key.split(":")[0]) for p in trips] == [(profile.pk, "subscription")]
    assert trips[0].context["data"]["status"] == "subscribed"


def test_it_takes_profiles_out_at_the_goal_wherever_they_are(world, cart_type, django_capture_on_commit_callbacks):
    goal = {"type": "order.placed", "filters": [{"property": "total", "op": "gte", "value": 100}]}
    scenario = make_scenario(world, goal=goal, steps=[("s1", "entry.api", {}), ("s2", "wait", HOUR),
                                                      ("s3", "wait", {"mode": "duration", "seconds": 7200}),
                                                      ("s4", "exit", {})],
                             edges=[("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4")])
    other = make_scenario(world, name="No goal", steps=[("s1", "entry.api", {}), ("s2", "wait", HOUR),
                                                        ("s3", "exit", {})],
                          edges=[("s1", "next", "s2"), ("s2", "next", "s3")])
    handlers.interest_changed()
    a, b, c = world.profile_ids[:3]
    from scenarios.tests.factories import make_participation

    make_participation(scenario, a, step_key="s2", state=Participation.State.WAITING)
    make_participation(scenario, b, step_key="s3", state=Participation.State.WAITING)
    make_participation(scenario, c, step_key="s2", state=Participation.State.WAITING)
    make_participation(other, a, step_key="s2", state=Participation.State.WAITING)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(world, order(a, "o1"), order(b, "o2"), order(c, "o3", total="20.00"))
    states = {p.profile_id: (p.state, p.exit_reason) for p in participations_of(scenario)}
    assert states == {a: ("exited", "goal"), b: ("exited", "goal"), c: ("waiting", "")}
    assert [p.state for p in participations_of(other)] == ["waiting"]


def test_it_releases_a_profile_waiting_for_the_event(world, django_capture_on_commit_callbacks):
    from scenarios.entries import scenario_enter

    scenario = make_scenario(world, steps=[("s1", "entry.api", {}),
                                           ("s2", "wait_event", {"type": "order.placed", "timeout_seconds": 86400}),
                                           ("s3", "exit", {}, "Bought"), ("s4", "exit", {}, "Gave up")],
                             edges=[("s1", "next", "s2"), ("s2", "event", "s3"), ("s2", "timeout", "s4")])
    handlers.interest_changed()
    pid = world.profile_ids[0]
    with django_capture_on_commit_callbacks(execute=True):
        trip_id = scenario_enter(scenario=scenario, key="email", value="person0@example.com", actor=Actor.system())
    trip = Participation.objects.get(pk=trip_id)
    assert (trip.profile_id, trip.state, trip.waiting_for) == (pid, "waiting", "order.placed")
    with django_capture_on_commit_callbacks(execute=True):
        ingest(world, order(pid, "o1"))
    trip.refresh_from_db()
    assert trip.state == Participation.State.COMPLETED
    from scenarios.tests.factories import path_of

    assert path_of(trip) == [("s1", "next"), ("s2", "event"), ("s3", "")]


def test_it_contains_a_flood_of_events_for_one_profile(world, cart_type, settings, caplog,
                                                      django_capture_on_commit_callbacks):
    """10,000 events for one profile through the real ingest (ten requests): "always" and "after
    exit" let it in at most SCENARIOS_ENTRIES_PER_MINUTE times, "never" once, and another
    profile, and another scenario's profile, still move."""
    settings.SCENARIOS_ENTRIES_PER_MINUTE = 5
    always = event_scenario(world, name="Always", reentry=Scenario.Reentry.ALWAYS)
    never = event_scenario(world, name="Never", reentry=Scenario.Reentry.NEVER)
    # A trip that ends at once could start again with every batch: the rate limit holds it too.
    instant = make_scenario(world, name="Instant", reentry=Scenario.Reentry.AFTER_EXIT,
                            steps=[("s1", "entry.event", {"type": "cart_abandoned"}), ("s2", "exit", {})],
                            edges=[("s1", "next", "s2")])
    bystander = make_scenario(world, name="Bystander", steps=[("s1", "entry.api", {}), ("s2", "exit", {})],
                              edges=[("s1", "next", "s2")])
    flooder = world.profile_ids[0]
    for _ in range(10):
        with django_capture_on_commit_callbacks(execute=True):
            events_ingest(account=world.account, source="test", book=TypeBook.load(world.account),
                          events=[cart(flooder, None) for _ in range(1000)])
    assert Event.objects.filter(profile_id=flooder).count() == 10_000
    assert Participation.objects.filter(scenario=always, profile_id=flooder).count() == 5
    assert list(Participation.objects.filter(scenario=instant).values_list("state", flat=True)) == ["completed"] * 5
    assert Participation.objects.filter(scenario=never, profile_id=flooder).count() == 1
    assert "a profile enters at most 5 times a minute" in caplog.text
    # Nothing else was held up: another profile's event enters, another scenario's trip completes.
    from scenarios.entries import scenario_enter

    with django_capture_on_commit_callbacks(execute=True):
        handlers.on_events(ingest(world, cart(world.profile_ids[1], "calm")))
        trip_id = scenario_enter(scenario=bystander, key="email", value="person2@example.com", actor=Actor.system())
    assert Participation.objects.filter(scenario=always, profile_id=world.profile_ids[1]).count() == 1
    assert Participation.objects.get(pk=trip_id).state == Participation.State.COMPLETED



@pytest.mark.parametrize(("name", "props", "resource", "expected"), [
    ("subscription.subscribed", {"status": "subscribed"}, "same", True),
    ("subscription.subscribed", {"status": "unconfirmed"}, "same", False),
    ("subscription.subscribed", {"status": "subscribed"}, "other", False),
    ("subscription.changed", {"status": "subscribed", "old_status": "unconfirmed"}, "same", True),
    ("subscription.changed", {"status": "subscribed", "old_status": "unsubscribed"}, "same", True),
    ("subscription.changed", {"status": "subscribed", "old_status": "suspended"}, "same", False),
    ("subscription.changed", {"status": "unsubscribed", "old_status": "subscribed"}, "same", False),
    ("order.placed", {"status": "subscribed"}, "same", False),
])
def test_it_enters_only_subscriptions_that_became_sendable(world, name, props, resource, expected):
    """The welcome rule of mailings' subscription trigger: new and subscribed, confirmed, or back
    from unsubscribed; the end of a pause (suspended) is no reason to start again."""
    config = {"resource_id": world.resource.pk, "channel": "email"}
    event = Event(resource_id=world.resource.pk + (0 if resource == "same" else 1), channel="email", properties=props)
    assert handlers._became_sendable(event, name, config) is expected


def test_it_ignores_events_from_before_the_scenario_ran(world, cart_type):
    """An import of last year's carts and orders neither starts trips nor ends them."""
    from datetime import timedelta

    from django.utils import timezone

    scenario = event_scenario(world, goal={"type": "order.placed"})
    a, b = world.profile_ids[:2]
    from scenarios.tests.factories import make_participation

    make_participation(scenario, b, step_key="s2", state=Participation.State.WAITING)
    last_year = timezone.now() - timedelta(days=365)
    old = ingest(world, EventIn("cart_abandoned", a, last_year, {"sku": "OLD-1"}, key="old-cart"),
                 EventIn("order.placed", b, last_year, {"order_id": "OLD-2"}, key="old-order"))
    handlers.on_events(old)
    assert [(p.profile_id, p.state) for p in participations_of(scenario)] == [(b, "waiting")]
    handlers.on_events(ingest(world, cart(a, "new-cart"), order(b, "new-order")))
    assert sorted((p.profile_id, p.is_open) for p in participations_of(scenario)) == sorted([(a, True), (b, False)])
