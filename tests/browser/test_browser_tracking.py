"""Website tracking end to end: a marketer copies a resource's snippet from the "Website tracking"
page, a site on another origin (a loopback HTTP server) embeds it, a visitor browses anonymously,
is identified, and their page views and a custom event reach the profile's history; the page's
live check then shows them."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from accounts.access import Actor
from history.models import Event
from history.services import eventtype_create
from profiles.models import Profile
from profiles.services import database_create, profile_create
from resources.models import Resource
from resources.services import resource_create

pytestmark = pytest.mark.browser

SYSTEM = Actor.system()
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def shop_site(tmp_path) -> Iterator[tuple[Path, str]]:
    """A customer's website: static files from a folder, on its own origin."""
    root = tmp_path / "site"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def shop(acme) -> tuple[Resource, Profile]:
    db = database_create(account=acme, name="Shop customers", actor=SYSTEM)
    anna = profile_create(database=db, values={"email": "anna@shop.example.com", "first_name": "Anna"}, actor=SYSTEM)
    eventtype_create(account=acme, name="cart_abandoned", label="Cart abandoned", actor=SYSTEM, properties=[
        {"name": "sku", "type": "string", "required": True}, {"name": "price", "type": "decimal"},
    ])
    resource = resource_create(account=acme, database=db, actor=SYSTEM, values={"name": "Shop site", "channels": ["email"]})
    return resource, anna


def _wait_for(count: int, timeout: float = 15.0, **filters) -> list[Event]:
    """Poll the database (the live server commits from its own thread) for `count` events."""
    deadline = time.monotonic() + timeout
    while True:
        events = list(Event.objects.filter(source="js", **filters).select_related("type").order_by("occurred_at", "id"))
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def test_a_site_sends_page_views_and_events_through_the_pasted_snippet(
    new_page, live_server, settings, olivia, acme, shop, shop_site, sign_in
) -> None:
    settings.SITE_URL = live_server.url
    resource, anna = shop
    root, origin = shop_site

    marketer = new_page()
    marketer.set_viewport_size({"width": 1280, "height": 900})
    sign_in(marketer, olivia.email)
    marketer.goto("/history/tracking/")
    card = marketer.locator(f"#site-{resource.slug}")
    expect(card.get_by_test_id("live-status")).to_have_text("Nothing yet")
    ARTIFACTS.mkdir(exist_ok=True)
    marketer.screenshot(path=str(ARTIFACTS / "site-tracking-waiting.png"), full_page=True)
    snippet = card.get_by_test_id("snippet").inner_text()
    assert resource.public_key in snippet and live_server.url in snippet

    (root / "shoes.html").write_text(f'<!doctype html><title>Shoes</title><h1>Shoes</h1><a href="cart.html">Cart</a>{snippet}')
    (root / "cart.html").write_text(
        f"<!doctype html><title>Your cart</title><h1>Cart</h1>{snippet}"
        '<script>cdp("identify", {email: "anna@shop.example.com"});'
        'cdp("track", "cart_abandoned", {sku: "A-1", price: 19.9});</script>'
    )

    visitor = new_page()
    console: list[str] = []
    visitor.on("console", lambda m: console.append(m.text))
    visitor.goto(f"{origin}/shoes.html")
    expect(visitor.get_by_role("heading", name="Shoes")).to_be_visible()
    visitor.wait_for_function("window.cdp && window.cdp.loaded === true")
    visitor.wait_for_timeout(2500)  # longer than a flush: an anonymous visitor's view waits in the browser
    assert not Event.objects.exists()

    visitor.get_by_role("link", name="Cart").click()  # identified there: the earlier view goes with its events
    events = _wait_for(3)
    assert [(e.type.name, e.properties.get("title") or e.properties.get("sku")) for e in events] == [
        ("page.viewed", "Shoes"), ("page.viewed", "Your cart"), ("cart_abandoned", "A-1"),
    ]
    assert {(e.profile_id, e.resource_id, e.channel) for e in events} == {(anna.pk, resource.pk, "web")}
    assert events[0].properties["url"] == f"{origin}/shoes.html"
    assert events[1].properties["referrer"] == f"{origin}/shoes.html"
    assert str(events[2].properties["price"]) == "19.9"

    # Sent as the visitor leaves: the beacon.
    visitor.evaluate('cdp("track", "order.placed", {order_id: "1001", total: 59.9, currency: "EUR"})')
    visitor.goto("about:blank")
    assert [e.properties["order_id"] for e in _wait_for(1, type__name="order.placed")] == ["1001"]
    time.sleep(2.5)  # a retry or a second flush would have arrived by now
    keys = list(Event.objects.filter(source="js").values_list("idempotency_key", flat=True))
    assert len(keys) == 4 and len(set(keys)) == 4
    assert visitor.context.cookies() == []
    assert not [m for m in console if "cdp:" in m or "CORS" in m], console

    card.get_by_role("link", name="Check again").click()
    expect(card.get_by_test_id("live-status")).to_have_text("Receiving")
    expect(card.locator("[data-event]")).to_have_count(4)
    expect(card.locator("[data-event]").first).to_contain_text("order.placed")
    expect(card.get_by_test_id("live-events")).to_contain_text("anna@shop.example.com")
    marketer.screenshot(path=str(ARTIFACTS / "site-tracking.png"), full_page=True)


def test_a_send_whose_answer_was_lost_is_retried_and_stored_once(new_page, live_server, settings, shop, shop_site) -> None:
    from history.views.site import embed_snippet

    settings.SITE_URL = live_server.url
    resource, anna = shop
    root, origin = shop_site
    # The array form of the stub this time; the script tag as the page gives it.
    tag = embed_snippet(resource)[embed_snippet(resource).index("<script async"):]
    (root / "index.html").write_text(
        '<!doctype html><title>Home</title><h1>Home</h1><script>window.cdp = window.cdp || [];'
        'cdp.push(["identify", {email: "anna@shop.example.com"}], ["page"]);</script>' + tag
    )
    visitor = new_page()
    sends: list[float] = []
    answered: list[float] = []  # when the browser had each failure: its wait starts there

    def flaky(route) -> None:
        sends.append(time.monotonic())
        if len(sends) == 1:
            route.fetch()  # the server gets it and stores it...
            route.abort("connectionreset")  # ...but the answer never reaches the browser
        elif len(sends) == 2:
            route.fulfill(status=503, body="busy")
        else:
            route.continue_()
        answered.append(time.monotonic())

    visitor.route("**/t/collect/**", flaky)
    visitor.goto(f"{origin}/index.html")
    deadline = time.monotonic() + 20
    while len(sends) < 3 and time.monotonic() < deadline:
        visitor.wait_for_timeout(200)  # (route handlers run while Playwright waits, not in time.sleep)
    assert len(sends) == 3, sends
    assert sends[2] - answered[1] > sends[1] - answered[0] > 1.5  # waited, and longer the second time
    visitor.wait_for_timeout(500)
    assert [(e.type.name, e.profile_id) for e in _wait_for(1)] == [("page.viewed", anna.pk)]  # once: by the first send


def test_the_snippet_is_small_and_plain(live_server) -> None:
    import re
    import urllib.request

    with urllib.request.urlopen(f"{live_server.url}/static/js/cdp-track.js", timeout=10) as response:  # noqa: S310
        source = response.read().decode()
    code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)  # the documentation block
    code = "\n".join(line.split(" // ")[0].strip() for line in code.splitlines() if line.strip())
    assert len(code.encode()) < 5000, len(code.encode())  # about 3 KB once minified
    assert "document.cookie" not in source
    assert "import " not in code and "require(" not in code
