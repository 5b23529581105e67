"""The event explorer (history:events) and an event's page (history:event_detail): filters,
htmx partials, the live view, permissions, tenant isolation, speed."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone as tz

from accounts.access import Actor
from history.models import Event
from history.services import EventIn, events_ingest
from profiles.services import database_create, profile_create

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
URL = "/history/"


def ingest(account, profile, type_="page.viewed", when=None, props=None, **kw):
    [r] = events_ingest(account=account, events=[EventIn(type_, profile.pk, when, props, **kw)])
    assert r.status == "stored", r.error
    return r.id


def event_ids(response) -> list[int]:
    return [int(x) for x in re.findall(r'data-event="(\d+)"', response.content.decode())]


def test_the_url_names_are_fixed():
    assert reverse("history:events") == URL
    assert reverse("history:timeline", args=["shop", 5]) == "/databases/shop/profiles/5/history/"
    assert reverse("history:event_detail", args=[7]) == "/history/events/7/"


def test_it_lists_the_accounts_events_newest_first_with_what_arrived(login, acme, bob, anna, ben, gina, globex):
    first = ingest(acme, anna, "page.viewed", tz.now() - timedelta(days=2), {"url": "/a"}, key="evt-1", source="js")
    second = ingest(acme, ben, "order.placed", None, {"order_id": "O-9", "total": "12.50"})
    ingest(globex, gina, "page.viewed", None, {"url": "/globex-secret"})
    response = login(bob, acme).get(URL)  # an analyst: any member may read
    assert response.status_code == 200
    body = response.content.decode()
    assert event_ids(response) == [second, first]
    assert "/globex-secret" not in body
    assert "evt-1" in body and ">via js</span>" in body  # the idempotency key and the source
    assert "2 days after it occurred" in body  # received vs occurred
    assert f'href="/databases/{anna.database.slug}/profiles/{anna.pk}/?tab=events"' in body
    assert "Anna" in body and "Shop customers" in body
    assert "&quot;order_id&quot;: &quot;O-9&quot;" in body


def test_signed_out_people_are_sent_to_sign_in(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_filters_by_type_database_and_profile(login, acme, alice, anna, ben, cart_abandoned):
    other = database_create(account=acme, name="App users", actor=Actor.system())
    carl = profile_create(database=other, values={"email": "carl@app.example.com"}, actor=Actor.system())
    viewed = ingest(acme, anna, "page.viewed")
    cart = ingest(acme, ben, "cart_abandoned", None, {"sku": "A-1"})
    app = ingest(acme, carl, "app.event", None, {"name": "open"})
    client = login(alice, acme)
    assert event_ids(client.get(URL, {"type": ["cart_abandoned", "app.event"]})) == [app, cart]
    assert event_ids(client.get(URL, {"db": other.slug})) == [app]
    assert event_ids(client.get(URL, {"profile": str(anna.pk)})) == [viewed]
    assert event_ids(client.get(URL, {"profile": f"#{ben.pk}"})) == [cart]
    # An e-mail is looked up within the chosen database (normalised like an import would).
    assert event_ids(client.get(URL, {"profile": "ANNA@shop.example.com", "db": anna.database.slug})) == [viewed]
    assert event_ids(client.get(URL, {"profile": "carl@app.example.com", "db": other.slug})) == [app]
    missing = client.get(URL, {"profile": "carl@app.example.com", "db": anna.database.slug})
    assert event_ids(missing) == [] and "No profile with this e-mail in Shop customers" in missing.content.decode()
    ambiguous = client.get(URL, {"profile": "anna@shop.example.com"})
    assert event_ids(ambiguous) == [] and "Choose a database" in ambiguous.content.decode()
    wrong_db = client.get(URL, {"profile": str(anna.pk), "db": other.slug})
    assert event_ids(wrong_db) == [] and f"No profile #{anna.pk} in App users" in wrong_db.content.decode()


def test_with_one_database_an_email_needs_no_database(login, acme, alice, anna):
    viewed = ingest(acme, anna)
    assert event_ids(login(alice, acme).get(URL, {"profile": "anna@shop.example.com"})) == [viewed]


def test_another_accounts_profile_or_database_finds_nothing(login, acme, alice, anna, gina):
    ingest(acme, anna)
    ingest(gina.account, gina)
    client = login(alice, acme)
    response = client.get(URL, {"profile": str(gina.pk)})
    assert event_ids(response) == [] and f"No profile #{gina.pk} in this account" in response.content.decode()
    response = client.get(URL, {"db": gina.database.slug})
    assert event_ids(response) == [] and "no such database" in response.content.decode()


def test_property_search_says_it_looked_at_a_window(login, acme, alice, anna, cart_abandoned):
    hit = ingest(acme, anna, "cart_abandoned", None, {"sku": "A-7"})
    ingest(acme, anna, "cart_abandoned", None, {"sku": "B-8"})
    client = login(alice, acme)
    response = client.get(URL, {"prop": "sku=A-7"})
    body = response.content.decode()
    assert event_ids(response) == [hit]
    assert 'data-testid="explorer-note"' in body and "last 24 hours" in body
    response = client.get(URL, {"prop": "sku=A-7", "window": "30d"})
    assert event_ids(response) == [hit] and "7 days at most" in response.content.decode()
    response = client.get(URL, {"prop": "sku=A-7", "window": "1h"})
    assert event_ids(response) == [hit] and 'data-testid="explorer-note"' not in response.content.decode()
    bad = client.get(URL, {"prop": "=oops"})
    assert event_ids(bad) == [] and "Write key=value" in bad.content.decode()


def test_the_window_is_on_arrival(login, acme, alice, anna):
    old = Event.objects.create(account_id=acme.pk, database_id=anna.database_id, profile_id=anna.pk, type_id=12,
                               occurred_at=tz.now() - timedelta(days=3), received_at=tz.now() - timedelta(days=3))
    new = ingest(acme, anna, when=tz.now() - timedelta(days=5))  # occurred long ago, arrived now
    client = login(alice, acme)
    assert event_ids(client.get(URL, {"window": "1h"})) == [new]
    assert event_ids(client.get(URL, {"window": "7d"})) == [new, old.pk]


def test_htmx_gets_the_results_block_and_scrolling_gets_rows(login, acme, alice, anna):
    made = Event.objects.bulk_create([
        Event(account_id=acme.pk, database_id=anna.database_id, profile_id=anna.pk, type_id=12, occurred_at=tz.now(),
              properties={"i": i}) for i in range(120)
    ])
    client = login(alice, acme)
    response = client.get(URL, {"type": ["page.viewed"]}, HTTP_HX_TARGET="explorer-results", **HTMX)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="explorer-results"') and "<html" not in body
    assert 'id="explorer-type-summary" hx-swap-oob="true">Page viewed<' in body
    seen = event_ids(response)
    url = html.unescape(re.search(r'hx-get="([^"]+)" hx-trigger="revealed"', body)[1])
    while url:
        page = client.get(url, HTTP_HX_TARGET="events-more", **HTMX)
        text = page.content.decode()
        assert "explorer-results" not in text
        seen += event_ids(page)
        m = re.search(r'hx-get="([^"]+)" hx-trigger="revealed"', text)
        url = html.unescape(m[1]) if m else None
    assert seen == sorted((e.pk for e in made), reverse=True)
    assert "No older events" in text
    # A full page for a request without htmx.
    assert "<html" in client.get(URL).content.decode()


def test_live_view_polls_for_newer_events_only(login, acme, alice, anna, ben):
    first = ingest(acme, anna)
    client = login(alice, acme)
    page = client.get(URL, {"live": "1"}).content.decode()
    poll = html.unescape(re.search(r'id="explorer-live"[^>]*hx-get="([^"]+)" hx-trigger="every 3s"', page, re.S)[1])
    assert f"after={first}" in poll and "live=1" in poll
    # Switched on from the form (htmx), the poller comes in place, not as an out-of-band swap.
    partial = client.get(URL, {"live": "1"}, HTTP_HX_TARGET="explorer-results", **HTMX).content.decode()
    assert '<div id="explorer-live" class=' in partial and 'id="explorer-live" hx-swap-oob' not in partial
    assert client.get(poll, HTTP_HX_TARGET="events-list", **HTMX).status_code == 204
    newer = [ingest(acme, ben), ingest(acme, anna)]
    response = client.get(poll, HTTP_HX_TARGET="events-list", **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and event_ids(response) == newer[::-1]
    assert "event-new" in body and 'id="events-more"' not in body
    next_poll = html.unescape(re.search(r'id="explorer-live" hx-swap-oob="true"[^>]*hx-get="([^"]+)"', body, re.S)[1])
    assert f"after={newer[-1]}" in next_poll
    assert client.get(next_poll, **HTMX).status_code == 204
    # Filters hold for the live view too.
    filtered = client.get(URL, {"live": "1", "profile": str(ben.pk)}).content.decode()
    poll = html.unescape(re.search(r'id="explorer-live"[^>]*hx-get="([^"]+)"', filtered, re.S)[1])
    ingest(acme, anna)
    assert client.get(poll, **HTMX).status_code == 204
    assert '<div id="explorer-live"' not in client.get(URL).content.decode()


def test_live_view_starts_after_the_accounts_newest_event_when_nothing_matches(login, acme, alice, anna, ben):
    newest = ingest(acme, anna)
    page = login(alice, acme).get(URL, {"live": "1", "profile": str(ben.pk)}).content.decode()
    assert f"after={newest}" in html.unescape(page)


def test_the_empty_state_points_to_the_api_docs_and_website_tracking(login, acme, alice):
    body = login(alice, acme).get(URL).content.decode()
    assert 'data-testid="explorer-empty"' in body and "No events yet" in body
    assert 'href="/api/v1/docs"' in body
    try:
        tracking = reverse("history:site_tracking")
    except NoReverseMatch:
        assert "Set up website tracking" not in body
    else:
        assert f'href="{tracking}"' in body


def test_an_events_page_shows_everything_that_arrived(login, acme, bob, anna):
    pk = ingest(acme, anna, "order.paid", tz.now() - timedelta(hours=3), {"order_id": "O-1", "total": "9.99"},
                key="pay-1", source="api", channel="web")
    response = login(bob, acme).get(reverse("history:event_detail", args=[pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Order paid" in body and "pay-1" in body and "3 hours after it occurred" in body
    assert "&quot;total&quot;: 9.99" in body and "Web" in body
    assert f"/databases/{anna.database.slug}/profiles/{anna.pk}/?tab=events" in body


def test_another_accounts_event_is_a_404(login, acme, globex, charlie, anna):
    pk = ingest(acme, anna)
    assert login(charlie, globex).get(reverse("history:event_detail", args=[pk])).status_code == 404


@pytest.mark.parametrize("n", [5, 120])
def test_the_explorer_costs_the_same_queries_for_few_or_many_events(login, acme, alice, anna, ben, cart_abandoned, n,
                                                                    django_assert_max_num_queries):
    for i in range(n):
        ingest(acme, anna if i % 2 else ben, "cart_abandoned" if i % 3 else "page.viewed", None, {"sku": f"S-{i}"})
    client = login(alice, acme)
    with django_assert_max_num_queries(12):
        assert client.get(URL).status_code == 200
    with django_assert_max_num_queries(14):
        assert client.get(URL, {"prop": "sku=S-1", "window": "24h", "db": anna.database.slug,
                                "type": ["cart_abandoned", "page.viewed"]}).status_code == 200
