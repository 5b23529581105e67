"""The segments API: create/list/change/delete with validation errors pointing at the condition,
live counts, recalculation jobs, members (static by id or match key), the explainer and runs;
roles (analysts read, marketers write) and other accounts (404)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.access import Actor
from accounts.models import AuditEvent
from accounts.permissions import Role
from history.catalogue import type_id
from profiles.models import Field
from profiles.services import field_remove
from segments.models import Segment, SegmentMember, SegmentRun
from segments.services import segment_create, segment_members_add, segment_recalculate
from segments.tests.conftest import event, field, group

SYSTEM = Actor.system()


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


def _locs(response) -> list[list]:
    return [d["loc"] for d in _error(response)["details"]]


def _delete_json(c, path: str, data: dict):
    return c.client.delete(path, json.dumps(data), content_type="application/json", headers=c.headers)


@pytest.fixture
def marketer(acme, caller):
    return caller(acme, Role.MARKETER, name="segment builder")


@pytest.fixture
def analyst(acme, caller):
    return caller(acme, Role.ANALYST, name="reports")


@pytest.fixture
def outsider(globex, caller):
    return caller(globex, Role.OWNER, name="globex owner")


@pytest.fixture
def people(make_profile):
    """Three Berliners (two VIPs by points) and a Hamburger."""
    return {
        "anna": make_profile(email="anna@example.com", city="Berlin", points=6000),
        "ben": make_profile(email="ben@example.com", city="Berlin", points=7000),
        "cleo": make_profile(email="cleo@example.com", city="Berlin", points=10),
        "dirk": make_profile(email="dirk@example.com", city="Hamburg", points=9000),
    }


@pytest.fixture
def vips(shop, people) -> Segment:
    return segment_create(database=shop, name="Berlin VIPs", kind="dynamic", actor=SYSTEM, compute=False,
                          conditions=group(field("city", "eq", "Berlin"), field("points", "gt", 5000)))


@pytest.fixture
def fair(shop, people) -> Segment:
    """A static segment filled by hand with anna and dirk."""
    seg = segment_create(database=shop, name="Fair visitors", kind="static", actor=SYSTEM, compute=False)
    segment_members_add(segment=seg, profile_ids=[people["anna"].pk, people["dirk"].pk], actor=SYSTEM)
    return Segment.objects.get(pk=seg.pk)


def _url(shop) -> str:
    return f"/api/v1/databases/{shop.slug}/segments"


# --- create ------------------------------------------------------------------------------------------


def test_it_creates_a_dynamic_segment(marketer, shop, people):
    tree = group(field("city", "eq", "Berlin"), field("points", "gt", "5000"),
                 group(event("message.opened", "at_least", 1, window={"last_days": 30}), op="or"))
    response = marketer.post(_url(shop), {"name": "Active Berlin VIPs", "conditions": tree})
    assert response.status_code == 201, response.content
    body = response.json()
    seg = Segment.objects.get(pk=body["id"])
    assert (seg.account_id, seg.database_id, seg.kind, seg.name) == (shop.account_id, shop.pk, "dynamic", "Active Berlin VIPs")
    assert body["database"] == shop.slug and body["slug"] == "active-berlin-vips"
    assert body["state"] == "ok" and body["problem"] is None
    # Stored as the services normalise it: the number as a number.
    assert body["conditions"]["items"][1]["value"] == 5000
    assert AuditEvent.objects.filter(verb="segment.created", target_id=str(seg.pk)).exists()


def test_it_creates_an_updatable_segment_with_a_schedule(marketer, shop):
    response = marketer.post(_url(shop), {"name": "Hourly", "kind": "updatable", "conditions": group(field("city", "set")),
                                          "schedule": {"cron": "15 */2 * * 1-5"}})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "updatable" and body["schedule"] == {"cron": "15 */2 * * 1-5"}
    assert body["next_run_at"] is not None


def test_it_creates_a_static_segment_without_conditions(marketer, shop):
    response = marketer.post(_url(shop), {"name": "Fair visitors", "kind": "static", "slug": "fair"})
    assert response.status_code == 201, response.content
    assert (response.json()["slug"], response.json()["conditions"]) == ("fair", None)


@pytest.mark.parametrize(("node", "loc", "words"), [
    (field("shoe_size", "eq", "42"), ["conditions", "items", 0, "field"], "no field"),
    (field("points", "gt", "lots"), ["conditions", "items", 0, "value"], ""),
    (field("points", "contains", "1"), ["conditions", "items", 0, "operator"], "does not apply"),
    (field("signup", "in_last_days", 10**9), ["conditions", "items", 0, "value"], "between"),
    (group(event("no_such_event")), ["conditions", "items", 0, "items", 0, "event"], "no event type"),
    (event("message.opened", window={"last_days": 10**9}), ["conditions", "items", 0, "window", "last_days"], "between"),
    ({"type": "subscription", "resource": 999999, "channel": "email"}, ["conditions", "items", 0, "resource"], "no resource"),
    ({"type": "segment", "segment": 999999}, ["conditions", "items", 0, "segment"], "no segment"),
    ({"type": "teleport"}, ["conditions", "items", 0, "type"], "not a condition type"),
])
def test_bad_conditions_are_refused_naming_the_node(marketer, shop, node, loc, words):
    response = marketer.post(_url(shop), {"name": "Bad", "conditions": group(node)})
    assert response.status_code == 422, response.content
    error = _error(response)
    assert error["code"] == "validation_error"
    assert error["details"][0]["loc"] == loc
    assert words in error["details"][0]["message"]
    assert not Segment.objects.exists()


def test_a_root_that_is_not_a_group_is_refused(marketer, shop):
    response = marketer.post(_url(shop), {"name": "Bad", "conditions": field("city", "set")})
    assert response.status_code == 422
    assert _locs(response) == [["conditions"]]


@pytest.mark.parametrize(("schedule", "loc"), [
    ({"cron": "* * * * *"}, ["schedule", "cron"]),
    ({"cron": "*/5 * * * *"}, ["schedule", "cron"]),
    ({"every_hours": 0}, ["schedule", "every_hours"]),
    ({"every_seconds": 1}, ["schedule"]),
])
def test_a_schedule_more_often_than_hourly_is_refused(marketer, shop, schedule, loc):
    response = marketer.post(_url(shop), {"name": "Too often", "kind": "updatable",
                                          "conditions": group(field("city", "set")), "schedule": schedule})
    assert response.status_code == 422, response.content
    assert _locs(response) == [loc]


def test_an_updatable_segment_needs_a_schedule(marketer, shop):
    response = marketer.post(_url(shop), {"name": "No schedule", "kind": "updatable", "conditions": group()})
    assert response.status_code == 422
    assert _locs(response) == [["schedule"]]


@pytest.mark.parametrize(("body", "loc"), [
    ({"name": "X", "nmae": "typo"}, ["nmae"]),
    ({"name": "X", "kind": "sometimes"}, ["kind"]),
    ({"name": "X", "conditions": [1, 2]}, ["conditions"]),
    ({"name": ""}, ["name"]),
    ({"kind": "static"}, ["name"]),
])
def test_a_body_of_the_wrong_shape_is_refused(marketer, shop, body, loc):
    response = marketer.post(_url(shop), body)
    assert response.status_code == 422, response.content
    assert loc in _locs(response)


def test_a_slug_in_use_is_a_conflict(marketer, shop, vips):
    response = marketer.post(_url(shop), {"name": "Again", "slug": vips.slug, "kind": "static"})
    assert response.status_code == 409
    assert _locs(response) == [["slug"]]


# --- list and get ------------------------------------------------------------------------------------


def test_it_lists_segments_with_filters_and_a_cursor(analyst, shop, vips, fair):
    Segment.objects.filter(pk=fair.pk).update(state=Segment.State.BROKEN, problem="gone", problem_path="items[0].field")
    response = analyst.get(_url(shop), {"limit": 1})
    assert response.status_code == 200, response.content
    first = response.json()
    assert [s["id"] for s in first["items"]] == [fair.pk]  # newest first
    assert first["items"][0]["problem"] == {"loc": ["conditions", "items", 0, "field"], "message": "gone"}
    second = analyst.get(_url(shop), {"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [s["id"] for s in second["items"]] == [vips.pk] and second["next_cursor"] is None
    assert [s["id"] for s in analyst.get(_url(shop), {"kind": "dynamic"}).json()["items"]] == [vips.pk]
    assert [s["id"] for s in analyst.get(_url(shop), {"state": "broken"}).json()["items"]] == [fair.pk]
    assert [s["id"] for s in analyst.get(_url(shop), {"q": "vip"}).json()["items"]] == [vips.pk]
    assert analyst.get(_url(shop), {"kind": "weekly"}).status_code == 422


def test_it_answers_a_segment(analyst, vips):
    response = analyst.get(f"/api/v1/segments/{vips.pk}")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["name"], body["kind"], body["conditions"]) == (vips.pk, "Berlin VIPs", "dynamic", vips.conditions)


def test_another_accounts_segment_and_database_are_not_found(outsider, shop, vips, fair, people):
    for method, path in [
        ("get", f"/api/v1/segments/{vips.pk}"), ("patch", f"/api/v1/segments/{vips.pk}"),
        ("delete", f"/api/v1/segments/{vips.pk}"), ("post", f"/api/v1/segments/{vips.pk}/count"),
        ("post", f"/api/v1/segments/{vips.pk}/recalculate"), ("get", f"/api/v1/segments/{vips.pk}/members"),
        ("post", f"/api/v1/segments/{fair.pk}/members"), ("delete", f"/api/v1/segments/{fair.pk}/members"),
        ("get", f"/api/v1/segments/{vips.pk}/explain?profile={people['anna'].pk}"),
        ("get", f"/api/v1/segments/{vips.pk}/runs"),
        ("get", _url(shop)), ("post", _url(shop)), ("post", f"{_url(shop)}/count"),
    ]:
        body = {"name": "Mine", "conditions": group(), "profile_ids": [people["anna"].pk]}
        response = getattr(outsider, method)(path, body) if method in ("post", "patch") else getattr(outsider, method)(path)
        assert response.status_code == 404, (method, path, response.content)
    assert Segment.objects.get(pk=vips.pk).name == "Berlin VIPs"
    assert SegmentMember.objects.filter(segment_id=fair.pk).count() == 2


def test_an_unknown_segment_id_is_not_found(analyst):
    assert analyst.get("/api/v1/segments/99999999").status_code == 404
    assert analyst.get(f"/api/v1/segments/{2**70}").status_code == 404


# --- roles -------------------------------------------------------------------------------------------


def test_an_analyst_reads_but_cannot_write(analyst, shop, vips, fair, people):
    assert analyst.get(f"/api/v1/segments/{vips.pk}").status_code == 200
    assert analyst.post(f"/api/v1/segments/{vips.pk}/count").status_code == 200
    assert analyst.post(f"{_url(shop)}/count", {"conditions": group()}).status_code == 200
    writes = [
        analyst.post(_url(shop), {"name": "Mine", "kind": "static"}),
        analyst.patch(f"/api/v1/segments/{vips.pk}", {"name": "Renamed"}),
        analyst.delete(f"/api/v1/segments/{vips.pk}"),
        analyst.post(f"/api/v1/segments/{vips.pk}/recalculate"),
        analyst.post(f"/api/v1/segments/{fair.pk}/members", {"profile_ids": [people["ben"].pk]}),
        _delete_json(analyst, f"/api/v1/segments/{fair.pk}/members", {"profile_ids": [people["anna"].pk]}),
    ]
    assert [r.status_code for r in writes] == [403] * 6
    assert "Analyst" in _error(writes[0])["message"]
    assert Segment.objects.count() == 2 and Segment.objects.get(pk=vips.pk).name == "Berlin VIPs"
    assert SegmentMember.objects.filter(segment_id=fair.pk).count() == 2


# --- change and delete -------------------------------------------------------------------------------


def test_it_changes_only_what_is_sent(marketer, vips):
    response = marketer.patch(f"/api/v1/segments/{vips.pk}", {"name": "Berlin big spenders"})
    assert response.status_code == 200, response.content
    vips.refresh_from_db()
    assert vips.name == "Berlin big spenders" and vips.conditions["items"][0]["field"] == "city"
    response = marketer.patch(f"/api/v1/segments/{vips.pk}", {"conditions": group(field("points", "gte", 1))})
    assert response.status_code == 200
    assert response.json()["conditions"]["items"] == [{"type": "field", "field": "points", "operator": "gte", "value": 1}]


def test_a_change_that_would_make_a_cycle_is_refused(marketer, shop, vips):
    outer = segment_create(database=shop, name="Uses VIPs", kind="dynamic", actor=SYSTEM, compute=False,
                           conditions=group({"type": "segment", "segment": vips.pk}))
    response = marketer.patch(f"/api/v1/segments/{vips.pk}", {"conditions": group(
        field("city", "set"), {"type": "segment", "segment": outer.pk, "negate": True})})
    assert response.status_code == 422, response.content
    assert _locs(response) == [["conditions", "items", 1, "segment"]]
    assert "cycle" in _error(response)["details"][0]["message"]
    response = marketer.patch(f"/api/v1/segments/{vips.pk}", {"conditions": group({"type": "segment", "segment": vips.pk})})
    assert _locs(response) == [["conditions", "items", 0, "segment"]]


def test_a_bad_patch_is_refused_with_its_location(marketer, vips):
    response = marketer.patch(f"/api/v1/segments/{vips.pk}", {"kind": "updatable", "schedule": {"every_hours": "1/60"}})
    assert response.status_code == 422
    assert _locs(response) == [["schedule", "every_hours"]]
    response = marketer.patch(f"/api/v1/segments/{vips.pk}", {"colour": "red"})
    assert response.status_code == 422 and _locs(response) == [["colour"]]
    vips.refresh_from_db()
    assert vips.kind == "dynamic"


def test_it_deletes_a_segment_unless_another_uses_it(marketer, shop, vips, fair):
    segment_create(database=shop, name="Uses VIPs", kind="dynamic", actor=SYSTEM, compute=False,
                   conditions=group({"type": "segment", "segment": vips.pk}))
    response = marketer.delete(f"/api/v1/segments/{vips.pk}")
    assert response.status_code == 409 and _error(response)["code"] == "in_use"
    assert "Uses VIPs" in _error(response)["message"]
    assert marketer.delete(f"/api/v1/segments/{fair.pk}").status_code == 204
    assert not Segment.objects.filter(pk=fair.pk).exists()
    assert not SegmentMember.objects.filter(segment_id=fair.pk).exists()


# --- counts ------------------------------------------------------------------------------------------


def test_it_counts_a_saved_segment_without_storing(analyst, vips, fair):
    response = analyst.post(f"/api/v1/segments/{vips.pk}/count")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["count"], body["source"]) == (2, "conditions") and body["ms"] >= 0
    assert not SegmentRun.objects.exists() and Segment.objects.get(pk=vips.pk).size is None
    assert analyst.post(f"/api/v1/segments/{fair.pk}/count").json() | {"ms": 0} == {
        "count": 2, "ms": 0, "source": "members", "warnings": []}


def test_it_counts_conditions_that_are_not_saved(analyst, shop, people, add_event):
    add_event(people["cleo"], type_id("message.opened"), timezone.now() - timedelta(days=2), channel="email")
    tree = group(field("city", "eq", "Berlin"), event("message.opened"))
    response = analyst.post(f"{_url(shop)}/count", {"conditions": tree})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 1
    # No time window: every event of the type is read.
    assert [w["loc"] for w in body["warnings"]] == [["conditions", "items", 1]]


def test_counting_bad_conditions_points_at_the_node(analyst, shop, vips):
    response = analyst.post(f"{_url(shop)}/count", {"conditions": group(group(field("points", "between", 9, 1)))})
    assert response.status_code == 422
    assert _locs(response) == [["conditions", "items", 0, "items", 0, "value2"]]
    # As an edit of a segment: a cycle is refused.
    response = analyst.post(f"{_url(shop)}/count", {"conditions": group({"type": "segment", "segment": vips.pk}),
                                                    "segment": vips.pk})
    assert _locs(response) == [["conditions", "items", 0, "segment"]]
    response = analyst.post(f"{_url(shop)}/count", {"conditions": group(), "segment": 99999999})
    assert response.status_code == 422 and _locs(response) == [["segment"]]
    assert analyst.post(f"{_url(shop)}/count", {}).status_code == 422


def test_a_segment_whose_field_was_removed_is_broken_not_empty(marketer, shop, vips):
    field_remove(field=Field.objects.get(database=shop, name="points"), actor=SYSTEM)
    response = marketer.post(f"/api/v1/segments/{vips.pk}/count")
    assert response.status_code == 409, response.content
    error = _error(response)
    assert error["code"] == "broken"
    assert error["details"][0]["loc"] == ["conditions", "items", 1, "field"]
    body = marketer.get(f"/api/v1/segments/{vips.pk}").json()
    assert body["state"] == "broken" and body["problem"]["loc"] == ["conditions", "items", 1, "field"]
    assert marketer.get(f"/api/v1/segments/{vips.pk}/members").status_code == 409
    assert marketer.post(f"/api/v1/segments/{vips.pk}/recalculate").status_code == 409
    # Fixing the conditions clears it.
    response = marketer.patch(f"/api/v1/segments/{vips.pk}", {"conditions": group(field("city", "eq", "Berlin"))})
    assert response.json()["state"] == "ok"
    assert marketer.get(f"/api/v1/segments/{vips.pk}/members").status_code == 200


# --- recalculation and runs --------------------------------------------------------------------------


def test_it_recalculates_in_a_job_and_lists_the_run(marketer, analyst, shop, people, django_capture_on_commit_callbacks):
    seg = segment_create(database=shop, name="Berliners", kind="updatable", actor=SYSTEM, compute=False,
                         conditions=group(field("city", "eq", "Berlin")), schedule={"every_hours": 6})
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer.post(f"/api/v1/segments/{seg.pk}/recalculate")
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["kind"] == "segments.recalculate"
    done = analyst.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded" and done["result"]["size"] == 3
    assert SegmentMember.objects.filter(segment_id=seg.pk).count() == 3
    runs = analyst.get(f"/api/v1/segments/{seg.pk}/runs").json()
    assert [(r["trigger"], r["size"], r["entered"], r["left"], r["job_id"]) for r in runs["items"]] == [
        ("api", 3, 3, 0, job["id"])]
    # Anna moves to Hamburg: the next run has one leaving.
    from profiles.services import profile_update

    profile_update(profile=people["anna"], values={"city": "Hamburg"}, actor=SYSTEM)
    segment_recalculate(segment=seg, trigger="schedule")
    runs = analyst.get(f"/api/v1/segments/{seg.pk}/runs", {"limit": 1}).json()
    assert [(r["trigger"], r["size"], r["entered"], r["left"]) for r in runs["items"]] == [("schedule", 2, 0, 1)]
    assert runs["next_cursor"] is not None
    assert analyst.get(f"/api/v1/segments/{seg.pk}").json()["size"] == 2


# --- members -----------------------------------------------------------------------------------------


def test_it_pages_the_members_of_a_stored_segment(analyst, fair, people):
    response = analyst.get(f"/api/v1/segments/{fair.pk}/members", {"limit": 1})
    assert response.status_code == 200, response.content
    first = response.json()
    assert [(m["profile_id"], m["keys"]) for m in first["items"]] == [(people["dirk"].pk, {"email": "dirk@example.com"})]
    assert first["items"][0]["added_at"] is not None
    second = analyst.get(f"/api/v1/segments/{fair.pk}/members", {"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [m["profile_id"] for m in second["items"]] == [people["anna"].pk] and second["next_cursor"] is None
    assert analyst.get(f"/api/v1/segments/{fair.pk}/members", {"cursor": "nope"}).status_code == 400


def test_the_members_of_a_dynamic_segment_are_evaluated_now(analyst, vips, people, make_profile):
    late = make_profile(email="late@example.com", city="Berlin", points=5001)
    body = analyst.get(f"/api/v1/segments/{vips.pk}/members").json()
    assert [m["profile_id"] for m in body["items"]] == [late.pk, people["ben"].pk, people["anna"].pk]
    assert body["items"][0]["added_at"] is None


def test_it_adds_and_removes_static_members_by_id(marketer, fair, people):
    url = f"/api/v1/segments/{fair.pk}/members"
    response = marketer.post(url, {"profile_ids": [people["ben"].pk, 99999999, people["anna"].pk]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["added"], body["size"]) == (1, 3)
    assert body["unknown"] == [{"index": 1, "value": 99999999, "message": body["unknown"][0]["message"]}]
    response = _delete_json(marketer, url, {"profile_ids": [people["anna"].pk, 88888888]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["removed"], body["size"]) == (1, 2) and [u["index"] for u in body["unknown"]] == [1]
    assert set(SegmentMember.objects.filter(segment_id=fair.pk).values_list("profile_id", flat=True)) == {
        people["ben"].pk, people["dirk"].pk}


def test_it_adds_and_removes_static_members_by_match_key(marketer, fair, people, globex_db):
    url = f"/api/v1/segments/{fair.pk}/members"
    response = marketer.post(url, {"key": "email", "values": ["CLEO@Example.com", "nobody@example.com", "not an email"]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["added"] == 1 and [u["index"] for u in body["unknown"]] == [1, 2]
    assert all(u["message"] for u in body["unknown"])
    assert SegmentMember.objects.filter(segment_id=fair.pk, profile_id=people["cleo"].pk).exists()
    response = _delete_json(marketer, url, {"key": "email", "values": ["dirk@example.com"]})
    assert response.json()["removed"] == 1
    response = marketer.post(url, {"key": "city", "values": ["Berlin"]})
    assert response.status_code == 422 and _locs(response) == [["key"]]


@pytest.mark.parametrize(("body", "loc"), [
    ({}, ["profile_ids"]),
    ({"profile_ids": [1], "key": "email", "values": ["a@example.com"]}, ["profile_ids"]),
    ({"key": "email"}, ["values"]),
    ({"values": ["a@example.com"]}, ["key"]),
    ({"profile_ids": ["one"]}, ["profile_ids", 0]),
    ({"profile_ids": list(range(1, 1002))}, ["profile_ids"]),
])
def test_a_members_request_of_the_wrong_shape_is_refused(marketer, fair, body, loc):
    response = marketer.post(f"/api/v1/segments/{fair.pk}/members", body)
    assert response.status_code == 422, response.content
    assert loc in _locs(response)


def test_only_static_members_are_changed_by_hand(marketer, vips, people):
    response = marketer.post(f"/api/v1/segments/{vips.pk}/members", {"profile_ids": [people["cleo"].pk]})
    assert response.status_code == 409 and _error(response)["code"] == "not_static"


def test_another_accounts_profiles_are_unknown_members(marketer, fair, globex_db):
    from profiles.services import profile_create

    gina = profile_create(database=globex_db, values={"email": "gina@globex.example.com"}, actor=SYSTEM)
    body = marketer.post(f"/api/v1/segments/{fair.pk}/members", {"profile_ids": [gina.pk]}).json()
    assert body["added"] == 0 and [u["value"] for u in body["unknown"]] == [gina.pk]
    body = marketer.post(f"/api/v1/segments/{fair.pk}/members", {"key": "email", "values": ["gina@globex.example.com"]}).json()
    assert body["added"] == 0 and len(body["unknown"]) == 1
    assert not SegmentMember.objects.filter(profile_id=gina.pk).exists()


# --- explain -----------------------------------------------------------------------------------------


def test_it_explains_why_a_profile_is_or_is_not_in(analyst, vips, people):
    response = analyst.get(f"/api/v1/segments/{vips.pk}/explain", {"profile": people["cleo"].pk})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["segment"], body["profile"], body["matched"], body["member"]) == (vips.pk, people["cleo"].pk, False, None)
    city, points = body["tree"]["items"]
    assert (city["matched"], points["matched"]) == (True, False)
    assert "10" in points["why"]
    assert analyst.get(f"/api/v1/segments/{vips.pk}/explain", {"profile": people["anna"].pk}).json()["matched"] is True


def test_explaining_needs_a_profile_of_the_segments_database(analyst, vips, globex_db):
    from profiles.services import profile_create

    gina = profile_create(database=globex_db, values={"email": "gina@globex.example.com"}, actor=SYSTEM)
    response = analyst.get(f"/api/v1/segments/{vips.pk}/explain", {"profile": gina.pk})
    assert response.status_code == 404 and _locs(response) == [["query", "profile"]]
    assert analyst.get(f"/api/v1/segments/{vips.pk}/explain").status_code == 422
    assert analyst.get(f"/api/v1/segments/{vips.pk}/explain", {"profile": "x"}).status_code == 422


def test_the_explanation_of_a_static_segment_without_conditions_is_its_membership(analyst, fair, people):
    body = analyst.get(f"/api/v1/segments/{fair.pk}/explain", {"profile": people["anna"].pk}).json()
    assert (body["matched"], body["member"], body["tree"]) == (True, True, None)


def test_the_openapi_document_describes_the_segment_routes(db, client):
    doc = client.get("/api/v1/openapi.json").json()
    paths = {p for p in doc["paths"] if "segment" in p}
    assert paths == {
        "/api/v1/databases/{db}/segments", "/api/v1/databases/{db}/segments/count", "/api/v1/segments/{segment_id}",
        "/api/v1/segments/{segment_id}/count", "/api/v1/segments/{segment_id}/recalculate",
        "/api/v1/segments/{segment_id}/members", "/api/v1/segments/{segment_id}/explain", "/api/v1/segments/{segment_id}/runs",
    }
    get = doc["paths"]["/api/v1/segments/{segment_id}"]["get"]
    assert [p["schema"]["type"] for p in get["parameters"] if p["name"] == "segment_id"] == ["integer"]
    assert set(doc["paths"]["/api/v1/segments/{segment_id}/members"]) == {"get", "post", "delete"}


def test_the_list_and_the_members_run_a_fixed_number_of_queries(analyst, shop, fair, vips, make_profile,
                                                                django_assert_max_num_queries):
    for i in range(5):
        segment_create(database=shop, name=f"Static {i}", kind="static", actor=SYSTEM, compute=False)
    segment_members_add(segment=fair, profile_ids=[make_profile(city="Bonn").pk for _ in range(20)], actor=SYSTEM)
    analyst.get(_url(shop))  # the token's first use writes last_used_at
    with django_assert_max_num_queries(2):
        assert len(analyst.get(_url(shop)).json()["items"]) == 7
    with django_assert_max_num_queries(3):
        assert len(analyst.get(f"/api/v1/segments/{fair.pk}/members").json()["items"]) == 22
