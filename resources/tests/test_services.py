"""Subscriptions change only through services: every transition, its ledger row, double opt-in,
merge and erasure, suppressions, and the import hook."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.access import Actor
from profiles.importing import Options, auto_mapping, import_file, sniff, writable_fields
from profiles.services import profile_erase, profile_merge
from resources import services
from resources.models import ConsentRecord, Status, Subscription, Suppression
from resources.selectors import resource_counts, suppressed_among, suppressed_exists, suppression_for
from resources.services import (
    TRANSITIONS,
    ResourceError,
    ResourceValidationError,
    Via,
    subscription_confirm,
    subscription_create,
    subscription_pause,
    subscription_set_categories,
    subscription_set_status,
    subscription_subscribe,
    subscriptions_resume_due,
    suppression_add,
)

SYSTEM = Actor.system()
UI = Via(source="ui")
SUBSCRIBER = Actor(subscriber=True, ip="203.0.113.9")


def sub(profile, resource, channel="email", address=None, **kw):
    address = address if address is not None else (profile.email if channel == "email" else profile.phone)
    return subscription_create(profile=profile, resource=resource, channel=channel, address=address, actor=SYSTEM, via=UI, **kw)


def test_it_normalises_addresses_per_channel(news, anna):
    assert sub(anna, news, address=" Anna@Shop.Example.COM ", confirmed=True).address == "anna@shop.example.com"
    assert sub(anna, news, "sms", address="0151 12345678").address == "+4915112345678"
    assert sub(anna, news, "telegram", address="-1001234567890").address == "-1001234567890"
    assert sub(anna, news, "mobilepush", address="f" * 64).address == "f" * 64
    endpoint = "https://fcm.googleapis.com/fcm/send/abc123"
    assert sub(anna, news, "webpush", address=endpoint).address == endpoint


@pytest.mark.parametrize(("channel", "address", "says"), [
    ("email", "not-an-email", "e-mail"),
    ("sms", "12", "phone"),
    ("telegram", "@someone", "chat id"),
    ("mobilepush", "short", "device token"),
    ("webpush", "http://insecure.example/endpoint", "https://"),
    ("fax", "123", "unknown channel"),
])
def test_it_rejects_invalid_addresses_and_unknown_channels(news, anna, channel, address, says):
    with pytest.raises(ResourceValidationError) as exc:
        sub(anna, news, channel, address=address)
    assert says in str(exc.value)
    assert not Subscription.objects.exists()
    assert not ConsentRecord.objects.exists()


def test_it_refuses_a_channel_the_resource_lacks(acme, shop, anna):
    from resources.services import resource_create

    mails_only = resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "Mails", "channels": ["email"]})
    with pytest.raises(ResourceValidationError, match="not enabled"):
        sub(anna, mails_only, "sms")


def test_it_keeps_several_subscriptions_per_channel_with_priorities(news, anna):
    first = sub(anna, news, "sms", address="+4915112345678")
    second = sub(anna, news, "sms", address="+4915199999999")
    assert (first.priority, second.priority) == (1, 2)


def test_an_address_belongs_to_one_profile_per_resource(news, anna, ben):
    sub(anna, news, "sms")
    with pytest.raises(ResourceValidationError, match="another profile"):
        sub(ben, news, "sms", address=anna.phone)


def test_a_push_token_moves_to_the_profile_that_signs_in_on_the_device(news, anna, ben):
    token = "a" * 80
    first = sub(anna, news, "mobilepush", address=token)
    moved = sub(ben, news, "mobilepush", address=token)
    assert moved.pk == first.pk and moved.profile_id == ben.pk
    assert ConsentRecord.objects.filter(subscription=first, action="moved").exists()


def test_double_opt_in_starts_unconfirmed_and_confirms_once(news, anna):
    calls = []
    services.CONFIRMATION_HANDLERS.append(calls.append)
    try:
        s = sub(anna, news)
    finally:
        services.CONFIRMATION_HANDLERS.remove(calls.append)
    assert s.status == Status.UNCONFIRMED
    assert subscription_confirm(subscription=s, actor=SUBSCRIBER, via=Via(source="confirmation")) is True
    assert s.status == Status.SUBSCRIBED and s.confirmed_at is not None
    assert subscription_confirm(subscription=s, actor=SUBSCRIBER, via=Via(source="confirmation")) is False
    assert ConsentRecord.objects.filter(subscription=s).count() == 2


def test_confirmation_handlers_run_after_commit(news, anna, django_capture_on_commit_callbacks):
    calls = []
    services.CONFIRMATION_HANDLERS.append(calls.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            s = sub(anna, news)
    finally:
        services.CONFIRMATION_HANDLERS.remove(calls.append)
    assert calls == [s]


def test_a_channel_without_double_opt_in_subscribes_at_once(news, anna):
    assert sub(anna, news, "sms").status == Status.SUBSCRIBED


ALL = list(Status.values)


@pytest.mark.parametrize("old", ALL)
@pytest.mark.parametrize("new", ALL)
def test_every_status_transition_is_allowed_or_refused_as_the_table_says(news, anna, adam, old, new):
    """The table is what a team member may do without `force`; the system may do less
    (test_the_system_never_subscribes_for_the_person)."""
    member = Actor(user=adam)
    s = sub(anna, news, "sms")
    Subscription.objects.filter(pk=s.pk).update(status=old, suspended_until=timezone.now() + timedelta(days=3) if old == "suspended" else None)
    s.refresh_from_db()
    until = timezone.now() + timedelta(days=30) if new == Status.SUSPENDED else None
    before = ConsentRecord.objects.count()
    allowed = new in TRANSITIONS[old] or (old == new and new != Status.SUSPENDED)
    if allowed:
        changed = subscription_set_status(subscription=s, status=new, actor=member, via=UI, until=until)
        s.refresh_from_db()
        assert s.status == new
        assert ConsentRecord.objects.count() == before + (1 if changed else 0)
        if changed:
            rec = ConsentRecord.objects.latest("id")
            assert (rec.old_status, rec.new_status, rec.actor_type, rec.source) == (old, new, "user", "ui")
    else:
        with pytest.raises(ResourceError):
            subscription_set_status(subscription=s, status=new, actor=member, via=UI, until=until)
        s.refresh_from_db()
        assert s.status == old
        assert ConsentRecord.objects.count() == before


@pytest.mark.parametrize("old", [Status.UNCONFIRMED, Status.UNSUBSCRIBED])
def test_the_system_never_subscribes_for_the_person(news, anna, adam, old):
    """Only the person (a confirmation click, a resubscribe), or a team member stating their
    consent, moves an unconfirmed or unsubscribed address to subscribed; an automation never
    does, one by one or in bulk. A pause that ends is the system's to lift."""
    s = sub(anna, news, "sms")
    Subscription.objects.filter(pk=s.pk).update(status=old)
    s.refresh_from_db()
    before = ConsentRecord.objects.count()
    with pytest.raises(ResourceError, match="The system cannot subscribe this address"):
        subscription_set_status(subscription=s, status=Status.SUBSCRIBED, actor=SYSTEM, via=UI)
    locked = list(Subscription.objects.select_for_update().filter(pk=s.pk))
    assert services.subscriptions_set_status_bulk(subscriptions=locked, status=Status.SUBSCRIBED, actor=SYSTEM,
                                                  via=UI) == []
    s.refresh_from_db()
    assert s.status == old and ConsentRecord.objects.count() == before
    locked = list(Subscription.objects.select_for_update().filter(pk=s.pk))
    assert services.subscriptions_set_status_bulk(subscriptions=locked, status=Status.SUBSCRIBED, actor=Actor(user=adam),
                                                  via=UI) == [s.pk]
    s.refresh_from_db()
    assert s.status == Status.SUBSCRIBED
    paused = sub(anna, news, "telegram", address="123456789")
    subscription_set_status(subscription=paused, status=Status.SUSPENDED, actor=SUBSCRIBER, via=UI,
                            until=timezone.now() + timedelta(days=7))
    assert subscription_set_status(subscription=paused, status=Status.SUBSCRIBED, actor=SYSTEM, via=UI)


@pytest.mark.parametrize("system_state", [Status.BOUNCED, Status.COMPLAINED, Status.BLOCKED])
def test_leaving_a_system_state_takes_an_explicit_admin_action(news, anna, adam, system_state):
    s = sub(anna, news, "sms")
    subscription_set_status(subscription=s, status=system_state, actor=SYSTEM, via=Via(source="bounce"))
    with pytest.raises(ResourceError, match="only an admin"):
        subscription_set_status(subscription=s, status=Status.SUBSCRIBED, actor=SUBSCRIBER, via=UI, force=True)
    with pytest.raises(ResourceError, match="only an admin"):
        subscription_set_status(subscription=s, status=Status.SUBSCRIBED, actor=Actor(user=adam), via=UI)
    assert subscription_set_status(subscription=s, status=Status.SUBSCRIBED, actor=Actor(user=adam), via=UI, force=True,
                                   reason="renewed consent by phone")
    rec = ConsentRecord.objects.latest("id")
    assert (rec.actor_type, rec.actor_label, rec.reason) == ("user", adam.email, "renewed consent by phone")


def test_a_pause_needs_a_future_end_and_ends_on_schedule(news, anna):
    s = sub(anna, news, "sms")
    with pytest.raises(ResourceValidationError):
        subscription_set_status(subscription=s, status=Status.SUSPENDED, actor=SYSTEM, via=UI)
    with pytest.raises(ResourceValidationError):
        subscription_pause(subscription=s, days=7, actor=SUBSCRIBER, via=Via(source="preferences"))
    subscription_pause(subscription=s, days=14, actor=SUBSCRIBER, via=Via(source="preferences"))
    assert s.status == Status.SUSPENDED and s.suspended_until > timezone.now() + timedelta(days=13)
    assert subscriptions_resume_due() == 0
    assert subscriptions_resume_due(now=timezone.now() + timedelta(days=15)) == 1
    s.refresh_from_db()
    assert s.status == Status.SUBSCRIBED and s.suspended_until is None
    rec = ConsentRecord.objects.latest("id")
    assert (rec.old_status, rec.new_status, rec.source) == ("suspended", "subscribed", "schedule")


def test_a_subscriber_resubscribing_on_a_double_opt_in_channel_must_confirm_again(news, anna):
    s = sub(anna, news, confirmed=True)
    subscription_set_status(subscription=s, status=Status.UNSUBSCRIBED, actor=SUBSCRIBER, via=Via(source="link"))
    subscription_set_status(subscription=s, status=Status.SUBSCRIBED, actor=SUBSCRIBER, via=Via(source="preferences"))
    assert s.status == Status.UNCONFIRMED


def test_categories_are_validated_and_recorded(news, anna):
    s = sub(anna, news, "sms")
    with pytest.raises(ResourceValidationError, match="unknown category"):
        subscription_set_categories(subscription=s, opted_out=["sports"], actor=SUBSCRIBER, via=UI)
    assert subscription_set_categories(subscription=s, opted_out=["offers", "news"], actor=SUBSCRIBER, via=UI)
    assert s.opted_out == ["news", "offers"]
    assert not subscription_set_categories(subscription=s, opted_out=["news", "offers"], actor=SUBSCRIBER, via=UI)
    rec = ConsentRecord.objects.filter(action="categories").get()
    assert (rec.old_categories, rec.new_categories, rec.actor_type) == ([], ["news", "offers"], "subscriber")


def test_subscribe_creates_then_updates_without_duplicates(news, anna, adam):
    token = Actor(user=adam)  # a team member's subscribe (the system may not resubscribe: PERSON_ONLY)
    s, created = subscription_subscribe(profile=anna, resource=news, channel="sms", address=anna.phone, actor=token, via=UI)
    assert created
    subscription_set_status(subscription=s, status=Status.UNSUBSCRIBED, actor=SYSTEM, via=UI)
    again, created = subscription_subscribe(profile=anna, resource=news, channel="sms", address=anna.phone, actor=token, via=UI)
    assert not created and again.pk == s.pk
    again.refresh_from_db()
    assert again.status == Status.SUBSCRIBED
    assert Subscription.objects.count() == 1


def test_merge_moves_subscriptions_and_their_ledger(news, anna, ben):
    a = sub(anna, news, "sms")
    b = sub(ben, news, confirmed=True)
    profile_merge(target=anna, source=ben, actor=SYSTEM)
    b.refresh_from_db()
    assert b.profile_id == anna.pk and b.priority == 1
    assert set(Subscription.objects.filter(profile=anna).values_list("pk", flat=True)) == {a.pk, b.pk}
    assert ConsentRecord.objects.filter(profile=anna, subscription=b, action="moved").exists()
    assert ConsentRecord.objects.filter(profile=anna, subscription=b, action="created").exists()


def test_erasure_removes_subscriptions_and_the_ledgers_personal_data(news, anna):
    s = sub(anna, news, "sms")
    subscription_set_status(subscription=s, status=Status.UNSUBSCRIBED, actor=Actor(ip="198.51.100.1"), via=Via("link", "Mozilla"))
    profile_erase(profile=anna, actor=SYSTEM)
    assert not Subscription.objects.exists()
    records = list(ConsentRecord.objects.all())
    assert len(records) == 2
    assert all(r.profile_id is None and r.address == "" and r.ip is None and r.user_agent == "" for r in records)


def test_suppressions_cover_addresses_domains_and_phones(acme, globex, news, anna):
    suppression_add(account=acme, kind="email", value="Anna@Shop.Example.com", actor=SYSTEM)
    suppression_add(account=acme, kind="domain", value="@spam.example.net", actor=SYSTEM, reason="role")
    suppression_add(account=acme, kind="phone", value="0151 12345678", actor=SYSTEM)
    suppression_add(account=globex, kind="email", value="ben@shop.example.com", actor=SYSTEM)
    _, created = suppression_add(account=acme, kind="email", value="anna@shop.example.com", actor=SYSTEM)
    assert not created
    assert suppression_for(acme.pk, "email", "anna@shop.example.com").kind == "email"
    assert suppression_for(acme.pk, "email", "x@spam.example.net").kind == "domain"
    assert suppression_for(acme.pk, "sms", "+4915112345678").kind == "phone"
    assert suppression_for(acme.pk, "email", "ben@shop.example.com") is None  # another account's list
    assert set(suppressed_among(acme.pk, "email", ["anna@shop.example.com", "ok@shop.example.com", "y@spam.example.net"])) == {"anna@shop.example.com", "y@spam.example.net"}
    with pytest.raises(ResourceValidationError):
        suppression_add(account=acme, kind="domain", value="not a domain", actor=SYSTEM)


def test_the_planning_filter_excludes_suppressed_subscriptions(acme, news, anna, ben):
    sub(anna, news, confirmed=True)
    sub(ben, news, confirmed=True)
    suppression_add(account=acme, kind="domain", value="shop.example.com", actor=SYSTEM)
    qs = Subscription.objects.filter(resource=news, channel="email")
    assert qs.exclude(suppressed_exists(acme.pk, "email")).count() == 0
    Suppression.objects.all().delete()
    suppression_add(account=acme, kind="email", value="ben@shop.example.com", actor=SYSTEM)
    assert list(qs.exclude(suppressed_exists(acme.pk, "email")).values_list("profile_id", flat=True)) == [anna.pk]


def test_counts_group_by_channel_and_status(news, anna, ben):
    sub(anna, news)
    sub(ben, news, confirmed=True)
    sub(anna, news, "sms")
    counts = resource_counts(news)
    assert counts["email"]["unconfirmed"] == 1 and counts["email"]["subscribed"] == 1 and counts["email"]["total"] == 2
    assert counts["sms"]["subscribed"] == 1 and counts["telegram"]["total"] == 0


# --- the import hook -----------------------------------------------------------------------------


def run_import(db, csv_text, **extra):
    data = csv_text.encode()
    info = sniff(io.BytesIO(data), size=len(data))
    opts = Options(auto_mapping(info.headers, writable_fields(db)), "email", extra=extra)
    return import_file(database=db, file=io.BytesIO(data), info=info, options=opts, source="import:7", actor_label="olivia@acme.test")


def test_an_import_subscribes_every_row_in_the_same_pass(shop, news, anna):
    s = sub(anna, news, confirmed=True)
    subscription_set_status(subscription=s, status=Status.UNSUBSCRIBED, actor=SUBSCRIBER, via=Via("link"))
    csv_text = "email,first_name\nanna@shop.example.com,Anna\nnew1@shop.example.com,New\nnew2@shop.example.com,Newer\n"
    result = run_import(shop, csv_text, subscribe={"resource": news.pk, "channel": "email", "status": "subscribed"})
    extra = result.extra["subscribe"]
    assert (extra["created"], extra["kept"], extra["changed"], extra["no_address"]) == (2, 1, 0, 0)
    s.refresh_from_db()
    assert s.status == Status.UNSUBSCRIBED  # an import never overrules a person's opt-out
    new = Subscription.objects.filter(resource=news, address__startswith="new")
    assert new.count() == 2 and {x.status for x in new} == {"subscribed"}
    assert all(x.confirmed_at is not None for x in new)
    recs = ConsentRecord.objects.filter(subscription__in=new)
    assert recs.count() == 2 and {(r.action, r.source, r.actor_label) for r in recs} == {("created", "import:7", "olivia@acme.test")}


def test_an_import_can_unsubscribe_and_skips_erased_people(shop, news, anna, ben):
    s = sub(anna, news, confirmed=True)
    profile_erase(profile=ben, actor=SYSTEM)
    result = run_import(shop, "email\nanna@shop.example.com\nben@shop.example.com\n",
                        subscribe={"resource": news.pk, "channel": "email", "status": "unsubscribed"})
    assert result.skipped_erased == 1
    assert result.extra["subscribe"]["changed"] == 1 and result.extra["subscribe"]["created"] == 0
    s.refresh_from_db()
    assert s.status == Status.UNSUBSCRIBED
    assert ConsentRecord.objects.filter(subscription=s, action="status", new_status="unsubscribed", source="import:7").exists()
    assert not Subscription.objects.filter(address="ben@shop.example.com").exists()


def test_an_import_with_a_bad_subscribe_option_does_not_run(shop, news, globex_news):
    from profiles.importing import ImportMappingError

    with pytest.raises(ImportMappingError, match="resource of this database"):
        run_import(shop, "email\na@shop.example.com\n", subscribe={"resource": globex_news.pk, "channel": "email", "status": "subscribed"})
    with pytest.raises(ImportMappingError, match=r"e-mail .* or SMS"):
        run_import(shop, "email\na@shop.example.com\n", subscribe={"resource": news.pk, "channel": "telegram", "status": "subscribed"})


def test_a_resource_never_takes_a_slug_its_pages_use(acme, shop):
    from resources.services import resource_create

    assert resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "New"}).slug == "new-resource"
    with pytest.raises(ResourceValidationError, match="reserved"):
        resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "X", "slug": "new"})


def test_an_import_leaves_an_address_another_profile_holds_and_counts_rows_without_one(shop, news, anna, ben):
    sub(ben, news, address=anna.email, confirmed=True)  # ben subscribed anna's address here
    result = run_import(shop, "email,phone\nanna@shop.example.com,\nben@shop.example.com,\n",
                        subscribe={"resource": news.pk, "channel": "sms", "status": "subscribed"})
    assert result.extra["subscribe"]["no_address"] == 1  # ben has no phone
    assert result.extra["subscribe"]["created"] == 1  # anna's phone
    result = run_import(shop, "email\nanna@shop.example.com\n",
                        subscribe={"resource": news.pk, "channel": "email", "status": "unsubscribed"})
    assert (result.extra["subscribe"]["taken"], result.extra["subscribe"]["created"]) == (1, 0)
    assert Subscription.objects.get(address=anna.email).profile_id == ben.pk
    assert Subscription.objects.get(address=anna.email).status == Status.SUBSCRIBED


# --- the counters --------------------------------------------------------------------------------


def true_counts(resource):
    """What resource_counts must say: a plain recount of the subscriptions."""
    out = {c: dict.fromkeys(Status.values, 0) | {"total": 0} for c in resource.channels}
    for s in Subscription.objects.filter(resource=resource):
        out[s.channel][s.status] += 1
        out[s.channel]["total"] += 1
    return out


def test_the_counters_follow_every_kind_of_change(acme, shop, news, anna, ben):
    from resources.models import SubscriptionCount
    from resources.services import subscription_counts_compact, subscription_delete

    a_mail = sub(anna, news)  # unconfirmed (double opt-in)
    a_sms = sub(anna, news, "sms")
    b_mail = sub(ben, news, confirmed=True)
    push = sub(anna, news, "mobilepush", address="p" * 40)
    assert resource_counts(news) == true_counts(news)
    subscription_confirm(subscription=a_mail, actor=SUBSCRIBER, via=Via("confirmation"))
    subscription_pause(subscription=a_sms, days=30, actor=SUBSCRIBER, via=Via("preferences"))
    subscription_pause(subscription=a_sms, days=60, actor=SUBSCRIBER, via=Via("preferences"))  # extended: no change in counts
    subscription_set_status(subscription=b_mail, status=Status.BOUNCED, actor=SYSTEM, via=Via("bounce"))
    sub(ben, news, "mobilepush", address="p" * 40)  # the device moves to ben: counts unchanged
    assert resource_counts(news) == true_counts(news)
    subscriptions_resume_due(now=timezone.now() + timedelta(days=61))
    subscription_delete(subscription=push, actor=SYSTEM, via=UI)
    assert resource_counts(news) == true_counts(news)
    run_import(shop, "email\nanna@shop.example.com\nnew@shop.example.com\n",
               subscribe={"resource": news.pk, "channel": "email", "status": "unsubscribed"})
    assert resource_counts(news)["email"]["unsubscribed"] == 2
    assert resource_counts(news) == true_counts(news)
    profile_merge(target=anna, source=ben, actor=SYSTEM)
    assert resource_counts(news) == true_counts(news)
    profile_erase(profile=anna, actor=SYSTEM)
    assert resource_counts(news) == true_counts(news)
    rows = SubscriptionCount.objects.filter(resource=news).count()
    assert subscription_counts_compact(resource_id=news.pk) > 0
    assert SubscriptionCount.objects.filter(resource=news).count() < rows
    assert resource_counts(news) == true_counts(news)


def test_a_rebuild_recounts_what_a_bulk_load_did_not_count(news, anna):
    from resources.services import subscription_counts_rebuild

    Subscription.objects.bulk_create([Subscription(account_id=news.account_id, resource=news, profile=anna, channel="email",
                                                   address=f"bulk{i}@example.com") for i in range(5)])
    assert resource_counts(news)["email"]["total"] == 0
    subscription_counts_rebuild(resource=news)
    assert resource_counts(news) == true_counts(news)
    assert resource_counts(news)["email"]["subscribed"] == 5


def test_a_subscription_is_never_added_to_a_profile_that_is_gone(shop, news, anna):
    from profiles.models import Profile

    Profile.objects.filter(pk=anna.pk).delete()
    with pytest.raises(ResourceError, match="no longer exists"):
        sub(anna, news, "sms")
    assert not Subscription.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_erasure_waits_for_a_running_import_and_then_removes_what_it_subscribed(shop, news, anna):
    """The database does not check subscription references row by row: an import holds its
    database's write lock, and erasure takes it too, so the two cannot interleave."""
    import threading
    import time

    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    importing, erased = threading.Event(), threading.Event()
    interleaved = []

    def run_the_import() -> None:
        try:
            with transaction.atomic():
                run_import(shop, "email\nanna@shop.example.com\n",
                           subscribe={"resource": news.pk, "channel": "email", "status": "subscribed"})
                importing.set()
                time.sleep(1.0)  # the import is still writing; the erasure must wait
                interleaved.append(erased.is_set())
        finally:
            connection.close()

    def erase() -> None:
        try:
            importing.wait(10)
            profile_erase(profile=anna, actor=SYSTEM)
            erased.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=run_the_import), threading.Thread(target=erase)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert erased.is_set() and interleaved == [False]
    assert not Subscription.objects.filter(address="anna@shop.example.com").exists()
    assert not ConsentRecord.objects.filter(address="anna@shop.example.com").exists()
