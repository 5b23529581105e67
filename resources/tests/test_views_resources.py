"""The resource pages: list, create, detail (counters, embed form), settings, key rotation, delete."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounts.access import Actor
from accounts.models import AuditEvent
from resources.models import Resource, Subscription
from resources.services import Via, subscription_counts_rebuild, subscription_create, subscription_set_status

SYSTEM = Actor.system()
UI = Via(source="ui")


def _sub(profile, resource, channel, address, status="subscribed"):
    s = subscription_create(profile=profile, resource=resource, channel=channel, address=address, actor=SYSTEM, via=UI,
                            confirmed=True)
    if status != "subscribed":
        subscription_set_status(subscription=s, status=status, actor=SYSTEM, via=UI)
    return s


@pytest.fixture
def subs(news, anna, ben):
    return [
        _sub(anna, news, "email", "anna@shop.example.com"),
        _sub(ben, news, "email", "ben@shop.example.com", "unsubscribed"),
        _sub(anna, news, "sms", "+4915112345678"),
        _sub(anna, news, "telegram", "123456789", "blocked"),
    ]


# --- list ----------------------------------------------------------------------------------------


def test_it_lists_resources_with_channels_and_subscribed_counts(login, bob, news, subs):
    r = login(bob).get(reverse("resources:list"))
    assert r.status_code == 200
    html = r.content.decode()
    row = re.search(r'<tr data-resource="shop-news">.*?</tr>', html, re.S).group(0)
    assert "Shop customers" in row
    assert set(re.findall(r'data-channel="(\w+)"', row)) == {"email", "sms", "webpush", "mobilepush", "telegram"}
    assert re.search(r'data-testid="subscribed">2<', row)  # anna's e-mail and SMS; ben unsubscribed, telegram blocked
    assert "Offers" in row
    assert "New resource" not in html  # bob cannot create


def test_it_shows_an_empty_state_with_a_call_to_action(login, adam, shop):
    html = login(adam).get(reverse("resources:list")).content.decode()
    assert "No resources yet" in html
    assert reverse("resources:create") in html


def test_it_shows_only_the_accounts_own_resources(login, charlie, news, globex_news):
    html = login(charlie).get(reverse("resources:list")).content.decode()
    assert "Globex news" in html and "Shop news" not in html


# --- create --------------------------------------------------------------------------------------


def test_it_creates_a_resource(login, adam, shop, acme):
    r = login(adam).post(reverse("resources:create"), {
        "name": "Shop news", "database": shop.pk, "channels": ["email", "sms", "telegram"],
        "categories": "news:News\noffers:Special offers\nevents", "double_opt_in": ["email"], "description": "Weekly",
    })
    resource = Resource.objects.get(account=acme)
    assert r.status_code == 302 and r.url == reverse("resources:detail", args=[resource.slug])
    assert resource.slug == "shop-news" and resource.database == shop
    assert resource.channels == ["email", "sms", "telegram"] and resource.double_opt_in == ["email"]
    assert resource.categories == [{"key": "news", "label": "News"}, {"key": "offers", "label": "Special offers"},
                                   {"key": "events", "label": "Events"}]
    assert AuditEvent.objects.filter(account=acme, verb="resource.created").count() == 1


def test_it_shows_the_services_errors_on_their_fields(login, adam, shop, acme):
    r = login(adam).post(reverse("resources:create"), {
        "name": "Shop news", "database": shop.pk, "channels": ["email"], "categories": "1bad:Bad", "double_opt_in": ["sms"],
    })
    assert r.status_code == 400
    html = r.content.decode()
    assert "a category key is letters, digits and _" in html
    assert "sms is not an enabled channel of this resource" in html
    assert html.count("is-invalid") >= 2
    assert not Resource.objects.filter(account=acme).exists()


def test_it_requires_a_name_and_a_channel(login, adam, shop, acme):
    r = login(adam).post(reverse("resources:create"), {"name": "", "database": shop.pk})
    assert r.status_code == 400
    assert not Resource.objects.filter(account=acme).exists()


def test_it_refuses_another_accounts_database(login, adam, shop, other_db, acme):
    r = login(adam).post(reverse("resources:create"), {"name": "X", "database": other_db.pk, "channels": ["email"]})
    assert r.status_code == 400
    assert not Resource.objects.exists()


def test_only_channel_managers_create_resources(login, alice, bob, shop):
    for user in (alice, bob):
        assert login(user).get(reverse("resources:create")).status_code == 403
        r = login(user).post(reverse("resources:create"), {"name": "X", "database": shop.pk, "channels": ["email"]})
        assert r.status_code == 403
    assert not Resource.objects.exists()


# --- detail --------------------------------------------------------------------------------------


def _cell(html: str, channel: str, status: str) -> str:
    row = re.search(rf'<tr data-channel="{channel}">.*?</tr>', html, re.S).group(0)
    return re.search(rf'data-status="{status}">([^<]*)<', row).group(1)


def test_it_shows_counters_per_channel_and_status(login, bob, news, subs):
    r = login(bob).get(news.get_absolute_url())
    assert r.status_code == 200
    html = r.content.decode()
    assert _cell(html, "email", "subscribed") == "1"
    assert _cell(html, "email", "unsubscribed") == "1"
    assert _cell(html, "email", "total") == "2"
    assert _cell(html, "sms", "subscribed") == "1"
    assert _cell(html, "telegram", "blocked") == "1"
    assert _cell(html, "webpush", "total") == "0"
    assert re.search(r'data-testid="grand-total">4 subscriptions', html)


def test_it_formats_big_numbers(login, bob, news, anna):
    Subscription.objects.bulk_create([
        Subscription(account_id=news.account_id, resource=news, profile=anna, channel="email", address=f"p{i}@example.com")
        for i in range(1234)
    ])
    subscription_counts_rebuild(resource=news)  # a bulk load writes no counter deltas
    html = login(bob).get(news.get_absolute_url()).content.decode()
    assert _cell(html, "email", "subscribed") == "1,234"


def test_the_detail_page_keeps_its_query_budget(login, bob, news, subs, django_assert_max_num_queries):
    client = login(bob)
    client.get(news.get_absolute_url())  # warm the session
    # session, user, membership, resource, the counters' one GROUP BY, field labels, the account switcher
    with django_assert_max_num_queries(7) as ctx:
        assert client.get(news.get_absolute_url()).status_code == 200
    assert sum("GROUP BY" in q["sql"] for q in ctx.captured_queries) == 1
    # The counters are summed from their deltas: the subscriptions table is not read at all.
    assert sum('"resources_subscriptioncount"' in q["sql"] for q in ctx.captured_queries) == 1
    assert not any('"resources_subscription"' in q["sql"] for q in ctx.captured_queries)


def test_it_shows_the_subscribe_endpoint_and_an_embeddable_form(login, bob, news, settings):
    html = login(bob).get(news.get_absolute_url()).content.decode()
    assert f"/p/subscribe/{news.public_key}/" in html
    snippet = re.search(r'<code id="embed-snippet">(.*?)</code>', html, re.S).group(1)
    assert "&lt;form method=&quot;post&quot; action=&quot;" in snippet
    assert f"/p/subscribe/{news.public_key}/" in snippet
    assert "name=&quot;email&quot;" in snippet and "name=&quot;first_name&quot;" in snippet
    assert "name=&quot;website&quot;" in snippet  # the honeypot
    assert snippet.count("name=&quot;categories&quot;") == 3
    assert "Replace key" not in html  # bob cannot rotate


def test_charlie_gets_404_for_another_accounts_resource(login, charlie, news):
    client = login(charlie)
    for name in ("detail", "settings", "delete"):
        assert client.get(reverse(f"resources:{name}", args=[news.slug])).status_code == 404
    assert client.post(reverse("resources:rotate_key", args=[news.slug])).status_code == 404
    assert client.post(reverse("resources:delete", args=[news.slug]), {"confirm": "Shop news"}).status_code == 404
    assert Resource.objects.filter(pk=news.pk).exists()


# --- settings ------------------------------------------------------------------------------------


def _settings_data(resource, **changes):
    data = {
        "name": resource.name, "slug": resource.slug, "description": resource.description, "channels": resource.channels,
        "categories": "\n".join(f"{c['key']}:{c['label']}" for c in resource.categories),
        "double_opt_in": resource.double_opt_in, "preference_visible_fields": resource.preference_visible_fields,
        "preference_editable_fields": resource.preference_editable_fields, "language": resource.language,
        "subscribe_redirect_url": resource.subscribe_redirect_url,
    }
    if resource.subscribe_enabled:
        data["subscribe_enabled"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_it_edits_the_settings(login, adam, news, acme):
    client = login(adam)
    page = client.get(reverse("resources:settings", args=[news.slug])).content.decode()
    assert 'value="city"' in page and 'value="first_name"' in page  # the database's fields to choose from
    r = client.post(reverse("resources:settings", args=[news.slug]), _settings_data(
        news, name="Shop letters", language="ru", double_opt_in=["email", "sms"], subscribe_enabled=None,
        subscribe_redirect_url="https://shop.example.com/thanks", preference_visible_fields=["email"],
        preference_editable_fields=["city"], categories="news:News\nsales:Sales"))
    assert r.status_code == 302
    news.refresh_from_db()
    assert news.name == "Shop letters" and news.language == "ru" and news.double_opt_in == ["email", "sms"]
    assert news.subscribe_enabled is False and news.subscribe_redirect_url == "https://shop.example.com/thanks"
    assert news.preference_visible_fields == ["email", "city"] and news.preference_editable_fields == ["city"]
    assert news.category_keys == ["news", "sales"]
    assert AuditEvent.objects.filter(account=acme, verb="resource.updated").exists()


def test_it_shows_settings_errors_per_field(login, adam, news, anna):
    _sub(anna, news, "sms", "+4915112345678")
    r = login(adam).post(reverse("resources:settings", args=[news.slug]), _settings_data(
        news, channels=["email"], double_opt_in=["email"], preference_editable_fields=["created_at"]))
    # The form refuses read-only "created_at" before the service is asked (it is not a choice).
    assert r.status_code == 400
    assert "created_at is not one of the available choices" in r.content.decode()
    r = login(adam).post(reverse("resources:settings", args=[news.slug]), _settings_data(
        news, channels=["email"], double_opt_in=["email"]))
    assert r.status_code == 400
    assert "SMS still has subscriptions: delete them first" in r.content.decode()
    news.refresh_from_db()
    assert "sms" in news.channels
    r = login(adam).post(reverse("resources:settings", args=[news.slug]), _settings_data(news, subscribe_redirect_url="ftp://x.example"))
    assert r.status_code == 400


def test_analysts_and_marketers_cannot_change_a_resource(login, alice, bob, news):
    for user in (alice, bob):
        client = login(user)
        assert client.get(reverse("resources:settings", args=[news.slug])).status_code == 403
        assert client.post(reverse("resources:settings", args=[news.slug]), _settings_data(news, name="X")).status_code == 403
        assert client.post(reverse("resources:rotate_key", args=[news.slug])).status_code == 403
        assert client.post(reverse("resources:delete", args=[news.slug]), {"confirm": "Shop news"}).status_code == 403
    news.refresh_from_db()
    assert news.name == "Shop news"


def test_it_rotates_the_public_key(login, adam, news):
    old = news.public_key
    assert login(adam).get(reverse("resources:rotate_key", args=[news.slug])).status_code == 405
    r = login(adam).post(reverse("resources:rotate_key", args=[news.slug]))
    assert r.status_code == 302
    news.refresh_from_db()
    assert news.public_key != old and news.public_key.startswith("pk_")


# --- delete --------------------------------------------------------------------------------------


def test_it_deletes_a_resource_after_the_name_is_typed(login, adam, news, subs):
    client = login(adam)
    page = client.get(reverse("resources:delete", args=[news.slug])).content.decode()
    assert "4 subscriptions" in page
    r = client.post(reverse("resources:delete", args=[news.slug]), {"confirm": "shop news"})
    assert r.status_code == 400 and Resource.objects.filter(pk=news.pk).exists()
    r = client.post(reverse("resources:delete", args=[news.slug]), {"confirm": "Shop news"})
    assert r.status_code == 302 and r.url == reverse("resources:list")
    assert not Resource.objects.filter(pk=news.pk).exists()
    assert not Subscription.objects.exists()


def test_the_embedded_form_subscribes_at_the_public_endpoint(client, news, shop, settings):
    """The snippet's action and field names are what the public subscribe endpoint reads."""
    from html import unescape

    from resources.views.resources import embed_snippet, subscribe_url

    snippet = embed_snippet(news, subscribe_url(news))
    action = unescape(re.search(r'action="([^"]+)"', snippet).group(1))
    path = action.removeprefix(settings.SITE_URL)
    names = set(re.findall(r'name="(\w+)"', snippet))
    assert names == {"email", "first_name", "website", "categories"}
    r = client.post(path, {"email": "new@shop.example.com", "first_name": "Nina", "website": "", "categories": ["news", "events"]})
    assert r.status_code in (200, 302)
    sub = Subscription.objects.get(resource=news, address="new@shop.example.com")
    assert sub.status == "unconfirmed"  # e-mail has double opt-in
    assert sub.opted_out == ["offers"]
