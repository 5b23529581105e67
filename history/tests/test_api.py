"""The history API: sending events (one and in batches) with per-item results, a profile's events
(cursor and filters), event types; roles and other accounts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone as tz

from accounts.access import Actor
from accounts.permissions import Role
from accounts.services import api_token_create
from history.catalogue import type_id
from history.models import Event, EventType, Link
from history.services import EventIn, events_ingest
from profiles.models import Profile
from profiles.services import database_create
from resources.services import resource_create

SYSTEM = Actor.system()
BATCH = "/api/v1/events/batch"


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


@pytest.fixture
def sender(acme, caller):
    """A marketer's token that may not create profiles."""
    return caller(acme, Role.MARKETER, name="shop backend")


@pytest.fixture
def creator(acme, sender):
    _, raw = api_token_create(account=acme, name="signup collector", role=Role.MARKETER, actor=SYSTEM, create_profiles=True)
    return type(sender)(sender.client, raw)  # the root conftest's Caller, for this token


def _ago(**kw) -> str:
    return (tz.now() - timedelta(**kw)).isoformat()


# --- the batch ---------------------------------------------------------------------------------------


def test_it_stores_a_batch_and_answers_a_result_per_item(sender, shop, anna, ben, cart_abandoned):
    response = sender.post(BATCH, {"database": shop.slug, "events": [
        {"id": "o-1", "event": "order.placed", "time": _ago(hours=1), "profile": {"email": "ANNA@shop.example.com"},
         "properties": {"order_id": "1001", "total": "59.90"}, "channel": "web"},
        {"id": "c-1", "event": "cart_abandoned", "profile": {"customer_id": "C-1"}, "properties": {"sku": "A-1", "price": "9.5"}},
        {"event": "page.viewed", "time": int((tz.now() - timedelta(minutes=5)).timestamp()), "profile": {"id": ben.pk},
         "properties": {"url": "https://shop.example.com/"}},
    ]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["stored"], body["duplicate"], body["error"], body["profiles_created"]) == (3, 0, 0, 0)
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    assert all(r["status"] == "stored" and r["id"] for r in body["results"])
    order = Event.objects.get(pk=body["results"][0]["id"])
    assert (order.profile_id, order.type_id, order.channel, order.source) == (anna.pk, type_id("order.placed"), "web", "api")
    assert order.properties == {"order_id": "1001", "total": 59.9} and order.idempotency_key == "o-1"
    assert Event.objects.get(pk=body["results"][1]["id"]).properties == {"sku": "A-1", "price": 9.5}
    assert Event.objects.get(pk=body["results"][2]["id"]).profile_id == ben.pk


def test_the_batch_runs_a_fixed_number_of_queries(sender, shop, anna, ben, cart_abandoned, django_assert_max_num_queries):
    events = [{"id": f"v-{i}", "event": "page.viewed", "profile": {"email": p.email}, "properties": {"url": f"/p/{i}"}}
              for i in range(100) for p in [(anna, ben)[i % 2]]]
    sender.post(BATCH, {"events": events[:1]})  # the token's first use writes last_used_at
    with django_assert_max_num_queries(11):
        response = sender.post(BATCH, {"events": events})
    assert response.json()["stored"] == 99  # v-0 was stored by the first request
    assert response.json()["duplicate"] == 1


def test_each_bad_item_gets_its_own_error_and_the_rest_is_stored(sender, shop, anna, cart_abandoned):
    now = tz.now()
    ok = {"event": "page.viewed", "profile": {"email": anna.email}}
    response = sender.post(BATCH, {"events": [
        {**ok, "id": "good-1"},                                                                   # 0
        {**ok, "profile": {"email": "nobody@shop.example.com"}},                                  # 1 unknown profile
        {**ok, "event": "wishlist_added"},                                                        # 2 unknown type
        {**ok, "event": "cart_abandoned", "properties": {"sku": "A", "price": "cheap"}},           # 3 wrong type
        {**ok, "event": "cart_abandoned", "properties": {"price": 3}},                            # 4 required missing
        {**ok, "time": (now + timedelta(days=3)).isoformat()},                                    # 5 far future
        {**ok, "time": "1990-01-01T00:00:00Z"},                                                   # 6 far past
        {**ok, "id": "good-1"},                                                                   # 7 duplicate id in the batch
        {**ok, "properties": {"blob": "x" * 20_000}},                                             # 8 oversize
        {**ok, "event": "message.opened"},                                                        # 9 platform-only type
        {**ok, "profile": {"first_name": "Anna"}},                                                # 10 not a match key
        {**ok, "colour": "red"},                                                                  # 11 unknown key
        "page.viewed",                                                                            # 12 not an object
        {**ok, "time": "next tuesday"},                                                           # 13 unreadable time
        {**ok, "channel": "fax"},                                                                 # 14 unknown channel
        {**ok, "id": "good-2", "time": _ago(days=1)},                                             # 15
    ]})
    assert response.status_code == 200
    body = response.json()
    by = {r["index"]: r for r in body["results"]}
    assert (body["stored"], body["duplicate"], body["error"]) == (2, 1, 13)
    assert by[0]["status"] == by[15]["status"] == "stored"
    assert by[7] == {"index": 7, "status": "duplicate", "id": by[0]["id"]}

    def err(i: int) -> tuple[str, str]:
        assert by[i]["status"] == "error" and "id" not in by[i], by[i]
        return by[i]["error"]["field"], by[i]["error"]["message"]

    assert err(1) == ("profile.email", "no profile with this key (this token may not create profiles)")
    assert err(2)[0] == "event" and "unknown event type 'wishlist_added'" in err(2)[1]
    assert err(3)[0] == "properties.price" and "not a number" in err(3)[1]
    assert err(4) == ("properties.sku", "is required")
    assert err(5)[0] == "time" and "future" in err(5)[1]
    assert err(6)[0] == "time" and "10 years" in err(6)[1]
    assert err(8)[0] == "properties" and "16 KB" in err(8)[1]
    assert err(9)[0] == "event" and "recorded by the platform" in err(9)[1]
    assert err(10)[0] == "profile" and "'first_name' is not a match key" in err(10)[1]
    assert err(11)[0] == "colour" and "unknown key" in err(11)[1]
    assert "expected an event object" in err(12)[1]
    assert err(13)[0] == "time" and "ISO 8601" in err(13)[1]
    assert err(14)[0] == "channel"
    assert sorted(Event.objects.filter(account_id=shop.account_id).values_list("idempotency_key", flat=True),
                  key=str) == ["good-1", "good-2"]
    assert not Profile.objects.filter(email="nobody@shop.example.com").exists()


def test_a_token_that_may_create_profiles_creates_unknown_ones(creator, sender, shop, anna):
    events = [{"id": f"s-{i}", "event": "form.submitted", "profile": {"email": email}, "properties": {"form": "newsletter"}}
              for i, email in enumerate(["new.one@shop.example.com", "New.One@shop.example.com", anna.email,
                                         "new.two@shop.example.com", "not an address"])]
    refused = sender.post(BATCH, {"events": events}).json()
    assert (refused["stored"], refused["error"], refused["profiles_created"]) == (1, 4, 0)

    body = creator.post(BATCH, {"events": events}).json()
    assert (body["stored"], body["duplicate"], body["error"], body["profiles_created"]) == (3, 1, 1, 2)
    assert body["results"][4]["error"]["field"] == "profile.email"
    one = Profile.objects.get(database=shop, email="new.one@shop.example.com")
    assert Event.objects.filter(profile_id=one.pk).count() == 2
    assert Profile.objects.filter(database=shop).count() == 3


def test_resending_a_batch_stores_nothing_twice(sender, shop, anna):
    payload = {"events": [{"id": f"r-{i}", "event": "page.viewed", "profile": {"email": anna.email}} for i in range(5)]}
    first = sender.post(BATCH, payload).json()
    again = sender.post(BATCH, payload).json()
    assert (first["stored"], again["stored"], again["duplicate"]) == (5, 0, 5)
    assert [r["id"] for r in again["results"]] == [r["id"] for r in first["results"]]
    assert Event.objects.filter(account_id=shop.account_id).count() == 5


def test_an_idempotency_key_replays_the_first_answer(sender, shop, anna):
    payload = {"events": [{"event": "page.viewed", "profile": {"email": anna.email}}]}  # no event id
    first = sender.post(BATCH, payload, headers={"Idempotency-Key": "batch-7"})
    again = sender.post(BATCH, payload, headers={"Idempotency-Key": "batch-7"})
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert Event.objects.filter(account_id=shop.account_id).count() == 1
    other = sender.post(BATCH, {"events": []}, headers={"Idempotency-Key": "batch-7"})
    assert other.status_code == 409 and _error(other)["code"] == "idempotency_key_reused"


def test_malformed_json_is_refused_saying_where(sender, shop, anna):
    body = '{"events": [\n  {"event": "page.viewed",, "profile": {}}\n]}'
    response = sender.client.post(BATCH, body, content_type="application/json", headers=sender.headers)
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_json" and "line 2, column 27" in error["message"]
    assert error["details"][0]["loc"] == ["body"]
    empty = sender.client.post(BATCH, "", content_type="application/json", headers=sender.headers)
    assert empty.status_code == 400 and "empty" in _error(empty)["message"]
    binary = sender.client.post(BATCH, b'{"events": ["\xff\xfe"]}', content_type="application/json", headers=sender.headers)
    assert binary.status_code == 400 and "UTF-8" in _error(binary)["message"]


@pytest.mark.parametrize(("payload", "loc", "says"), [
    ([{"event": "page.viewed"}], ["body"], "expected a JSON object, got an array"),
    ({"database": "shop-customers"}, ["events"], "give the events as an array"),
    ({"events": {"event": "page.viewed"}}, ["events"], "expected an array of events"),
    ({"events": [], "create_profiles": True}, ["create_profiles"], "unknown key"),
    ({"events": [], "database": 7}, ["database"], "expected the database's slug"),
])
def test_a_batch_that_cannot_be_read_is_refused_whole(sender, shop, payload, loc, says):
    response = sender.post(BATCH, payload)
    assert response.status_code == 422
    error = _error(response)
    assert error["details"][0]["loc"] == loc and says in error["message"]


def test_a_batch_over_the_limit_is_refused_with_the_limit_and_the_count(sender, shop, anna):
    events = [{"id": f"x-{i}", "event": "page.viewed", "profile": {"email": anna.email}} for i in range(1001)]
    response = sender.post(BATCH, {"events": events})
    assert response.status_code == 422
    error = _error(response)
    assert "at most 1,000 events" in error["message"] and "this one has 1,001" in error["message"]
    assert error["details"][0]["loc"] == ["events"]
    assert not Event.objects.filter(account_id=shop.account_id).exists()
    assert sender.post(BATCH, {"events": events[:1000]}).json()["stored"] == 1000


def test_the_database_may_be_left_out_only_when_the_account_has_one(sender, acme, shop, anna):
    event = {"event": "page.viewed", "profile": {"email": anna.email}}
    assert sender.post(BATCH, {"events": [event]}).json()["stored"] == 1
    database_create(account=acme, name="Newsletter readers", actor=SYSTEM)
    response = sender.post(BATCH, {"events": [event]})
    assert response.status_code == 422
    assert _error(response)["details"][0]["loc"] == ["database"] and "several" in _error(response)["message"]
    assert sender.post(BATCH, {"database": shop.slug, "events": [event]}).json()["stored"] == 1


def test_another_accounts_database_or_profile_is_not_reachable(sender, shop, anna, gina):
    response = sender.post(BATCH, {"database": gina.database.slug, "events": [{"event": "page.viewed", "profile": {"id": gina.pk}}]})
    assert response.status_code == 404 and _error(response)["details"][0]["loc"] == ["database"]
    body = sender.post(BATCH, {"events": [{"event": "page.viewed", "profile": {"id": gina.pk}}]}).json()
    assert body["results"][0]["error"]["field"] == "profile.id"
    assert not Event.objects.filter(profile_id=gina.pk).exists()


def test_an_analyst_token_cannot_send_events(caller, acme, shop, anna):
    analyst = caller(acme, Role.ANALYST)
    event = {"event": "page.viewed", "profile": {"email": anna.email}}
    for path, payload in ((BATCH, {"events": [event]}), ("/api/v1/events", event)):
        response = analyst.post(path, payload)
        assert response.status_code == 403, path
        assert "Analyst role cannot edit profiles" in _error(response)["message"]
    assert not Event.objects.filter(account_id=acme.pk).exists()


def test_it_needs_a_token(client, shop):
    response = client.post(BATCH, "{}", content_type="application/json")
    assert response.status_code == 401 and _error(response)["code"] == "unauthorized"


# --- one event ---------------------------------------------------------------------------------------


def test_one_event_is_201_when_stored_and_200_when_already_stored(sender, shop, anna, cart_abandoned):
    event = {"database": shop.slug, "id": "one-1", "event": "cart_abandoned", "profile": {"email": anna.email},
             "properties": {"sku": "A-7", "price": 12}}
    first = sender.post("/api/v1/events", event)
    assert first.status_code == 201
    assert first.json() == {"status": "stored", "id": first.json()["id"], "untyped": False, "profile_created": False}
    again = sender.post("/api/v1/events", event)
    assert again.status_code == 200 and again.json()["status"] == "duplicate" and again.json()["id"] == first.json()["id"]
    assert Event.objects.filter(account_id=shop.account_id).count() == 1


def test_one_invalid_event_is_422_naming_the_field(sender, creator, shop, anna, cart_abandoned):
    response = sender.post("/api/v1/events", {"event": "cart_abandoned", "profile": {"email": anna.email},
                                              "properties": {"sku": "A-7", "price": "a lot"}})
    assert response.status_code == 422
    error = _error(response)
    assert error["details"][0]["loc"] == ["properties", "price"]
    assert error["message"].startswith("The event was not stored: properties.price:")
    unknown = sender.post("/api/v1/events", {"event": "page.viewed", "profile": {"email": "zoe@shop.example.com"}})
    assert unknown.status_code == 422 and _error(unknown)["details"][0]["loc"] == ["profile", "email"]
    created = creator.post("/api/v1/events", {"event": "page.viewed", "profile": {"email": "zoe@shop.example.com"}})
    assert created.status_code == 201 and created.json()["profile_created"] is True
    assert not Event.objects.filter(properties__sku="A-7").exists()


# --- a profile's events ------------------------------------------------------------------------------


def _events_url(profile: Profile) -> str:
    return f"/api/v1/databases/{profile.database.slug}/profiles/{profile.pk}/events"


def test_a_profiles_events_page_newest_first_with_a_cursor(caller, acme, anna, ben):
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    if base > tz.now():
        base = tz.now() - timedelta(days=30)
    events = [EventIn("page.viewed", anna.pk, base + timedelta(minutes=i), {"n": i}) for i in range(5)]
    # Three at the very same instant: the id orders them, and no page loses or repeats one.
    events += [EventIn("page.viewed", anna.pk, base + timedelta(minutes=2), {"n": f"tie-{i}"}) for i in range(3)]
    events.append(EventIn("page.viewed", ben.pk, base + timedelta(minutes=9), {"n": "ben"}))
    results = events_ingest(account=acme, events=events)
    assert all(r.status == "stored" for r in results)
    reader = caller(acme, Role.ANALYST)
    seen, cursor = [], None
    for _ in range(10):
        body = reader.get(_events_url(anna), {"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        assert len(body["items"]) <= 3
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 8 and len({e["id"] for e in seen}) == 8
    keys = [(e["time"], e["id"]) for e in seen]
    assert keys == sorted(keys, reverse=True)
    assert [e["properties"]["n"] for e in seen[:2]] == [4, 3]
    assert {e["properties"]["n"] for e in seen[2:6]} == {2, "tie-0", "tie-1", "tie-2"}
    bad = reader.get(_events_url(anna), {"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and _error(bad)["code"] == "invalid_cursor"


def test_a_profiles_events_say_what_happened(caller, acme, shop, anna, cart_abandoned, django_assert_max_num_queries):
    resource = resource_create(account=acme, database=shop, values={"name": "Shop news", "channels": ["email"]}, actor=SYSTEM)
    link = Link.objects.create(account=acme, url="https://shop.example.com/sale", url_hash="a" * 64)
    when = tz.now() - timedelta(hours=3)
    events_ingest(account=acme, events=[
        EventIn("message.clicked", anna.pk, when, {"url": link.url}, channel="email", resource_id=resource.pk, mailing_id=11,
                run_id=12, ledger_id=13, link_id=link.pk, machine=True, source="tracking"),
    ])
    reader = caller(acme, Role.ANALYST)
    reader.get(_events_url(anna))  # the token's first use writes last_used_at
    with django_assert_max_num_queries(6):  # token, database, profile, events, resources, links
        [item] = reader.get(_events_url(anna)).json()["items"]
    assert item["event"] == "message.clicked" and item["channel"] == "email" and item["resource"] == resource.slug
    assert (item["mailing_id"], item["run_id"], item["ledger_id"]) == (11, 12, 13)
    assert item["link"] == "https://shop.example.com/sale" and item["machine"] is True and item["untyped"] is False
    assert item["source"] == "tracking" and item["properties"] == {"url": link.url}
    assert datetime.fromisoformat(item["time"].replace("Z", "+00:00")) == when.replace(microsecond=when.microsecond // 1000 * 1000)
    assert item["time"].endswith("Z") and item["received_at"]


def test_a_profiles_events_filter_by_type_and_time(caller, acme, anna, cart_abandoned):
    now = tz.now()
    events_ingest(account=acme, events=[
        EventIn("page.viewed", anna.pk, now - timedelta(days=3)),
        EventIn("order.placed", anna.pk, now - timedelta(days=2), {"order_id": "1"}),
        EventIn("cart_abandoned", anna.pk, now - timedelta(days=1), {"sku": "S"}),
        EventIn("page.viewed", anna.pk, now - timedelta(hours=1)),
    ])
    reader = caller(acme, Role.ANALYST)

    def names(**params) -> list[str]:
        response = reader.get(_events_url(anna), params)
        assert response.status_code == 200, response.content
        return [e["event"] for e in response.json()["items"]]

    assert names(type="page.viewed") == ["page.viewed", "page.viewed"]
    assert names(type="order.placed,cart_abandoned") == ["cart_abandoned", "order.placed"]
    assert reader.get(f"{_events_url(anna)}?type=order.placed&type=cart_abandoned").json()["items"][1]["event"] == "order.placed"
    assert names(since=(now - timedelta(days=2, hours=1)).isoformat()) == ["page.viewed", "cart_abandoned", "order.placed"]
    assert names(until=(now - timedelta(days=2)).isoformat()) == ["page.viewed"]  # until is exclusive
    assert names(since=(now - timedelta(days=2, hours=1)).isoformat(), until=(now - timedelta(hours=2)).isoformat(),
                 type="page.viewed,cart_abandoned") == ["cart_abandoned"]
    unknown = reader.get(_events_url(anna), {"type": "nope"})
    assert unknown.status_code == 422 and _error(unknown)["details"][0]["loc"] == ["query", "type"]
    assert reader.get(_events_url(anna), {"limit": 0}).status_code == 422
    assert reader.get(_events_url(anna), {"limit": 201}).status_code == 422


def test_another_accounts_profile_events_are_404(caller, acme, globex, anna, gina):
    events_ingest(account=globex, events=[EventIn("page.viewed", gina.pk)])
    acme_reader = caller(acme, Role.OWNER)
    assert acme_reader.get(_events_url(gina)).status_code == 404
    assert acme_reader.get(f"/api/v1/databases/{anna.database.slug}/profiles/{gina.pk}/events").status_code == 404
    assert caller(globex, Role.OWNER).get(_events_url(anna)).status_code == 404
    assert caller(globex, Role.OWNER).get(_events_url(gina)).json()["items"][0]["event"] == "page.viewed"


# --- event types -------------------------------------------------------------------------------------


def test_it_lists_system_and_custom_event_types(caller, acme, globex, cart_abandoned):
    from history.services import eventtype_create

    eventtype_create(account=globex, name="globex_only", actor=SYSTEM)
    body = caller(acme, Role.ANALYST).get("/api/v1/event-types").json()
    by = {t["name"]: t for t in body["items"]}
    assert "globex_only" not in by
    assert by["order.placed"]["system"] and by["order.placed"]["public"]
    assert by["message.opened"]["system"] and not by["message.opened"]["public"]
    custom = by["cart_abandoned"]
    assert not custom["system"] and custom["public"] and custom["strict"] and custom["enabled"]
    assert custom["properties"] == [{"name": "sku", "type": "string", "required": True, "choices": None},
                                    {"name": "price", "type": "decimal", "required": False, "choices": None}]
    assert body["items"][-1]["name"] == "cart_abandoned"  # system types first
    one = caller(acme, Role.ANALYST).get("/api/v1/event-types/order.placed").json()
    assert one["name"] == "order.placed" and one["properties"][0] == {"name": "order_id", "type": "string",
                                                                     "required": True, "choices": None}


def test_an_admin_defines_a_type_that_events_must_match(caller, acme, shop, anna):
    admin = caller(acme, Role.ADMIN)
    response = admin.post("/api/v1/event-types", {
        "name": "size_chosen", "label": "Size chosen",
        "properties": [{"name": "size", "type": "enum", "choices": ["S", "M", "L"], "required": True}, {"name": "qty", "type": "integer"}],
    })
    assert response.status_code == 201, response.content
    assert response.json()["strict"] is True and response.json()["properties"][0]["choices"] == ["S", "M", "L"]
    body = admin.post(BATCH, {"events": [
        {"event": "size_chosen", "profile": {"email": anna.email}, "properties": {"size": "M", "qty": "2"}},
        {"event": "size_chosen", "profile": {"email": anna.email}, "properties": {"size": "XXL"}},
    ]}).json()
    assert [r["status"] for r in body["results"]] == ["stored", "error"]
    assert body["results"][1]["error"]["field"] == "properties.size"
    assert Event.objects.get(pk=body["results"][0]["id"]).properties == {"size": "M", "qty": 2}

    # Loose: stored as sent, marked untyped.
    patched = admin.patch("/api/v1/event-types/size_chosen", {"strict": False})
    assert patched.status_code == 200 and patched.json()["strict"] is False
    body = admin.post(BATCH, {"events": [{"event": "size_chosen", "profile": {"email": anna.email}, "properties": {"size": "XXL"}}]}).json()
    assert body["results"][0]["status"] == "stored" and body["results"][0]["untyped"] is True
    stored = Event.objects.get(pk=body["results"][0]["id"])
    assert stored.untyped and stored.properties == {"size": "XXL"}

    # Disabled: refused, the stored ones stay.
    assert admin.patch("/api/v1/event-types/size_chosen", {"enabled": False}).json()["enabled"] is False
    body = admin.post(BATCH, {"events": [{"event": "size_chosen", "profile": {"email": anna.email}, "properties": {"size": "S"}}]}).json()
    assert body["results"][0]["error"] == {"field": "event", "message": "event type 'size_chosen' is disabled"}
    assert Event.objects.filter(type__name="size_chosen").count() == 2


def test_a_type_that_does_not_fit_is_422_naming_the_field(caller, acme, cart_abandoned):
    admin = caller(acme, Role.ADMIN)
    response = admin.post("/api/v1/event-types", {"name": "Bad Name", "properties": [{"name": "ok"}]})
    assert response.status_code == 422 and _error(response)["details"][0]["loc"] == ["name"]
    response = admin.post("/api/v1/event-types", {"name": "fine_name", "properties": [
        {"name": "a", "type": "string"}, {"name": "b", "type": "colour"}, {"name": "c", "type": "enum"}]})
    assert response.status_code == 422
    locs = {tuple(d["loc"]) for d in _error(response)["details"]}
    assert locs == {("properties", 1, "type"), ("properties", 2, "choices")}
    taken = admin.post("/api/v1/event-types", {"name": "cart_abandoned"})
    assert taken.status_code == 422 and "already" in _error(taken)["message"]
    dotted = admin.post("/api/v1/event-types", {"name": "order.placed"})
    assert dotted.status_code == 422 and _error(dotted)["details"][0]["loc"] == ["name"]
    patch = admin.patch("/api/v1/event-types/cart_abandoned", {"properties": [{"name": "sku", "type": "nope"}]})
    assert patch.status_code == 422 and _error(patch)["details"][0]["loc"] == ["properties", 0, "type"]
    assert EventType.objects.get(account=acme, name="cart_abandoned").properties[0]["type"] == "string"
    assert not EventType.objects.filter(name="fine_name").exists()


def test_system_types_cannot_be_changed_or_deleted(caller, acme):
    admin = caller(acme, Role.ADMIN)
    for response in (admin.patch("/api/v1/event-types/order.placed", {"label": "Bought"}),
                     admin.delete("/api/v1/event-types/order.placed")):
        assert response.status_code == 422
        assert _error(response)["code"] == "system_type" and "custom type" in _error(response)["message"]
    assert EventType.objects.get(name="order.placed").label == "Order placed"


def test_a_type_with_events_is_disabled_not_deleted(caller, acme, anna, cart_abandoned):
    admin = caller(acme, Role.ADMIN)
    events_ingest(account=acme, events=[EventIn("cart_abandoned", anna.pk, None, {"sku": "Z"})])
    response = admin.delete("/api/v1/event-types/cart_abandoned")
    assert response.status_code == 409
    assert "Disable it instead" in _error(response)["message"]
    Event.objects.filter(type_id=cart_abandoned.pk).delete()
    assert admin.delete("/api/v1/event-types/cart_abandoned").status_code == 204
    assert not EventType.objects.filter(pk=cart_abandoned.pk).exists()


def test_only_admins_manage_types_and_other_accounts_types_are_404(caller, acme, globex, cart_abandoned):
    marketer = caller(acme, Role.MARKETER)
    assert marketer.post("/api/v1/event-types", {"name": "tried"}).status_code == 403
    assert marketer.patch("/api/v1/event-types/cart_abandoned", {"label": "x"}).status_code == 403
    assert marketer.delete("/api/v1/event-types/cart_abandoned").status_code == 403
    assert marketer.get("/api/v1/event-types/cart_abandoned").status_code == 200
    outsider = caller(globex, Role.OWNER)
    for response in (outsider.get("/api/v1/event-types/cart_abandoned"),
                     outsider.patch("/api/v1/event-types/cart_abandoned", {"label": "mine"}),
                     outsider.delete("/api/v1/event-types/cart_abandoned")):
        assert response.status_code == 404
    assert EventType.objects.get(pk=cart_abandoned.pk).label == "Cart abandoned"
    # Globex may define its own type of the same name.
    assert outsider.post("/api/v1/event-types", {"name": "cart_abandoned"}).status_code == 201


def test_the_openapi_document_describes_the_batch(client):
    schema = json.loads(client.get("/api/v1/openapi.json").content)
    batch = schema["paths"]["/api/v1/events/batch"]["post"]
    body = batch["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["events"]["maxItems"] == 1000
    assert "profile" in body["properties"]["events"]["items"]["properties"]
    assert "/api/v1/event-types/{name}" in schema["paths"]
