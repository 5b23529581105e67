"""The Content-Security-Policy in a real Chromium: every main page of every app loads, runs its
scripts and draws its charts without one `securitypolicyviolation` (an inline script, a style
element, an eval, a javascript: URL the policy refuses), and htmx still works under it: a search
box, a tab switch, a confirm before a POST, the API docs.

The demo account's data (accounts.demo) gives every page something to show. A violation anywhere
(main document or frame) or a console error about the policy fails the test, naming the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from accounts.demo import demo_create
from content.models import Template
from delivery.models import SendingDomain
from mailings.models import Mailing
from profiles.models import Profile, ProfileDatabase
from resources import tokens
from resources.models import Resource, Subscription
from scenarios.models import Scenario
from segments.models import Segment

pytestmark = pytest.mark.browser

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "csp-demo-password-1"
# Recorded in every frame before any of the page's own scripts run (Playwright's init scripts are
# not subject to the page's CSP).
WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline")
    + " at " + e.sourceFile + ":" + e.lineNumber + " " + (e.sample || ""));
}, true);
"""
CSP_CONSOLE = re.compile(r"Content Security Policy|Refused to (execute|load|apply|evaluate|frame|connect)|"
                         r"evalDisallowed|unsafe-eval", re.I)


class Watched:
    """A signed-in page whose CSP violations, CSP console errors and uncaught errors are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.context.add_init_script(WATCH)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught error on {page.url}: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and CSP_CONSOLE.search(message.text):
            self.problems.append(f"console on {self.page.url}: {message.text}")

    def violations(self) -> list[str]:
        found = []
        for frame in self.page.frames:
            found += frame.evaluate("window.__cspViolations || []")
        return found

    def visit(self, path: str) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status < 400, f"{path}: {response and response.status}"
        self.page.wait_for_load_state("load")
        self.page.wait_for_timeout(250)  # deferred scripts and charts: anything they do is seen
        self.check(path)

    def check(self, where: str) -> None:
        problems = self.problems + [f"{where}: {v}" for v in self.violations()]
        self.problems.clear()
        assert not problems, "\n".join(problems)


@pytest.fixture
def demo(transactional_db):
    return demo_create(email=DEMO_EMAIL, password=DEMO_PASSWORD, new_password="unused").account


@pytest.fixture
def watched(new_page: Callable[[], Page], demo, sign_in) -> Watched:
    page = new_page()
    watch = Watched(page)
    sign_in(page, DEMO_EMAIL, DEMO_PASSWORD)
    expect(page.locator("#sidebar")).to_be_visible()
    watch.check("sign-in and the dashboard")
    return watch


def _detail_pages(account) -> list[str]:
    """One object page of each kind the demo made (the apps' richest pages: editors, charts, diagrams)."""
    pages = []
    for model in (ProfileDatabase, Segment, Template, Mailing, Scenario, Resource):
        obj = model.objects.filter(account=account).order_by("pk").first()
        assert obj is not None, f"the demo made no {model.__name__}"
        pages.append(obj.get_absolute_url())
    profile = Profile.objects.filter(database__account=account).order_by("pk").first()
    pages.append(profile.get_absolute_url())
    database = ProfileDatabase.objects.filter(account=account).order_by("pk").first()
    pages += [f"/databases/{database.slug}/settings/", f"/databases/{database.slug}/fields/new/"]
    mailing = Mailing.objects.filter(account=account).order_by("pk").first()
    pages += [f"/mailings/{mailing.pk}/report/", "/mailings/new/", "/segments/new/"]
    domain = SendingDomain.objects.filter(account=account).order_by("pk").first()
    if domain is not None:
        pages.append(f"/sending/domains/{domain.pk}/")
    return pages


def test_every_main_page_runs_under_the_policy_without_a_violation(watched: Watched, demo) -> None:
    page = watched.page
    watched.visit("/")
    nav = page.locator("#sidebar a[href^='/']").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    paths = list(dict.fromkeys([urlsplit(h).path for h in nav] + _detail_pages(demo)))
    assert len(paths) >= 20, paths
    for path in paths:
        watched.visit(path)
    # The charts are drawn (Chart.js needs no eval and no inline style element).
    watched.visit("/")
    expect(page.locator("canvas").first).to_be_visible()


def test_htmx_search_tabs_and_confirm_work_under_the_policy(watched: Watched, demo) -> None:
    page = watched.page
    # A search box: htmx swaps the table in place (no new document).
    watched.visit("/settings/members/")
    page.evaluate("window.__sameDocument = true")
    rows = page.locator("#members tbody tr")
    expect(rows).to_have_count(4)
    with page.expect_request(lambda r: "q=mark" in r.url) as sent:
        page.get_by_role("searchbox", name="Search by name or e-mail").fill("mark")
    assert sent.value.headers.get("hx-request") == "true"
    expect(rows).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True
    watched.check("members search")

    # A tab switch on a profile's card: htmx loads the tab's partial and pushes its URL.
    profile = Profile.objects.filter(database__account=demo).order_by("pk").first()
    watched.visit(profile.get_absolute_url())
    page.evaluate("window.__sameDocument = true")
    page.get_by_role("tab", name="History").click()
    expect(page).to_have_url(re.compile(r"tab=history"))
    expect(page.get_by_role("tab", name="History")).to_have_attribute("aria-selected", "true")
    assert page.evaluate("window.__sameDocument") is True
    watched.check("profile card tabs")

    # A confirm before a POST (<form data-confirm>, app.js): dismissed, nothing is sent; accepted, it is.
    domain = SendingDomain.objects.filter(account=demo).order_by("pk").first()
    if domain is None:
        pytest.skip("the demo made no sending domain")  # pragma: no cover (accounts.demo makes one)
    watched.visit(f"/sending/domains/{domain.pk}/")
    rotate = page.locator("form[data-confirm] button[type=submit]").first
    keys = domain.dkim_keys.count()
    page.once("dialog", lambda d: d.dismiss())
    rotate.click()
    page.wait_for_timeout(300)
    assert domain.dkim_keys.count() == keys
    page.once("dialog", lambda d: d.accept())
    with page.expect_navigation():
        rotate.click()
    expect(page.get_by_role("status").or_(page.locator(".toast")).first).to_be_attached()
    assert domain.dkim_keys.count() == keys + 1
    watched.check("confirm and POST")


def test_the_api_docs_and_the_public_pages_run_under_the_policy(watched: Watched, demo) -> None:
    page = watched.page
    watched.visit("/api/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_be_visible()
    expect(page.locator(".opblock").first).to_be_visible()
    watched.check("API docs")

    subscription = Subscription.objects.filter(resource__account=demo, channel="email").order_by("pk").first()
    assert subscription is not None, "the demo made no e-mail subscription"
    for url in (tokens.preferences_url(subscription), tokens.unsubscribe_url(subscription)):
        watched.visit(urlsplit(url).path)


def test_the_watch_catches_what_the_policy_refuses(new_page: Callable[[], Page], live_server) -> None:
    """The watch above can fail: a page under the site's policy with an inline script, an inline
    handler and a style element yields violations, and check() reports them."""
    page = new_page()
    watch = Watched(page)
    policy = "default-src 'self'; script-src 'self' 'nonce-abc'; style-src 'self'"
    body = ("<!doctype html><html><head><style>p{color:red}</style></head><body>"
            "<script>window.ran = true</script><button onclick=\"1\">x</button></body></html>")
    page.route("**/__csp_probe__", lambda route: route.fulfill(
        status=200, body=body, headers={"Content-Type": "text/html", "Content-Security-Policy": policy}))
    with pytest.raises(AssertionError) as failed:
        watch.visit("/__csp_probe__")
    assert "script-src" in str(failed.value) and "style-src" in str(failed.value)
    assert page.evaluate("window.ran === undefined")
