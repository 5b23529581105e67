"""The resources REST API: resources, a profile's subscriptions and ledger, subscribe by match key,
and the suppression list. Every write goes through the services and lands in the consent ledger as
the token, from the API; another account's objects are 404; an analyst's token cannot write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.access import Actor
from accounts.models import AuditEvent
from accounts.permissions import Role
from profiles.models import Profile
from profiles.services import profile_create, profile_erase
from resources.models import ConsentRecord, Resource, Status, Subscription, Suppression
from resources.services import Via, subscription_create, suppression_add

UA = "crm-sync/2.1"  # what the `caller` fixture sends

SYSTEM = Actor.system()
UI = Via(source="ui")


@pytest.fixture
def admin(caller, acme):
    return caller(acme, Role.ADMIN)


@pytest.fixture
def marketer(caller, acme):
    return caller(acme, Role.MARKETER)


@pytest.fixture
def analyst(caller, acme):
    return caller(acme, Role.ANALYST)


@pytest.fixture
def outsider(caller, globex):
    """charlie's account's owner token: no permission stops it before the lookup."""
    return caller(globex, Role.OWNER)


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def _locs(error: dict) -> list[list]:
    return [d["loc"] for d in error["details"]]


def _subs_url(profile: Profile) -> str:
    return f"/api/v1/databases/{profile.database.slug}/profiles/{profile.pk}/subscriptions"


def _sms(profile, resource, address="+4915112345678", **kw) -> Subscription:
    return subscription_create(profile=profile, resource=resource, channel="sms", address=address, actor=SYSTEM, via=UI, **kw)


# --- resources ------------------------------------------------------------------------------------


def test_it_creates_a_resource(admin, shop):
    response = admin.post("/api/v1/resources", {
        "database": shop.slug, "name": "Weekly digest", "channels": ["email", "telegram"],
        "categories": ["news:News", {"key": "offers", "label": "Special offers"}], "double_opt_in": ["email"],
        "preference_editable_fields": ["first_name"], "language": "ru", "subscribe_redirect_url": "https://shop.example/thanks",
    })
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "weekly-digest" and body["database"] == shop.slug
    assert body["channels"] == ["email", "telegram"]
    assert body["categories"] == [{"key": "news", "label": "News"}, {"key": "offers", "label": "Special offers"}]
    assert body["double_opt_in"] == ["email"]
    assert body["preference_visible_fields"] == ["first_name"]
    assert body["counts"]["email"]["total"] == 0 and body["public_key"].startswith("pk_")
    resource = Resource.objects.get(slug="weekly-digest")
    assert resource.language == "ru" and resource.subscribe_redirect_url == "https://shop.example/thanks"


def test_it_refuses_an_invalid_resource_naming_the_fields(admin, shop, news):
    response = admin.post("/api/v1/resources", {
        "database": shop.slug, "name": "Mails", "channels": ["email"], "double_opt_in": ["sms"],
        "preference_visible_fields": ["shoe_size"],
    })
    error = _error(response, 422)
    assert ["double_opt_in"] in _locs(error) and ["preference_visible_fields"] in _locs(error)
    error = _error(admin.post("/api/v1/resources", {"database": shop.slug, "name": "Again", "slug": news.slug}), 422)
    assert _locs(error) == [["slug"]]
    error = _error(admin.post("/api/v1/resources", {"database": shop.slug, "name": "Fax", "channels": ["fax"]}), 422)
    assert error["details"][0]["loc"][0] == "channels"
    error = _error(admin.post("/api/v1/resources", {"database": "nope", "name": "X"}), 404)
    assert _locs(error) == [["database"]]
    assert list(Resource.objects.values_list("slug", flat=True)) == [news.slug]


def test_it_lists_resources_page_by_page(analyst, acme, shop, news):
    from resources.services import resource_create

    for name in ("Blog", "App"):
        resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": name})
    first = analyst.get("/api/v1/resources", {"limit": 2}).json()
    assert [r["name"] for r in first["items"]] == ["App", "Blog"] and first["next_cursor"]
    second = analyst.get("/api/v1/resources", {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["name"] for r in second["items"]] == ["Shop news"] and second["next_cursor"] is None
    _error(analyst.get("/api/v1/resources", {"cursor": "garbage!"}), 400)


def test_it_shows_a_resource_with_counts_per_channel_and_status(analyst, news, anna, ben):
    _sms(anna, news)
    _sms(ben, news, address="+4915199999999", status=Status.UNSUBSCRIBED)
    body = analyst.get(f"/api/v1/resources/{news.slug}").json()
    assert body["counts"]["sms"]["subscribed"] == 1 and body["counts"]["sms"]["unsubscribed"] == 1
    assert body["counts"]["sms"]["total"] == 2 and body["counts"]["email"]["total"] == 0
    assert set(body["counts"]) == set(news.channels)


def test_it_rotates_the_public_key_and_the_old_one_stops_working(admin, marketer, news):
    old = news.public_key
    assert _error(marketer.post(f"/api/v1/resources/{news.slug}/rotate-key"), 403)
    body = admin.post(f"/api/v1/resources/{news.slug}/rotate-key").json()
    assert body["public_key"] != old and body["public_key"].startswith("pk_")
    news.refresh_from_db()
    assert news.public_key == body["public_key"]
    assert admin.client.post(f"/p/subscribe/{old}/", {"email": "late@example.com"}).status_code == 404
    assert AuditEvent.objects.filter(verb="resource.key_rotated", target_id=str(news.pk)).exists()


def test_it_deletes_a_resource_with_its_subscriptions(admin, marketer, analyst, news, anna):
    _sms(anna, news)
    for who in (marketer, analyst):
        _error(who.delete(f"/api/v1/resources/{news.slug}"), 403)
    assert Resource.objects.filter(pk=news.pk).exists()
    assert admin.delete(f"/api/v1/resources/{news.slug}").status_code == 204
    assert not Resource.objects.filter(pk=news.pk).exists()
    assert not Subscription.objects.exists() and not ConsentRecord.objects.exists()
    event = AuditEvent.objects.get(verb="resource.deleted")
    assert event.data["subscriptions"] == 1
    _error(admin.delete(f"/api/v1/resources/{news.slug}"), 404)


def test_it_patches_only_the_fields_sent(admin, news):
    response = admin.patch(f"/api/v1/resources/{news.slug}", {"name": "Shop letters", "double_opt_in": []})
    assert response.status_code == 200, response.content
    news.refresh_from_db()
    assert news.name == "Shop letters" and news.double_opt_in == []
    assert len(news.categories) == 3 and news.channels == ["email", "sms", "webpush", "mobilepush", "telegram"]


def test_it_refuses_to_remove_a_channel_with_subscriptions(admin, news, anna):
    _sms(anna, news)
    error = _error(admin.patch(f"/api/v1/resources/{news.slug}", {"channels": ["email"], "name": "Only mail"}), 422)
    assert _locs(error) == [["channels"]]
    news.refresh_from_db()
    assert "sms" in news.channels and news.name == "Shop news"


def test_only_admins_configure_resources(marketer, analyst, shop, news):
    for who in (marketer, analyst):
        _error(who.post("/api/v1/resources", {"database": shop.slug, "name": "Nope"}), 403)
        _error(who.patch(f"/api/v1/resources/{news.slug}", {"name": "Nope"}), 403)
    assert Resource.objects.get().name == "Shop news"
    assert analyst.get(f"/api/v1/resources/{news.slug}").status_code == 200


# --- a profile's subscriptions --------------------------------------------------------------------


def test_it_adds_a_subscription_that_awaits_double_opt_in(marketer, news, anna):
    response = marketer.post(_subs_url(anna), {"resource": news.slug, "channel": "email", "opted_out": ["offers"]})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["address"] == anna.email and body["status"] == "unconfirmed" and body["opted_out"] == ["offers"]
    assert body["profile"] == anna.pk and body["resource"] == news.slug and body["priority"] == 1
    record = ConsentRecord.objects.get(subscription_id=body["id"])
    assert (record.actor_type, record.source, record.user_agent) == ("token", "api", UA)
    assert record.actor_label == "API token “crm sync”" and record.new_status == "unconfirmed"


def test_it_adds_a_confirmed_subscription_at_a_given_address(marketer, news, anna):
    body = marketer.post(_subs_url(anna), {"resource": news.slug, "channel": "sms", "address": "0151 99999999",
                                           "priority": 2, "meta": {"carrier": "o2"}}).json()
    assert (body["address"], body["status"], body["priority"], body["meta"]) == ("+4915199999999", "subscribed", 2, {"carrier": "o2"})
    body = marketer.post(_subs_url(anna), {"resource": news.slug, "channel": "email", "confirmed": True}).json()
    assert body["status"] == "subscribed" and body["confirmed_at"]


@pytest.mark.parametrize(("data", "loc"), [
    ({"channel": "email", "address": "not-an-email"}, ["address"]),
    ({"channel": "telegram", "address": "@someone"}, ["address"]),
    ({"channel": "fax", "address": "123"}, ["channel"]),
    ({"channel": "sms", "status": "complained"}, ["status"]),
    ({"channel": "sms", "opted_out": ["gossip"]}, ["opted_out"]),
    ({"channel": "webpush"}, ["address"]),
])
def test_it_refuses_an_invalid_subscription_naming_the_field(marketer, news, anna, data, loc):
    error = _error(marketer.post(_subs_url(anna), {"resource": news.slug, **data}), 422)
    assert loc in _locs(error) or [d["loc"][: len(loc)] for d in error["details"]] == [loc]
    assert not Subscription.objects.exists() and not ConsentRecord.objects.exists()


def test_it_refuses_a_channel_the_resource_lacks_and_an_unknown_resource(marketer, acme, shop, anna):
    from resources.services import resource_create

    mails = resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "Mails", "channels": ["email"]})
    error = _error(marketer.post(_subs_url(anna), {"resource": mails.slug, "channel": "sms"}), 422)
    assert _locs(error) == [["channel"]] and "not enabled" in error["message"]
    error = _error(marketer.post(_subs_url(anna), {"resource": "nope", "channel": "sms"}), 404)
    assert _locs(error) == [["resource"]]
    assert not Subscription.objects.exists()


def test_it_lists_a_profiles_subscriptions_with_filters(analyst, news, anna, ben):
    sms = _sms(anna, news)
    second = _sms(anna, news, address="+4915199999999", status=Status.UNSUBSCRIBED)
    _sms(ben, news, address="+4915177777777")
    tg = subscription_create(profile=anna, resource=news, channel="telegram", address="123456789", actor=SYSTEM, via=UI)
    body = analyst.get(_subs_url(anna)).json()
    assert [s["id"] for s in body["items"]] == [tg.pk, second.pk, sms.pk] and body["next_cursor"] is None
    assert [s["id"] for s in analyst.get(_subs_url(anna), {"channel": "sms"}).json()["items"]] == [second.pk, sms.pk]
    assert [s["id"] for s in analyst.get(_subs_url(anna), {"status": "unsubscribed"}).json()["items"]] == [second.pk]
    assert len(analyst.get(_subs_url(anna), {"resource": news.slug}).json()["items"]) == 3
    page = analyst.get(_subs_url(anna), {"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    assert analyst.get(_subs_url(anna), {"limit": 2, "cursor": page["next_cursor"]}).json()["items"][0]["id"] == sms.pk
    assert _locs(_error(analyst.get(_subs_url(anna), {"channel": "fax"}), 422))[0][:2] == ["query", "channel"]
    assert _locs(_error(analyst.get(_subs_url(anna), {"resource": "nope"}), 404)) == [["query", "resource"]]


def test_it_changes_status_categories_priority_and_meta(marketer, news, anna):
    sub = _sms(anna, news)
    url = f"{_subs_url(anna)}/{sub.pk}"
    response = marketer.patch(url, {"status": "unsubscribed", "reason": "asked by phone", "opted_out": ["news"],
                                    "priority": 3, "meta": {"carrier": "o2"}})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["reason"], body["opted_out"], body["priority"], body["meta"]) == (
        "unsubscribed", "asked by phone", ["news"], 3, {"carrier": "o2"})
    records = list(ConsentRecord.objects.filter(subscription=sub, source="api").order_by("id"))
    assert [(r.action, r.old_status, r.new_status, r.actor_type) for r in records] == [
        ("status", "subscribed", "unsubscribed", "token"), ("categories", "unsubscribed", "unsubscribed", "token")]
    assert records[0].reason == "asked by phone" and records[0].user_agent == UA


def test_it_pauses_until_a_date_and_needs_the_date(marketer, news, anna):
    sub = _sms(anna, news)
    url = f"{_subs_url(anna)}/{sub.pk}"
    error = _error(marketer.patch(url, {"status": "suspended"}), 422)
    assert _locs(error) == [["until"]]
    error = _error(marketer.patch(url, {"until": (timezone.now() + timedelta(days=3)).isoformat()}), 422)
    assert _locs(error) == [["until"]]
    until = (timezone.now() + timedelta(days=14)).replace(microsecond=0)
    body = marketer.patch(url, {"status": "suspended", "until": until.isoformat()}).json()
    assert body["status"] == "suspended"
    sub.refresh_from_db()
    assert sub.suspended_until == until


def test_it_refuses_to_resubscribe_a_complained_address_without_force(marketer, news, anna):
    sub = _sms(anna, news)
    Subscription.objects.filter(pk=sub.pk).update(status=Status.COMPLAINED)
    url = f"{_subs_url(anna)}/{sub.pk}"
    before = ConsentRecord.objects.count()
    error = _error(marketer.patch(url, {"status": "subscribed", "priority": 4}), 422)
    assert _locs(error) == [["status"]] and "complained" in error["message"]
    error = _error(marketer.patch(url, {"status": "subscribed", "force": True}), 422)
    assert _locs(error) == [["reason"]]
    sub.refresh_from_db()
    assert (sub.status, sub.priority) == ("complained", 1) and ConsentRecord.objects.count() == before

    response = marketer.patch(url, {"status": "subscribed", "force": True, "reason": "renewed consent, ticket 4711"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "subscribed"
    record = ConsentRecord.objects.filter(subscription=sub).latest("id")
    assert (record.old_status, record.new_status, record.reason, record.actor_type, record.source) == (
        "complained", "subscribed", "renewed consent, ticket 4711", "token", "api")


def test_a_refused_patch_changes_nothing(marketer, news, anna):
    sub = _sms(anna, news)
    error = _error(marketer.patch(f"{_subs_url(anna)}/{sub.pk}", {"status": "unsubscribed", "opted_out": ["gossip"]}), 422)
    assert _locs(error) == [["opted_out"]]
    sub.refresh_from_db()
    assert sub.status == "subscribed" and ConsentRecord.objects.filter(subscription=sub).count() == 1


def test_it_deletes_a_subscription_keeping_a_ledger_record(marketer, news, anna):
    sub = _sms(anna, news)
    assert marketer.delete(f"{_subs_url(anna)}/{sub.pk}").status_code == 204
    assert not Subscription.objects.exists()
    record = ConsentRecord.objects.get(action="deleted")
    assert (record.actor_type, record.source, record.old_status) == ("token", "api", "subscribed")
    _error(marketer.delete(f"{_subs_url(anna)}/{sub.pk}"), 404)


def test_a_subscription_of_another_profile_is_not_found(marketer, news, anna, ben):
    sub = _sms(anna, news)
    _error(marketer.patch(f"{_subs_url(ben)}/{sub.pk}", {"status": "unsubscribed"}), 404)
    _error(marketer.delete(f"{_subs_url(ben)}/{sub.pk}"), 404)
    assert Subscription.objects.get().status == "subscribed"


def test_it_pages_through_a_profiles_consent_ledger(analyst, marketer, news, anna):
    sub = _sms(anna, news)
    marketer.patch(f"{_subs_url(anna)}/{sub.pk}", {"status": "unsubscribed"})
    marketer.patch(f"{_subs_url(anna)}/{sub.pk}", {"opted_out": ["offers"]})
    url = f"/api/v1/databases/{anna.database.slug}/profiles/{anna.pk}/consent"
    first = analyst.get(url, {"limit": 2}).json()
    assert [(r["action"], r["actor_type"], r["source"]) for r in first["items"]] == [
        ("categories", "token", "api"), ("status", "token", "api")]
    assert first["items"][1]["old_status"] == "subscribed" and first["items"][1]["new_status"] == "unsubscribed"
    assert first["items"][0]["new_categories"] == ["offers"] and first["items"][0]["resource"] == news.slug
    rest = analyst.get(url, {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [(r["action"], r["actor_type"], r["source"]) for r in rest["items"]] == [("created", "system", "ui")]
    assert rest["next_cursor"] is None


def test_an_analyst_cannot_change_subscriptions(analyst, news, anna):
    sub = _sms(anna, news)
    _error(analyst.post(_subs_url(anna), {"resource": news.slug, "channel": "email"}), 403)
    _error(analyst.patch(f"{_subs_url(anna)}/{sub.pk}", {"status": "unsubscribed"}), 403)
    _error(analyst.delete(f"{_subs_url(anna)}/{sub.pk}"), 403)
    _error(analyst.post(f"/api/v1/resources/{news.slug}/subscribe", {"match": {"email": "x@y.example"}, "channel": "email"}), 403)
    assert list(Subscription.objects.values_list("status", flat=True)) == ["subscribed"]
    assert Profile.objects.count() == 1


# --- subscribe by match key -----------------------------------------------------------------------


def test_it_subscribes_a_new_person_creating_the_profile(marketer, news, shop):
    url = f"/api/v1/resources/{news.slug}/subscribe"
    response = marketer.post(url, {"match": {"email": "Nora@Example.com"}, "profile": {"first_name": "Nora"},
                                   "channel": "email", "opted_out": ["offers"]})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["profile_created"] is True and body["subscription_created"] is True
    assert body["profile"]["status"] == "created" and body["profile"]["database"] == shop.slug
    profile = Profile.objects.get(pk=body["profile"]["id"])
    assert (profile.email, profile.first_name) == ("nora@example.com", "Nora")
    assert body["subscription"]["address"] == "nora@example.com" and body["subscription"]["status"] == "unconfirmed"
    assert body["subscription"]["opted_out"] == ["offers"]
    record = ConsentRecord.objects.get(profile=profile)
    assert (record.actor_type, record.source, record.action) == ("token", "api", "created")


def test_it_subscribes_an_existing_profile_by_a_named_match_key(marketer, news, anna):
    url = f"/api/v1/resources/{news.slug}/subscribe"
    response = marketer.post(url, {"match": "email", "profile": {"email": anna.email, "last_name": "Meyer"},
                                   "channel": "sms", "address": "+49 151 99999999"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["profile"] == {"id": anna.pk, "database": anna.database.slug, "status": "updated"}
    assert body["profile_created"] is False and body["subscription"]["status"] == "subscribed"
    anna.refresh_from_db()
    assert anna.last_name == "Meyer"
    # Subscribing again answers the same subscription (200), unchanged.
    again = marketer.post(url, {"match": {"email": anna.email}, "channel": "sms", "address": "+4915199999999"})
    assert again.status_code == 200 and again.json()["subscription"]["id"] == body["subscription"]["id"]
    assert again.json()["subscription_created"] is False and Subscription.objects.count() == 1


def test_it_resubscribes_an_unsubscribed_address(marketer, news, anna):
    sub = _sms(anna, news, status=Status.UNSUBSCRIBED)
    body = marketer.post(f"/api/v1/resources/{news.slug}/subscribe", {"match": {"email": anna.email}, "channel": "sms"}).json()
    assert body["subscription"]["id"] == sub.pk and body["subscription"]["status"] == "subscribed"


def test_subscribe_needs_force_and_a_reason_for_a_complained_address(marketer, news, anna):
    sub = _sms(anna, news)
    Subscription.objects.filter(pk=sub.pk).update(status=Status.COMPLAINED)
    url = f"/api/v1/resources/{news.slug}/subscribe"
    data = {"match": {"email": anna.email}, "channel": "sms"}
    assert _locs(_error(marketer.post(url, data), 422)) == [["status"]]
    assert _locs(_error(marketer.post(url, {**data, "force": True}), 422)) == [["reason"]]
    assert Subscription.objects.get().status == "complained"
    body = marketer.post(url, {**data, "force": True, "reason": "renewed consent at the till"}).json()
    assert body["subscription"]["status"] == "subscribed"


def test_subscribe_stores_nothing_when_the_subscription_is_refused(marketer, news):
    url = f"/api/v1/resources/{news.slug}/subscribe"
    error = _error(marketer.post(url, {"match": {"email": "nora@example.com"}, "channel": "sms"}), 422)
    assert _locs(error) == [["address"]]  # Nora has no phone number
    error = _error(marketer.post(url, {"match": {"email": "nora@example.com"}, "channel": "telegram", "address": "@nora"}), 422)
    assert _locs(error) == [["address"]]
    error = _error(marketer.post(url, {"match": {"email": "not an email"}, "channel": "email"}), 422)
    assert _locs(error) == [["profile", "email"]]
    error = _error(marketer.post(url, {"match": {"email": "nora@example.com", "phone": "+4930123456"}, "channel": "email"}), 422)
    assert _locs(error) == [["match"]]
    error = _error(marketer.post(url, {"match": {"phone": "+4930123456"}, "channel": "sms"}), 422)
    assert _locs(error) == [["match"]] and "not a match key" in error["message"]
    assert not Profile.objects.exists() and not Subscription.objects.exists() and not ConsentRecord.objects.exists()


def test_subscribe_does_not_bring_back_an_erased_person(marketer, news, shop):
    nora = profile_create(database=shop, values={"email": "nora@example.com"}, actor=SYSTEM)
    profile_erase(profile=nora, actor=SYSTEM)
    error = _error(marketer.post(f"/api/v1/resources/{news.slug}/subscribe",
                                 {"match": {"email": "nora@example.com"}, "channel": "email"}), 409)
    assert error["code"] == "erased"
    assert not Profile.objects.exists() and not Subscription.objects.exists()


def test_subscribe_replays_with_the_same_idempotency_key(marketer, news):
    url = f"/api/v1/resources/{news.slug}/subscribe"
    data = {"match": {"email": "nora@example.com"}, "channel": "email", "confirmed": True}
    headers = {"Idempotency-Key": "signup-nora-1"}
    first = marketer.post(url, data, headers=headers)
    assert first.status_code == 201, first.content
    Subscription.objects.update(status=Status.UNSUBSCRIBED)  # would be resubscribed by a second run
    second = marketer.post(url, data, headers=headers)
    assert second.status_code == 201 and second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Subscription.objects.get().status == "unsubscribed" and ConsentRecord.objects.count() == 1
    other = marketer.post(url, {**data, "channel": "sms"}, headers=headers)
    assert _error(other, 409)["code"] == "idempotency_key_reused"


# --- suppressions ---------------------------------------------------------------------------------


def test_it_adds_one_suppression_guessing_its_kind(admin, acme):
    response = admin.post("/api/v1/suppressions", {"value": " Alice@Example.COM ", "reason": "legal", "note": "ticket 4711"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["value"], body["reason"], body["channel"], body["source"]) == (
        "email", "alice@example.com", "legal", "email", "api")
    assert body["created_by"] == "API token “crm sync”"
    again = admin.post("/api/v1/suppressions", {"value": "alice@example.com"})
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert admin.post("/api/v1/suppressions", {"value": "@competitor.example"}).json()["kind"] == "domain"
    assert admin.post("/api/v1/suppressions", {"kind": "phone", "value": "+49 30 123456"}).json()["value"] == "+4930123456"
    assert Suppression.objects.filter(account=acme).count() == 3


@pytest.mark.parametrize(("data", "loc"), [
    ({"value": "alice@"}, ["value"]),
    ({"kind": "phone", "value": "12"}, ["value"]),
    ({"value": "a@example.com", "reason": "dislike"}, ["reason"]),
    ({"kind": "fax", "value": "123"}, ["kind"]),
    ({}, []),
    ({"value": "a@example.com", "items": [{"value": "b@example.com"}]}, []),
])
def test_it_refuses_an_invalid_suppression_naming_the_field(admin, data, loc):
    error = _error(admin.post("/api/v1/suppressions", data), 422)
    assert error["details"] and error["details"][0]["loc"][: len(loc)] == loc
    assert not Suppression.objects.exists()


def test_it_adds_a_batch_keeping_the_valid_items(admin):
    response = admin.post("/api/v1/suppressions", {"items": [
        {"value": "a@example.com"}, {"value": "not-an-address@"}, {"kind": "domain", "value": "spam.example", "reason": "complaint"},
        {"value": "A@example.com"}, {"reason": "legal"},
    ]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["existing"], body["failed"]) == (2, 1, 2)
    assert [r["status"] for r in body["results"]] == ["created", "failed", "created", "existing", "failed"]
    assert body["results"][1]["errors"][0]["loc"] == ["items", 1, "value"]
    assert body["results"][4]["errors"][0]["loc"] == ["items", 4, "value"]
    assert body["results"][3]["id"] == body["results"][0]["id"]
    assert sorted(Suppression.objects.values_list("value", flat=True)) == ["a@example.com", "spam.example"]


def test_a_batch_holds_at_most_a_thousand_items(admin):
    error = _error(admin.post("/api/v1/suppressions", {"items": [{"value": f"u{i}@example.com"} for i in range(1001)]}), 422)
    assert _locs(error) == [["items"]]
    assert not Suppression.objects.exists()


def test_it_lists_suppressions_with_filters_and_pages(analyst, acme):
    for value in ("alice@example.com", "albert@example.com", "example.org", "+4930123456"):
        suppression_add(account=acme, kind=("domain" if value == "example.org" else "phone" if value[0] == "+" else "email"),
                        value=value, actor=SYSTEM)
    body = analyst.get("/api/v1/suppressions").json()
    assert [s["value"] for s in body["items"]] == ["+4930123456", "example.org", "albert@example.com", "alice@example.com"]
    assert [s["value"] for s in analyst.get("/api/v1/suppressions", {"kind": "email"}).json()["items"]] == [
        "albert@example.com", "alice@example.com"]
    assert [s["value"] for s in analyst.get("/api/v1/suppressions", {"q": "ALI"}).json()["items"]] == ["alice@example.com"]
    page = analyst.get("/api/v1/suppressions", {"limit": 3}).json()
    rest = analyst.get("/api/v1/suppressions", {"limit": 3, "cursor": page["next_cursor"]}).json()
    assert [s["value"] for s in rest["items"]] == ["alice@example.com"] and rest["next_cursor"] is None
    _error(analyst.get("/api/v1/suppressions", {"kind": "fax"}), 422)


def test_it_checks_whether_an_address_is_suppressed(analyst, acme):
    row, _ = suppression_add(account=acme, kind="domain", value="spam.example", actor=SYSTEM, reason="complaint")
    body = analyst.get("/api/v1/suppressions/check", {"channel": "email", "address": "Bob@Spam.example"}).json()
    assert body["suppressed"] is True and body["address"] == "bob@spam.example"
    assert body["suppression"]["id"] == row.pk and body["suppression"]["reason"] == "complaint"
    body = analyst.get("/api/v1/suppressions/check", {"channel": "email", "address": "bob@fine.example"}).json()
    assert body["suppressed"] is False and body["suppression"] is None
    error = _error(analyst.get("/api/v1/suppressions/check", {"channel": "sms", "address": "12"}), 422)
    assert _locs(error) == [["query", "address"]]


def test_it_removes_a_suppression(admin, acme):
    row, _ = suppression_add(account=acme, kind="email", value="alice@example.com", actor=SYSTEM)
    assert admin.delete(f"/api/v1/suppressions/{row.pk}").status_code == 204
    assert not Suppression.objects.exists()
    _error(admin.delete(f"/api/v1/suppressions/{row.pk}"), 404)


def test_only_admins_change_the_suppression_list(marketer, analyst, acme):
    row, _ = suppression_add(account=acme, kind="email", value="alice@example.com", actor=SYSTEM)
    for who in (marketer, analyst):
        _error(who.post("/api/v1/suppressions", {"value": "bob@example.com"}), 403)
        _error(who.post("/api/v1/suppressions", {"items": [{"value": "bob@example.com"}]}), 403)
        _error(who.delete(f"/api/v1/suppressions/{row.pk}"), 403)
    assert list(Suppression.objects.values_list("value", flat=True)) == ["alice@example.com"]


# --- other accounts -------------------------------------------------------------------------------


def test_another_accounts_token_finds_none_of_these_objects(outsider, caller, globex, acme, shop, news, anna, other_db):
    sub = _sms(anna, news)
    row, _ = suppression_add(account=acme, kind="email", value="alice@example.com", actor=SYSTEM)
    subs = _subs_url(anna)
    for response in (
        outsider.get(f"/api/v1/resources/{news.slug}"),
        outsider.patch(f"/api/v1/resources/{news.slug}", {"name": "Mine"}),
        outsider.post(f"/api/v1/resources/{news.slug}/subscribe", {"match": {"email": anna.email}, "channel": "email"}),
        outsider.get(subs),
        outsider.post(subs, {"resource": news.slug, "channel": "email"}),
        outsider.patch(f"{subs}/{sub.pk}", {"status": "unsubscribed"}),
        outsider.delete(f"{subs}/{sub.pk}"),
        outsider.get(f"/api/v1/databases/{shop.slug}/profiles/{anna.pk}/consent"),
        outsider.delete(f"/api/v1/suppressions/{row.pk}"),
        outsider.post("/api/v1/resources", {"database": shop.slug, "name": "Mine"}),
    ):
        _error(response, 404)
    # Through its own database and profile, acme's subscription and resource are still unknown.
    carl = profile_create(database=other_db, values={"email": "carl@globex.example"}, actor=SYSTEM)
    own = _subs_url(carl)
    _error(outsider.patch(f"{own}/{sub.pk}", {"status": "unsubscribed"}), 404)
    _error(outsider.delete(f"{own}/{sub.pk}"), 404)
    assert _locs(_error(outsider.post(own, {"resource": news.slug, "channel": "email"}), 404)) == [["resource"]]
    # Lists hold only its own account's objects.
    assert outsider.get("/api/v1/resources").json()["items"] == []
    assert outsider.get("/api/v1/suppressions").json()["items"] == []
    assert outsider.get("/api/v1/suppressions/check", {"channel": "email", "address": "alice@example.com"}).json()["suppressed"] is False
    sub.refresh_from_db()
    assert sub.status == "subscribed" and Suppression.objects.count() == 1 and Profile.objects.filter(database=shop).count() == 1
    assert Resource.objects.get(pk=news.pk).name == "Shop news" and Resource.objects.filter(account=globex).count() == 0


# --- document -------------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_resource_endpoints(db, client):
    doc = client.get("/api/v1/openapi.json").json()
    paths = doc["paths"]
    assert set(paths["/api/v1/resources"]) == {"get", "post"}
    assert set(paths["/api/v1/resources/{resource}"]) == {"get", "patch", "delete"}
    assert set(paths["/api/v1/databases/{db}/profiles/{profile_id}/subscriptions"]) == {"get", "post"}
    assert set(paths["/api/v1/databases/{db}/profiles/{profile_id}/subscriptions/{subscription_id}"]) == {"patch", "delete"}
    assert set(paths["/api/v1/suppressions"]) == {"get", "post"}
    assert "post" in paths["/api/v1/resources/{resource}/subscribe"] and "post" in paths["/api/v1/resources/{resource}/rotate-key"]
    assert paths["/api/v1/suppressions/{suppression_id}"]["delete"]["tags"] == ["suppressions"]
    schemas = doc["components"]["schemas"]
    assert schemas["SubscribeIn"]["examples"] and schemas["SubscriptionPatch"]["examples"]
    assert schemas["SuppressionIn"]["properties"]["items"]["maxItems"] == 1000
    assert set(schemas["SubscriptionOut"]["properties"]["status"]["enum"]) == set(Status.values)
