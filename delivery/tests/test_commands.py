"""manage.py rotate_secrets: the operator's side of a key rotation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from delivery.models import ProviderAccount


def test_rotate_secrets_reencrypts_stored_secrets_so_the_old_key_can_go(settings, acme, capsys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_KEYS = [old]
    ProviderAccount.objects.create(account=acme, channel="sms", kind="twilio", name="SMS", secrets={"auth_token": "t0k"})
    settings.SECRETS_KEYS = [new, old]

    call_command("rotate_secrets")

    assert "Re-encrypted 1 stored secret(s)" in capsys.readouterr().out
    settings.SECRETS_KEYS = [new]
    assert ProviderAccount.objects.get(name="SMS").secrets == {"auth_token": "t0k"}


def test_rotate_secrets_says_to_keep_the_old_key_when_it_is_missing(settings, acme):
    settings.SECRETS_KEYS = [Fernet.generate_key().decode()]
    ProviderAccount.objects.create(account=acme, channel="sms", kind="twilio", name="SMS", secrets={"auth_token": "t0k"})
    settings.SECRETS_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError, match="old key still listed"):
        call_command("rotate_secrets")
