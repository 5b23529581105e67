"""The segment pages: the list, the builder (plain form posts, htmx partials, the live count,
errors at the condition), a segment's page, static members, delete and duplicate, the
explainer, the profile card's tab; who may do what, and another account's segment is a 404."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone as tz

from accounts.access import Actor
from accounts.models import Job
from history.services import EventIn, events_ingest
from profiles.models import Profile, ProfileDatabase
from profiles.services import database_create, field_add, profile_create
from segments.models import Segment, SegmentMember, SegmentRun
from segments.services import segment_create, segment_recalculate
from segments.views import card

SYSTEM = Actor.system()
HTMX = {"HX-Request": "true"}

BERLIN_VIPS = {"type": "group", "op": "and", "negate": False, "items": [
    {"type": "field", "field": "city", "operator": "eq", "value": "Berlin"},
    {"type": "field", "field": "loyalty_points", "operator": "gt", "value": 5000},
]}


@pytest.fixture
def shop_db(acme) -> ProfileDatabase:
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", actor=SYSTEM)
    field_add(database=db, name="loyalty_points", label="Loyalty points", type="integer", actor=SYSTEM)
    field_add(database=db, name="tier", label="Tier", type="enum", choices=["gold", "silver"], actor=SYSTEM)
    return db


@pytest.fixture
def people(shop_db) -> dict[str, Profile]:
    def make(email: str, name: str, city: str, points: int) -> Profile:
        return profile_create(database=shop_db, actor=SYSTEM, values={
            "email": email, "first_name": name, "city": city, "loyalty_points": points})

    out = {
        "anna": make("anna@shop.example", "Anna", "Berlin", 6000),
        "ben": make("ben@shop.example", "Ben", "Berlin", 100),
        "cleo": make("cleo@shop.example", "Cleo", "Paris", 9000),
    }
    events_ingest(account=shop_db.account, source="test", events=[
        EventIn("message.opened", out["anna"].pk, tz.now() - timedelta(days=3), channel="email"),
        EventIn("message.opened", out["cleo"].pk, tz.now() - timedelta(days=60), channel="email"),
    ])
    return out


@pytest.fixture
def vips(shop_db, people) -> Segment:
    return segment_create(database=shop_db, name="Berlin VIPs", kind="dynamic", conditions=BERLIN_VIPS, actor=SYSTEM)


@pytest.fixture
def static(shop_db, people) -> Segment:
    seg = segment_create(database=shop_db, name="Hand picked", kind="static", conditions=None, actor=SYSTEM)
    SegmentMember.objects.create(segment=seg, profile_id=people["ben"].pk)
    return seg


def _fields(tree_rows: dict[str, str | list[str]], **extra: str) -> dict[str, str | list[str]]:
    """A builder post: the segment's own fields plus c.* condition fields."""
    return {"name": "Berlin VIPs", "description": "", "kind": "dynamic", "schedule_type": "every_hours",
            "every_hours": "24", "c.type": "group", "c.op": "and", **tree_rows, **extra}


VIP_ROWS = {
    "c.items[0].type": "field", "c.items[0].field": "city", "c.items[0].operator": "eq", "c.items[0].value": "Berlin",
    "c.items[1].type": "field", "c.items[1].field": "loyalty_points", "c.items[1].operator": "gt",
    "c.items[1].value": "5000",
}


# --- the list --------------------------------------------------------------------------------------


def test_it_lists_a_databases_segments_with_kind_size_and_state(login, alice, vips, static):
    segment_recalculate(segment=vips)
    Segment.objects.filter(pk=static.pk).update(state=Segment.State.BROKEN, problem="items[0].field: there is no field 'x'")
    response = login(alice).get(reverse("segments:list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Berlin VIPs" in html and "Hand picked" in html
    assert 'class="badge kind-dynamic"' in html
    assert "seg-state-broken" in html and "there is no field" in html
    row = re.search(rf'<tr data-segment="{vips.pk}">.*?</tr>', html, re.S).group(0)
    assert re.search(r'data-testid="size">\s*1\s*<', row)


def test_the_empty_list_offers_a_new_segment_to_marketers_only(login, alice, bob, shop_db):
    html = login(alice).get(reverse("segments:list")).content.decode()
    assert "No segments in Shop customers yet" in html
    assert f'href="/segments/new/?db={shop_db.slug}"' in html
    html = login(bob).get(reverse("segments:list")).content.decode()
    assert "No segments in Shop customers yet" in html
    assert "/segments/new/" not in html


def test_the_list_switches_database_and_searches_as_an_htmx_partial(login, alice, acme, vips):
    other = database_create(account=acme, name="App users", actor=SYSTEM)
    segment_create(database=other, name="App fans", kind="dynamic", conditions={"type": "group", "op": "and", "items": []},
                   actor=SYSTEM)
    client = login(alice)
    html = client.get(reverse("segments:list"), {"db": other.slug}).content.decode()
    assert "App fans" in html and "Berlin VIPs" not in html
    assert 'data-testid="database-switch"' in html
    response = client.get(reverse("segments:list"), {"db": vips.database.slug, "q": "berlin"},
                          headers={**HTMX, "HX-Target": "segments"})
    html = response.content.decode()
    assert html.lstrip().startswith('{# The segments') or html.lstrip().startswith("<div id=\"segments\"")
    assert "Berlin VIPs" in html and "<html" not in html
    # Clearing the search keeps the database.
    assert f'href="{reverse("segments:list")}?db={vips.database.slug}">Clear</a>' in html


def test_an_unknown_database_is_a_404(login, alice, shop_db, charlie, globex):
    assert login(alice).get(reverse("segments:list"), {"db": "nope"}).status_code == 404
    # Another account's database slug is unknown here too.
    assert login(charlie, globex).get(reverse("segments:list"), {"db": shop_db.slug}).status_code == 404


# --- the builder -----------------------------------------------------------------------------------


def test_the_builder_offers_the_schema_the_catalogue_resources_and_segments(login, alice, shop_db, static):
    html = login(alice).get(reverse("segments:create"), {"db": shop_db.slug}).content.decode()
    assert 'id="segment-form"' in html and 'name="conditions"' in html
    assert "No conditions yet" in html
    for kind in ("field", "event", "subscription", "segment", "sample", "group"):
        assert f'data-testid="add-{kind}"' in html
    assert 'hx-trigger="load, input changed delay:600ms from:#builder' in html


def test_a_marketer_saves_a_segment_from_plain_form_fields(login, alice, shop_db, people):
    response = login(alice).post(f"{reverse('segments:create')}?db={shop_db.slug}", _fields(VIP_ROWS, action="save"))
    segment = Segment.objects.get(name="Berlin VIPs")
    assert response.status_code == 302 and response["Location"] == segment.get_absolute_url()
    assert segment.kind == "dynamic" and segment.database == shop_db
    assert segment.conditions["items"] == [
        {"type": "field", "field": "city", "operator": "eq", "value": "Berlin"},
        {"type": "field", "field": "loyalty_points", "operator": "gt", "value": 5000},
    ]


def test_a_tree_posted_as_json_alone_is_saved(login, alice, shop_db, people):
    data = {"name": "From JSON", "kind": "dynamic", "conditions": json.dumps(BERLIN_VIPS), "action": "save"}
    response = login(alice).post(f"{reverse('segments:create')}?db={shop_db.slug}", data)
    assert response.status_code == 302
    assert Segment.objects.get(name="From JSON").conditions["items"][1]["value"] == 5000


def test_an_updatable_segment_keeps_its_schedule_and_refuses_every_minute(login, alice, shop_db, people):
    client = login(alice)
    url = f"{reverse('segments:create')}?db={shop_db.slug}"
    data = _fields(VIP_ROWS, kind="updatable", schedule_type="cron", cron="* * * * *", action="save")
    response = client.post(url, data)
    assert response.status_code == 400
    assert "more often than once an hour" in response.content.decode()
    response = client.post(url, {**data, "schedule_type": "daily_at", "daily_at": "06:30"})
    assert response.status_code == 302
    assert Segment.objects.get(name="Berlin VIPs").schedule == {"daily_at": "06:30"}


def test_errors_show_at_the_condition_they_name(login, alice, shop_db, people):
    rows = {**VIP_ROWS, "c.items[1].value": "lots", "c.items[2].type": "event", "c.items[2].event": "no_such_event",
            "c.items[2].count_op": "exists", "c.items[2].window": "last_days", "c.items[2].last_days": "1000000000"}
    response = login(alice).post(f"{reverse('segments:create')}?db={shop_db.slug}", _fields(rows, action="save"))
    assert response.status_code == 400
    assert not Segment.objects.exists()
    html = response.content.decode()
    # The row of the bad value is marked and carries the core's message in its error slot.
    row = re.search(r'<div class="cond cond-row cond-field has-error" id="node-1".*?<div class="cond-errors" id="node-1-errors">(.*?)</div>\s*</div>', html, re.S)
    assert row and "whole number" in row.group(1)
    assert re.search(r'name="c.items\[1\].value" value="lots" step="1" class="form-control form-control-sm w-num is-invalid"', html)
    assert re.search(r'id="node-2-errors"><div class="cond-error">there is no event type', html)
    # What was typed is kept.
    assert 'value="Berlin"' in html


def test_htmx_adds_and_removes_conditions_without_saving(login, alice, shop_db):
    client = login(alice)
    url = f"{reverse('segments:create')}?db={shop_db.slug}"
    response = client.post(url, _fields(VIP_ROWS, action="add::event"), headers=HTMX)
    assert response.status_code == 200 and response["HX-Trigger"] == "segments:changed"
    html = response.content.decode()
    assert "<html" not in html and 'id="node-2"' in html and 'data-kind="event"' in html
    assert 'name="c.items[2].event"' in html and 'value="Berlin"' in html
    response = client.post(url, _fields(VIP_ROWS, action="add::group"), headers=HTMX)
    assert 'name="c.items[2].items[0].type" value="field"' in response.content.decode()
    response = client.post(url, _fields(VIP_ROWS, action="remove:items[0]"), headers=HTMX)
    html = response.content.decode()
    assert 'name="c.items[0].field"' in html and 'name="c.items[1].field"' not in html
    assert '<option value="loyalty_points" selected>' in html
    assert not Segment.objects.exists()


def test_without_javascript_the_buttons_answer_the_whole_page(login, alice, shop_db):
    response = login(alice).post(f"{reverse('segments:create')}?db={shop_db.slug}", _fields(VIP_ROWS, action="add::sample"))
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html and 'name="c.items[2].percent"' in html


def test_a_rows_refresh_offers_the_operators_and_input_of_its_fields_type(login, alice, shop_db):
    client = login(alice)
    url = f"{reverse('segments:create')}?db={shop_db.slug}"
    rows = {"c.items[0].type": "field", "c.items[0].field": "loyalty_points", "c.items[0].operator": "eq"}
    html = client.post(url, _fields(rows, action="refresh:items[0]"), headers=HTMX).content.decode()
    assert html.lstrip().startswith("{#") or html.lstrip().startswith('<div class="cond cond-row')
    assert 'id="node-0"' in html and 'type="number" name="c.items[0].value"' in html
    assert '<option value="between">is between</option>' in html
    rows["c.items[0].field"] = "tier"
    html = client.post(url, _fields(rows, action="refresh:items[0]"), headers=HTMX).content.decode()
    assert '<select name="c.items[0].value"' in html and '<option value="gold">' in html
    assert '<option value="gt"' not in html
    rows.update({"c.items[0].field": "birthday", "c.items[0].operator": "anniversary_in_days"})
    html = client.post(url, _fields(rows, action="refresh:items[0]"), headers=HTMX).content.decode()
    assert 'aria-label="Days"' in html


def test_the_live_count_answers_how_many_how_fast_and_who(login, alice, shop_db, people):
    rows = {**VIP_ROWS, "c.items[2].type": "event", "c.items[2].event": "message.opened", "c.items[2].count_op": "exists",
            "c.items[2].window": "last_days", "c.items[2].last_days": "30", "c.items[2].channel": "email"}
    response = login(alice).post(f"{reverse('segments:create')}?db={shop_db.slug}", _fields(rows, action="count"),
                                 headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r'data-testid="live-count">1<', html)
    assert 'data-testid="count-ms"' in html
    assert f'/databases/{shop_db.slug}/profiles/{people["anna"].pk}/' in html and "Cleo" not in html
    # The hidden JSON follows (out of band), and each condition's error slot is cleared.
    assert 'id="id_conditions"' in html and "hx-swap-oob" in html and "message.opened" in html
    assert 'id="node-2-errors" hx-swap-oob="true"></div>' in html


def test_the_live_count_puts_errors_at_their_conditions_and_warns_of_costly_ones(login, alice, shop_db, people):
    client = login(alice)
    url = f"{reverse('segments:create')}?db={shop_db.slug}"
    bad = {**VIP_ROWS, "c.items[1].value": "many"}
    html = client.post(url, _fields(bad, action="count"), headers=HTMX).content.decode()
    assert 'data-testid="count-errors"' in html
    assert re.search(r'id="node-1-errors" hx-swap-oob="true"><div class="cond-error">[^<]*whole number', html)
    costly = {**VIP_ROWS, "c.items[2].type": "event", "c.items[2].event": "message.opened", "c.items[2].count_op": "exists",
              "c.items[2].window": ""}
    html = client.post(url, _fields(costly, action="count"), headers=HTMX).content.decode()
    assert 'data-testid="count-warning"' in html and "no time window" in html


def test_editing_keeps_the_tree_and_saves_changes(login, alice, vips):
    client = login(alice)
    html = client.get(reverse("segments:edit", args=[vips.pk])).content.decode()
    assert 'name="c.items[1].value" value="5000"' in html and 'value="Berlin VIPs"' in html
    rows = {**VIP_ROWS, "c.items[1].value": "7000"}
    response = client.post(reverse("segments:edit", args=[vips.pk]), _fields(rows, action="save"))
    assert response.status_code == 302
    vips.refresh_from_db()
    assert vips.conditions["items"][1]["value"] == 7000


def test_a_condition_on_a_deleted_field_is_kept_and_pointed_at(login, alice, vips, shop_db):
    from profiles.services import field_remove

    field_remove(field=shop_db.fields.get(name="city"), actor=SYSTEM)
    client = login(alice)
    html = client.get(reverse("segments:edit", args=[vips.pk])).content.decode()
    assert '<option value="city" selected>city (deleted)</option>' in html
    rows = {**VIP_ROWS}
    html = client.post(reverse("segments:edit", args=[vips.pk]), _fields(rows, action="count"), headers=HTMX).content.decode()
    assert re.search(r'id="node-0-errors" hx-swap-oob="true"><div class="cond-error">there is no field', html)


def test_without_a_database_the_builder_sends_you_to_the_list(login, alice):
    response = login(alice).get(reverse("segments:create"), follow=True)
    assert response.redirect_chain[-1][0] == reverse("segments:list")
    assert "create a database first" in response.content.decode()


def test_a_segment_cannot_use_itself(login, alice, vips):
    rows = {**VIP_ROWS, "c.items[2].type": "segment", "c.items[2].segment": str(vips.pk)}
    response = login(alice).post(reverse("segments:edit", args=[vips.pk]), _fields(rows, action="save"))
    assert response.status_code == 400
    assert "cannot contain itself" in response.content.decode() or "Choose a segment" in response.content.decode()


# --- one segment -----------------------------------------------------------------------------------


def test_the_segment_page_shows_conditions_in_words_size_chart_and_members(login, bob, vips, people):
    segment_recalculate(segment=vips)
    html = login(bob).get(vips.get_absolute_url()).content.decode()
    assert "City is Berlin" in html and "Loyalty points is more than 5000" in html
    assert 'id="segment-size-chart"' in html and 'id="segment-size-data"' in html
    assert f'data-profile="{people["anna"].pk}"' in html and f'data-profile="{people["ben"].pk}"' not in html
    # Bob reads; he gets no buttons that change it.
    assert 'data-testid="edit"' not in html and 'data-testid="recalculate"' not in html


def test_the_members_table_pages_as_an_htmx_partial(login, alice, static, people):
    response = login(alice).get(static.get_absolute_url(), headers={**HTMX, "HX-Target": "members"})
    html = response.content.decode()
    assert "<html" not in html and 'id="members"' in html and f'data-profile="{people["ben"].pk}"' in html
    assert 'data-testid="remove-member"' in html


def test_recalculate_runs_a_job_and_the_page_follows_it(login, alice, vips, django_capture_on_commit_callbacks):
    client = login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("segments:recalculate", args=[vips.pk]))
    job = Job.objects.get(kind="segments.recalculate")
    assert response.status_code == 302 and response["Location"] == f"{vips.get_absolute_url()}?job={job.pk}"
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED
    assert SegmentRun.objects.filter(segment=vips, finished_at__isnull=False).count() == 1
    html = client.get(response["Location"]).content.decode()
    assert f'id="job-{job.pk}"' in html and 'data-segment-job="segments.recalculate"' in html
    response = client.post(reverse("segments:recalculate", args=[vips.pk]), headers=HTMX)
    html = response.content.decode()
    assert "<html" not in html and html.count('class="job-progress"') == 1


def test_export_runs_a_job_that_offers_the_csv(login, alice, bob, vips, people, django_capture_on_commit_callbacks):
    assert login(bob).post(reverse("segments:export", args=[vips.pk])).status_code == 403
    client = login(alice)
    assert 'data-testid="export"' in client.get(vips.get_absolute_url()).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("segments:export", args=[vips.pk]))
    job = Job.objects.get(params__segment_id=vips.pk, kind__contains="export")
    assert response["Location"] == f"{vips.get_absolute_url()}?job={job.pk}"
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED and "anna@shop.example" in job.result_file.read().decode()
    assert 'data-testid="download"' in client.get(response["Location"]).content.decode()


def test_a_broken_segment_says_why_and_where(login, alice, vips):
    Segment.objects.filter(pk=vips.pk).update(state=Segment.State.BROKEN, problem="items[0].field: there is no field 'city'",
                                              problem_path="items[0].field")
    html = login(alice).get(vips.get_absolute_url()).content.decode()
    assert 'data-testid="problem"' in html and "there is no field" in html
    alert = re.search(r'data-testid="problem">(.*?)</div>\s*</div>', html, re.S).group(1)
    assert "<code>items[0].field</code>" in alert and "items[0].field: there" not in alert
    assert 'data-testid="members-problem"' in html


def test_static_members_are_added_from_pasted_values_and_a_csv_and_removed(login, alice, static, people):
    client = login(alice)
    url = reverse("segments:members_add", args=[static.pk])
    response = client.post(url, {"key": "email", "values": "anna@shop.example\nnobody@shop.example", "action": "add"},
                           follow=True)
    html = response.content.decode()
    assert "1 member added" in html and "nobody@shop.example" in html
    assert set(SegmentMember.objects.filter(segment=static).values_list("profile_id", flat=True)) == {
        people["anna"].pk, people["ben"].pk}
    csv_file = SimpleUploadedFile("people.csv", b"email,name\ncleo@shop.example,Cleo\n", content_type="text/csv")
    client.post(url, {"key": "email", "file": csv_file, "action": "add"})
    assert SegmentMember.objects.filter(segment=static, profile_id=people["cleo"].pk).exists()
    client.post(url, {"key": "email", "values": "cleo@shop.example", "action": "remove"})
    assert not SegmentMember.objects.filter(segment=static, profile_id=people["cleo"].pk).exists()
    client.post(reverse("segments:members_remove", args=[static.pk]), {"profile": str(people["ben"].pk)})
    assert set(SegmentMember.objects.filter(segment=static).values_list("profile_id", flat=True)) == {people["anna"].pk}


def test_members_are_not_added_by_hand_to_a_dynamic_segment(login, alice, vips):
    response = login(alice).post(reverse("segments:members_add", args=[vips.pk]),
                                 {"key": "email", "values": "anna@shop.example"}, follow=True)
    assert "Only static segments" in response.content.decode()


def test_delete_asks_for_the_name(login, alice, vips):
    client = login(alice)
    url = reverse("segments:delete", args=[vips.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {"confirm": "nope"}).status_code == 400
    response = client.post(url, {"confirm": "Berlin VIPs"})
    assert response.status_code == 302 and not Segment.objects.filter(pk=vips.pk).exists()


def test_duplicate_opens_the_copy_in_the_builder(login, alice, vips):
    response = login(alice).post(reverse("segments:duplicate", args=[vips.pk]))
    copy = Segment.objects.get(name="Berlin VIPs (copy)")
    assert response["Location"] == reverse("segments:edit", args=[copy.pk])
    assert copy.conditions == vips.conditions and copy.kind == vips.kind


def test_an_updatable_segments_run_lists_who_entered_and_left(login, bob, shop_db, people):
    seg = segment_create(database=shop_db, name="Berliners", kind="updatable", actor=SYSTEM, schedule={"every_hours": 1},
                         conditions={"type": "group", "op": "and", "items": [
                             {"type": "field", "field": "city", "operator": "eq", "value": "Berlin"}]})
    segment_recalculate(segment=seg)
    Profile.objects.filter(pk=people["ben"].pk).update(data={**people["ben"].data, "city": "Rome"})
    run = segment_recalculate(segment=seg)
    client = login(bob)
    html = client.get(seg.get_absolute_url()).content.decode()
    assert f'href="{reverse("segments:run", args=[seg.pk, run.pk])}"' in html
    html = client.get(reverse("segments:run", args=[seg.pk, run.pk])).content.decode()
    left = re.search(r'data-testid="left">(.*?)</ul>', html, re.S).group(1)
    assert "Ben" in left


# --- the explainer ---------------------------------------------------------------------------------


def test_the_explainer_marks_each_condition(login, bob, vips, people):
    client = login(bob)
    html = client.get(reverse("segments:explain", args=[vips.pk]), {"profile": "ben@shop.example"}).content.decode()
    assert 'data-testid="verdict">Does not match' in html
    nodes = re.findall(r'data-testid="explain-node" data-matched="(true|false)"', html)
    assert nodes == ["false", "true", "false"]
    html = client.get(reverse("segments:explain", args=[vips.pk]), {"profile": f"#{people['anna'].pk}"},
                      headers={**HTMX, "HX-Target": "explain-result"}).content.decode()
    assert "<html" not in html and "Matches the conditions" in html
    html = client.get(reverse("segments:explain", args=[vips.pk]), {"profile": "zed@shop.example"}).content.decode()
    assert "No profile in Shop customers has zed@shop.example" in html


# --- the profile card ------------------------------------------------------------------------------


@pytest.fixture
def card_tab():
    card.register()


def test_the_card_lists_the_profiles_segments_with_why_links(login, alice, card_tab, vips, static, people):
    anna = people["anna"]
    html = login(alice).get(reverse("profiles:profile_detail", args=[anna.database.slug, anna.pk]),
                            {"tab": "segments"}).content.decode()
    assert 'data-testid="segments-tab"' in html
    assert "Berlin VIPs" in html and "Hand picked" not in html.split('data-testid="add-to-segment"')[0]
    assert f'{reverse("segments:explain", args=[vips.pk])}?profile=%23{anna.pk}' in html
    assert f'<option value="{static.pk}">Hand picked</option>' in html


def test_the_card_adds_and_removes_the_profile_from_a_static_segment(login, alice, bob, card_tab, static, vips, people):
    anna = people["anna"]
    url = reverse("segments:card_membership", args=[anna.database.slug, anna.pk])
    assert login(bob).post(url, {"segment": static.pk, "action": "add"}).status_code == 403
    client = login(alice)
    response = client.post(url, {"segment": static.pk, "action": "add"})
    assert response["Location"].endswith("?tab=segments")
    assert SegmentMember.objects.filter(segment=static, profile_id=anna.pk).exists()
    client.post(url, {"segment": static.pk, "action": "remove"})
    assert not SegmentMember.objects.filter(segment=static, profile_id=anna.pk).exists()
    client.post(url, {"segment": vips.pk, "action": "add"})
    assert not SegmentMember.objects.filter(segment=vips).exists()


# --- access ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["create", "edit", "delete", "duplicate", "recalculate", "members_add", "members_remove"])
def test_an_analyst_cannot_change_segments(login, bob, vips, shop_db, name):
    url = reverse(f"segments:{name}", args=[] if name == "create" else [vips.pk])
    client = login(bob)
    assert client.post(url, _fields(VIP_ROWS, action="save")).status_code == 403
    if name in ("create", "edit", "delete"):
        assert client.get(url).status_code == 403


@pytest.mark.parametrize("name", ["detail", "edit", "delete", "duplicate", "recalculate", "export", "members_add",
                                  "members_remove", "explain"])
def test_another_accounts_segment_is_a_404(login, charlie, globex, vips, name):
    url = reverse(f"segments:{name}", args=[vips.pk])
    client = login(charlie, globex)
    for method in ("get", "post"):
        status = getattr(client, method)(url).status_code
        assert status in (404, 405), (method, status)
    assert client.get(url, headers=HTMX).status_code in (404, 405)


def test_another_accounts_run_and_card_are_404s(login, charlie, globex, vips, people):
    run = segment_recalculate(segment=vips)
    client = login(charlie, globex)
    assert client.get(reverse("segments:run", args=[vips.pk, run.pk])).status_code == 404
    anna = people["anna"]
    assert client.post(reverse("segments:card_membership", args=[anna.database.slug, anna.pk]),
                       {"segment": vips.pk}).status_code == 404


def test_the_segment_page_keeps_its_query_budget(login, alice, vips, django_assert_max_num_queries):
    segment_recalculate(segment=vips)
    client = login(alice)
    client.get(vips.get_absolute_url())
    with django_assert_max_num_queries(20):
        assert client.get(vips.get_absolute_url()).status_code == 200


def test_the_list_keeps_its_query_budget(login, alice, vips, static, django_assert_max_num_queries):
    client = login(alice)
    client.get(reverse("segments:list"))
    # session, user, memberships with their accounts, databases, the page (one page: no count)
    with django_assert_max_num_queries(5):
        assert client.get(reverse("segments:list")).status_code == 200
