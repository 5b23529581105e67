"""The status page in a real Chromium: what staff see, and the panels refreshing through htmx.
Screenshots go to $OPS_SHOTS_DIR when set (else the test's tmp dir)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.middleware import SESSION_KEY
from accounts.models import Job
from cdp.ops import beacons
from mailings.models import Run
from mailings.tests.factories import make_mailing, make_run, make_world, queue_entries

pytestmark = pytest.mark.browser


@pytest.fixture
def staff_page(browser, live_server, transactional_db, olivia, acme, settings, tmp_path) -> Iterator[Page]:
    settings.OPS_BEACON_DIR = str(tmp_path / "ops")
    olivia.is_staff = True
    olivia.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(olivia)
    session = client.session
    session[SESSION_KEY] = acme.pk
    session.save()
    # The suite's one browser (tests/browser/conftest.py): a second sync_playwright() in the same
    # session is refused by Playwright.
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live_server.url)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                          "url": live_server.url}])
    try:
        yield context.new_page()
    finally:
        context.close()
        beacons.clear("worker")
        beacons.clear("tick")


def _shot(page: Page, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("OPS_SHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_it_shows_staff_a_failing_system_and_then_a_healthy_one(staff_page, acme, globex, tmp_path):
    page = staff_page
    beacons.clear("worker")
    beacons.clear("tick")
    beacons.worker_record(hostname="bulk@web-1", queues=["default", "bulk"], concurrency=4)
    beacons.tick_record(name="mailings-tick", task="mailings.tasks.mailings_tick_task", seconds=0.08)
    world = make_world(globex, n=3, sms=False)
    run = make_run(make_mailing(world, name="Black Friday"))
    queue_entries(run)
    stale = timezone.now() - timedelta(minutes=40)
    Run.objects.filter(pk=run.pk).update(planned_at=stale)
    Job.objects.create(account=globex, kind="profile_import", title="Import customers.csv",
                       state=Job.State.RUNNING, progress=120_000, total=500_000, started_at=stale, heartbeat_at=stale)

    page.goto("/")
    page.get_by_test_id("nav-ops-status").click()
    expect(page.get_by_role("heading", name="System status")).to_be_visible()
    expect(page.get_by_test_id("check-workers")).to_contain_text("Failing")
    expect(page.get_by_test_id("check-workers")).to_contain_text("no worker for trigger, scenarios")
    expect(page.get_by_test_id("check-database")).to_contain_text("OK")
    expect(page.get_by_test_id("ops-queues")).to_contain_text("none")
    expect(page.get_by_test_id("ops-jobs")).to_contain_text("Import customers.csv")
    expect(page.get_by_test_id("ops-runs")).to_contain_text("Black Friday")
    expect(page.get_by_test_id("ops-ticks").get_by_role("row", name="scenarios-tick")).to_contain_text("not seen yet")
    expect(page.get_by_test_id("check-ticks")).to_contain_text("late or never seen: scenarios-tick")
    _shot(page, "status-failing.png", tmp_path)

    # The missing workers come up and the scenarios tick runs: the panels refresh by themselves.
    beacons.worker_record(hostname="trigger@web-1", queues=["trigger"], concurrency=2)
    beacons.worker_record(hostname="scenarios@web-1", queues=["scenarios"], concurrency=1)
    beacons.tick_record(name="scenarios-tick", task="scenarios.tasks.scenarios_tick_task", seconds=0.02)
    expect(page.get_by_test_id("check-workers")).to_contain_text("OK", timeout=15_000)
    expect(page.get_by_test_id("check-ticks")).to_contain_text("OK")
    expect(page.get_by_test_id("ops-workers")).to_contain_text("scenarios@web-1")
    _shot(page, "status-healthy.png", tmp_path)
