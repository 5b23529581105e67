"""The provider-account pages: forms built from the kinds' option specs, write-only secrets, the
default per channel, "test connection" against a real SMTP server, VAPID key generation."""

from __future__ import annotations

import re
import socket

import pytest
from django.db import connection
from django.urls import reverse

from accounts.access import Actor
from delivery.models import ProviderAccount
from delivery.services import provider_account_create
from delivery.vapid import load_private_key, public_key_text

SECRET = "s3cret-Pa55-never-shown"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def relay(acme, olivia) -> ProviderAccount:
    return provider_account_create(
        account=acme, channel="email", kind="smtp", name="Relay",
        data={"host": "127.0.0.1", "port": _closed_port(), "tls": "none", "username": "shop", "password": SECRET,
              "timeout": 2},
        actor=Actor(user=olivia),
    )


def smtp_form(**overrides: str) -> dict[str, str]:
    data = {"channel": "email", "kind": "smtp", "name": "Main relay", "active": "on", "opt_host": "127.0.0.1",
            "opt_port": "2525", "opt_tls": "none", "opt_username": "shop", "opt_password": SECRET,
            "opt_pool_size": "2", "opt_rate_per_second": "0", "opt_timeout": "5"}
    data.update(overrides)
    return data


def test_step_one_offers_the_channels_kinds_and_builds_the_kinds_form(login, adam):
    client = login(adam)
    body = client.get(reverse("delivery:provider_create") + "?channel=sms").content.decode()
    assert 'value="twilio"' in body and 'value="http_sms"' in body and 'value="smtp"' not in body
    assert 'data-testid="provider-form"' not in body
    body = client.get(reverse("delivery:provider_create") + "?channel=email&kind=smtp").content.decode()
    assert 'name="opt_host"' in body and 'name="opt_port"' in body and 'value="587"' in body
    assert 'type="password" name="opt_password"' in body
    # A kind of another channel is not offered.
    body = client.get(reverse("delivery:provider_create") + "?channel=email&kind=telegram").content.decode()
    assert 'name="opt_bot_token"' not in body


def test_it_adds_an_smtp_provider_and_encrypts_its_password(login, adam, acme):
    response = login(adam).post(reverse("delivery:provider_create"), smtp_form(is_default="on"))
    assert response.status_code == 302
    provider = ProviderAccount.objects.get(account=acme)
    assert (provider.channel, provider.kind, provider.is_default) == ("email", "smtp", True)
    assert provider.options["host"] == "127.0.0.1" and provider.options["port"] == 2525
    assert "password" not in provider.options and provider.secrets["password"] == SECRET
    with connection.cursor() as cursor:  # the column itself, past the field's decryption
        cursor.execute("SELECT secrets FROM delivery_provideraccount WHERE id = %s", [provider.pk])
        stored = cursor.fetchone()[0]
    assert stored and SECRET not in str(stored)


def test_the_secret_is_never_rendered_back_on_any_page(login, adam, acme):
    client = login(adam)
    response = client.post(reverse("delivery:provider_create"), smtp_form(), follow=True)
    assert SECRET not in response.content.decode()
    provider = ProviderAccount.objects.get(account=acme)
    # A failed edit (bad port) re-renders the form: still no secret, not even the one just typed.
    failed = client.post(reverse("delivery:provider_edit", args=[provider.pk]),
                         smtp_form(opt_port="99999", opt_password="typed-again-Pa55"))
    assert failed.status_code == 400 and "at most 65535" in failed.content.decode()
    pages = [failed,
             client.get(reverse("delivery:provider_list")),
             client.get(reverse("delivery:provider_edit", args=[provider.pk])),
             client.get(reverse("delivery:provider_delete", args=[provider.pk]))]
    for page in pages:
        body = page.content.decode()
        assert SECRET not in body and "typed-again-Pa55" not in body
    edit = pages[2].content.decode()
    assert 'data-testid="saved"' in edit and "leave blank to keep" in edit


def test_a_multi_line_secret_is_not_rendered_back_either(login, adam, acme):
    pem = "-----BEGIN PRIVATE KEY-----\nMIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQg-secret-body\n-----END PRIVATE KEY-----"
    # Missing the required Team ID: the form comes back with an error, and without the key typed.
    response = login(adam).post(reverse("delivery:provider_create"), {
        "channel": "mobilepush", "kind": "apns", "name": "iOS", "active": "on", "opt_key_id": "ABC123DEFG",
        "opt_private_key": pem})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'name="opt_private_key"' in body and "secret-body" not in body
    assert not ProviderAccount.objects.filter(account=acme).exists()


def test_a_blank_secret_keeps_the_saved_one_and_a_new_one_replaces_it(login, adam, relay):
    client = login(adam)
    client.post(reverse("delivery:provider_edit", args=[relay.pk]), smtp_form(name="Relay", opt_password=""))
    relay.refresh_from_db()
    assert relay.secrets["password"] == SECRET and relay.options["port"] == 2525
    client.post(reverse("delivery:provider_edit", args=[relay.pk]), smtp_form(name="Relay", opt_password="n3w"))
    relay.refresh_from_db()
    assert relay.secrets["password"] == "n3w"


def test_a_required_field_missing_is_shown_on_its_input(login, adam, acme):
    response = login(adam).post(reverse("delivery:provider_create"), smtp_form(opt_host=""))
    assert response.status_code == 400
    body = response.content.decode()
    host_input = re.search(r'<input[^>]*name="opt_host"[^>]*>', body).group(0)
    assert "is-invalid" in host_input and "This field is required." in body
    assert not ProviderAccount.objects.filter(account=acme).exists()


def test_the_name_must_be_unique_in_the_account(login, adam, relay):
    response = login(adam).post(reverse("delivery:provider_create"), smtp_form(name="Relay"))
    assert response.status_code == 400
    assert ProviderAccount.objects.filter(name="Relay").count() == 1


def test_make_default_takes_the_default_from_the_other_provider(login, adam, acme, olivia, relay):
    other = provider_account_create(account=acme, channel="email", kind="file", name="Outbox", data={},
                                    is_default=True, actor=Actor(user=olivia))
    login(adam).post(reverse("delivery:provider_default", args=[relay.pk]))
    relay.refresh_from_db()
    other.refresh_from_db()
    assert relay.is_default and not other.is_default


def test_test_connection_talks_to_a_real_smtp_server(login, adam, acme, olivia, smtp_server):
    provider = provider_account_create(
        account=acme, channel="email", kind="smtp", name="Loopback",
        data={"host": smtp_server.host, "port": smtp_server.port, "tls": "none", "timeout": 5},
        actor=Actor(user=olivia),
    )
    response = login(adam).post(reverse("delivery:provider_test", args=[provider.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert "It works." in body and f"{smtp_server.host}:{smtp_server.port}" in body
    assert "<html" not in body


def test_test_connection_reports_a_server_that_is_not_there(login, adam, relay):
    response = login(adam).post(reverse("delivery:provider_test", args=[relay.pk]), follow=True)
    body = response.content.decode()
    assert "Connection test failed" in body
    assert SECRET not in body


def test_generate_vapid_keys_saves_a_working_pair_and_shows_only_the_public_key(login, adam, acme):
    client = login(adam)
    response = client.post(reverse("delivery:provider_create"), {
        "channel": "webpush", "kind": "webpush", "name": "Site push", "active": "on",
        "opt_vapid_subject": "mailto:ops@shop.example", "opt_ttl": "3600", "opt_urgency": "normal",
        "opt_timeout": "10", "generate_vapid": "1"})
    assert response.status_code == 302
    provider = ProviderAccount.objects.get(account=acme)
    private = provider.secrets["vapid_private_key"]
    public = provider.options["vapid_public_key"]
    assert public_key_text(load_private_key(private)) == public
    body = client.get(response["Location"]).content.decode()
    assert public in body and private not in body
    # New keys replace the pair; the subject stays.
    client.post(reverse("delivery:provider_vapid", args=[provider.pk]))
    provider.refresh_from_db()
    assert provider.options["vapid_public_key"] != public
    assert public_key_text(load_private_key(provider.secrets["vapid_private_key"])) == provider.options["vapid_public_key"]
    assert provider.options["vapid_subject"] == "mailto:ops@shop.example"


def test_the_list_groups_providers_by_channel(login, adam, relay):
    body = login(adam).get(reverse("delivery:provider_list")).content.decode()
    email = body.split('data-channel="email"', 1)[1].split('data-channel="sms"', 1)[0]
    assert "Relay" in email and "127.0.0.1:" in email


def test_it_deletes_a_provider(login, adam, relay):
    assert login(adam).post(reverse("delivery:provider_delete", args=[relay.pk])).status_code == 302
    assert not ProviderAccount.objects.filter(pk=relay.pk).exists()


def test_a_marketer_is_refused(login, alice, relay):
    client = login(alice)
    assert client.get(reverse("delivery:provider_list")).status_code == 403
    assert client.get(reverse("delivery:provider_edit", args=[relay.pk])).status_code == 403
    assert client.post(reverse("delivery:provider_test", args=[relay.pk])).status_code == 403


def test_another_accounts_provider_is_a_404(login, charlie, relay):
    client = login(charlie)
    assert client.get(reverse("delivery:provider_edit", args=[relay.pk])).status_code == 404
    for name in ("provider_edit", "provider_delete", "provider_default", "provider_test", "provider_vapid"):
        assert client.post(reverse(f"delivery:{name}", args=[relay.pk])).status_code == 404
    relay.refresh_from_db()
    assert relay.name == "Relay" and not relay.is_default
