"""The suppression pages: the list, adding and removing, the CSV import (a Job), the export, the command."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from accounts.access import Actor
from accounts.models import AuditEvent, Job
from resources.models import Suppression
from resources.services import suppression_add
from resources.suppressions_io import suppressions_import

SYSTEM = Actor.system()


@pytest.fixture
def listed(acme):
    acme.default_phone_region = "DE"
    acme.save()
    rows = [
        suppression_add(account=acme, kind="email", value="spam@example.com", reason="complaint", actor=SYSTEM)[0],
        suppression_add(account=acme, kind="domain", value="mailinator.com", reason="role", actor=SYSTEM)[0],
        suppression_add(account=acme, kind="phone", value="+4915112345678", actor=SYSTEM)[0],
    ]
    return rows


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-suppression="\d+">\s*<td class="fw-medium text-break"[^>]*>([^<]+)</td>', html)


# --- the list ------------------------------------------------------------------------------------


def test_it_lists_suppressions_with_counts_per_kind(login, bob, listed, globex):
    suppression_add(account=globex, kind="email", value="other@example.com", actor=SYSTEM)
    r = login(bob).get(reverse("resources:suppression_list"))
    assert r.status_code == 200
    html = r.content.decode()
    assert sorted(_rows(html)) == ["+4915112345678", "mailinator.com", "spam@example.com"]
    for kind in ("email", "domain", "phone"):
        assert re.search(rf'data-testid="count-{kind}">1<', html)
    assert "Suppress an address" not in html and "Remove" not in html and "E-mail addresses" in html  # bob only looks


def test_it_searches_and_filters(login, bob, listed):
    client = login(bob)
    assert _rows(client.get(reverse("resources:suppression_list"), {"q": "mailin"}).content.decode()) == ["mailinator.com"]
    assert _rows(client.get(reverse("resources:suppression_list"), {"kind": "phone"}).content.decode()) == ["+4915112345678"]
    assert _rows(client.get(reverse("resources:suppression_list"), {"reason": "complaint"}).content.decode()) == ["spam@example.com"]
    partial = client.get(reverse("resources:suppression_list"), {"kind": "email"}, headers={"HX-Request": "true", "HX-Target": "suppressions"})
    assert partial.content.decode().lstrip().startswith('<div id="suppressions"')


def test_it_pages_with_a_cursor(login, bob, acme):
    Suppression.objects.bulk_create([Suppression(account=acme, kind="email", value=f"p{i:02}@example.com") for i in range(30)])
    client = login(bob)
    html = client.get(reverse("resources:suppression_list"), {"sort": "value"}).content.decode()
    first = _rows(html)
    assert first == [f"p{i:02}@example.com" for i in range(25)]
    next_url = re.search(r'rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert _rows(client.get(next_url).content.decode()) == [f"p{i:02}@example.com" for i in range(25, 30)]


def test_it_adds_a_suppression(login, adam, acme):
    client = login(adam)
    r = client.post(reverse("resources:suppression_list"), {"kind": "email", "value": " Someone@Example.COM ", "reason": "legal",
                                                           "note": "asked by letter"})
    assert r.status_code == 302
    row = Suppression.objects.get(account=acme)
    assert (row.kind, row.value, row.reason, row.note, row.source) == ("email", "someone@example.com", "legal", "asked by letter", "ui")
    assert row.created_by_label == "adam@acme.test"
    # The same again changes nothing.
    assert client.post(reverse("resources:suppression_list"), {"kind": "email", "value": "someone@example.com",
                                                               "reason": "manual"}).status_code == 302
    assert Suppression.objects.filter(account=acme).count() == 1


def test_it_shows_an_invalid_value_on_its_field(login, adam, acme):
    r = login(adam).post(reverse("resources:suppression_list"), {"kind": "domain", "value": "not a domain", "reason": "manual"})
    assert r.status_code == 400
    assert "is not a domain name" in r.content.decode()
    assert 'is-invalid' in r.content.decode()
    assert not Suppression.objects.exists()


def test_it_removes_a_suppression(login, adam, listed, acme):
    client = login(adam)
    target = listed[0]
    assert client.get(reverse("resources:suppression_remove", args=[target.pk])).status_code == 405
    assert client.post(reverse("resources:suppression_remove", args=[target.pk])).status_code == 302
    assert not Suppression.objects.filter(pk=target.pk).exists()
    assert AuditEvent.objects.filter(account=acme, verb="suppression.removed").count() == 1


def test_analysts_and_marketers_cannot_change_the_list(login, alice, bob, listed):
    for user in (alice, bob):
        client = login(user)
        assert client.post(reverse("resources:suppression_list"), {"kind": "email", "value": "x@example.com",
                                                                   "reason": "manual"}).status_code == 403
        assert client.post(reverse("resources:suppression_remove", args=[listed[0].pk])).status_code == 403
        assert client.get(reverse("resources:suppression_import")).status_code == 403
        upload = SimpleUploadedFile("s.csv", b"x@example.com\n", content_type="text/csv")
        assert client.post(reverse("resources:suppression_import"), {"file": upload}).status_code == 403
    assert Suppression.objects.count() == 3


def test_charlie_gets_404_for_another_accounts_suppression_and_import(login, adam, charlie, listed):
    upload = SimpleUploadedFile("s.csv", b"x@example.com\n", content_type="text/csv")
    r = login(adam).post(reverse("resources:suppression_import"), {"file": upload})
    job_pk = int(r.url.rstrip("/").rsplit("/", 1)[-1])
    client = login(charlie)
    assert client.post(reverse("resources:suppression_remove", args=[listed[0].pk])).status_code == 404
    assert client.get(reverse("resources:suppression_import_detail", args=[job_pk])).status_code == 404
    assert "spam@example.com" not in client.get(reverse("resources:suppression_list")).content.decode()
    assert Suppression.objects.filter(pk=listed[0].pk).exists()


# --- import --------------------------------------------------------------------------------------

CSV = (
    "value,kind,reason,note\n"
    "Spam@Example.com,,complaint,again\n"      # listed already (normalised)
    "new@example.com,email,,\n"                 # added, reason imported
    "@tempmail.example,,legal,\n"               # a domain, guessed
    "015112345679,phone,manual,\n"              # national format, region DE
    "not-an-address@,email,,\n"                 # invalid
    "x@example.com,fax,,\n"                     # unknown kind
    "y@example.com,email,because,\n"            # unknown reason
    "=HYPERLINK(\"http://evil\"),email,,\n"     # invalid, and a formula in the report
    "new@example.com,email,,\n"                 # the same row twice
    "\n"
)


def test_it_imports_a_csv_as_a_job_and_reports_bad_rows(login, adam, listed, acme, django_capture_on_commit_callbacks):
    client = login(adam)
    upload = SimpleUploadedFile("list.csv", CSV.encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(reverse("resources:suppression_import"), {"file": upload})
    assert r.status_code == 302
    job = Job.objects.get(account=acme, kind="suppressions.import")
    assert r.url == reverse("resources:suppression_import_detail", args=[job.pk])
    assert job.state == Job.State.SUCCEEDED  # eager Celery ran it at commit
    assert job.result["rows"] == 9
    assert (job.result["added"], job.result["already"], job.result["invalid"]) == (3, 2, 4)
    values = dict(Suppression.objects.filter(account=acme).values_list("value", "reason"))
    assert values["new@example.com"] == "imported"
    assert values["tempmail.example"] == "legal"
    assert values["+4915112345679"] == "manual"
    assert values["spam@example.com"] == "complaint"
    assert Suppression.objects.get(value="new@example.com").source == f"import:{job.pk}"
    report = list(csv.reader(io.StringIO(job.result_file.open("rb").read().decode("utf-8-sig"))))
    assert report[0] == ["row", "value", "reason"]
    assert [r[0] for r in report[1:]] == ["6", "7", "8", "9"]
    assert "unknown kind 'fax'" in report[2][2]
    assert "unknown reason 'because'" in report[3][2]
    assert report[4][1].startswith("'=")  # a spreadsheet must not run it
    assert AuditEvent.objects.filter(account=acme, verb="suppressions.imported").get().data["added"] == 3

    page = client.get(r.url).content.decode()
    assert re.search(r'data-testid="added">3<', page) and re.search(r'data-testid="invalid">4<', page)
    assert "not-an-address@" in page and reverse("accounts:job_download", args=[job.pk]) in page
    result = client.get(r.url, headers={"HX-Request": "true", "HX-Target": "import-result"}).content.decode()
    assert result.lstrip().startswith('<div id="import-result"') and "hx-trigger" not in result  # done: stops polling


def test_it_reads_a_file_without_a_header_and_with_semicolons(acme):
    data = "a@example.com;email\nb@example.com\nexample.org;domain;role;shared\n".encode("cp1252")
    result = suppressions_import(account=acme, binary=io.BytesIO(data), actor=SYSTEM)
    assert (result.rows, result.added, result.invalid) == (3, 3, 0)
    assert dict(Suppression.objects.values_list("value", "kind")) == {
        "a@example.com": "email", "b@example.com": "email", "example.org": "domain"}
    # Twice: nothing more.
    again = suppressions_import(account=acme, binary=io.BytesIO(data), actor=SYSTEM, batch_size=2)
    assert (again.added, again.already) == (0, 3)
    assert Suppression.objects.count() == 3


def test_an_export_imports_again(login, adam, listed, acme, globex):
    r = login(adam).get(reverse("resources:suppression_export"))
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    body = b"".join(r.streaming_content)
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0][:4] == ["kind", "value", "reason", "note"]
    assert {tuple(x[:3]) for x in rows[1:]} == {("email", "spam@example.com", "complaint"), ("domain", "mailinator.com", "role"),
                                                ("phone", "+4915112345678", "manual")}
    result = suppressions_import(account=globex, binary=io.BytesIO(body), actor=SYSTEM)
    assert (result.added, result.invalid) == (3, 0)
    assert login(adam).get(reverse("resources:suppression_export")).status_code == 200


def test_analysts_cannot_export(login, bob):
    assert login(bob).get(reverse("resources:suppression_export")).status_code == 403


def test_an_empty_upload_is_refused(login, adam):
    upload = SimpleUploadedFile("empty.csv", b"", content_type="text/csv")
    r = login(adam).post(reverse("resources:suppression_import"), {"file": upload})
    assert r.status_code == 400
    assert not Job.objects.exists()


def test_the_command_imports_a_file(acme, tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("value\nc@example.com\nbad@\n")
    errors = tmp_path / "errors.csv"
    out, err = io.StringIO(), io.StringIO()
    call_command("import_suppressions", "acme", str(path), "--errors", str(errors), stdout=out, stderr=err)
    assert "2 rows: 1 added, 0 already listed, 1 invalid" in out.getvalue()
    assert "row 3" in err.getvalue()
    assert Suppression.objects.filter(account=acme, value="c@example.com").exists()
    assert "bad@" in errors.read_text(encoding="utf-8-sig")
