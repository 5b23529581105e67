"""CSV export: cells written for spreadsheets, the export job from the list, the command."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.management import CommandError, call_command

from accounts.access import Actor
from accounts.models import AuditEvent, Job
from profiles.exporting import csv_cell, profiles_export
from profiles.models import ProfileDatabase
from profiles.services import database_create, field_add, profile_create

SYSTEM = Actor.system()


@pytest.fixture
def shop(acme) -> ProfileDatabase:
    acme.default_phone_region = "DE"
    acme.save()
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", indexed=True, actor=SYSTEM)
    field_add(database=db, name="points", label="Points", type="integer", actor=SYSTEM)
    field_add(database=db, name="vip", label="VIP", type="boolean", actor=SYSTEM)
    field_add(database=db, name="tags", label="Tags", type="list", actor=SYSTEM)
    field_add(database=db, name="prefs", label="Preferences", type="json", actor=SYSTEM)
    profile_create(database=db, values={"email": "anna@shop.example", "first_name": "Anna", "phone": "030 12345678",
                                        "birthday": "1990-02-03", "city": "Berlin", "points": -5, "vip": True,
                                        "tags": "new, app", "prefs": '{"size": "M", "ok": true}'}, actor=SYSTEM)
    profile_create(database=db, values={"email": "evil@shop.example", "first_name": "=HYPERLINK(\"http://x\")",
                                        "last_name": "@SUM(A1)", "city": "-1+cmd|' /C calc'!A0", "vip": False,
                                        "tags": "+danger"}, actor=SYSTEM)
    profile_create(database=db, values={"email": "ben@shop.example", "city": "Hamburg"}, actor=SYSTEM)
    return db


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


@pytest.mark.parametrize(
    ("value", "field_type", "cell"),
    [
        (None, "string", ""),
        (True, "boolean", "true"),
        (False, "boolean", "false"),
        (["a", "b"], "list", "a; b"),
        ({"a": [1, "ü"]}, "json", '{"a":[1,"ü"]}'),
        ("text", "json", '"text"'),
        (3, "json", "3"),
        (-5, "integer", "-5"),
        (2.5, "decimal", "2.5"),
        ("+493012345678", "phone", "+493012345678"),  # a number, not a formula
        ("-12", "string", "-12"),
        ("=1+2", "string", "'=1+2"),
        ("+cmd", "string", "'+cmd"),
        ("-1+cmd", "string", "'-1+cmd"),
        ("@SUM(A1)", "string", "'@SUM(A1)"),
        ("\tx", "text", "'\tx"),
        ("\rx", "text", "'\rx"),
        (["=x", "y"], "list", "'=x; y"),
        ("plain = fine", "string", "plain = fine"),
    ],
)
def test_a_cell_is_written_for_spreadsheets(value, field_type, cell):
    assert csv_cell(value, field_type) == cell


def test_the_export_streams_every_field_in_schema_order(shop):
    out = io.StringIO()
    assert profiles_export(database=shop, filters={}, out=out) == 3
    rows = _rows(out.getvalue())
    header = out.getvalue().splitlines()[0].split(",")
    assert header == list(shop.fields.values_list("name", flat=True))
    assert header[:2] == ["email", "phone"] and header[-5:] == ["city", "points", "vip", "tags", "prefs"]
    anna, evil, ben = rows
    assert anna["phone"] == "+493012345678" and anna["birthday"] == "1990-02-03" and anna["points"] == "-5"
    assert anna["vip"] == "true" and anna["tags"] == "new; app"
    assert json.loads(anna["prefs"]) == {"size": "M", "ok": True} and " " not in anna["prefs"]
    assert anna["created_at"].endswith("Z") and anna["updated_at"].endswith("Z")
    assert evil["first_name"] == "'=HYPERLINK(\"http://x\")" and evil["last_name"] == "'@SUM(A1)"
    assert evil["city"] == "'-1+cmd|' /C calc'!A0" and evil["tags"] == "'+danger" and evil["vip"] == "false"
    assert ben["vip"] == "" and ben["tags"] == "" and ben["prefs"] == ""


def test_the_export_applies_the_lists_search_and_filters(shop):
    out = io.StringIO()
    n = profiles_export(database=shop, filters={"q": "", "where": [["city", "eq", "Hamburg"]]}, out=out)
    assert n == 1 and [r["email"] for r in _rows(out.getvalue())] == ["ben@shop.example"]
    out = io.StringIO()
    assert profiles_export(database=shop, filters={"q": "ANNA@"}, out=out) == 1


def test_the_export_button_starts_a_job_with_the_current_filters(
    login, alice, shop, django_capture_on_commit_callbacks
):
    client = login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/databases/{shop.slug}/export/",
                               {"q": "", "f0": "vip", "op0": "yes", "f1": "city", "op1": "eq", "v1": ""})
    job = Job.objects.get(kind="profiles.export")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params == {"database_id": shop.pk, "q": "", "where": [["vip", "yes", ""]]}  # the empty row is left out
    assert job.state == "succeeded" and job.result == {"rows": 1} and job.created_by == alice
    assert AuditEvent.objects.filter(verb="profiles.exported", target_id=str(shop.pk)).exists()
    page = client.get(response["Location"])
    assert b"1 profile exported" in page.content and f"/jobs/{job.pk}/download/".encode() in page.content
    download = client.get(f"/jobs/{job.pk}/download/")
    assert download.status_code == 200 and download["Content-Disposition"].startswith('attachment; filename="profiles-shop-customers-')
    text = b"".join(download.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")  # spreadsheets read the BOM as UTF-8
    [row] = _rows(text)
    assert row["email"] == "anna@shop.example" and row["tags"] == "new; app"


def test_an_unfiltered_export_has_every_profile_and_neutralises_formulas(
    login, alice, shop, django_capture_on_commit_callbacks
):
    client = login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/databases/{shop.slug}/export/")
    job = Job.objects.get(kind="profiles.export")
    text = b"".join(client.get(f"/jobs/{job.pk}/download/").streaming_content).decode("utf-8")
    rows = _rows(text)
    assert [r["email"] for r in rows] == ["anna@shop.example", "evil@shop.example", "ben@shop.example"]
    assert rows[1]["first_name"].startswith("'=") and rows[1]["last_name"].startswith("'@")


def test_an_export_with_a_filter_that_does_not_apply_is_refused_before_a_job(login, alice, shop):
    response = login(alice).post(f"/databases/{shop.slug}/export/", {"f0": "vip", "op0": "gt", "v0": "1"})
    assert response.status_code == 302 and response["Location"] == f"/databases/{shop.slug}/"
    assert not Job.objects.exists()


def test_a_job_whose_field_was_removed_since_fails_with_the_reason(shop, acme, django_capture_on_commit_callbacks):
    from profiles.exporting import profiles_export_start
    from profiles.selectors import Condition

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = profiles_export_start(database=shop, actor=SYSTEM, conditions=[Condition("city", "eq", "Berlin")])
    shop.fields.filter(name="city").delete()
    for callback in callbacks:
        callback()
    job.refresh_from_db()
    assert job.state == "failed" and "no field 'city'" in job.error


def test_a_marketer_exports_but_an_analyst_may_not(login, bob, shop):
    assert login(bob).post(f"/databases/{shop.slug}/export/").status_code == 403
    assert not Job.objects.exists()


def test_the_command_writes_csv_to_stdout(shop):
    out, err = io.StringIO(), io.StringIO()
    call_command("export_profiles", "--account", "acme", "--database", shop.slug, stdout=out, stderr=err)
    rows = _rows(out.getvalue())
    assert len(rows) == 3 and rows[0]["email"] == "anna@shop.example" and not out.getvalue().startswith("\ufeff")
    assert "\n\n" not in out.getvalue().replace("\r\n", "\n")  # one line a row, no blank lines between
    assert "Exported 3 profiles of Shop customers." in err.getvalue()


def test_the_command_writes_a_file(shop, tmp_path):
    target = tmp_path / "out.csv"
    err = io.StringIO()
    call_command("export_profiles", "--account", "acme", "--database", shop.slug, "--output", str(target), stderr=err)
    rows = _rows(target.read_text(encoding="utf-8"))
    assert [r["city"] for r in rows] == ["Berlin", "'-1+cmd|' /C calc'!A0", "Hamburg"]
    assert str(target) in err.getvalue()


def test_the_command_names_what_it_cannot_find(shop, globex):
    with pytest.raises(CommandError, match="no account 'nope'"):
        call_command("export_profiles", "--account", "nope", "--database", shop.slug)
    with pytest.raises(CommandError, match="Globex has no profile database"):
        call_command("export_profiles", "--account", "globex", "--database", shop.slug)
