"""The import pages: upload, mapping, the job, the result and the error report; who may do what;
and the command-line import."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.access import Actor
from accounts.models import Job
from profiles.models import Profile, ProfileChange, ProfileDatabase, ProfileImport
from profiles.services import database_create, field_add

SYSTEM = Actor.system()
CSV = (
    "E-mail,First name,City,Loyalty points,Notes\n"
    "ann@example.com,Ann,Berlin,10,vip\n"
    "bob@example.com,Bob,Paris,lots,\n"
    'eve@example.com,"=HYPERLINK(""http://evil"")",Rome,3,\n'
)


@pytest.fixture
def shop(acme) -> ProfileDatabase:
    db = database_create(account=acme, name="Shop", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", actor=SYSTEM)
    field_add(database=db, name="points", label="Loyalty points", type="integer", actor=SYSTEM)
    return db


def upload(client, db: ProfileDatabase, content: bytes | str, name: str = "customers.csv"):
    data = content.encode() if isinstance(content, str) else content
    return client.post(reverse("profiles:import_upload", args=[db.slug]), {"file": SimpleUploadedFile(name, data)})


def url(db: ProfileDatabase, imp: ProfileImport, suffix: str = "") -> str:
    if suffix == "errors.csv":
        return reverse("profiles:import_errors", args=[db.slug, imp.pk])
    return reverse("profiles:import_detail", args=[db.slug, imp.pk])


def list_url(db: ProfileDatabase) -> str:
    return reverse("profiles:import_list", args=[db.slug])


def start(client, db, imp, capture, **overrides):
    data = {f"col-{k}": v for k, v in imp.mapping.items()} | {"match_key": "email", "mode": "upsert", "skip_erased": "on", "start": "1"}
    data.update(overrides)
    with capture(execute=True):
        return client.post(url(db, imp), data)


def test_it_uploads_a_csv_and_shows_the_columns_auto_mapped(login, alice, shop):
    client = login(alice)
    response = upload(client, shop, CSV)
    imp = ProfileImport.objects.get(database=shop)
    assert response.status_code == 302 and response["Location"] == url(shop, imp)
    assert (imp.state, imp.encoding, imp.delimiter, imp.created_by) == ("uploaded", "utf-8", ",", alice)
    assert imp.mapping == {"0": "email", "1": "first_name", "2": "city", "3": "points"}
    page = client.get(url(shop, imp))
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-testid="mapping-form"' in text and "Skip this column" in text and "Berlin" in text
    assert '<option value="city" selected>' in text


def test_it_runs_the_import_as_a_job_and_shows_the_result(login, alice, shop, django_capture_on_commit_callbacks):
    client = login(alice)
    upload(client, shop, CSV)
    imp = ProfileImport.objects.get(database=shop)
    response = start(client, shop, imp, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    imp.refresh_from_db()
    job = imp.job
    assert (job.kind, job.state, imp.state) == ("profiles.import", Job.State.SUCCEEDED, "succeeded")
    assert (imp.rows, imp.created, imp.updated, imp.failed) == (3, 2, 0, 1)
    assert sorted(Profile.objects.filter(database=shop).values_list("email", flat=True)) == ["ann@example.com", "eve@example.com"]
    page = client.get(url(shop, imp)).content.decode()
    assert 'data-testid="import-counts"' in page and "Download the error report" in page
    assert "lots" in page and "whole number" in page  # the first errors, on the page
    assert f'id="job-{job.pk}"' in page  # the shared progress partial


def test_the_error_report_names_row_column_value_and_reason_and_defuses_formulas(login, alice, shop, django_capture_on_commit_callbacks):
    client = login(alice)
    upload(client, shop, CSV + "zed@example.com,Zed,,=1+2\n")
    imp = ProfileImport.objects.get(database=shop)
    start(client, shop, imp, django_capture_on_commit_callbacks)
    response = client.get(url(shop, imp, "errors.csv"))
    assert response.status_code == 200 and response["Content-Disposition"].startswith('attachment; filename="customers-errors.csv"')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == {"row": "3", "column": "Loyalty points", "value": "lots", "reason": "'lots' is not a whole number"}
    assert rows[1] == {"row": "5", "column": "Loyalty points", "value": "'=1+2", "reason": "'=1+2' is not a whole number"}
    assert Profile.objects.get(email="eve@example.com").first_name == '=HYPERLINK("http://evil")'


def test_the_result_partial_polls_until_the_import_ends(login, alice, shop, django_capture_on_commit_callbacks):
    client = login(alice)
    upload(client, shop, CSV)
    imp = ProfileImport.objects.get(database=shop)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(url(shop, imp), {"col-0": "email", "match_key": "email", "mode": "upsert", "start": "1"})
    imp.refresh_from_db()
    headers = {"HX-Request": "true", "HX-Target": "import-result"}
    waiting = client.get(url(shop, imp), headers=headers).content.decode()
    assert "<html" not in waiting and 'hx-trigger="every 2s"' in waiting and 'data-finished="false"' in waiting
    page = client.get(url(shop, imp)).content.decode()
    assert 'hx-trigger="every 2s"' in page  # the job's progress bar polls too
    from profiles.tasks_import import profile_import_bulk_task

    profile_import_bulk_task(imp.pk)
    done = client.get(url(shop, imp), headers=headers).content.decode()
    assert "hx-trigger" not in done and 'data-testid="import-counts"' in done


def test_it_refuses_a_mapping_without_the_match_key_or_with_a_field_twice(login, alice, shop):
    client = login(alice)
    upload(client, shop, CSV)
    imp = ProfileImport.objects.get(database=shop)
    response = client.post(url(shop, imp), {"col-1": "first_name", "col-2": "first_name", "match_key": "email", "mode": "upsert"})
    assert response.status_code == 400
    text = response.content.decode()
    assert "both map to First name" in text and "the match key" in text
    imp.refresh_from_db()
    assert imp.state == "uploaded" and imp.job is None


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "The file is empty."), (bytes(range(256)) * 20, "binary data"), (b"email\n", "no data rows")],
)
def test_it_explains_files_it_cannot_import(login, alice, shop, content, message):
    response = upload(login(alice), shop, content)
    assert response.status_code == 400 and message in response.content.decode()
    assert not ProfileImport.objects.exists()


def test_it_reads_the_file_again_with_another_encoding(login, alice, shop):
    client = login(alice)
    upload(client, shop, "email;first_name\nivan@example.com;Иван\n".encode("cp1251"))
    imp = ProfileImport.objects.get(database=shop)
    assert (imp.encoding, imp.sample[0][1]) == ("cp1251", "Иван")
    client.post(url(shop, imp), {"encoding": "cp1252", "delimiter": ";", "reread": "1"})
    imp.refresh_from_db()
    assert imp.encoding == "cp1252" and imp.sample[0][1] != "Иван"


def test_an_analyst_sees_imports_but_cannot_start_one(login, bob, alice, shop):
    upload(login(alice), shop, CSV)
    imp = ProfileImport.objects.get(database=shop)
    client = login(bob)
    assert client.get(list_url(shop)).status_code == 200
    assert client.get(url(shop, imp)).status_code == 200
    assert client.get(reverse("profiles:import_upload", args=[shop.slug])).status_code == 403
    assert client.post(url(shop, imp), {"col-0": "email", "match_key": "email", "mode": "upsert"}).status_code == 403
    assert "Waiting for its columns" in client.get(url(shop, imp)).content.decode()


def test_another_accounts_import_is_404(login, alice, charlie, shop):
    upload(login(alice), shop, CSV)
    imp = ProfileImport.objects.get(database=shop)
    client = login(charlie)
    for path in (url(shop, imp), url(shop, imp, "errors.csv"), list_url(shop),
                 reverse("profiles:import_upload", args=[shop.slug])):
        assert client.get(path).status_code == 404, path
    assert client.post(url(shop, imp), {"col-0": "email", "match_key": "email", "mode": "upsert"}).status_code == 404


def test_the_import_list_shows_imports_of_this_database(login, alice, shop, django_capture_on_commit_callbacks):
    client = login(alice)
    upload(client, shop, CSV, name="spring.csv")
    start(client, shop, ProfileImport.objects.get(database=shop), django_capture_on_commit_callbacks)
    page = client.get(list_url(shop)).content.decode()
    assert "spring.csv" in page and "2 created" in page and "1 failed" in page


def test_a_failed_import_says_why_and_stores_nothing(login, alice, shop, django_capture_on_commit_callbacks):
    client = login(alice)
    upload(client, shop, CSV)
    imp = ProfileImport.objects.get(database=shop)
    imp.file.storage.delete(imp.file.name)  # the stored upload went missing
    with pytest.raises(FileNotFoundError):
        start(client, shop, imp, django_capture_on_commit_callbacks)
    imp.refresh_from_db()
    assert imp.state == "failed" and "internal error" in imp.error and imp.job.state == Job.State.FAILED
    assert not Profile.objects.filter(database=shop).exists()
    page = client.get(url(shop, imp)).content.decode()
    assert "The import stopped" in page and "Nothing from this file was saved" in page


def test_an_import_whose_worker_died_shows_the_swept_job_error(login, alice, shop, django_capture_on_commit_callbacks):
    client = login(alice)
    upload(client, shop, CSV)
    imp = ProfileImport.objects.get(database=shop)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(url(shop, imp), {"col-0": "email", "match_key": "email", "mode": "upsert", "start": "1"})
    imp.refresh_from_db()
    ProfileImport.objects.filter(pk=imp.pk).update(state=ProfileImport.State.RUNNING)
    Job.objects.filter(pk=imp.job_id).update(state=Job.State.FAILED, error="The worker running this job stopped responding.")
    done = client.get(url(shop, imp), headers={"HX-Request": "true", "HX-Target": "import-result"}).content.decode()
    assert "hx-trigger" not in done and "stopped responding" in done and 'hx-swap-oob="true"' in done


# --- manage.py import_profiles ----------------------------------------------------------------------


def test_the_command_imports_and_ends_with_the_counts_line(acme, shop, tmp_path, capsys):
    path = tmp_path / "people.csv"
    path.write_text("email,first_name,city,points\na@example.com,Ann,Rome,1\nb@example.com,Bob,Oslo,x\n")
    errors = tmp_path / "errors.csv"
    call_command("import_profiles", str(path), account=acme.slug, database=shop.slug, errors=str(errors))
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "created=1 updated=0 unchanged=0 failed=1"
    assert list(csv.reader(errors.open(encoding="utf-8-sig")))[1] == ["3", "points", "x", "'x' is not a whole number"]
    call_command("import_profiles", str(path), account=acme.slug, database=shop.slug, mode="update")
    assert capsys.readouterr().out.strip().splitlines()[-1] == "created=0 updated=0 unchanged=1 failed=1"


def test_the_command_refuses_unknown_columns_unless_told_to_ignore_them(acme, shop, tmp_path, capsys):
    path = tmp_path / "people.csv"
    path.write_text("email,shoe_size,first_name\na@example.com,44,Ann\n")
    with pytest.raises(CommandError, match=r"Unknown column\(s\): 'shoe_size'\. Known fields: email, phone"):
        call_command("import_profiles", str(path), account=acme.slug, database=shop.slug)
    call_command("import_profiles", str(path), account=acme.slug, database=shop.slug, ignore_unknown=True)
    assert capsys.readouterr().out.strip().splitlines()[-1] == "created=1 updated=0 unchanged=0 failed=0"
    assert not ProfileChange.objects.exists()


def test_the_command_explains_a_bad_file_and_a_missing_match_key(acme, shop, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(CommandError, match="empty"):
        call_command("import_profiles", str(empty), account=acme.slug, database=shop.slug)
    keyless = tmp_path / "keyless.csv"
    keyless.write_text("first_name\nAnn\n")
    with pytest.raises(CommandError, match="match key"):
        call_command("import_profiles", str(keyless), account=acme.slug, database=shop.slug)
    with pytest.raises(CommandError, match="No profile database"):
        call_command("import_profiles", str(keyless), account=acme.slug, database="nope")


def test_it_refuses_an_upload_over_the_size_limit(login, alice, shop, settings):
    settings.PROFILE_IMPORT_MAX_BYTES = 50
    response = upload(login(alice), shop, CSV)
    assert response.status_code == 400 and "the limit is" in response.content.decode()


def test_the_mapping_options_reach_the_import_and_the_task_runs_once(login, alice, shop, django_capture_on_commit_callbacks):
    Profile.objects.create(account=shop.account, database=shop, email="ann@example.com", first_name="Annie", data={"city": "Oslo"})
    client = login(alice)
    upload(client, shop, CSV)
    imp = ProfileImport.objects.get(database=shop)
    start(client, shop, imp, django_capture_on_commit_callbacks, mode="insert", clear_empty="on", skip_erased="")
    imp.refresh_from_db()
    assert (imp.mode, imp.clear_empty, imp.skip_erased) == ("insert", True, False)
    assert (imp.created, imp.updated, imp.skipped, imp.failed) == (1, 0, 1, 1)
    assert Profile.objects.get(email="ann@example.com").first_name == "Annie"  # add only: left alone
    from profiles.tasks_import import profile_import_bulk_task

    profile_import_bulk_task(imp.pk)  # a redelivered task: the job is no longer queued, nothing runs
    assert Profile.objects.filter(database=shop).count() == 2
    assert client.post(url(shop, imp), {"col-0": "email", "match_key": "email", "mode": "upsert", "start": "1"}).status_code == 302
    assert Job.objects.filter(kind="profiles.import").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_a_long_import_job_alive(acme, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from profiles import tasks_import

    old = timezone.now() - timedelta(minutes=30)
    job = Job.objects.create(account=acme, kind="profiles.import", title="Big file", state=Job.State.RUNNING, heartbeat_at=old)
    monkeypatch.setattr(tasks_import._Heartbeat, "EVERY", 0.05)
    beat = tasks_import._Heartbeat(job.pk)
    beat.start()
    try:
        for _ in range(100):
            job.refresh_from_db()
            if job.heartbeat_at > old:
                break
            beat.done.wait(0.05)
    finally:
        beat.stop()
    assert job.heartbeat_at > old and not beat.is_alive()
