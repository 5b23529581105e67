"""Browser fixtures: one Chromium for the session, a fresh context and page per test.

The app runs in pytest-django's `live_server` (a thread of this process, on the transactional
test database), so fixtures from the root conftest (the cast, `smtp_server`, `settings`) apply
to what the browser sees.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 900}
PASSWORD = "correct horse battery staple"

# Playwright's default (30 s) turns a wrong locator into a long hang; the app answers in ms.
expect.set_options(timeout=10_000)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so `page` can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(
    browser: Browser, request: pytest.FixtureRequest, live_server, transactional_db
) -> Iterator[Callable[[], Page]]:
    """new_page() -> a page in a fresh browser context (its own cookies: another person).

    On failure, a full-page screenshot of every page made is saved to test-artifacts/.
    """
    contexts: list[BrowserContext] = []
    pages: list[Page] = []

    def _new_page() -> Page:
        context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url, accept_downloads=True)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        pages.append(page)
        return page

    yield _new_page

    failed = any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )
    if failed:
        out = Path(request.config.rootpath) / "test-artifacts"
        out.mkdir(exist_ok=True)
        stem = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        for n, page in enumerate(pages):
            if page.is_closed():
                continue
            suffix = f"-{n}" if n else ""
            try:
                page.screenshot(path=str(out / f"{stem}{suffix}.png"), full_page=True)
            except Exception as exc:  # a broken page must not hide the test's own failure
                print(f"screenshot of {page.url} failed: {exc}")
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    """A page in a fresh context, viewport 1400x900, base URL = the live server."""
    return new_page()


@pytest.fixture
def scripts_ready() -> Callable[[Page], None]:
    """scripts_ready(page): the page a click just opened has run its scripts (htmx, app.js, the
    editors). Playwright's click waits for the new page to commit, not to load, and the scripts
    are deferred: a fill, select or click right after it can come before anything listens, and
    the search, autosubmit or htmx post it should start never happens. Call it after such a click
    and before anything that needs the page's scripts."""

    def _ready(page: Page) -> None:
        page.wait_for_load_state("load")

    return _ready


@pytest.fixture
def sign_in(live_server) -> Callable[..., None]:
    """sign_in(page, email, password=PASSWORD): through the login form, like a person."""

    def _sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
        page.goto("/login/")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()

    return _sign_in
