"""An import end to end in Chromium: upload a CSV, map its columns, watch the job's progress bar
finish (htmx polling), read the result and download the error report."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.access import Actor
from profiles.models import Profile
from profiles.services import database_create, field_add, profile_upsert
from profiles.tasks_import import profile_import_bulk_task

pytestmark = pytest.mark.browser

CSV = (
    "E-mail,First name,Town,Loyalty points,Notes\n"
    "ann@example.com,Ann,Berlin,10,vip\n"
    "bob@example.com,Bob,Paris,lots,\n"
    "cid@example.com,Cid,Rome,3,\n"
    "dee@example.com,Dee,,4,\n"
)


def test_a_marketer_imports_a_csv_and_watches_it_finish(page: Page, live_server, acme, alice, sign_in, tmp_path: Path, monkeypatch) -> None:
    system = Actor.system()
    db = database_create(account=acme, name="Shop customers", actor=system)
    field_add(database=db, name="city", label="City", type="string", actor=system)
    field_add(database=db, name="points", label="Loyalty points", type="integer", actor=system)
    profile_upsert(database=db, values={"email": "ann@example.com", "first_name": "Annie"}, actor=system)
    # The task waits until the page shows the queued job, then runs like a worker would.
    queued: list[int] = []
    monkeypatch.setattr(profile_import_bulk_task, "delay_on_commit", queued.append)
    path = tmp_path / "customers.csv"
    path.write_text(CSV, encoding="utf-8")

    sign_in(page, "alice@acme.test")
    page.goto(f"/databases/{db.slug}/")
    page.get_by_role("link", name="Import").first.click()
    page.get_by_label("CSV or XLSX file").set_input_files(str(path))
    page.get_by_role("button", name="Upload and map columns").click()

    # The mapping screen: headers with sample values, auto-matched by name or label.
    expect(page.get_by_test_id("mapping-form")).to_be_visible()
    expect(page.get_by_test_id("column-2")).to_contain_text("Berlin")
    expect(page.get_by_label("Import the column E-mail into")).to_have_value("email")
    expect(page.get_by_label("Import the column Loyalty points into")).to_have_value("points")
    expect(page.get_by_label("Import the column Town into")).to_have_value("")
    page.get_by_label("Import the column Town into").select_option("city")
    page.get_by_test_id("start-import").click()

    expect(page.get_by_test_id("import-state")).to_have_text("Queued")
    progress = page.locator(".job-progress")
    expect(progress).to_have_attribute("data-state", "queued")
    expect(progress).to_contain_text("Waiting for a worker")
    assert len(queued) == 1
    profile_import_bulk_task(queued[0])

    # Polling: the progress bar turns to done, then the result replaces the waiting section.
    expect(progress).to_have_attribute("data-state", "succeeded", timeout=15_000)
    counts = page.get_by_test_id("import-counts")
    expect(counts).to_be_visible(timeout=15_000)
    expect(counts.locator(".stat-card", has_text="Created")).to_contain_text("2")
    expect(counts.locator(".stat-card", has_text="Updated")).to_contain_text("1")
    expect(counts.locator(".stat-card", has_text="Failed")).to_contain_text("1")
    expect(page.get_by_test_id("import-state")).to_have_text("Done")
    expect(page.get_by_test_id("import-summary")).to_contain_text("4 rows read")
    expect(page.get_by_role("cell", name="'lots' is not a whole number")).to_be_visible()

    with page.expect_download() as download:
        page.get_by_test_id("error-report").click()
    report = Path(download.value.path()).read_text(encoding="utf-8-sig").splitlines()
    assert report == ["row,column,value,reason", "3,Loyalty points,lots,'lots' is not a whole number"]
    assert Profile.objects.get(database=db, email="ann@example.com").first_name == "Ann"
    assert Profile.objects.get(database=db, email="cid@example.com").data == {"city": "Rome", "points": 3}
