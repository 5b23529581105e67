"""Entering scenarios: the API entry, new profiles of the database, updatable segments' movements,
segment members at activation, and the per-profile entry rate limit."""

from __future__ import annotations

import pytest

from accounts.access import Actor
from profiles.models import Profile
from profiles.services import profile_create, profile_erase
from scenarios import entries
from scenarios.entries import entries_at_activation, entries_poll, scenario_enter
from scenarios.models import Participation, Scenario
from scenarios.services.errors import ScenarioError
from scenarios.tests.factories import make_participation, make_scenario, participations_of
from segments.models import Segment, SegmentMember
from segments.services import segment_create, segment_delete, segment_recalculate
from segments.services.segments import SegmentError

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system()
HOUR = {"mode": "duration", "seconds": 3600}


def holding(world, entry: tuple, **kw) -> Scenario:
    """entry -> wait an hour -> exit: whoever entered stays visible in s2."""
    return make_scenario(world, steps=[entry, ("s2", "wait", HOUR), ("s3", "exit", {})],
                         edges=[("s1", "next", "s2"), ("s2", "next", "s3")], **kw)


def zeds(world, kind: str = "updatable") -> Segment:
    return segment_create(database=world.database, name=f"Zeds ({kind})", kind=kind, actor=SYSTEM, compute=False,
                          conditions={"type": "group", "op": "and", "negate": False,
                                      "items": [{"type": "field", "field": "first_name", "operator": "eq",
                                                 "value": "Zed"}]},
                          schedule={"every_hours": 6} if kind == "updatable" else None)


def rename(profile_ids, name: str) -> None:
    Profile.objects.filter(pk__in=profile_ids).update(first_name=name)


# --- the API entry -------------------------------------------------------------------------------


def test_it_enters_by_api_once_per_idempotency_key(world, django_capture_on_commit_callbacks):
    scenario = holding(world, ("s1", "entry.api", {}))
    with django_capture_on_commit_callbacks(execute=True):
        first = scenario_enter(scenario=scenario, key="email", value="Person1@Example.com", data={"order": "A-1"},
                               idempotency_key="k-1", actor=SYSTEM)
    again = scenario_enter(scenario=scenario, key="email", value="person1@example.com", data={"order": "other"},
                           idempotency_key="k-1", actor=SYSTEM)
    assert again == first
    trip = Participation.objects.get(pk=first)
    assert (trip.profile_id, trip.entry_key, trip.context["data"]) == (world.profile_ids[1], "api:k-1", {"order": "A-1"})
    assert trip.step.key == "s2"  # moved on at once
    with pytest.raises(ScenarioError) as exc:
        scenario_enter(scenario=scenario, key="email", value="person1@example.com", idempotency_key="k-2", actor=SYSTEM)
    assert "has been through this scenario already (re-entry: never)" in exc.value.text


def test_it_creates_or_updates_the_profile_with_upsert_values(world):
    scenario = holding(world, ("s1", "entry.api", {}))
    trip_id = scenario_enter(scenario=scenario, key="email", value="new@example.com", upsert={"first_name": "Neu"},
                             actor=SYSTEM)
    profile = Profile.objects.get(database=world.database, email="new@example.com")
    assert profile.first_name == "Neu"
    assert Participation.objects.get(pk=trip_id).profile_id == profile.pk


@pytest.mark.parametrize(("case", "field", "message"), [
    ("paused", "__all__", "is paused: profiles enter an active scenario only"),
    ("no api step", "__all__", "has no API entry step"),
    ("unknown", "profile", "no profile with email 'nobody@example.com'"),
    ("erased", "profile", "was erased"),
    ("bad data", "data", "expected an object"),
    ("big data", "data", "at most 64 KB"),
    ("bad key", "profile", "first_name: is not a match key"),
    ("after exit", "__all__", "is in the scenario already"),
])
def test_it_refuses_api_entries_it_cannot_take(world, case, field, message):
    scenario = holding(world, ("s1", "entry.api", {}), reentry=Scenario.Reentry.AFTER_EXIT,
                       state=Scenario.State.PAUSED if case == "paused" else None)
    value, data, key = "person0@example.com", None, "email"
    if case == "no api step":
        scenario = holding(world, ("s1", "entry.database", {}), name="No API")
    elif case == "unknown":
        value = "nobody@example.com"
    elif case == "erased":
        profile_erase(profile=Profile.objects.get(pk=world.profile_ids[0]), actor=SYSTEM)
    elif case == "bad data":
        data = ["not", "an", "object"]
    elif case == "big data":
        data = {"blob": "x" * 70_000}
    elif case == "bad key":
        key = "first_name"
    elif case == "after exit":
        make_participation(scenario, world.profile_ids[0], step_key="s2", state=Participation.State.WAITING)
    with pytest.raises(ScenarioError) as exc:
        scenario_enter(scenario=scenario, key=key, value=value, data=data, actor=SYSTEM)
    assert message in exc.value.errors[field], exc.value.errors


def test_it_limits_how_often_one_profile_enters_a_minute(world, settings):
    settings.SCENARIOS_ENTRIES_PER_MINUTE = 3
    scenario = holding(world, ("s1", "entry.api", {}), reentry=Scenario.Reentry.ALWAYS)
    for i in range(3):
        scenario_enter(scenario=scenario, key="email", value="person0@example.com", idempotency_key=f"k{i}",
                       actor=SYSTEM)
    with pytest.raises(ScenarioError) as exc:
        scenario_enter(scenario=scenario, key="email", value="person0@example.com", idempotency_key="k3", actor=SYSTEM)
    assert exc.value.errors["__all__"] == "the profile entered this scenario 3 times in the last minute: at most 3 a minute"
    # Another profile is not held up.
    assert scenario_enter(scenario=scenario, key="email", value="person1@example.com", actor=SYSTEM)
    assert Participation.objects.filter(scenario=scenario).count() == 4


# --- new profiles ---------------------------------------------------------------------------------


def test_it_lets_in_profiles_created_after_activation_only(world, other_world):
    scenario = holding(world, ("s1", "entry.database", {}))
    entries_at_activation(scenario=scenario)
    assert entries_poll() == 0  # the five profiles from before do not enter
    fresh = profile_create(database=world.database, values={"email": "fresh@example.com"}, actor=SYSTEM)
    profile_create(database=other_world.database, values={"email": "globex@example.com"}, actor=SYSTEM)
    assert entries_poll() == 1
    assert entries_poll() == 0
    trips = participations_of(scenario)
    assert [(p.profile_id, p.entry_key, p.entry) for p in trips] == [(fresh.pk, f"new:{fresh.pk}", "new")]


def test_it_is_polled_by_the_engine_tick(world, django_capture_on_commit_callbacks):
    from scenarios.engine import engine_tick

    scenario = holding(world, ("s1", "entry.database", {}))
    entries_at_activation(scenario=scenario)
    fresh = profile_create(database=world.database, values={"email": "fresh@example.com"}, actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        engine_tick()
    trip, = participations_of(scenario)
    assert (trip.profile_id, trip.step.key, trip.state) == (fresh.pk, "s2", Participation.State.WAITING)


def test_it_lets_nobody_in_who_came_while_paused(world):
    scenario = holding(world, ("s1", "entry.database", {}))
    entries_at_activation(scenario=scenario)
    Scenario.objects.filter(pk=scenario.pk).update(state=Scenario.State.PAUSED)
    profile_create(database=world.database, values={"email": "meanwhile@example.com"}, actor=SYSTEM)
    assert entries_poll() == 0
    Scenario.objects.filter(pk=scenario.pk).update(state=Scenario.State.ACTIVE)
    later = profile_create(database=world.database, values={"email": "later@example.com"}, actor=SYSTEM)
    assert entries_poll() == 1
    assert [p.profile_id for p in participations_of(scenario)] == [later.pk]


def test_it_catches_up_with_many_new_profiles_in_bounded_chunks(world, monkeypatch):
    from mailings.tests.factories import add_subscribers

    scenario = holding(world, ("s1", "entry.database", {}), reentry=Scenario.Reentry.ALWAYS)
    entries_at_activation(scenario=scenario)
    monkeypatch.setattr(entries, "CHUNK", 2)
    monkeypatch.setattr(entries, "LOOKBACK", entries.timedelta(0))
    ids = add_subscribers(world.resource, 5, start=100)
    assert [entries_poll() for _ in range(4)] == [2, 2, 1, 0]
    assert sorted(p.profile_id for p in participations_of(scenario)) == ids
    scenario.refresh_from_db()
    assert scenario.entry_marks["database"]["id"] == ids[-1]


def test_it_looks_again_at_a_profile_that_committed_late(world):
    """A profile below the watermark: its transaction committed after a later profile's was polled."""
    from scenarios.engine import Entry, participations_enter

    scenario = holding(world, ("s1", "entry.database", {}))
    entries_at_activation(scenario=scenario)
    early = profile_create(database=world.database, values={"email": "early@example.com"}, actor=SYSTEM)
    late = profile_create(database=world.database, values={"email": "late@example.com"}, actor=SYSTEM)
    # What a poll that saw only `late` did: it entered, and the watermark moved past `early`.
    participations_enter(scenario=scenario, entries=[Entry(late.pk, "s1", "new", f"new:{late.pk}")])
    marks = Scenario.objects.get(pk=scenario.pk).entry_marks
    Scenario.objects.filter(pk=scenario.pk).update(entry_marks={**marks, "database": {**marks["database"], "id": late.pk}})
    assert entries_poll() == 1
    assert entries_poll() == 0
    assert sorted(p.profile_id for p in participations_of(scenario)) == [early.pk, late.pk]


# --- segments ---------------------------------------------------------------------------------------


def test_it_lets_in_profiles_entering_an_updatable_segment(world):
    segment = zeds(world)
    a, b, c = world.profile_ids[:3]
    rename([a], "Zed")
    segment_recalculate(segment=segment)  # the first calculation: a is a member from before
    scenario = holding(world, ("s1", "entry.segment", {"segment_id": segment.pk, "members_at_start": False}))
    assert entries_at_activation(scenario=scenario) == 0
    rename([b, c], "Zed")
    rename([a], "Al")
    run = segment_recalculate(segment=segment)
    assert entries_poll() == 2
    assert entries_poll() == 0
    trips = participations_of(scenario)
    assert [(p.profile_id, p.entry_key, p.entry) for p in trips] == [
        (b, f"segment:{run.pk}:{b}", f"segment:{segment.pk}"), (c, f"segment:{run.pk}:{c}", f"segment:{segment.pk}")]
    rename([a], "Zed")
    segment_recalculate(segment=segment)
    assert entries_poll() == 1


def test_it_lets_segment_members_in_at_activation(world):
    static = segment_create(database=world.database, name="Fair visitors", kind="static", actor=SYSTEM, compute=False)
    SegmentMember.objects.bulk_create([SegmentMember(segment_id=static.pk, profile_id=p) for p in world.profile_ids[:3]])
    dynamic = zeds(world, "dynamic")
    rename(world.profile_ids[2:4], "Zed")
    scenario = make_scenario(world, steps=[("s1", "entry.segment", {"segment_id": static.pk, "members_at_start": True}),
                                           ("s2", "entry.segment", {"segment_id": dynamic.pk, "members_at_start": True}),
                                           ("s3", "wait", HOUR), ("s4", "exit", {})],
                             edges=[("s1", "next", "s3"), ("s2", "next", "s3"), ("s3", "next", "s4")])
    assert entries_at_activation(scenario=scenario) == 4
    assert entries_at_activation(scenario=scenario) == 0
    v = scenario.live_version_id
    assert sorted((p.profile_id, p.entry_key) for p in participations_of(scenario)) == [
        (p, f"start:{v}:{p}") for p in world.profile_ids[:4]]


def test_it_lets_members_in_at_activation_in_chunks(world, monkeypatch):
    static = segment_create(database=world.database, name="All", kind="static", actor=SYSTEM, compute=False)
    SegmentMember.objects.bulk_create([SegmentMember(segment_id=static.pk, profile_id=p) for p in world.profile_ids])
    monkeypatch.setattr(entries, "CHUNK", 2)
    scenario = holding(world, ("s1", "entry.segment", {"segment_id": static.pk, "members_at_start": True}))
    assert entries_at_activation(scenario=scenario) == 5
    assert len(participations_of(scenario)) == 5


def test_it_refuses_activation_entries_of_a_segment_that_is_gone(world):
    scenario = holding(world, ("s1", "entry.segment", {"segment_id": 987654, "members_at_start": True}))
    with pytest.raises(ScenarioError) as exc:
        entries_at_activation(scenario=scenario)
    assert exc.value.errors == {"s1": "Step s1 “Enters a segment”: its segment no longer exists"}


def test_it_keeps_a_segment_a_live_scenario_uses(world):
    segment = zeds(world)
    holding(world, ("s1", "entry.segment", {"segment_id": segment.pk}), name="Zed journey")
    with pytest.raises(SegmentError) as exc:
        segment_delete(segment=segment, actor=SYSTEM)
    assert "scenario “Zed journey”" in str(exc.value.errors)
    Scenario.objects.filter(name="Zed journey").update(state=Scenario.State.STOPPED)
    segment_delete(segment=segment, actor=SYSTEM)
    assert not Segment.objects.filter(pk=segment.pk).exists()


def test_it_finds_the_profile_by_its_id_in_the_scenarios_database_only(world, other_world):
    scenario = holding(world, ("s1", "entry.api", {}))
    trip_id = scenario_enter(scenario=scenario, key="id", value=str(world.profile_ids[3]), actor=SYSTEM)
    assert Participation.objects.get(pk=trip_id).profile_id == world.profile_ids[3]
    with pytest.raises(ScenarioError) as exc:
        scenario_enter(scenario=scenario, key="id", value=other_world.profile_ids[0], actor=SYSTEM)
    assert exc.value.errors["profile"].startswith(f"no profile #{other_world.profile_ids[0]} in")


# --- the registered profile handlers -----------------------------------------------------------------


def test_it_takes_an_erased_profile_out_of_its_scenarios(world):
    scenario = holding(world, ("s1", "entry.api", {}))
    trip_id = scenario_enter(scenario=scenario, key="email", value="person0@example.com", data={"note": "secret"},
                             actor=SYSTEM)
    profile_erase(profile=Profile.objects.get(pk=world.profile_ids[0]), actor=SYSTEM)
    trip = Participation.objects.get(pk=trip_id)
    assert (trip.state, trip.exit_reason, trip.context) == ("exited", "erased", {})


def test_it_moves_a_merged_profiles_trips_to_the_target(world):
    from profiles.services import profile_merge

    scenario = holding(world, ("s1", "entry.api", {}))
    target, source = world.profile_ids[:2]
    trip_id = scenario_enter(scenario=scenario, key="id", value=source, actor=SYSTEM)
    profile_merge(target=Profile.objects.get(pk=target), source=Profile.objects.get(pk=source), actor=SYSTEM)
    assert Participation.objects.get(pk=trip_id).profile_id == target


# --- through the API route -----------------------------------------------------------------------


def test_it_enters_through_the_api_once_per_idempotency_key(world, other_world, api, api_token,
                                                             django_capture_on_commit_callbacks):
    from accounts.permissions import Role

    scenario = holding(world, ("s1", "entry.api", {}))
    url = f"/api/v1/scenarios/{scenario.pk}/enter"
    body = {"profile": {"email": "person2@example.com"}, "data": {"order": "A-1001"}}
    marketer = api(api_token(world.account, Role.MARKETER))
    with django_capture_on_commit_callbacks(execute=True):
        first = marketer.post(url, body, headers={"Idempotency-Key": "order-A-1001"})
    assert first.status_code == 202, first.content
    again = marketer.post(url, body, headers={"Idempotency-Key": "order-A-1001"})
    assert again.status_code == 202 and again.json() == first.json()
    trip = Participation.objects.get(pk=first.json()["participation_id"])
    assert (trip.profile_id, trip.context["data"], trip.step.key) == (world.profile_ids[2], {"order": "A-1001"}, "s2")
    refused = marketer.post(url, body, headers={"Idempotency-Key": "order-A-1002"})
    assert refused.status_code == 409 and "re-entry: never" in refused.json()["error"]["message"], refused.content
    unknown = marketer.post(url, {"profile": {"email": "nobody@example.com"}})
    assert unknown.status_code == 422, unknown.content
    assert unknown.json()["error"]["message"].startswith("The profile did not enter: profile: no profile with email")
    assert api(api_token(world.account, Role.ANALYST)).post(url, body).status_code == 403
    assert api(api_token(other_world.account, Role.ADMIN)).post(url, body).status_code == 404
    assert Participation.objects.filter(scenario=scenario).count() == 1
