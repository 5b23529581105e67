"""The public pages: unsubscribe, one-click, preferences, double opt-in and the subscribe endpoint."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.access import Actor
from profiles.models import Profile, ProfileChange
from profiles.services import profile_create, profile_erase
from resources import services, tokens
from resources.models import ConsentRecord, Status, Subscription
from resources.services import Via, resource_update, subscription_create

SYSTEM = Actor.system()
VIA = Via(source="test")


def _sub(profile, resource, channel="email", address=None, **kwargs) -> Subscription:
    address = address or (profile.email if channel == "email" else profile.phone)
    return subscription_create(profile=profile, resource=resource, channel=channel, address=address, actor=SYSTEM, via=VIA,
                               confirmed=True, **kwargs)


@pytest.fixture
def anna_email(news, anna) -> Subscription:
    return _sub(anna, news)


@pytest.fixture
def anna_sms(news, anna) -> Subscription:
    return _sub(anna, news, "sms")


@pytest.fixture
def ben_email(news, ben) -> Subscription:
    return _sub(ben, news)


def _url(name: str, purpose: str, sub: Subscription) -> str:
    return reverse(f"public:{name}", args=[tokens.make_token(purpose, sub)])


def _ledger(sub: Subscription):
    return ConsentRecord.objects.filter(subscription=sub).exclude(source="test")


def _status(sub: Subscription) -> str:
    return Subscription.objects.get(pk=sub.pk).status


# --- unsubscribe ------------------------------------------------------------------------------------


def test_it_shows_the_unsubscribe_question_without_changing_anything(client, anna_email):
    response = client.get(_url("unsubscribe", tokens.UNSUBSCRIBE, anna_email))
    assert response.status_code == 200
    text = response.content.decode()
    assert "Unsubscribe" in text and "anna@shop.example.com" in text and "Shop news" in text
    assert _status(anna_email) == Status.SUBSCRIBED
    assert not _ledger(anna_email).exists()
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    assert "noindex" in response["X-Robots-Tag"]
    assert 'name="viewport"' in text


def test_it_unsubscribes_on_post_and_records_it(anna_email):
    client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT="Firefox/140", REMOTE_ADDR="203.0.113.9")
    url = _url("unsubscribe", tokens.UNSUBSCRIBE, anna_email)
    page = client.get(url)
    assert not page.cookies  # public pages set no cookie at all
    response = client.post(url)
    assert response.status_code == 302
    assert _status(anna_email) == Status.UNSUBSCRIBED
    record = _ledger(anna_email).get()
    assert (record.source, record.actor_type, record.ip, record.user_agent) == ("link", "subscriber", "203.0.113.9", "Firefox/140")
    assert (record.old_status, record.new_status) == ("subscribed", "unsubscribed")
    done = client.get(url)
    assert "You are unsubscribed" in done.content.decode()
    assert reverse("public:preferences", args=["x"]).split("x")[0] in done.content.decode()


def test_it_unsubscribes_by_one_click_without_cookies_or_csrf(anna_email):
    client = Client(enforce_csrf_checks=True)
    url = _url("one_click", tokens.UNSUBSCRIBE, anna_email)
    for _ in range(2):
        response = client.post(url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
        assert not response.cookies
    assert _status(anna_email) == Status.UNSUBSCRIBED
    record = _ledger(anna_email).get()
    assert (record.source, record.actor_type) == ("one-click", "subscriber")


def test_it_sends_a_one_click_get_to_the_question(client, anna_email):
    token = tokens.make_token(tokens.UNSUBSCRIBE, anna_email)
    response = client.get(reverse("public:one_click", args=[token]))
    assert response.status_code == 302
    assert response["Location"] == reverse("public:unsubscribe", args=[token])
    assert _status(anna_email) == Status.SUBSCRIBED


@pytest.mark.parametrize("kind", ["forged", "other_purpose", "edited"])
def test_it_refuses_bad_tokens_and_changes_nothing(kind, anna_email, ben_email):
    if kind == "forged":
        token = "W1sxLDJd:not-a-signature"
    elif kind == "other_purpose":
        token = tokens.make_token(tokens.PREFERENCES, anna_email)
    else:
        # Anna's signature on Ben's subscription id.
        good = tokens.make_token(tokens.UNSUBSCRIBE, anna_email)
        forged = tokens.make_token(tokens.UNSUBSCRIBE, ben_email)
        token = forged.split(":")[0] + ":" + good.split(":", 1)[1]
    client = Client(enforce_csrf_checks=False)
    for name in ("unsubscribe", "one_click"):
        response = client.post(reverse(f"public:{name}", args=[token]))
        assert response.status_code == 404
    page = client.get(reverse("public:unsubscribe", args=[token]))
    assert page.status_code == 404
    assert "This link is no longer valid" in page.content.decode()
    assert "anna@" not in page.content.decode() and "ben@" not in page.content.decode()
    assert _status(anna_email) == _status(ben_email) == Status.SUBSCRIBED
    assert not ConsentRecord.objects.exclude(source="test").exists()


def test_it_refuses_a_token_whose_subscription_moved_to_another_profile(client, anna_email, ben):
    token = tokens.make_token(tokens.UNSUBSCRIBE, anna_email)
    Subscription.objects.filter(pk=anna_email.pk).update(profile=ben)
    assert client.post(reverse("public:unsubscribe", args=[token])).status_code == 404
    assert _status(anna_email) == Status.SUBSCRIBED


def test_it_shows_a_neutral_page_for_an_erased_profile(client, anna_email, anna):
    urls = [_url("unsubscribe", tokens.UNSUBSCRIBE, anna_email), _url("preferences", tokens.PREFERENCES, anna_email)]
    profile_erase(profile=anna, actor=SYSTEM)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 404
        text = response.content.decode()
        assert "This link is no longer valid" in text
        # Case-sensitive: lower-cased, the page's random CSP nonce could spell "anna".
        assert "anna@" not in text and "Anna" not in text and "Shop news" not in text


# --- preferences ------------------------------------------------------------------------------------


def test_it_lists_every_subscription_of_the_profile_on_the_resource(client, anna_email, anna_sms, ben_email, globex_news):
    response = client.get(_url("preferences", tokens.PREFERENCES, anna_email))
    assert response.status_code == 200
    text = response.content.decode()
    assert "anna@shop.example.com" in text and "+4915112345678" in text
    assert "ben@" not in text
    assert response["Cache-Control"] == "no-store"


def test_it_pauses_for_30_days(anna_email):
    client = Client(enforce_csrf_checks=True)  # no cookie, no CSRF token: the link is the authority
    url = _url("preferences", tokens.PREFERENCES, anna_email)
    response = client.post(url, {"action": "pause", "subscription": anna_email.pk, "days": "30"})
    assert response.status_code == 302
    sub = Subscription.objects.get(pk=anna_email.pk)
    assert sub.status == Status.SUSPENDED
    assert abs(sub.suspended_until - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    record = _ledger(anna_email).get()
    assert (record.source, record.actor_type, record.new_status) == ("preferences", "subscriber", "suspended")
    assert "Your subscription is paused" in client.get(response["Location"]).content.decode()


def test_it_refuses_a_pause_length_not_offered(client, anna_email):
    url = _url("preferences", tokens.PREFERENCES, anna_email)
    response = client.post(url, {"action": "pause", "subscription": anna_email.pk, "days": "365"})
    assert response.status_code == 400
    assert _status(anna_email) == Status.SUBSCRIBED


def test_it_saves_categories(client, anna_email):
    url = _url("preferences", tokens.PREFERENCES, anna_email)
    response = client.post(url, {"action": "categories", "subscription": anna_email.pk, "categories": ["news", "events"]})
    assert response.status_code == 302
    assert Subscription.objects.get(pk=anna_email.pk).opted_out == ["offers"]
    record = _ledger(anna_email).get()
    assert (record.action, record.new_categories) == ("categories", ["offers"])


def test_it_acts_on_another_subscription_of_the_same_profile(client, anna_email, anna_sms):
    url = _url("preferences", tokens.PREFERENCES, anna_email)
    assert client.post(url, {"action": "unsubscribe", "subscription": anna_sms.pk}).status_code == 302
    assert _status(anna_sms) == Status.UNSUBSCRIBED
    assert _status(anna_email) == Status.SUBSCRIBED


def test_it_resubscribes_through_confirmation_on_double_opt_in(client, anna_email, anna_sms):
    url = _url("preferences", tokens.PREFERENCES, anna_email)
    for sub in (anna_email, anna_sms):
        services.subscription_set_status(subscription=sub, status=Status.UNSUBSCRIBED, actor=SYSTEM, via=VIA)
        assert client.post(url, {"action": "resubscribe", "subscription": sub.pk}).status_code == 302
    assert _status(anna_email) == Status.UNCONFIRMED  # e-mail has double opt-in
    assert _status(anna_sms) == Status.SUBSCRIBED


def test_it_refuses_another_profiles_subscription_on_the_preference_page(client, anna_email, ben_email, globex_news, other_db):
    url = _url("preferences", tokens.PREFERENCES, anna_email)
    globex_person = profile_create(database=other_db, values={"email": "gina@globex.example.com"}, actor=SYSTEM)
    globex_sub = _sub(globex_person, globex_news)
    for target in (ben_email, globex_sub):
        for action in ("unsubscribe", "pause", "categories"):
            response = client.post(url, {"action": action, "subscription": target.pk, "days": "30"})
            assert response.status_code == 404
        assert _status(target) == Status.SUBSCRIBED
    assert client.post(url, {"action": "unsubscribe", "subscription": "nope"}).status_code == 404
    assert not ConsentRecord.objects.exclude(source="test").exists()


def test_it_edits_allowed_profile_fields_with_history(client, anna_email, anna):
    url = _url("preferences", tokens.PREFERENCES, anna_email)
    page = client.get(url).content.decode()
    assert 'name="profile-city"' in page and 'name="profile-email"' not in page
    response = client.post(url, {"action": "profile", "profile-first_name": "Anya", "profile-city": "Berlin"})
    assert response.status_code == 302
    anna.refresh_from_db()
    assert (anna.first_name, anna.data["city"]) == ("Anya", "Berlin")
    change = ProfileChange.objects.get(profile=anna, source="preferences")
    assert set(change.changes) == {"first_name", "city"}


def test_it_shows_field_errors_and_changes_nothing(client, news, anna_email, anna):
    resource_update(resource=news, values={"preference_editable_fields": ["first_name", "birthday"]}, actor=SYSTEM)
    url = _url("preferences", tokens.PREFERENCES, anna_email)
    response = client.post(url, {"action": "profile", "profile-first_name": "Anya", "profile-birthday": "not a date"})
    assert response.status_code == 400
    assert "Please check Birthday" in response.content.decode()
    anna.refresh_from_db()
    assert anna.first_name == "Anna"
    assert not ProfileChange.objects.filter(profile=anna).exists()


def test_it_ignores_posted_fields_that_are_not_editable(client, anna_email, anna):
    url = _url("preferences", tokens.PREFERENCES, anna_email)
    client.post(url, {"action": "profile", "profile-first_name": "Anna", "profile-email": "evil@example.com"})
    anna.refresh_from_db()
    assert anna.email == "anna@shop.example.com"


# --- double opt-in ---------------------------------------------------------------------------------


@pytest.fixture
def unconfirmed(news, ben) -> Subscription:
    return subscription_create(profile=ben, resource=news, channel="email", address=ben.email, actor=SYSTEM, via=VIA)


def test_it_confirms_on_post_only_and_a_second_time_is_a_no_op(client, unconfirmed):
    assert unconfirmed.status == Status.UNCONFIRMED
    url = _url("confirm", tokens.CONFIRM, unconfirmed)
    page = client.get(url)
    assert "Confirm my subscription" in page.content.decode()
    assert _status(unconfirmed) == Status.UNCONFIRMED
    assert client.post(url).status_code == 302
    assert _status(unconfirmed) == Status.SUBSCRIBED
    assert client.post(url).status_code == 302
    assert _ledger(unconfirmed).filter(source="confirmation").count() == 1
    assert "already confirmed" in client.get(url).content.decode()


def test_it_says_an_expired_confirmation_link_expired(client, settings, unconfirmed):
    url = _url("confirm", tokens.CONFIRM, unconfirmed)
    settings.SUBSCRIPTION_CONFIRM_MAX_AGE = timedelta(seconds=-1)
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 410
        assert "This link has expired" in response.content.decode()
    assert _status(unconfirmed) == Status.UNCONFIRMED


# --- language ----------------------------------------------------------------------------------------


def test_it_speaks_russian_to_a_russian_browser(client, anna_email):
    response = client.get(_url("unsubscribe", tokens.UNSUBSCRIBE, anna_email), HTTP_ACCEPT_LANGUAGE="ru-RU,ru;q=0.9,en;q=0.5")
    text = response.content.decode()
    assert "Да, отписаться" in text and 'lang="ru"' in text
    assert response["Content-Language"] == "ru"
    prefs = client.get(_url("preferences", tokens.PREFERENCES, anna_email), HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Активна" in prefs and "Приостановить" in prefs and "30 дней" in prefs


def test_it_uses_the_resources_language_over_the_browsers(client, news, anna_email):
    resource_update(resource=news, values={"language": "ru"}, actor=SYSTEM)
    text = client.get(_url("unsubscribe", tokens.UNSUBSCRIBE, anna_email), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Да, отписаться" in text
    resource_update(resource=news, values={"language": ""}, actor=SYSTEM)
    english = client.get(_url("unsubscribe", tokens.UNSUBSCRIBE, anna_email), HTTP_ACCEPT_LANGUAGE="de")
    assert "Yes, unsubscribe" in english.content.decode()


# --- the subscribe endpoint ------------------------------------------------------------------------


def _subscribe_url(resource) -> str:
    return reverse("public:subscribe", args=[resource.public_key])


def test_it_subscribes_from_a_form_with_double_opt_in(news, django_capture_on_commit_callbacks):
    calls: list[Subscription] = []
    services.CONFIRMATION_HANDLERS.append(calls.append)
    try:
        client = Client(enforce_csrf_checks=True)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(_subscribe_url(news), {"email": "Carla@Example.com", "first_name": "Carla",
                                                          "categories": ["news"]})
    finally:
        services.CONFIRMATION_HANDLERS.remove(calls.append)
    assert response.status_code == 200
    assert "check your inbox" in response.content.decode()
    profile = Profile.objects.get(email="carla@example.com")
    assert profile.first_name == "Carla"
    sub = Subscription.objects.get(profile=profile)
    assert (sub.status, sub.opted_out) == (Status.UNCONFIRMED, ["offers", "events"])
    assert [c.pk for c in calls] == [sub.pk]
    record = _ledger(sub).get()
    assert (record.source, record.actor_type) == ("form", "subscriber")


def test_it_subscribes_from_json_with_cors(news):
    client = Client()
    response = client.post(_subscribe_url(news), json.dumps({"email": "eva@example.com", "phone": "+49 151 2222 3333"}),
                           content_type="application/json", HTTP_ORIGIN="https://shop.example.com")
    assert response.status_code == 200
    assert response.json() == {"status": "unconfirmed", "subscriptions": [
        {"channel": "email", "status": "unconfirmed"}, {"channel": "sms", "status": "subscribed"}]}
    assert response["Access-Control-Allow-Origin"] == "*"
    profile = Profile.objects.get(email="eva@example.com")
    assert profile.phone == "+4915122223333"
    assert {(s.channel, s.address, s.status) for s in profile.subscriptions.all()} == {
        ("email", "eva@example.com", "unconfirmed"), ("sms", "+4915122223333", "subscribed")}
    preflight = client.options(_subscribe_url(news), HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight["Access-Control-Allow-Methods"]


def test_it_takes_a_post_without_the_trailing_slash(news):
    url = _subscribe_url(news).rstrip("/")
    response = Client().post(url, json.dumps({"email": "noslash@example.com"}), content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "unconfirmed"
    assert Subscription.objects.filter(address="noslash@example.com").exists()


def test_it_answers_json_field_errors(news):
    response = Client().post(_subscribe_url(news), json.dumps({"email": "not an address"}), content_type="application/json")
    assert response.status_code == 400
    assert "email" in response.json()["error"]["fields"]
    assert response["Access-Control-Allow-Origin"] == "*"
    assert not Profile.objects.filter(email__contains="not").exists()


def test_it_needs_the_databases_match_key(news):
    response = Client().post(_subscribe_url(news), json.dumps({"phone": "+4915122223333"}), content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["email"]
    assert not Subscription.objects.exists()


def test_it_pretends_to_subscribe_a_bot_that_fills_the_honeypot(news):
    response = Client().post(_subscribe_url(news), json.dumps({"email": "bot@example.com", "website": "spam.example"}),
                             content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "unconfirmed"
    assert not Profile.objects.filter(email="bot@example.com").exists()
    assert not Subscription.objects.exists()


def test_it_rate_limits_per_ip(settings, news, mid_window):
    settings.PUBLIC_SUBSCRIBE_RATE_IP = 3
    client = Client()
    codes = [client.post(_subscribe_url(news), {"email": f"p{n}@example.com"}, HTTP_ACCEPT="application/json").status_code
             for n in range(4)]
    assert codes == [200, 200, 200, 429]
    last = client.post(_subscribe_url(news), {"email": "late@example.com"})
    assert last.status_code == 429 and 1 <= int(last["Retry-After"]) <= 60
    assert not Profile.objects.filter(email__in=["p3@example.com", "late@example.com"]).exists()


def test_it_rate_limits_per_resource(settings, news, mid_window):
    settings.PUBLIC_SUBSCRIBE_RATE_RESOURCE = 2
    codes = [Client(REMOTE_ADDR=f"198.51.100.{n}").post(_subscribe_url(news), {"email": f"r{n}@example.com"}).status_code
             for n in range(3)]
    assert codes == [200, 200, 429]


def test_it_answers_404_for_an_unknown_key_or_a_disabled_resource(news):
    client = Client()
    assert client.post(reverse("public:subscribe", args=["pk_nope"]), {"email": "x@example.com"}).status_code == 404
    resource_update(resource=news, values={"subscribe_enabled": False}, actor=SYSTEM)
    assert client.post(_subscribe_url(news), {"email": "x@example.com"}).status_code == 404
    assert client.post(_subscribe_url(news), "{}", content_type="application/json").status_code == 404
    assert not Profile.objects.filter(email="x@example.com").exists()


def test_it_fills_only_empty_fields_of_an_existing_profile(news, anna):
    response = Client().post(_subscribe_url(news), {"email": "anna@shop.example.com", "first_name": "Mallory", "city": "Paris"})
    assert response.status_code == 200
    anna.refresh_from_db()
    assert anna.first_name == "Anna"  # not overwritten
    assert anna.data["city"] == "Paris"  # was empty
    assert Subscription.objects.get(profile=anna).status == Status.UNCONFIRMED


def test_it_does_not_tell_whether_an_address_was_known(news, anna_email):
    client = Client()
    known = client.post(_subscribe_url(news), json.dumps({"email": "anna@shop.example.com"}), content_type="application/json")
    new = client.post(_subscribe_url(news), json.dumps({"email": "new@example.com"}), content_type="application/json")
    assert known.status_code == new.status_code == 200
    assert known.json() == new.json()
    assert _status(anna_email) == Status.SUBSCRIBED  # a confirmed subscription stays as it was


def test_it_leaves_an_existing_subscriptions_categories_alone(news, anna_email):
    services.subscription_set_categories(subscription=anna_email, opted_out=["offers"], actor=SYSTEM, via=VIA)
    Client().post(_subscribe_url(news), {"email": "anna@shop.example.com", "categories": ["offers"]})
    assert Subscription.objects.get(pk=anna_email.pk).opted_out == ["offers"]


def test_it_redirects_a_form_to_the_resources_page(news):
    resource_update(resource=news, values={"subscribe_redirect_url": "https://shop.example.com/thanks"}, actor=SYSTEM)
    response = Client().post(_subscribe_url(news), {"email": "dora@example.com"})
    assert response.status_code == 303 and response["Location"] == "https://shop.example.com/thanks"


def test_it_shows_the_hosted_form_with_errors_in_russian(news):
    response = Client().post(_subscribe_url(news), {"email": "broken"}, HTTP_ACCEPT_LANGUAGE="ru")
    assert response.status_code == 400
    text = response.content.decode()
    assert "Подписаться" in text and "is-invalid" in text


def test_it_shows_a_hosted_subscribe_form_with_a_honeypot(news):
    response = Client().get(_subscribe_url(news))
    assert response.status_code == 200
    text = response.content.decode()
    assert "Subscribe to Shop news" in text and 'name="website"' in text and 'name="city"' in text
    assert not response.cookies
