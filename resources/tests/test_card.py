"""The profile card's Subscriptions tab: what it shows, each action with its ledger row, who may
do what, and the consent ledger CSV."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from accounts.access import Actor
from accounts.models import AuditEvent
from profiles.services import profile_create
from resources.models import ConsentRecord, Status, Subscription
from resources.services import Via, subscription_create, subscription_set_status

SYSTEM = Actor.system()
UI = Via(source="ui")


def card(db, profile, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"tab": "subscriptions", **params}.items())
    return reverse("profiles:profile_detail", args=[db.slug, profile.pk]) + "?" + query


def add_url(db, profile) -> str:
    return reverse("resources:subscription_add", args=[db.slug, profile.pk])


def change_url(db, profile, sub) -> str:
    return reverse("resources:subscription_change", args=[db.slug, profile.pk, sub.pk])


def export_url(db, profile) -> str:
    return reverse("resources:consent_export", args=[db.slug, profile.pk])


def sub(profile, resource, channel="email", address=None, **kw) -> Subscription:
    address = address if address is not None else (profile.email if channel == "email" else profile.phone)
    return subscription_create(profile=profile, resource=resource, channel=channel, address=address, actor=SYSTEM, via=UI, **kw)


def toasts(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


def test_it_shows_subscriptions_with_their_statuses_and_the_ledger(login, alice, shop, news, anna):
    email = sub(anna, news, confirmed=True, opted_out=["offers"])
    sms = sub(anna, news, "sms", status=Status.UNSUBSCRIBED)
    sub(anna, news, "sms", address="+4915199999999")
    response = login(alice).get(card(shop, anna))
    assert response.status_code == 200
    text = response.content.decode()
    assert f'data-subscription="{email.pk}"' in text and f'data-subscription="{sms.pk}"' in text
    assert 'data-status="subscribed"' in text and 'data-status="unsubscribed"' in text
    assert "bg-success-subtle" in text and "Opted out of Offers" in text
    assert 'data-testid="primary"' in text  # two SMS numbers: the first is the primary
    assert text.count('data-ledger="') == 3
    assert 'data-testid="subscription-add-form"' in text and "Download CSV" in text


def test_an_analyst_sees_the_tab_without_actions(login, bob, shop, news, anna):
    s = sub(anna, news, confirmed=True)
    text = login(bob).get(card(shop, anna)).content.decode()
    assert f'data-subscription="{s.pk}"' in text
    assert "subscription-add-form" not in text and 'data-testid="manage"' not in text and "Download CSV" not in text


def test_it_says_when_the_database_has_no_resources_or_the_profile_no_subscriptions(login, alice, adam, shop, anna, news):
    text = login(alice).get(card(shop, anna)).content.decode()
    assert 'data-testid="no-subscriptions"' in text and 'data-testid="ledger-empty"' in text
    news.delete()
    text = login(adam).get(card(shop, anna)).content.decode()
    assert "No resources yet" in text and "subscription-add-form" not in text


def test_the_tab_costs_a_fixed_number_of_queries(login, alice, shop, news, anna, django_assert_max_num_queries):
    client = login(alice)
    sub(anna, news, confirmed=True)
    client.get(card(shop, anna))  # warm caches (session, schema)
    with django_assert_max_num_queries(12) as few:
        client.get(card(shop, anna))
    for n in range(30):
        sub(anna, news, "sms", address=f"+49151100000{n:02d}")
        sub(anna, news, "telegram", address=str(1000 + n))
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(card(shop, anna))
    assert response.content.decode().count("data-subscription=") == 61


def test_it_adds_a_subscription_that_waits_for_double_opt_in(login, alice, shop, news, anna):
    client = login(alice)
    response = client.post(add_url(shop, anna), {"resource": news.pk, "channel": "email", "address": " Anna@Shop.Example.com ",
                                                 "status": "subscribed", "opted_out": ["events"]})
    assert response.status_code == 302 and response["Location"] == card(shop, anna)
    s = Subscription.objects.get(profile=anna)
    assert (s.address, s.status, s.opted_out, s.source) == ("anna@shop.example.com", "unconfirmed", ["events"], "ui")
    record = ConsentRecord.objects.get(subscription=s)
    assert (record.action, record.new_status, record.actor_type, record.actor_label) == ("created", "unconfirmed", "user", alice.email)
    assert "awaiting" in toasts(response)[-1]


def test_it_adds_a_confirmed_subscription_when_told_opt_in_was_done_elsewhere(login, alice, shop, news, anna):
    login(alice).post(add_url(shop, anna), {"resource": news.pk, "channel": "email", "address": anna.email, "status": "subscribed",
                                            "confirmed": "on"})
    s = Subscription.objects.get(profile=anna)
    assert s.status == Status.SUBSCRIBED and s.confirmed_at is not None


@pytest.mark.parametrize(("data", "field_says"), [
    ({"channel": "email", "address": "not-an-email"}, "e-mail"),
    ({"channel": "sms", "address": "12"}, "phone"),
    ({"channel": "email", "address": "anna@shop.example.com", "opted_out": ["nope"]}, "Select a valid choice"),
])
def test_it_shows_the_services_errors_next_to_the_fields_and_adds_nothing(login, alice, shop, news, anna, data, field_says):
    response = login(alice).post(add_url(shop, anna), {"resource": news.pk, "status": "subscribed", **data})
    assert response.status_code == 400
    text = response.content.decode()
    assert "invalid-feedback" in text and field_says in text and "is-invalid" in text
    assert not Subscription.objects.exists() and not ConsentRecord.objects.exists()


def test_an_address_another_profile_holds_is_refused(login, alice, shop, news, anna, ben):
    sub(ben, news, address="shared@shop.example.com", confirmed=True)
    response = login(alice).post(add_url(shop, anna), {"resource": news.pk, "channel": "email", "address": "shared@shop.example.com",
                                                       "status": "subscribed"})
    assert response.status_code == 400 and "belongs to another profile" in response.content.decode()
    assert not Subscription.objects.filter(profile=anna).exists()


def test_it_changes_the_status_and_records_it(login, alice, shop, news, anna):
    s = sub(anna, news, confirmed=True)
    response = login(alice).post(change_url(shop, anna, s), {"action": "status", "status": "unsubscribed"}, HTTP_USER_AGENT="Firefox")
    assert response.status_code == 302 and response["Location"] == card(shop, anna)
    s.refresh_from_db()
    assert s.status == Status.UNSUBSCRIBED
    record = ConsentRecord.objects.filter(subscription=s).first()
    assert (record.old_status, record.new_status, record.source, record.user_agent, record.ip) == (
        "subscribed", "unsubscribed", "ui", "Firefox", "127.0.0.1")


def test_a_transition_the_rules_refuse_changes_nothing(login, alice, shop, news, anna):
    s = sub(anna, news, status=Status.UNCONFIRMED)
    response = login(alice).post(change_url(shop, anna, s), {"action": "status", "status": "suspended"})
    assert response.status_code == 302 and "cannot go from" in toasts(response)[-1]
    s.refresh_from_db()
    assert s.status == Status.UNCONFIRMED and ConsentRecord.objects.filter(subscription=s).count() == 1


def test_leaving_a_system_state_needs_renewed_consent_and_a_reason(login, alice, shop, news, anna):
    s = sub(anna, news, confirmed=True)
    subscription_set_status(subscription=s, status=Status.COMPLAINED, actor=SYSTEM, via=Via("complaint"))
    client = login(alice)
    text = client.get(card(shop, anna)).content.decode()
    assert "I have the person&#x27;s renewed consent" in text or "I have the person's renewed consent" in text
    response = client.post(change_url(shop, anna, s), {"action": "status", "status": "subscribed", "reason": "asked by phone"})
    assert "renewed consent" in toasts(response)[-1]
    response = client.post(change_url(shop, anna, s), {"action": "status", "status": "subscribed", "consent": "on"})
    assert "reason" in toasts(response)[-1]
    s.refresh_from_db()
    assert s.status == Status.COMPLAINED
    client.post(change_url(shop, anna, s), {"action": "status", "status": "subscribed", "consent": "on", "reason": "asked by phone"})
    s.refresh_from_db()
    assert s.status == Status.SUBSCRIBED
    record = ConsentRecord.objects.filter(subscription=s).first()
    assert (record.old_status, record.new_status, record.actor_label) == ("complained", "subscribed", alice.email)
    assert "asked by phone" in record.reason


def test_it_pauses_for_some_days(login, alice, shop, news, anna):
    s = sub(anna, news, confirmed=True)
    client = login(alice)
    response = client.post(change_url(shop, anna, s), {"action": "pause", "days": "45"})
    assert "paused until" in toasts(response)[-1]
    s.refresh_from_db()
    assert s.status == Status.SUSPENDED and 44 <= (s.suspended_until - s.changed_at).days <= 45
    assert ConsentRecord.objects.filter(subscription=s, new_status="suspended").exists()
    assert 'data-testid="paused-until"' in client.get(card(shop, anna)).content.decode()
    response = client.post(change_url(shop, anna, s), {"action": "pause", "days": "0"})
    assert "1 to 365" in toasts(response)[-1]


def test_it_sets_the_opted_out_categories(login, alice, shop, news, anna):
    s = sub(anna, news, confirmed=True)
    login(alice).post(change_url(shop, anna, s), {"action": "categories", "opted_out": ["offers", "news"]})
    s.refresh_from_db()
    assert s.opted_out == ["news", "offers"]
    record = ConsentRecord.objects.filter(subscription=s).first()
    assert (record.action, record.old_categories, record.new_categories) == ("categories", [], ["news", "offers"])


def test_it_makes_an_address_the_primary_one(login, alice, shop, news, anna):
    first = sub(anna, news, "sms")
    second = sub(anna, news, "sms", address="+4915199999999")
    assert (first.priority, second.priority) == (1, 2)
    login(alice).post(change_url(shop, anna, second), {"action": "primary"})
    first.refresh_from_db()
    second.refresh_from_db()
    assert (second.priority, first.priority) == (1, 2)


def test_it_deletes_a_subscription_and_the_ledger_keeps_a_record(login, alice, shop, news, anna):
    s = sub(anna, news, confirmed=True)
    pk = s.pk
    client = login(alice)
    response = client.post(change_url(shop, anna, s), {"action": "delete"})
    assert "Forget this address" in toasts(response)[-1]  # not confirmed: nothing deleted
    assert Subscription.objects.filter(pk=pk).exists()
    response = client.post(change_url(shop, anna, s), {"action": "delete", "confirm": "yes"})
    assert response.status_code == 302 and "Deleted" in toasts(response)[-1]
    assert not Subscription.objects.filter(pk=pk).exists()
    assert ConsentRecord.objects.filter(profile=anna, action="deleted", old_status="subscribed").exists()


def test_an_unknown_action_changes_nothing(login, alice, shop, news, anna):
    s = sub(anna, news, confirmed=True)
    response = login(alice).post(change_url(shop, anna, s), {"action": "explode"})
    assert "Unknown action" in toasts(response)[-1]
    assert ConsentRecord.objects.filter(subscription=s).count() == 1


def test_another_profiles_subscription_is_404(login, alice, shop, news, anna, ben):
    bens = sub(ben, news, confirmed=True)
    response = login(alice).post(change_url(shop, anna, bens), {"action": "delete", "confirm": "yes"})
    assert response.status_code == 404
    assert Subscription.objects.filter(pk=bens.pk).exists()


def test_another_account_gets_404_everywhere(login, charlie, shop, news, anna):
    s = sub(anna, news, confirmed=True)
    client = login(charlie)
    assert client.get(card(shop, anna)).status_code == 404
    assert client.get(add_url(shop, anna)).status_code == 404
    assert client.post(add_url(shop, anna), {"resource": news.pk, "channel": "email", "address": "x@example.com",
                                             "status": "subscribed"}).status_code == 404
    assert client.post(change_url(shop, anna, s), {"action": "delete", "confirm": "yes"}).status_code == 404
    assert client.get(export_url(shop, anna)).status_code == 404
    assert Subscription.objects.filter(pk=s.pk).exists()


def test_another_accounts_subscription_id_is_404_through_our_own_profile(login, alice, shop, anna, other_db, globex_news):
    theirs = profile_create(database=other_db, values={"email": "zed@globex.example.com"}, actor=SYSTEM)
    s = sub(theirs, globex_news, confirmed=True)
    assert login(alice).post(change_url(shop, anna, s), {"action": "delete", "confirm": "yes"}).status_code == 404
    assert Subscription.objects.filter(pk=s.pk).exists()


def test_an_analyst_cannot_change_anything(login, bob, shop, news, anna):
    s = sub(anna, news, confirmed=True)
    client = login(bob)
    assert client.post(add_url(shop, anna), {"resource": news.pk, "channel": "sms", "address": anna.phone,
                                             "status": "subscribed"}).status_code == 403
    for action in ("status", "pause", "categories", "primary", "delete"):
        assert client.post(change_url(shop, anna, s), {"action": action, "status": "unsubscribed", "days": "30"}).status_code == 403
    assert client.get(export_url(shop, anna)).status_code == 403
    s.refresh_from_db()
    assert s.status == Status.SUBSCRIBED and Subscription.objects.count() == 1


def test_the_ledger_pages_to_older_records(login, alice, shop, news, anna, monkeypatch):
    monkeypatch.setattr("resources.views.card.LEDGER_PAGE", 3)
    s = sub(anna, news, confirmed=True)
    for status in ("unsubscribed", "subscribed", "unsubscribed", "subscribed"):  # a team member's changes
        subscription_set_status(subscription=s, status=status, actor=Actor(user=alice), via=UI)
    ids = list(ConsentRecord.objects.filter(profile=anna).order_by("-id").values_list("id", flat=True))
    client = login(alice)
    first = client.get(card(shop, anna)).content.decode()
    assert [i for i in ids if f'data-ledger="{i}"' in first] == ids[:3]
    assert f"ledger_before={ids[2]}" in first
    older = client.get(card(shop, anna, ledger_before=ids[2])).content.decode()
    assert [i for i in ids if f'data-ledger="{i}"' in older] == ids[3:]
    assert 'data-testid="ledger-older"' not in older


def test_the_consent_csv_has_every_ledger_row_and_defuses_formulas(login, alice, shop, news, anna, ben):
    s = sub(anna, news, confirmed=True)
    subscription_set_status(subscription=s, status=Status.UNSUBSCRIBED, actor=SYSTEM, via=Via("link", user_agent="=cmd|' /C calc'!A0"),
                            reason="@SUM(1)")
    sub(ben, news, confirmed=True)
    response = login(alice).get(export_url(shop, anna))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert f"consent-{shop.slug}-{anna.pk}.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:4] == ["time", "resource", "channel", "address"]
    assert len(rows) == 3  # anna's two rows, not ben's
    newest = dict(zip(rows[0], rows[1], strict=True))
    assert (newest["old_status"], newest["new_status"], newest["source"]) == ("subscribed", "unsubscribed", "link")
    assert newest["user_agent"].startswith("'=") and newest["reason"] == "'@SUM(1)"
    assert newest["address"] == "anna@shop.example.com"
    event = AuditEvent.objects.get(verb="consent.exported")
    assert (event.actor, event.target_id) == (alice, str(anna.pk))
