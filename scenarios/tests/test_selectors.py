"""The scenarios' reads: the list's figures, the per-step report (in it now, counters, the send
steps' message figures), the participants pages, a participation's path and a profile's trips."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mailings.services.triggers.firing import Fire, fires_insert
from profiles.models import Profile
from scenarios import selectors
from scenarios.models import Participation, PathEntry, Scenario, StepStat
from scenarios.tests.factories import add_version, make_participation, make_scenario, step_of

pytestmark = pytest.mark.django_db

WELCOME = (
    [("s1", "entry.api", {}, "Signed up"), ("s2", "send", {}, "Welcome"),
     ("s3", "wait", {"mode": "duration", "seconds": 0}, "Wait a moment"),
     ("s4", "condition", {"test": "message", "step": "s2", "what": "opened"}, "Opened?"),
     ("s5", "send", {}, "Top picks"), ("s6", "exit", {}, "Done")],
    [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4"), ("s4", "yes", "s5"), ("s5", "next", "s6")],
)


def _stat(scenario: Scenario, key: str, metric: str, n: int) -> None:
    StepStat.objects.create(account_id=scenario.account_id, scenario_id=scenario.pk, step_key=key, metric=metric, n=n)


def _finish(p: Participation, state: str, reason: str = "") -> None:
    Participation.objects.filter(pk=p.pk).update(state=state, exit_reason=reason, finished_at=timezone.now())


def test_it_lists_the_accounts_scenarios_with_their_figures_in_two_queries(world, other_world, django_assert_num_queries):
    s1 = make_scenario(world, name="Welcome journey")
    s2 = make_scenario(world, name="Win back", active=False, steps=[("s1", "entry.database", {}), ("s2", "exit", {})],
                       edges=[("s1", "next", "s2")])
    theirs = make_scenario(other_world, name="Welcome journey")
    p = world.profile_ids
    make_participation(s1, p[0], step_key="s2")
    make_participation(s1, p[1], step_key="s3", state=Participation.State.WAITING)
    _finish(make_participation(s1, p[2], step_key="s4"), Participation.State.COMPLETED)

    rows = list(selectors.scenario_list(account=world.account))
    assert [s.pk for s in rows] == [s2.pk, s1.pk]
    assert [s.pk for s in selectors.scenario_list(account=world.account, q="welcome")] == [s1.pk]
    assert [s.pk for s in selectors.scenario_list(account=world.account, state="draft")] == [s2.pk]
    assert theirs.pk not in [s.pk for s in rows]

    with django_assert_num_queries(2):
        figures = selectors.list_figures([s.pk for s in rows])
    assert figures[s1.pk] | {"entries": None} == {"in_now": 2, "active": 1, "waiting": 1, "completed": 1, "exited": 0,
                                                  "failed": 0, "entries": None}
    assert figures[s1.pk]["entries"] == ["API call"]
    assert figures[s2.pk]["in_now"] == 0 and figures[s2.pk]["entries"] == ["New profile"]


def test_it_reports_in_it_now_the_counters_and_the_totals_per_step(world):
    scenario = make_scenario(world, steps=WELCOME[0], edges=WELCOME[1])
    p = world.profile_ids
    make_participation(scenario, p[0], step_key="s3", state=Participation.State.WAITING)
    make_participation(scenario, p[1], step_key="s3", state=Participation.State.WAITING)
    make_participation(scenario, p[2], step_key="s2")
    _finish(make_participation(scenario, p[3], step_key="s6"), Participation.State.COMPLETED)
    _finish(make_participation(scenario, p[4], step_key="s4"), Participation.State.EXITED, "goal")
    _finish(make_participation(scenario, p[3], step_key="s5"), Participation.State.FAILED, "step_limit")
    for key, metric, n in [("s1", "entered", 5), ("s1", "passed", 3), ("s1", "passed", 2), ("s2", "entered", 5),
                           ("s2", "passed", 4), ("s4", "exited", 1), ("s5", "failed", 0)]:
        _stat(scenario, key, metric, n)

    report = selectors.scenario_report(scenario)

    assert report.version_number == 1
    assert [s.key for s in report.steps] == ["s1", "s2", "s3", "s4", "s5", "s6"]
    s1, s2, s3, s4 = (report.step(k) for k in ("s1", "s2", "s3", "s4"))
    assert (s1.entered, s1.passed, s1.in_now) == (5, 5, 0)
    assert (s2.entered, s2.passed, s2.in_now, s2.active, s2.waiting) == (5, 4, 1, 1, 0)
    assert (s3.in_now, s3.waiting, s3.in_now_by_version) == (2, 2, {1: 2})
    assert s4.exited == 1
    assert s4.exits == {"yes": "s5", "no": None}
    assert s2.title == "Welcome" and s2.label == "Send message"
    assert report.totals == {"entered": 6, "in_now": 3, "active": 1, "waiting": 2, "completed": 1, "exited": 1,
                             "failed": 1}
    assert report.exited_by_reason == {"goal": 1}
    assert report.failed_by_reason == {"step_limit": 1}
    assert report.versions[0]["in_now"] == 3
    data = report.as_dict()
    assert data["steps"][2]["in_now_by_version"] == {"1": 2}


def test_it_shows_each_send_steps_message_figures_from_its_mailings_counters(world, django_capture_on_commit_callbacks):
    scenario = make_scenario(world, steps=WELCOME[0], edges=WELCOME[1])
    welcome = step_of(scenario, "s2").mailing
    with django_capture_on_commit_callbacks(execute=True):
        fires_insert([Fire(mailing=welcome, profile_id=pid, key=f"scn:{i}:1") for i, pid in enumerate(world.profile_ids[:3])])
    # An unsubscribed profile is skipped by the ledger, and the report says why.
    world.subscriptions().filter(profile_id=world.profile_ids[3]).update(status="unsubscribed")
    with django_capture_on_commit_callbacks(execute=True):
        fires_insert([Fire(mailing=welcome, profile_id=world.profile_ids[3], key="scn:9:1")])

    report = selectors.scenario_report(scenario)

    s2, s5 = report.step("s2"), report.step("s5")
    assert s2.mailing_ids == [welcome.pk]
    assert s2.messages["planned"] == 4
    assert s2.messages["sent"] == 3
    assert s2.messages["skipped"] == 1
    assert sum(s2.skipped.values()) == 1
    assert s5.messages["planned"] == 0
    assert report.step("s3").messages is None
    assert selectors.scenario_report(scenario, with_messages=False).step("s2").messages is None


def test_it_keeps_the_figures_of_steps_only_older_versions_have(world):
    scenario = make_scenario(world)
    v1 = scenario.live_version
    stuck = make_participation(scenario, world.profile_ids[0], step_key="s3", state=Participation.State.WAITING)
    _stat(scenario, "s3", "entered", 1)
    add_version(world, scenario, steps=[("s1", "entry.api", {}), ("s2", "send", {}), ("s5", "exit", {})],
                edges=[("s1", "next", "s2"), ("s2", "next", "s5")])
    scenario.refresh_from_db()

    report = selectors.scenario_report(scenario)

    assert report.version_number == 2
    assert [s.key for s in report.steps if s.in_version] == ["s1", "s2", "s5"]
    old = report.step("s3")
    assert old is not None and not old.in_version and old.in_now_by_version == {1: 1} and old.entered == 1
    assert report.step("s4") is None  # no people, no figures: not shown
    assert [v["number"] for v in report.versions] == [2, 1]
    assert report.versions[1]["in_now"] == 1
    # The same mailing serves both versions when the send step did not change.
    assert report.step("s2").mailing_ids == [step_of(scenario, "s2").mailing_id]
    assert selectors.scenario_report(scenario, version=v1).version_number == 1
    assert stuck.version_id == v1.pk


def test_it_reports_a_draft_scenario_with_no_participations(draft_scenario):
    report = selectors.scenario_report(draft_scenario)
    assert report.version_number == 1
    assert [s.key for s in report.steps] == ["s1", "s2", "s3", "s4"]
    assert report.step("s2").messages is None  # no mailing before publishing
    assert report.totals["entered"] == 0


def test_it_pages_participants_newest_first_by_keyset(world, django_assert_num_queries):
    scenario = make_scenario(world)
    Profile.objects.filter(pk=world.profile_ids[0]).update(first_name="Ada", last_name="Lovelace")
    made = [make_participation(scenario, pid, step_key="s3" if i % 2 else "s2") for i, pid in enumerate(world.profile_ids)]
    _finish(made[4], Participation.State.COMPLETED)

    with django_assert_num_queries(3):
        first = selectors.participants_page(scenario, limit=2)
    assert [r.id for r in first.rows] == [made[4].pk, made[3].pk]
    assert first.next_cursor == made[3].pk
    second = selectors.participants_page(scenario, limit=2, cursor=str(first.next_cursor))
    third = selectors.participants_page(scenario, limit=2, cursor=second.next_cursor)
    assert [r.id for r in second.rows + third.rows] == [made[2].pk, made[1].pk, made[0].pk]
    assert third.next_cursor is None
    assert third.rows[-1].profile == "Ada Lovelace" and third.rows[-1].step_title == "Send message"
    assert third.rows[-1].next_run_at is not None
    assert first.rows[0].next_run_at is None  # completed: not due any more

    assert [r.id for r in selectors.participants_page(scenario, step_key="s3").rows] == [made[3].pk, made[1].pk]
    assert [r.id for r in selectors.participants_page(scenario, state="completed").rows] == [made[4].pk]
    assert len(selectors.participants_page(scenario, state="open").rows) == 4
    assert len(selectors.participants_page(scenario, cursor="garbage").rows) == 5


def test_it_never_reads_another_scenarios_participation(world, other_world):
    mine = make_scenario(world)
    theirs = make_scenario(other_world)
    p = make_participation(theirs, other_world.profile_ids[0])
    assert selectors.participation_get(mine, p.pk) is None
    assert selectors.participation_get(theirs, p.pk) == p
    assert selectors.participation_get(theirs, "x") is None
    assert selectors.participants_page(mine).rows == []


def test_it_tells_the_path_with_the_titles_of_the_version_it_was_on(world):
    scenario = make_scenario(world, steps=WELCOME[0], edges=WELCOME[1])
    p = make_participation(scenario, world.profile_ids[0])
    now = timezone.now()
    PathEntry.objects.filter(participation_id=p.pk, seq=0).update(left_at=now, exit="next")
    PathEntry.objects.create(participation=p, version_number=1, step_key="s2", seq=1, entered_at=now, left_at=now,
                             exit="next", outcome="queued: ledger #1")
    PathEntry.objects.create(participation=p, version_number=1, step_key="s3", seq=2, entered_at=now + timedelta(seconds=1))
    Participation.objects.filter(pk=p.pk).update(seq=2, step=step_of(scenario, "s3"), state="waiting")
    p.refresh_from_db()

    path = selectors.participation_path(p)

    assert [(r.step_key, r.title, r.exit, r.current) for r in path] == [
        ("s1", "Signed up", "next", False), ("s2", "Welcome", "next", False), ("s3", "Wait a moment", "", True)]
    assert path[1].outcome == "queued: ledger #1" and path[1].kind == "send"


def test_it_lists_a_profiles_trips_in_its_own_account_only(world, other_world):
    first = make_scenario(world, name="Welcome journey")
    second = make_scenario(world, name="Birthday")
    pid = world.profile_ids[0]
    a = make_participation(first, pid, step_key="s2")
    b = make_participation(second, pid, step_key="s3", state=Participation.State.WAITING)
    make_participation(first, world.profile_ids[1])
    profile = Profile.objects.get(pk=pid)

    trips = selectors.profile_participations(profile)

    assert [(t.id, t.scenario_name, t.step_key) for t in trips] == [(b.pk, "Birthday", "s3"), (a.pk, "Welcome journey", "s2")]
    assert selectors.profile_participations(Profile.objects.get(pk=other_world.profile_ids[0])) == []
