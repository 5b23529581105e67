from __future__ import annotations

import csv
import io
from datetime import timedelta

from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.jobs import job_claim, job_create, jobs_sweep
from accounts.models import AuditEvent, Job


def _export(client, django_capture_on_commit_callbacks, **data):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/settings/audit/export/", data)
    assert response.status_code == 302
    return Job.objects.get(pk=int(response["Location"].rstrip("/").split("/")[-1]))


def test_it_exports_the_audit_log_in_the_background(login, olivia, acme, django_capture_on_commit_callbacks):
    for i in range(5):
        audit_log(account=acme, actor=Actor(user=olivia), verb="account.updated", target_label=f"change {i}")
    audit_log(account=acme, actor=Actor(user=olivia), verb="api_token.created", target_label="=HYPERLINK(\"x\")")
    client = login(olivia)
    job = _export(client, django_capture_on_commit_callbacks)
    job.refresh_from_db()
    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.progress == job.total and job.percent == 100
    page = client.get(f"/jobs/{job.pk}/")
    assert b'data-state="succeeded"' in page.content and b"Download" in page.content
    download = client.get(f"/jobs/{job.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    rows = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode("utf-8-sig"))))
    assert len(rows) == job.total == AuditEvent.objects.filter(account=acme).count()
    targets = {r["target"] for r in rows}
    assert "'=HYPERLINK(\"x\")" in targets  # formulas are defused


def test_the_export_follows_the_filters(login, olivia, acme, django_capture_on_commit_callbacks):
    audit_log(account=acme, actor=Actor(user=olivia), verb="account.updated", target_label="keep me")
    audit_log(account=acme, actor=Actor(user=olivia), verb="api_token.created", target_label="drop me")
    job = _export(login(olivia), django_capture_on_commit_callbacks, verb="account.updated")
    job.refresh_from_db()
    assert job.params == {"verb": "account.updated"}
    assert job.result == {"rows": 1}


def test_the_progress_partial_polls_until_the_job_ends(login, olivia, acme):
    job = job_create(account=acme, kind="test", title="Long thing", total=200)
    client = login(olivia)
    headers = {"HX-Request": "true", "HX-Target": f"job-{job.pk}"}
    running = client.get(f"/jobs/{job.pk}/", headers=headers)
    assert b'hx-trigger="every 2s"' in running.content and b"<html" not in running.content
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, progress=50)
    assert b'aria-valuenow="25"' in client.get(f"/jobs/{job.pk}/", headers=headers).content
    Job.objects.filter(pk=job.pk).update(state=Job.State.SUCCEEDED)
    done = client.get(f"/jobs/{job.pk}/", headers=headers)
    assert b"hx-trigger" not in done.content and b'data-state="succeeded"' in done.content


def test_a_job_is_claimed_once(acme):
    job = job_create(account=acme, kind="test", title="t")
    assert job_claim(job_id=job.pk) is not None
    assert job_claim(job_id=job.pk) is None


def test_the_sweeper_fails_jobs_whose_worker_died(acme):
    job = job_create(account=acme, kind="test", title="t")
    job_claim(job_id=job.pk)
    fresh = job_create(account=acme, kind="test", title="fresh")
    job_claim(job_id=fresh.pk)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=11))
    assert jobs_sweep() == 1
    job.refresh_from_db()
    fresh.refresh_from_db()
    assert job.state == Job.State.FAILED and "stopped responding" in job.error
    assert fresh.state == Job.State.RUNNING


def test_another_accounts_job_and_file_are_404(login, charlie, acme, olivia, django_capture_on_commit_callbacks):
    job = _export(login(olivia), django_capture_on_commit_callbacks)
    other = login(charlie)
    assert other.get(f"/jobs/{job.pk}/").status_code == 404
    assert other.get(f"/jobs/{job.pk}/download/").status_code == 404


def test_analysts_watch_jobs_but_cannot_export_the_audit_log(login, bob):
    client = login(bob)
    assert client.get("/jobs/").status_code == 200
    assert client.post("/settings/audit/export/").status_code == 403
