"""The website snippet's collector (POST /t/collect/<public key>) and the "Website tracking" page."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.access import Actor
from history.models import Event
from profiles.services import database_create, profile_create
from resources.models import Resource
from resources.services import resource_create, resource_rotate_public_key, resource_update

SYSTEM = Actor.system()
ORIGIN = "https://shop.example.com"


@pytest.fixture
def site(acme, shop) -> Resource:
    return resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "Shop site", "channels": ["email"]})


def _url(resource: Resource) -> str:
    return reverse("tracking:collect", args=[resource.public_key])


def _post(client: Client, resource_or_url, events, *, content_type="text/plain;charset=UTF-8", ip="198.51.100.7", **headers):
    url = resource_or_url if isinstance(resource_or_url, str) else _url(resource_or_url)
    body = events if isinstance(events, str | bytes) else json.dumps({"events": events})
    return client.post(url, body, content_type=content_type, REMOTE_ADDR=ip, headers={"Origin": ORIGIN, **headers})


def _page_view(email="anna@shop.example.com", **extra):
    return {"id": extra.pop("id", None) or f"ev-{email}-{len(extra)}", "event": "page.viewed",
            "profile": {"email": email}, "properties": {"url": "https://shop.example.com/shoes", "title": "Shoes"}, **extra}


def _stored(**filters):
    return Event.objects.filter(source="js", **filters)


# --- the happy path ----------------------------------------------------------------------------------


def test_it_stores_a_beacon_batch_sent_as_text_plain(client, site, anna, cart_abandoned, shop):
    response = _post(client, site, [
        _page_view(id="e-1"),
        {"id": "e-2", "event": "cart_abandoned", "profile": {"customer_id": "C-1"}, "properties": {"sku": "A-1", "price": 19.9},
         "time": "2026-01-05T10:00:00Z"},
    ])
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 2, "rejected": 0, "results": [{"index": 0, "status": "accepted"},
                                                                         {"index": 1, "status": "accepted"}]}
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Retry-After" in response["Access-Control-Expose-Headers"]
    assert not response.cookies
    events = {e.idempotency_key: e for e in _stored()}
    assert set(events) == {f"js{site.pk}:e-1", f"js{site.pk}:e-2"}
    view, cart = events[f"js{site.pk}:e-1"], events[f"js{site.pk}:e-2"]
    assert (view.account_id, view.database_id, view.profile_id, view.resource_id) == (anna.account_id, shop.pk, anna.pk, site.pk)
    assert view.type.name == "page.viewed" and view.channel == "web"
    assert view.properties == {"url": "https://shop.example.com/shoes", "title": "Shoes"}
    assert cart.type_id == cart_abandoned.pk and cart.properties["sku"] == "A-1"
    assert cart.occurred_at.isoformat().startswith("2026-01-05T10:00:00")


def test_it_takes_application_json_and_answers_its_preflight_without_the_database(client, site, anna,
                                                                                    django_assert_num_queries):
    with django_assert_num_queries(0):
        preflight = client.options(_url(site), headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert preflight["Access-Control-Allow-Headers"].lower() == "content-type"
    assert int(preflight["Access-Control-Max-Age"]) >= 600
    response = _post(client, site, [_page_view()], content_type="application/json")
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert _stored(profile_id=anna.pk).count() == 1


def test_it_needs_no_csrf_token_and_ignores_a_signed_in_session(site, anna, olivia):
    client = Client(enforce_csrf_checks=True)
    client.force_login(olivia)
    assert _post(client, site, [_page_view()]).status_code == 200
    assert _stored().count() == 1


def test_the_key_decides_the_resource_and_the_channel_defaults_to_web(client, site, anna, acme, shop):
    other = resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "Other", "channels": ["email"]})
    response = _post(client, site, [_page_view(id="a", resource=other.slug), _page_view(id="b", channel="app")])
    assert response.json()["accepted"] == 2
    assert set(_stored().values_list("resource_id", flat=True)) == {site.pk}
    assert dict(_stored().values_list("idempotency_key", "channel")) == {f"js{site.pk}:a": "web", f"js{site.pk}:b": "app"}


def test_a_retried_batch_is_stored_once(client, site, anna):
    batch = [_page_view(id="same-1"), _page_view(id="same-2")]
    first = _post(client, site, batch)
    again = _post(client, site, batch)
    assert first.json() == again.json()
    assert again.json()["accepted"] == 2
    assert _stored().count() == 2


def test_a_site_cannot_take_an_id_that_the_api_or_another_site_uses(client, site, anna, acme, shop):
    from history.services import ingest_payloads

    api = ingest_payloads(account=acme, database=shop, source="api", items=[
        {"id": "ord-1001-placed", "event": "order.placed", "profile": {"email": anna.email}, "properties": {"order_id": "1001"}},
    ])
    assert api.counts["stored"] == 1
    other = resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "Other", "channels": ["email"]})
    for resource in (site, other):
        _post(client, resource, [{"id": "ord-1001-placed", "event": "order.placed", "profile": {"email": anna.email},
                                  "properties": {"order_id": "1001", "total": "0.01"}}])
    assert sorted(Event.objects.values_list("idempotency_key", flat=True)) == sorted([
        "ord-1001-placed", f"js{site.pk}:ord-1001-placed", f"js{other.pk}:ord-1001-placed"])
    again = ingest_payloads(account=acme, database=shop, source="api", items=[
        {"id": "ord-1001-placed", "event": "order.placed", "profile": {"email": anna.email}, "properties": {"order_id": "1001"}},
    ])
    assert again.counts["duplicate"] == 1


def test_a_turned_off_sign_up_form_does_not_turn_tracking_off(client, site, anna):
    resource_update(resource=site, values={"subscribe_enabled": False}, actor=SYSTEM)
    site.refresh_from_db()
    assert site.subscribe_enabled is False
    assert _post(client, site, [_page_view()]).json()["accepted"] == 1


# --- what a public endpoint refuses ----------------------------------------------------------------------


def test_it_refuses_the_platforms_own_types_and_wrong_events_item_by_item(client, site, anna, cart_abandoned):
    response = _post(client, site, [
        {"event": "message.opened", "profile": {"email": anna.email}},
        {"event": "cart_abandoned", "profile": {"email": anna.email}, "properties": {"sku": "A-1", "price": "cheap"}},
        {"event": "no_such_type", "profile": {"email": anna.email}},
        {"event": "page.viewed", "profile": {"email": anna.email}, "time": "2999-01-01T00:00:00Z"},
        {"event": "page.viewed", "profile": {"email": anna.email}, "colour": "red"},
        "page.viewed",
        _page_view(id="fine"),
    ])
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 6)
    errors = {r["index"]: r["error"] for r in body["results"] if r["status"] == "rejected"}
    assert "recorded by the platform" in errors[0]["message"]
    assert errors[1]["field"] == "properties.price"
    assert "unknown event type" in errors[2]["message"]
    assert errors[3]["field"] == "time" and "future" in errors[3]["message"]
    assert errors[4]["field"] == "colour"
    assert "expected an event object" in errors[5]["message"]
    assert list(_stored().values_list("idempotency_key", flat=True)) == [f"js{site.pk}:fine"]


def test_it_names_people_by_a_match_key_never_by_a_guessable_profile_id(client, site, anna):
    response = _post(client, site, [
        {"event": "page.viewed", "profile": {"id": anna.pk}},
        {"event": "page.viewed", "profile": {"first_name": "Anna"}},
        {"event": "page.viewed", "profile": {"email": "not an address"}},
        {"event": "page.viewed", "profile": {"email": anna.email, "customer_id": "C-1"}},
        {"event": "page.viewed"},
    ])
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * 5
    assert "not by a profile id" in results[0]["error"]["message"]
    assert "not a match key" in results[1]["error"]["message"]
    assert results[2]["error"]["field"] == "profile.email"
    assert not _stored().exists()


def test_the_answer_never_tells_whether_someone_is_a_profile(client, site, anna, gina, acme):
    # An address in another database of the account, and another account's profile: nobody here.
    elsewhere = database_create(account=acme, name="Newsletter readers", actor=SYSTEM)
    profile_create(database=elsewhere, values={"email": "nora@example.com"}, actor=SYSTEM)
    answers = {}
    for email in (anna.email, "stranger@example.com", "nora@example.com", gina.email):
        good = _page_view(email=email, id=f"ok-{email}")
        bad = {"event": "page.viewed", "profile": {"email": email}, "properties": "not an object"}
        answers[email] = [_post(client, site, [good, bad]).json() for _ in range(2)]  # the second: a retry
    assert all(a == answers[anna.email] for a in answers.values()), answers
    assert answers[anna.email][0]["results"][1]["error"]["field"] == "properties"
    assert "id" not in json.dumps(answers[anna.email][0]["results"][0])
    assert list(Event.objects.values_list("profile_id", flat=True)) == [anna.pk]  # nobody else, in no account


def test_an_unknown_key_is_a_404_that_a_browser_can_read(client, site, anna):
    old_key_url = _url(site)
    resource_rotate_public_key(resource=site, actor=SYSTEM)
    response = _post(client, old_key_url, [_page_view()])
    assert response.status_code == 404
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "copy the snippet again" in response.json()["error"]["message"]
    assert _post(client, reverse("tracking:collect", args=["pk_nope"]), [_page_view()]).status_code == 404
    assert not Event.objects.exists()


@pytest.mark.parametrize(("body", "message"), [
    ("{not json", "not JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    ('["a list"]', '{"events": [...]}'),
    ('{"events": {"event": "page.viewed"}}', '{"events": [...]}'),
    ("", "not JSON"),
])
def test_a_malformed_body_is_a_clear_400(client, site, body, message):
    response = _post(client, site, body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert response["Access-Control-Allow-Origin"] == "*"


def test_more_than_100_events_or_an_oversized_body_is_a_413(client, site, anna, settings):
    too_many = _post(client, site, [_page_view(id=f"e-{i}") for i in range(101)])
    assert too_many.status_code == 413
    assert "At most 100 events" in too_many.json()["error"]["message"]
    settings.TRACKING_COLLECT_MAX_BYTES = 2048
    big = _post(client, site, [_page_view(properties={"blob": "x" * 4000})])
    assert big.status_code == 413
    assert "larger than 2 KB" in big.json()["error"]["message"]
    assert not Event.objects.exists()
    settings.TRACKING_COLLECT_MAX_BYTES = 512 * 1024
    assert _post(client, site, [_page_view(id="e-1")] * 100).status_code == 200


def test_an_empty_batch_is_fine(client, site):
    assert _post(client, site, []).json() == {"accepted": 0, "rejected": 0, "results": []}


def test_it_only_takes_post(client, site):
    response = client.get(_url(site))
    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"


# --- rate limits -------------------------------------------------------------------------------------------


def test_it_limits_requests_per_client_ip_and_key(client, site, anna, settings, mid_window):
    settings.TRACKING_COLLECT_RATE_IP = 2
    for n in range(2):
        assert _post(client, site, [_page_view(id=f"a-{n}")]).status_code == 200
    limited = _post(client, site, [_page_view(id="a-2")])
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited["Access-Control-Allow-Origin"] == "*"
    assert _post(client, site, [_page_view(id="b-0")], ip="203.0.113.9").status_code == 200  # another visitor
    assert _stored().count() == 3


def test_it_limits_requests_per_key_whatever_the_ip(client, site, anna, settings, mid_window):
    settings.TRACKING_COLLECT_RATE_KEY = 3
    codes = [_post(client, site, [_page_view(id=f"k-{n}")], ip=f"203.0.113.{n}").status_code for n in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert _stored().count() == 3


def test_it_keeps_collecting_when_the_cache_is_down(client, site, anna, monkeypatch):
    from cdp import ratelimit

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(ratelimit.cache, "add", broken)
    assert _post(client, site, [_page_view()]).status_code == 200
    assert _stored().count() == 1


def test_a_full_batch_takes_a_bounded_number_of_queries(client, site, anna, ben, django_assert_max_num_queries):
    events = [_page_view(email=(anna.email, ben.email)[i % 2], id=f"q-{i}") for i in range(100)]
    with django_assert_max_num_queries(14):
        response = _post(client, site, events)
    assert response.json()["accepted"] == 100
    assert _stored().count() == 100


# --- the Website tracking page -------------------------------------------------------------------------------


def _js_event(resource: Resource, profile, n: int, *, source: str = "js", **extra) -> Event:
    return Event.objects.create(account_id=resource.account_id, database_id=resource.database_id, profile_id=profile.pk,
                                type_id=12, occurred_at=timezone.now(), properties={"url": f"https://shop.example.com/p/{n}"},
                                source=source, resource_id=resource.pk, channel="web", **extra)


def _section(html: str, slug: str) -> str:
    start = html.index(f'id="site-{slug}"')
    return html[start:html.index("</section>", start)]


def test_every_member_sees_each_resources_snippet_with_its_key_and_this_server(login, bob, acme, site, settings):
    settings.SITE_URL = "https://cdp.example.org"
    response = login(bob, acme).get(reverse("history:site_tracking"))
    assert response.status_code == 200
    html = response.content.decode()
    assert site.public_key in html
    assert 'src="https://cdp.example.org/static/js/cdp-track.js"' in html.replace("&quot;", '"')
    assert 'data-endpoint="https://cdp.example.org/t/collect/"' in html.replace("&quot;", '"')
    assert "cdp(&quot;identify&quot;, {email: &quot;ann@example.com&quot;});" in html
    assert "cdp(&quot;track&quot;, &quot;order.placed&quot;" in html
    assert 'data-testid="live-waiting"' in html


def test_the_snippets_addresses_are_the_ones_that_serve_it(client, site, anna):
    from django.contrib.staticfiles import finders

    from history.views.site import collector_prefix, script_url

    assert finders.find(urlsplit(script_url()).path.removeprefix(settings.STATIC_URL))
    response = _post(client, urlsplit(collector_prefix()).path + site.public_key, [_page_view()])
    assert response.status_code == 200
    assert _stored().count() == 1


def test_the_track_example_uses_one_of_the_accounts_own_types(login, bob, acme, site, cart_abandoned):
    html = login(bob, acme).get(reverse("history:site_tracking")).content.decode()
    assert "cdp(&quot;track&quot;, &quot;cart_abandoned&quot;, {sku: &quot;A-1&quot;, price: 19.9});" in html


def test_the_live_check_shows_the_latest_snippet_events_of_each_resource(login, bob, acme, site, shop, anna, gina,
                                                                          django_assert_max_num_queries):
    other = resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "App", "channels": ["email"]})
    for n in range(7):
        _js_event(site, anna, n)
    _js_event(site, anna, 100, source="api")  # sent through the API: not the snippet's
    old = _js_event(site, anna, 200)
    Event.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=8))  # outside the window
    _js_event(other, anna, 300)
    client = login(bob, acme)
    with django_assert_max_num_queries(12):
        html = client.get(reverse("history:site_tracking")).content.decode()
    site_html = _section(html, site.slug)
    assert [f"/p/{n}" in site_html for n in (6, 5, 4, 3, 2, 1, 0)] == [True] * 5 + [False] * 2
    assert site_html.index("/p/6") < site_html.index("/p/2")
    assert "/p/100" not in html and "/p/200" not in html
    assert "anna@shop.example.com" in site_html
    assert 'data-testid="live-waiting"' not in site_html
    app_html = _section(html, other.slug)
    assert "/p/300" in app_html and "/p/6" not in app_html


def test_the_live_check_refreshes_one_resource_as_a_partial(login, bob, acme, site, anna):
    client = login(bob, acme)
    url = reverse("history:site_tracking_events", args=[site.slug])
    waiting = client.get(url, headers={"HX-Request": "true"})
    assert waiting.status_code == 200
    assert b"<html" not in waiting.content
    assert f'hx-get="{url}"'.encode() in waiting.content and b"every 10s" in waiting.content  # polls while empty
    _js_event(site, anna, 1)
    arrived = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "/p/1" in arrived and "every 10s" not in arrived  # stops polling once events show
    plain = client.get(url)
    assert plain.status_code == 302 and plain["Location"].endswith(f"/history/tracking/#site-{site.slug}")


def test_another_accounts_resource_is_a_404_and_not_listed(login, charlie, globex, site, anna):
    _js_event(site, anna, 1)
    client = login(charlie, globex)
    assert client.get(reverse("history:site_tracking_events", args=[site.slug]), headers={"HX-Request": "true"}).status_code == 404
    html = client.get(reverse("history:site_tracking")).content.decode()
    assert site.public_key not in html and "/p/1" not in html
    assert "No resources yet" in html


def test_without_resources_it_points_to_creating_one(login, olivia, bob, acme):
    html = login(olivia, acme).get(reverse("history:site_tracking")).content.decode()
    assert "No resources yet" in html and reverse("resources:create") in html
    assert reverse("resources:create") not in login(bob, acme).get(reverse("history:site_tracking")).content.decode()


def test_the_page_needs_a_signed_in_member(client):
    response = client.get(reverse("history:site_tracking"))
    assert response.status_code == 302 and "/login/" in response["Location"]
