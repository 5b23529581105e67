"""The profile card's Events tab and its rows endpoint (history:timeline): what a row shows,
filters with htmx, infinite scroll, permissions, tenant isolation, speed."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone as tz

from history.catalogue import type_id
from history.models import Event
from history.services import EventIn, events_ingest
from history.tracking import links_ensure
from history.views.timeline import card_url
from profiles.views.profiles import TABS

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def ingest(account, profile, type_="page.viewed", when=None, props=None, **kw):
    [r] = events_ingest(account=account, events=[EventIn(type_, profile.pk, when, props, **kw)])
    assert r.status == "stored", r.error
    return r.id


def bulk(profile, n, *, type_id_=12, start=None, same_every=1):
    start = start or tz.now() - timedelta(days=30)
    return Event.objects.bulk_create([
        Event(account_id=profile.account_id, database_id=profile.database_id, profile_id=profile.pk, type_id=type_id_,
              occurred_at=start + timedelta(seconds=i // same_every), properties={"n": i})
        for i in range(n)
    ], batch_size=500)


def event_ids(response) -> list[int]:
    return [int(x) for x in re.findall(r'data-event="(\d+)"', response.content.decode())]


def hx_next(response) -> str | None:
    """The URL the last row asks for when it scrolls into view."""
    m = re.search(r'hx-get="([^"]+)" hx-trigger="revealed"', response.content.decode())
    return html.unescape(m[1]) if m else None


def rows_url(profile) -> str:
    return reverse("history:timeline", args=[profile.database.slug, profile.pk])


def test_the_tab_sits_after_subscriptions_and_is_not_the_changes_history():
    keys = [k for k, _ in TABS]
    assert "events" in keys and keys.index("events") == keys.index("subscriptions") + 1
    assert keys.count("history") == 1


def test_it_shows_a_profiles_events_with_their_details(login, acme, alice, anna, ben, cart_abandoned):
    from accounts.access import Actor
    from resources.services import resource_create

    resource = resource_create(account=acme, database=anna.database, values={"name": "Shop news"}, actor=Actor.system())
    [link] = links_ensure(account_id=acme.pk, urls=["https://shop.example.com/sale"]).values()
    ingest(acme, anna, "message.clicked", None, {"machine_reason": "within a second of delivery"}, channel="email",
           mailing_id=12, run_id=3, link_id=link, resource_id=resource.pk, machine=True, source="tracking")
    ingest(acme, anna, "cart_abandoned", None, {"sku": "A-1", "price": "19.90"}, key="cart-1")
    ingest(acme, ben, "page.viewed", None, {"url": "/ben-only"})
    response = login(alice, acme).get(card_url(anna.database.slug, anna.pk))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="events-tab"' in body and body.count('data-testid="event-row"') == 2
    assert "Link clicked" in body and "Cart abandoned" in body and "/ben-only" not in body
    assert "Mailing #12" in body and "Run #3" in body and "https://shop.example.com/sale" in body and "Shop news" in body
    assert 'data-testid="machine"' in body and "within a second of delivery" in body
    assert 'data-testid="channel"' in body and "E-mail" in body
    assert "sku:</span> A-1" in body and "&quot;price&quot;: 19.9" in body and "cart-1" in body
    assert f"Times in {acme.timezone}" in body


def test_an_untyped_event_is_marked(login, acme, alice, anna):
    from accounts.access import Actor
    from history.services import eventtype_create

    eventtype_create(account=acme, name="loose_one", label="Loose one", actor=Actor.system(), strict=False,
                     properties=[{"name": "n", "type": "integer"}])
    ingest(acme, anna, "loose_one", None, {"n": "not a number"})
    body = login(alice, acme).get(card_url(anna.database.slug, anna.pk)).content.decode()
    assert 'data-testid="untyped"' in body


def test_any_member_may_read_it(login, acme, bob, olivia, anna):
    ingest(acme, anna)
    for user in (bob, olivia):
        client = login(user, acme)
        assert client.get(card_url(anna.database.slug, anna.pk)).status_code == 200
        assert client.get(rows_url(anna), **HTMX).status_code == 200


def test_another_accounts_profile_is_a_404(login, acme, globex, charlie, anna, gina):
    ingest(acme, anna)
    client = login(charlie, globex)
    assert client.get(rows_url(anna), **HTMX).status_code == 404
    assert client.get(card_url(anna.database.slug, anna.pk)).status_code == 404
    # Charlie's own database slug with acme's profile id: still nothing of acme's.
    assert client.get(reverse("history:timeline", args=[gina.database.slug, anna.pk]), **HTMX).status_code == 404


def test_a_profile_of_another_database_is_a_404(login, acme, alice, anna):
    from accounts.access import Actor
    from profiles.services import database_create

    other = database_create(account=acme, name="App users", actor=Actor.system())
    assert login(alice, acme).get(reverse("history:timeline", args=[other.slug, anna.pk]), **HTMX).status_code == 404


def test_the_empty_state_says_how_events_arrive(login, acme, alice, anna):
    body = login(alice, acme).get(card_url(anna.database.slug, anna.pk)).content.decode()
    assert 'data-testid="timeline-empty"' in body and "No events yet" in body
    assert "API" in body and "JavaScript snippet" in body and "mailings" in body


def test_a_filter_change_gets_the_results_block_and_pushes_the_cards_url(login, acme, alice, anna, cart_abandoned):
    ingest(acme, anna, "page.viewed")
    cart = ingest(acme, anna, "cart_abandoned", None, {"sku": "A-1"})
    client = login(alice, acme)
    response = client.get(rows_url(anna), {"type": ["cart_abandoned"]}, HTTP_HX_TARGET="timeline-results", **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and body.lstrip().startswith('<div id="timeline-results"')
    assert event_ids(response) == [cart]
    assert 'id="timeline-type-summary" hx-swap-oob="true">Cart abandoned<' in body
    assert response["HX-Push-Url"] == card_url(anna.database.slug, anna.pk, [("type", "cart_abandoned")])
    # The same filter without JavaScript: the card itself.
    page = client.get(card_url(anna.database.slug, anna.pk, [("type", "cart_abandoned")]))
    assert event_ids(page) == [cart]


def test_several_types_and_unknown_names(login, acme, alice, anna, gina, cart_abandoned):
    from accounts.access import Actor
    from history.services import eventtype_create

    eventtype_create(account=gina.account, name="globex_only", label="Globex only", actor=Actor.system())
    viewed = ingest(acme, anna, "page.viewed")
    cart = ingest(acme, anna, "cart_abandoned", None, {"sku": "A-1"})
    ingest(acme, anna, "order.placed", None, {"order_id": "1"})
    response = login(alice, acme).get(rows_url(anna), {"type": ["cart_abandoned", "page.viewed", "globex_only"]}, **HTMX)
    assert event_ids(response) == [cart, viewed]
    assert "left out" in response.content.decode()


def test_dates_are_days_in_the_accounts_timezone(login, acme, alice, anna):
    acme.timezone = "Pacific/Auckland"  # UTC+13 in March
    acme.save(update_fields=["timezone"])
    late = ingest(acme, anna, when=datetime(2026, 3, 10, 11, 30, tzinfo=UTC))  # Mar 11, 00:30 in Auckland
    early = ingest(acme, anna, when=datetime(2026, 3, 10, 10, 30, tzinfo=UTC))  # Mar 10, 23:30 in Auckland
    client = login(alice, acme)
    assert event_ids(client.get(rows_url(anna), {"from": "2026-03-11", "to": "2026-03-11"}, **HTMX)) == [late]
    assert event_ids(client.get(rows_url(anna), {"to": "2026-03-10"}, **HTMX)) == [early]
    body = client.get(rows_url(anna), {"from": "2026-03-11", "to": "2026-03-10"}, **HTMX).content.decode()
    assert "swapped" in body and event_ids_from(body) == [late, early]
    card = client.get(card_url(anna.database.slug, anna.pk)).content.decode()
    assert "Mar 11, 2026 00:30:00" in card and "Mar 10, 2026 23:30:00" in card and "Times in Pacific/Auckland" in card
    bad = client.get(rows_url(anna), {"from": "yesterday"}, **HTMX).content.decode()
    assert "is not a date" in bad


def event_ids_from(body: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-event="(\d+)"', body)]


def test_scrolling_gets_the_next_rows_only_until_the_end(login, acme, alice, anna, ben):
    made = bulk(anna, 3000, same_every=7)
    bulk(ben, 30)
    expected = [e.pk for e in sorted(made, key=lambda e: (e.occurred_at, e.pk), reverse=True)]
    client = login(alice, acme)
    first = client.get(card_url(anna.database.slug, anna.pk))
    seen = event_ids(first)
    assert len(seen) == 50 and 'data-testid="load-more"' in first.content.decode()
    url, pages = hx_next(first), 1
    while url:
        response = client.get(url, HTTP_HX_TARGET="events-more", **HTMX)
        body = response.content.decode()
        assert response.status_code == 200 and "events-tab" not in body and "<form" not in body
        seen += event_ids(response)
        url, pages = hx_next(response), pages + 1
    assert seen == expected and pages == 60
    assert "The beginning of this profile" in body


def test_the_load_more_link_works_without_javascript(login, acme, alice, anna):
    made = bulk(anna, 120)
    client = login(alice, acme)
    first = client.get(card_url(anna.database.slug, anna.pk)).content.decode()
    href = html.unescape(re.search(r'<a class="btn btn-sm btn-outline-secondary" href="([^"]+)"', first)[1])
    assert href.startswith(card_url(anna.database.slug, anna.pk)) and "cursor=" in href
    second = client.get(href)
    assert event_ids(second) == [e.pk for e in made[::-1]][50:100]
    assert "Newest events" in second.content.decode()
    # Without htmx the rows URL sends the person to the card, filters and cursor kept.
    response = client.get(hx_next(second))
    assert response.status_code == 302 and response["Location"].startswith(card_url(anna.database.slug, anna.pk))
    assert "cursor=" in response["Location"]


def test_a_bad_cursor_shows_the_newest_events(login, acme, alice, anna):
    newest = ingest(acme, anna)
    response = login(alice, acme).get(card_url(anna.database.slug, anna.pk, [("cursor", "garbage")]))
    assert response.status_code == 200 and event_ids(response) == [newest]
    assert "not valid any more" in response.content.decode()


@pytest.mark.parametrize("n", [10, 120])
def test_the_tab_costs_the_same_queries_for_few_or_many_events(login, acme, alice, anna, cart_abandoned, n,
                                                               django_assert_max_num_queries):
    [link] = links_ensure(account_id=acme.pk, urls=["https://shop.example.com/x"]).values()
    for i in range(n):
        ingest(acme, anna, "message.clicked" if i % 2 else "cart_abandoned", None, {"sku": str(i)}, link_id=link,
               mailing_id=i)
    client = login(alice, acme)
    with django_assert_max_num_queries(15):
        assert client.get(card_url(anna.database.slug, anna.pk)).status_code == 200
    with django_assert_max_num_queries(10):
        assert client.get(rows_url(anna), {"type": ["cart_abandoned", "message.clicked"]}, **HTMX).status_code == 200


def test_type_menu_groups_system_types_and_the_accounts_own(login, acme, alice, anna, cart_abandoned):
    body = login(alice, acme).get(card_url(anna.database.slug, anna.pk)).content.decode()
    legends = re.findall(r"<legend[^>]*>([^<]+)</legend>", body)
    assert legends[0] == "Messages" and legends[-1] == "Custom" and "Orders" in legends
    assert f'id="timeline-type-{cart_abandoned.pk}"' in body and f'id="timeline-type-{type_id("order.paid")}"' in body
