"""Subscribing the profiles of an import from the import's pages and from `manage.py import_profiles`."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.access import Actor
from profiles.models import ProfileImport
from resources.models import ConsentRecord, Status, Subscription
from resources.services import Via, subscription_create, subscription_set_status

SYSTEM = Actor.system()
CSV = (
    "E-mail,First name,Phone\n"
    "anna@shop.example.com,Anna,+4915112345678\n"
    "carl@shop.example.com,Carl,\n"
    "dora@shop.example.com,Dora,+4915100000001\n"
)


def upload(client, db) -> ProfileImport:
    client.post(reverse("profiles:import_upload", args=[db.slug]), {"file": SimpleUploadedFile("people.csv", CSV.encode())})
    return ProfileImport.objects.filter(database=db).latest("pk")


def detail(db, imp) -> str:
    return reverse("profiles:import_detail", args=[db.slug, imp.pk])


def start(client, db, imp, capture, **subscribe):
    data = {f"col-{k}": v for k, v in imp.mapping.items()} | {"match_key": "email", "mode": "upsert", "skip_erased": "on", "start": "1"}
    data |= {f"subscribe-{k}": v for k, v in subscribe.items()}
    with capture(execute=True):
        return client.post(detail(db, imp), data)


def test_the_mapping_step_offers_the_databases_resources(login, alice, shop, news):
    client = login(alice)
    imp = upload(client, shop)
    text = client.get(detail(shop, imp)).content.decode()
    assert 'data-testid="import-subscribe"' in text and "Subscribe the imported profiles" in text
    assert f'<option value="{news.pk}">Shop news</option>' in text and "Do not subscribe" in text


def test_it_subscribes_the_imported_profiles_and_shows_what_it_did(login, alice, shop, news, anna, ben,
                                                                   django_capture_on_commit_callbacks):
    # anna unsubscribed earlier: an import must not subscribe her again.
    s = subscription_create(profile=anna, resource=news, channel="email", address=anna.email, actor=SYSTEM, via=Via("ui"),
                            confirmed=True)
    subscription_set_status(subscription=s, status=Status.UNSUBSCRIBED, actor=SYSTEM, via=Via("ui"))
    client = login(alice)
    imp = upload(client, shop)
    response = start(client, shop, imp, django_capture_on_commit_callbacks, resource=news.pk, channel="email", status="subscribed")
    assert response.status_code == 302
    imp.refresh_from_db()
    assert imp.state == "succeeded" and imp.extra == {"subscribe": {"resource": news.pk, "channel": "email", "status": "subscribed"}}
    result = imp.extra_results["subscribe"]
    assert (result["created"], result["kept"], result["changed"], result["taken"], result["no_address"]) == (2, 1, 0, 0, 0)
    subs = dict(Subscription.objects.filter(resource=news).values_list("address", "status"))
    assert subs == {"anna@shop.example.com": "unsubscribed", "carl@shop.example.com": "subscribed",
                    "dora@shop.example.com": "subscribed"}
    assert ConsentRecord.objects.filter(source=f"import:{imp.job_id}", action="created", actor_label=alice.email).count() == 2
    page = client.get(detail(shop, imp)).content.decode()
    assert 'data-testid="import-subscribe-result"' in page
    assert 'data-count="created">2<' in page and 'data-count="kept">1<' in page


def test_without_a_resource_the_import_subscribes_nobody(login, alice, shop, news, django_capture_on_commit_callbacks):
    client = login(alice)
    imp = upload(client, shop)
    start(client, shop, imp, django_capture_on_commit_callbacks, resource="", channel="email", status="subscribed")
    imp.refresh_from_db()
    assert imp.state == "succeeded" and imp.extra == {} and not Subscription.objects.exists()
    assert 'data-testid="import-subscribe-result"' not in client.get(detail(shop, imp)).content.decode()


def test_a_channel_the_resource_lacks_keeps_the_import_from_starting(login, alice, shop, acme, django_capture_on_commit_callbacks):
    from resources.services import resource_create

    mail_only = resource_create(account=acme, database=shop, actor=SYSTEM, values={"name": "Mail only", "channels": ["email"]})
    client = login(alice)
    imp = upload(client, shop)
    response = start(client, shop, imp, django_capture_on_commit_callbacks, resource=mail_only.pk, channel="sms", status="subscribed")
    assert response.status_code == 400 and "SMS is not enabled on Mail only" in response.content.decode()
    imp.refresh_from_db()
    assert imp.state == "uploaded" and not Subscription.objects.exists()


def test_another_databases_resource_is_refused(login, alice, shop, globex_news, django_capture_on_commit_callbacks):
    client = login(alice)
    imp = upload(client, shop)
    response = start(client, shop, imp, django_capture_on_commit_callbacks, resource=globex_news.pk, channel="email", status="subscribed")
    assert response.status_code == 400
    imp.refresh_from_db()
    assert imp.state == "uploaded" and not Subscription.objects.exists()


def test_the_command_subscribes_with_the_subscribe_flag(acme, shop, news, tmp_path, capsys):
    path = tmp_path / "people.csv"
    path.write_text("email,phone\nanna@shop.example.com,+4915112345678\ncarl@shop.example.com,\n")
    call_command("import_profiles", str(path), "--subscribe", f"{news.slug}:sms:unconfirmed", account=acme.slug, database=shop.slug)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2] == "created=2 updated=0 unchanged=0 failed=0"
    assert out[-1].startswith("subscribe: ") and "created=1" in out[-1] and "no_address=1" in out[-1]
    s = Subscription.objects.get(resource=news)
    assert (s.channel, s.address, s.status, s.source) == ("sms", "+4915112345678", "unconfirmed", "import:command")


@pytest.mark.parametrize(("flag", "message"), [
    ("nope:email:subscribed", "No resource 'nope'"),
    ("shop-news:telegram:subscribed", "email or sms"),
    ("shop-news:email:bounced", "status is one of"),
    ("shop-news", "RESOURCE_SLUG:CHANNEL:STATUS"),
])
def test_the_command_explains_a_bad_subscribe_flag(acme, shop, news, tmp_path, flag, message):
    path = tmp_path / "people.csv"
    path.write_text("email\nanna@shop.example.com\n")
    with pytest.raises(CommandError, match=message):
        call_command("import_profiles", str(path), "--subscribe", flag, account=acme.slug, database=shop.slug)
    assert not Subscription.objects.exists()
