"""Segment services: create/update/delete, set-based recalculation with entered/left, static
members, broken segments, the tick's one run per slot, the Job, the explainer, selectors, and
tenant isolation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditEvent, Job
from history.models import EventType
from history.services import eventtype_create, eventtype_delete
from profiles.models import Field, Profile
from profiles.services import field_add, field_remove, profile_create, profile_erase, profile_merge
from segments.conditions import ConditionError, SegmentBroken, SegmentError
from segments.models import Segment, SegmentMember, SegmentMovement, SegmentRun
from segments.selectors import (
    audience,
    member_ids_sql,
    run_movements,
    segment_list,
    segment_members_query,
    segment_runs,
    segments_of_profile,
)
from segments.services import (
    segment_check,
    segment_claim_slot,
    segment_count,
    segment_create,
    segment_delete,
    segment_explain,
    segment_export_job,
    segment_members_add,
    segment_members_add_by_key,
    segment_members_remove,
    segment_members_remove_by_key,
    segment_recalculate,
    segment_recalculate_job,
    segment_sample,
    segment_update,
    segments_due,
    segments_tick,
)
from segments.tests.conftest import NOW, SYSTEM, event, field, group

OPENED = 5


def ids(*profiles) -> set[int]:
    return {p.pk for p in profiles}


def members_of(segment) -> set[int]:
    return set(SegmentMember.objects.filter(segment=segment).values_list("profile_id", flat=True))


@pytest.fixture
def trio(make_profile):
    return (make_profile(email="a@x.com", city="Berlin", points=10), make_profile(email="b@x.com", city="Berlin", points=1),
            make_profile(email="c@x.com", city="Rome", points=10))


def test_it_creates_a_segment_validated_and_audited(shop, alice):
    from accounts.access import Actor

    seg = segment_create(database=shop, name=" Berliners ", kind="dynamic", actor=Actor(user=alice),
                         conditions=group(field("city", "eq", "Berlin")), compute=False)
    assert (seg.name, seg.slug, seg.kind, seg.state, seg.created_by) == ("Berliners", "berliners", "dynamic", "ok", alice)
    assert seg.conditions["items"][0]["value"] == "Berlin"
    again = segment_create(database=shop, name="Berliners", kind="static", actor=SYSTEM, compute=False)
    assert again.slug == "berliners-2" and again.conditions is None
    assert AuditEvent.objects.filter(verb="segment.created", target_id=str(seg.pk), actor=alice).exists()
    with pytest.raises(SegmentError) as exc:
        segment_create(database=shop, name="", kind="dynamic", actor=SYSTEM)
    assert exc.value.errors == {"name": "a name is required"}
    with pytest.raises(SegmentError) as exc:
        segment_create(database=shop, name="X", kind="sometimes", actor=SYSTEM)
    assert "kind" in exc.value.errors
    with pytest.raises(ConditionError) as exc:
        segment_create(database=shop, name="X", kind="updatable", actor=SYSTEM, conditions=group())
    assert exc.value.path == "schedule"
    with pytest.raises(ConditionError) as exc:
        segment_create(database=shop, name="X", kind="updatable", actor=SYSTEM, conditions=group(),
                       schedule={"cron": "* * * * *"})
    assert exc.value.path == "schedule.cron"


def test_a_new_segment_is_computed_after_commit(shop, trio, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        seg = segment_create(database=shop, name="Berlin", kind="updatable", actor=SYSTEM, schedule={"every_hours": 6},
                             conditions=group(field("city", "eq", "Berlin")))
    seg.refresh_from_db()
    assert seg.size == 2 and seg.state == "ok" and seg.last_computed_at is not None
    assert members_of(seg) == ids(trio[0], trio[1])
    run = seg.runs.get()
    assert (run.trigger, run.size, run.entered, run.left) == ("create", 2, 2, 0)
    assert timedelta(hours=5, minutes=59) < seg.next_run_at - timezone.now() <= timedelta(hours=6)


def test_recalculation_stores_who_entered_and_left(shop, trio, make_profile):
    a, b, _ = trio
    seg = segment_create(database=shop, name="Berlin", kind="updatable", actor=SYSTEM, schedule={"every_hours": 1},
                         conditions=group(field("city", "eq", "Berlin")), compute=False)
    first = segment_recalculate(segment=seg, now=NOW)
    assert (first.size, first.entered, first.left) == (2, 2, 0)
    Profile.objects.filter(pk=b.pk).update(data={"city": "Rome"})
    d = make_profile(email="d@x.com", city="Berlin")
    with CaptureQueriesContext(connection) as queries:
        second = segment_recalculate(segment=seg, trigger=SegmentRun.Trigger.API, now=NOW + timedelta(hours=1))
    assert (second.size, second.entered, second.left, second.trigger) == (2, 1, 1, "api")
    assert members_of(seg) == ids(a, d)
    assert {(m.profile_id, m.entered) for m in SegmentMovement.objects.filter(run=second)} == {(d.pk, True), (b.pk, False)}
    assert [m.profile_id for m in run_movements(second, entered=True)] == [d.pk]
    # Set-based: the membership statements do not grow with the number of profiles.
    writes = [q["sql"] for q in queries.captured_queries if "segments_segmentmember" in q["sql"]]
    assert 1 <= len(writes) <= 4
    seg.refresh_from_db()
    assert (seg.size, seg.state, seg.compute_ms is not None) == (2, "ok", True)
    third = segment_recalculate(segment=seg, now=NOW + timedelta(hours=2))
    assert (third.entered, third.left) == (0, 0)
    assert [r.pk for r in segment_runs(seg)] == [first.pk, second.pk, third.pk]


def test_static_segments_snapshot_once_and_take_members_by_hand(shop, trio, make_profile, globex_db):
    a, b, c = trio
    seg = segment_create(database=shop, name="Snapshot", kind="static", actor=SYSTEM,
                         conditions=group(field("points", "gte", 10)), compute=False)
    run = segment_recalculate(segment=seg)
    assert (run.size, run.entered) == (2, 2) and members_of(seg) == ids(a, c)
    assert not SegmentMovement.objects.filter(run=run).exists()  # movements are for updatable segments
    Profile.objects.filter(pk=b.pk).update(data={"points": 99})
    assert members_of(seg) == ids(a, c)  # a snapshot does not follow the data
    outsider = profile_create(database=globex_db, values={"email": "g@globex.example.com"}, actor=SYSTEM)
    result = segment_members_add(segment=seg, profile_ids=[b.pk, a.pk, outsider.pk], actor=SYSTEM)
    assert result.changed == 1 and result.unknown == {outsider.pk: f"no profile #{outsider.pk} in Shop customers"}
    assert members_of(seg) == ids(a, b, c)
    assert segment_members_remove(segment=seg, profile_ids=[a.pk, outsider.pk], actor=SYSTEM).changed == 1
    by_key = segment_members_add_by_key(segment=seg, key="email", values=["A@X.com", "nobody@x.com", "not-an-email"],
                                        actor=SYSTEM)
    assert by_key.changed == 1
    assert set(by_key.unknown) == {"nobody@x.com", "not-an-email"}
    assert segment_members_remove_by_key(segment=seg, key="email", values=["c@x.com"], actor=SYSTEM).changed == 1
    seg.refresh_from_db()
    assert members_of(seg) == ids(a, b) and seg.size == 2
    assert AuditEvent.objects.filter(verb="segment.members_added", target_id=str(seg.pk)).count() == 2
    with pytest.raises(SegmentError):
        segment_members_add(segment=seg, profile_ids=["x"], actor=SYSTEM)
    dynamic = segment_create(database=shop, name="Dyn", kind="dynamic", actor=SYSTEM, conditions=group(), compute=False)
    with pytest.raises(SegmentError) as exc:
        segment_members_add(segment=dynamic, profile_ids=[a.pk], actor=SYSTEM)
    assert "its members follow its conditions" in exc.value.message


def test_a_segment_whose_field_was_removed_is_broken_not_empty(shop, trio, django_capture_on_commit_callbacks):
    seg = segment_create(database=shop, name="Points", kind="updatable", actor=SYSTEM, schedule={"every_hours": 1},
                         conditions=group(field("city", "eq", "Berlin"), field("points", "gt", 5)), compute=False)
    dyn = segment_create(database=shop, name="Dyn points", kind="dynamic", actor=SYSTEM,
                         conditions=group(field("points", "gt", 5)), compute=False)
    segment_recalculate(segment=seg)
    with django_capture_on_commit_callbacks(execute=True):
        field_remove(field=Field.objects.get(database=shop, name="points"), actor=SYSTEM)
    # Refused at use already, before its next update notices.
    with pytest.raises(SegmentBroken):
        segment_members_query(Segment.objects.get(pk=seg.pk))
    with pytest.raises(SegmentBroken):
        audience(database=shop, include=[Segment.objects.get(pk=seg.pk)])
    with pytest.raises(SegmentBroken) as exc:
        segment_recalculate(segment=seg)
    assert exc.value.errors == {"items[1].field": "there is no field 'points' in Shop customers"}
    seg.refresh_from_db()
    assert (seg.state, seg.problem_path) == ("broken", "items[1].field")
    assert "no field 'points'" in seg.problem
    assert seg.size == 1  # the last good size stays, marked broken; not 0
    with pytest.raises(SegmentBroken):
        segment_members_query(seg)
    with pytest.raises(SegmentBroken):
        segment_members_query(dyn)  # checked at use, even before anyone marked it
    with pytest.raises(SegmentBroken):
        audience(database=shop, include=[seg])
    assert segment_check(segment=dyn).state == "broken"
    # Re-adding the field (same type) mends both.
    field_add(database=shop, name="points", label="Points", type="integer", actor=SYSTEM)
    assert segment_check(segment=seg).state == "ok"
    assert segment_recalculate(segment=seg).size == 0  # values went with the field
    assert segment_check(segment=dyn).state == "ok"


def test_a_deleted_event_type_breaks_the_segments_that_count_it(shop, trio, cart):
    seg = segment_create(database=shop, name="Carts", kind="dynamic", actor=SYSTEM, compute=False,
                         conditions=group(event("cart_abandoned", window={"last_days": 7})))
    eventtype_delete(event_type=EventType.objects.get(pk=cart.pk), actor=SYSTEM)
    checked = segment_check(segment=seg)
    assert checked.state == "broken" and checked.problem_path == "items[0].event"


def test_it_refuses_to_delete_a_segment_others_use_and_deletes_the_rest(shop, trio):
    base = segment_create(database=shop, name="Base", kind="static", actor=SYSTEM, compute=False)
    segment_members_add(segment=base, profile_ids=[trio[0].pk], actor=SYSTEM)
    user = segment_create(database=shop, name="User", kind="dynamic", actor=SYSTEM, compute=False,
                          conditions=group({"type": "segment", "segment": base.pk, "negate": True}))
    with pytest.raises(SegmentError) as exc:
        segment_delete(segment=base, actor=SYSTEM)
    assert "used by segment “User”" in exc.value.message
    segment_delete(segment=user, actor=SYSTEM)
    segment_delete(segment=base, actor=SYSTEM)
    assert not Segment.objects.filter(database=shop).exists()
    assert not SegmentMember.objects.filter(segment_id=base.pk).exists()
    assert AuditEvent.objects.filter(verb="segment.deleted", target_label="Base").exists()


def test_changing_the_kind_keeps_or_drops_members(shop, trio):
    seg = segment_create(database=shop, name="Berlin", kind="updatable", actor=SYSTEM, schedule={"daily_at": "06:00"},
                         conditions=group(field("city", "eq", "Berlin")), compute=False)
    segment_recalculate(segment=seg)
    seg = segment_update(segment=seg, actor=SYSTEM, kind="static")
    assert seg.next_run_at is None and seg.schedule is None and members_of(seg) == ids(trio[0], trio[1])
    seg = segment_update(segment=seg, actor=SYSTEM, kind="dynamic")
    assert members_of(seg) == set() and seg.size is None
    seg = segment_update(segment=seg, actor=SYSTEM, kind="updatable", schedule={"every_hours": 2})
    assert seg.next_run_at is not None and seg.next_run_at <= timezone.now()
    seg = segment_update(segment=seg, actor=SYSTEM, name="Berliners", conditions=group(field("city", "eq", "Rome")))
    assert seg.name == "Berliners" and seg.conditions["items"][0]["value"] == "Rome"
    assert AuditEvent.objects.filter(verb="segment.updated", target_id=str(seg.pk)).count() == 4


def test_the_tick_runs_each_slot_once_even_with_two_schedulers(shop, trio, django_capture_on_commit_callbacks):
    seg = segment_create(database=shop, name="Hourly", kind="updatable", actor=SYSTEM, schedule={"every_hours": 1},
                         conditions=group(field("city", "eq", "Berlin")), compute=False)
    slot = timezone.now() - timedelta(minutes=1)
    Segment.objects.filter(pk=seg.pk).update(next_run_at=slot)
    now = timezone.now()
    # Both schedulers read the due list before either claims.
    first_read, second_read = segments_due(now=now), segments_due(now=now)
    assert [s.pk for s in first_read] == [s.pk for s in second_read] == [seg.pk]
    assert segment_claim_slot(segment=first_read[0], now=now) is True
    assert segment_claim_slot(segment=second_read[0], now=now) is False
    seg.refresh_from_db()
    assert seg.next_run_at == slot + timedelta(hours=1)
    assert segments_tick(now=now) == []
    # The next slot: the tick claims it and the recalculation runs (eagerly here).
    with django_capture_on_commit_callbacks(execute=True):
        assert segments_tick(now=slot + timedelta(hours=1, seconds=1)) == [seg.pk]
    assert SegmentRun.objects.filter(segment=seg, trigger="schedule").count() == 1
    assert members_of(seg) == ids(trio[0], trio[1])
    # Static and dynamic segments are never due.
    Segment.objects.filter(pk=seg.pk).update(kind="dynamic", next_run_at=slot)
    assert segments_tick(now=now) == []


def test_a_segment_left_computing_by_a_lost_worker_is_marked_failed_by_the_tick(shop, trio):
    from segments.services.compute import STOPPED

    seg = segment_create(database=shop, name="Berlin", kind="updatable", actor=SYSTEM, schedule={"every_hours": 1},
                         conditions=group(field("city", "eq", "Berlin")), compute=False)
    Segment.objects.filter(pk=seg.pk).update(state=Segment.State.COMPUTING)  # the worker died after this
    segments_tick()
    seg.refresh_from_db()
    assert (seg.state, seg.problem) == (Segment.State.FAILED, STOPPED)
    segment_recalculate(segment=seg)  # recalculating heals it
    seg.refresh_from_db()
    assert seg.state == Segment.State.OK and seg.problem == ""


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
def test_a_calculation_in_progress_is_not_taken_for_a_lost_one(shop, trio):
    import threading

    from segments.services.compute import segments_unstick

    seg = segment_create(database=shop, name="Berlin", kind="updatable", actor=SYSTEM, schedule={"every_hours": 1},
                         conditions=group(field("city", "eq", "Berlin")), compute=False)
    Segment.objects.filter(pk=seg.pk).update(state=Segment.State.COMPUTING)
    locked, release, seen = threading.Event(), threading.Event(), []

    def computing() -> None:  # holds the segment's row as a running calculation does
        try:
            with transaction.atomic():
                Segment.objects.select_for_update().filter(pk=seg.pk).first()
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    worker = threading.Thread(target=computing)
    worker.start()
    try:
        assert locked.wait(10)
        seen.append(segments_unstick())
    finally:
        release.set()
        worker.join(10)
    assert seen == [0]
    assert Segment.objects.get(pk=seg.pk).state == Segment.State.COMPUTING


def test_recalculation_runs_as_a_job_with_progress(shop, trio, alice, django_capture_on_commit_callbacks):
    from accounts.access import Actor

    seg = segment_create(database=shop, name="Berlin", kind="static", actor=SYSTEM,
                         conditions=group(field("city", "eq", "Berlin")), compute=False)
    with django_capture_on_commit_callbacks(execute=True):
        job = segment_recalculate_job(segment=seg, actor=Actor(user=alice))
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.percent == 100
    assert job.result["size"] == 2 and job.result["entered"] == 2
    assert job.created_by == alice and job.kind == "segments.recalculate"
    run = SegmentRun.objects.get(segment=seg)
    assert run.job_id == job.pk and run.trigger == "manual"
    # A broken segment fails its job with the reason, without raising in the worker.
    Segment.objects.filter(pk=seg.pk).update(conditions=group(field("gone", "eq", "x")))
    with django_capture_on_commit_callbacks(execute=True):
        job = segment_recalculate_job(segment=seg, actor=Actor(user=alice))
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "no field 'gone'" in job.error


def test_the_explainer_says_why_condition_by_condition(shop, trio, add_event):
    a, _, c = trio
    add_event(a, OPENED, timezone.now() - timedelta(days=2))
    add_event(a, OPENED, timezone.now() - timedelta(days=3))
    seg = segment_create(database=shop, name="Active Berliners", kind="dynamic", actor=SYSTEM, compute=False, conditions=group(
        field("city", "eq", "Berlin"),
        group(event("message.opened", "at_least", 2, {"last_days": 30}), field("points", "gt", 50), op="or"),
    ))
    yes = segment_explain(segment=seg, profile=a)
    assert yes["matched"] is True and yes["member"] is None
    city, inner = yes["tree"]["items"]
    assert city == {"node": {"type": "field", "field": "city", "operator": "eq", "value": "Berlin"}, "matched": True,
                    "why": "City: “Berlin”"}
    assert inner["matched"] is True and inner["why"] == "1 of 2 matched"
    assert inner["items"][0]["why"] == "2 matching events" and inner["items"][1]["why"] == "Points: 10"
    no = segment_explain(segment=seg, profile=c)
    assert no["matched"] is False and no["tree"]["items"][0]["why"] == "City: “Rome”"
    assert no["tree"]["items"][1]["items"][0]["why"] == "0 matching events"
    # The explanation agrees with the query.
    assert set(segment_members_query(seg).values_list("id", flat=True)) == {a.pk}


def test_selectors_members_audience_and_a_profiles_segments(shop, trio):
    a, b, c = trio
    berlin = segment_create(database=shop, name="Berlin", kind="dynamic", actor=SYSTEM, compute=False,
                            conditions=group(field("city", "eq", "Berlin")))
    rich = segment_create(database=shop, name="Rich", kind="updatable", actor=SYSTEM, schedule={"every_hours": 1},
                          conditions=group(field("points", "gte", 10)), compute=False)
    segment_recalculate(segment=rich)
    hand = segment_create(database=shop, name="Hand", kind="static", actor=SYSTEM, compute=False)
    segment_members_add(segment=hand, profile_ids=[b.pk], actor=SYSTEM)
    assert set(segment_members_query(berlin).values_list("id", flat=True)) == ids(a, b)
    assert set(segment_members_query(rich).values_list("id", flat=True)) == ids(a, c)
    assert set(audience(database=shop, include=[berlin, hand], exclude=[rich]).values_list("id", flat=True)) == ids(b)
    assert set(audience(database=shop, include=[rich]).values_list("id", flat=True)) == ids(a, c)
    sql, params = member_ids_sql(audience(database=shop, include=[berlin], exclude=[hand]))
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM ({sql}) t", params)  # noqa: S608 (table names are the models' own)
        assert cur.fetchone()[0] == 1
    assert [s.name for s in segments_of_profile(a)] == ["Berlin", "Rich"]
    assert [s.name for s in segments_of_profile(b)] == ["Berlin", "Hand"]
    assert [s.name for s in segment_list(account=shop.account, database=shop, q="ri")] == ["Rich"]
    with pytest.raises(SegmentError):
        audience(database=shop, include=[])


def test_counting_and_sampling_unsaved_conditions(shop, trio):
    n, ms = segment_count(database=shop, conditions=group(field("city", "eq", "Berlin")))
    assert n == 2 and ms >= 0
    sample = segment_sample(database=shop, conditions=group(field("city", "eq", "Berlin")), limit=1)
    assert [p.pk for p in sample] == [trio[1].pk]
    with pytest.raises(ConditionError):
        segment_count(database=shop, conditions=group(field("nope", "eq", 1)))


def test_another_accounts_objects_are_refused(shop, globex_db, trio):
    theirs = segment_create(database=globex_db, name="Theirs", kind="static", actor=SYSTEM, compute=False)
    mine = segment_create(database=shop, name="Mine", kind="static", actor=SYSTEM, compute=False)
    with pytest.raises(SegmentError):
        audience(database=shop, include=[theirs])
    with pytest.raises(SegmentError):
        audience(database=globex_db, include=[mine])
    with pytest.raises(ConditionError) as exc:
        segment_create(database=shop, name="X", kind="dynamic", actor=SYSTEM,
                       conditions=group({"type": "segment", "segment": theirs.pk}))
    assert exc.value.path == "items[0].segment"
    gina = profile_create(database=globex_db, values={"email": "gina@globex.example.com"}, actor=SYSTEM)
    with pytest.raises(SegmentError):
        segment_explain(segment=mine, profile=gina)
    assert segment_members_add(segment=mine, profile_ids=[gina.pk], actor=SYSTEM).changed == 0
    with pytest.raises(SegmentError):
        segment_count(database=shop, conditions=group(), segment=theirs)
    assert list(segment_list(account=shop.account)) == [mine]


def test_erasure_and_merge_carry_memberships(shop, trio):
    a, b, _ = trio
    seg = segment_create(database=shop, name="Hand", kind="static", actor=SYSTEM, compute=False)
    other = segment_create(database=shop, name="Other", kind="static", actor=SYSTEM, compute=False)
    segment_members_add(segment=seg, profile_ids=[a.pk, b.pk], actor=SYSTEM)
    segment_members_add(segment=other, profile_ids=[b.pk], actor=SYSTEM)
    profile_merge(target=a, source=b, actor=SYSTEM)
    assert members_of(seg) == ids(a) and members_of(other) == ids(a)
    seg.refresh_from_db()
    assert seg.size == 1
    profile_erase(profile=Profile.objects.get(pk=a.pk), actor=SYSTEM)
    assert members_of(seg) == set() and members_of(other) == set()
    assert Segment.objects.get(pk=other.pk).size == 0


def test_a_custom_event_type_of_the_account_is_usable(shop, trio, add_event):
    signup = eventtype_create(account=shop.account, name="signed_up", actor=SYSTEM)
    add_event(trio[2], signup.pk, timezone.now())
    n, _ = segment_count(database=shop, conditions=group(event("signed_up", window={"last_days": 1})))
    assert n == 1


def test_members_export_as_a_job_with_a_csv(shop, trio, alice, django_capture_on_commit_callbacks):
    from accounts.access import Actor

    seg = segment_create(database=shop, name="Berlin", kind="dynamic", actor=SYSTEM, compute=False,
                         conditions=group(field("city", "eq", "Berlin")))
    with django_capture_on_commit_callbacks(execute=True):
        job = segment_export_job(segment=seg, actor=Actor(user=alice))
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and job.result == {"rows": 2}
    lines = job.result_file.read().decode("utf-8-sig").splitlines()
    assert lines[0].startswith("email,phone,") and lines[0].endswith(",profile_id")
    assert [line.split(",")[0] for line in lines[1:]] == ["a@x.com", "b@x.com"]
    assert AuditEvent.objects.filter(verb="segment.exported", target_id=str(seg.pk)).exists()
    Segment.objects.filter(pk=seg.pk).update(state=Segment.State.BROKEN, problem="gone")
    with pytest.raises(SegmentBroken):
        segment_export_job(segment=Segment.objects.get(pk=seg.pk), actor=Actor(user=alice))
