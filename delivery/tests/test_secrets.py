"""cdp.secrets: encryption at rest for DKIM keys and provider credentials."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from cdp import secrets
from cdp.secrets import SecretError, SecretInput
from delivery.models import ProviderAccount


@pytest.fixture
def two_keys(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_KEYS = [old]
    return old, new


def test_it_round_trips_and_never_repeats_a_ciphertext(two_keys):
    first, second = secrets.encrypt("hunter2 пароль"), secrets.encrypt("hunter2 пароль")

    assert first != second
    assert "hunter2" not in first
    assert secrets.decrypt(first) == secrets.decrypt(second) == "hunter2 пароль"


def test_it_derives_a_working_key_from_secret_key_when_none_is_configured(settings):
    settings.SECRETS_KEYS = []
    token = secrets.encrypt("x")

    assert secrets.decrypt(token) == "x"
    settings.SECRET_KEY = "another secret key entirely, long enough"
    with pytest.raises(SecretError, match="SECRET_KEY changed"):
        secrets.decrypt(token)


def test_it_decrypts_old_secrets_after_a_key_rotation_and_reencrypts_them_with_the_new_key(settings, two_keys):
    old, new = two_keys
    token = secrets.encrypt("relay-password")
    settings.SECRETS_KEYS = [new, old]

    assert secrets.decrypt(token) == "relay-password"
    rotated = secrets.reencrypt(token)
    settings.SECRETS_KEYS = [new]
    assert secrets.decrypt(rotated) == "relay-password"
    with pytest.raises(SecretError):
        secrets.decrypt(token)


def test_a_wrong_key_gives_a_clear_error(settings, two_keys):
    _old, new = two_keys
    token = secrets.encrypt("x")
    settings.SECRETS_KEYS = [new]

    with pytest.raises(SecretError, match="not in CDP_SECRETS_KEY"):
        secrets.decrypt(token)


def test_a_malformed_key_setting_is_refused_with_instructions(settings):
    settings.SECRETS_KEYS = ["not-a-fernet-key"]

    with pytest.raises(SecretError, match="Fernet"):
        secrets.encrypt("x")


def test_the_database_holds_ciphertext_and_python_sees_plaintext(acme):
    provider = ProviderAccount.objects.create(
        account=acme, channel="email", kind="smtp", name="Relay", options={"host": "smtp.example"},
        secrets={"password": "s3cret-relay-pass"},
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM delivery_provideraccount WHERE id = %s", [provider.pk])
        stored = cursor.fetchone()[0]

    assert "s3cret-relay-pass" not in stored
    assert stored.startswith(secrets.PREFIX)
    assert ProviderAccount.objects.get(pk=provider.pk).secrets == {"password": "s3cret-relay-pass"}


def test_the_secret_widget_never_renders_a_saved_value():
    html = SecretInput().render("password", "s3cret-relay-pass")

    assert "s3cret-relay-pass" not in html
    assert 'type="password"' in html


def test_reencrypting_after_a_rotation_lets_the_old_key_go(settings, two_keys, acme):
    from accounts.access import Actor
    from delivery.models import DkimKey
    from delivery.services import secrets_reencrypt, sending_domain_create

    old, new = two_keys
    domain = sending_domain_create(account=acme, domain="shop.example", actor=Actor.system())
    ProviderAccount.objects.create(account=acme, channel="email", kind="smtp", name="Relay", secrets={"password": "p"})
    settings.SECRETS_KEYS = [new, old]

    assert secrets_reencrypt() == 2
    settings.SECRETS_KEYS = [new]
    assert DkimKey.objects.get(domain=domain).private_key.startswith("-----BEGIN PRIVATE KEY-----")
    assert ProviderAccount.objects.get(name="Relay").secrets == {"password": "p"}
