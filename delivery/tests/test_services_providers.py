"""Provider accounts: validated by their kind's spec, secrets encrypted and kept when left blank."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.access import Actor
from accounts.models import AuditEvent
from delivery import selectors
from delivery.backends import DeliveryError, get_backend
from delivery.backends.smtp import SmtpBackend
from delivery.models import ProviderAccount
from delivery.services import (
    provider_account_check,
    provider_account_create,
    provider_account_delete,
    provider_account_update,
)

SYSTEM = Actor.system()


def relay(account, name="Relay", **kw):
    data = {"host": "smtp.example.net", "port": "587", "tls": "starttls", "username": "u", "password": "pw-1"}
    data.update(kw.pop("data", {}))
    return provider_account_create(account=account, channel="email", kind="smtp", name=name, data=data,
                                   actor=SYSTEM, **kw)


def test_it_splits_options_from_encrypted_secrets_and_types_the_values(acme):
    provider = relay(acme)

    assert provider.options["host"] == "smtp.example.net" and provider.options["port"] == 587
    assert "password" not in provider.options
    assert ProviderAccount.objects.get(pk=provider.pk).secrets == {"password": "pw-1"}
    assert provider.secret_names == ["password"]
    assert AuditEvent.objects.filter(verb="provider_account.created", target_id=str(provider.pk)).exists()
    assert "pw-1" not in str(AuditEvent.objects.filter(verb="provider_account.created").values_list("data"))


def test_bad_values_are_refused_field_by_field(acme):
    with pytest.raises(ValidationError) as info:
        relay(acme, data={"host": "", "port": "nope", "tls": "ssl3"})

    assert set(info.value.message_dict) == {"host", "port", "tls"}


def test_a_kind_must_serve_the_channel(acme):
    with pytest.raises(ValidationError) as info:
        provider_account_create(account=acme, channel="sms", kind="smtp", name="x", data={"host": "h"}, actor=SYSTEM)
    assert "kind" in info.value.message_dict
    with pytest.raises(ValidationError):
        provider_account_create(account=acme, channel="email", kind="carrier-pigeon", name="x", data={}, actor=SYSTEM)


def test_a_blank_secret_on_edit_keeps_the_saved_one_and_a_new_one_replaces_it(acme):
    provider = relay(acme)

    provider_account_update(provider=provider, data={"host": "smtp2.example.net", "password": ""}, actor=SYSTEM)
    provider.refresh_from_db()
    assert provider.options["host"] == "smtp2.example.net"
    assert provider.secrets == {"password": "pw-1"}
    provider_account_update(provider=provider, data={"host": "smtp2.example.net", "password": "pw-2"}, actor=SYSTEM)
    provider.refresh_from_db()
    assert provider.secrets == {"password": "pw-2"}


def test_one_default_per_channel(acme):
    first = relay(acme, is_default=True)
    second = relay(acme, name="Backup relay", is_default=True)

    first.refresh_from_db()
    assert not first.is_default and second.is_default
    provider_account_update(provider=first, is_default=True, actor=SYSTEM)
    second.refresh_from_db()
    assert not second.is_default
    assert selectors.provider_account_default(acme, "email") == first


def test_names_are_unique_per_account(acme, globex):
    relay(acme)

    with pytest.raises(ValidationError, match="exists"):
        relay(acme)
    assert relay(globex).pk


def test_the_default_provider_sends_for_the_account_and_settings_serve_the_rest(acme, globex):
    provider = relay(acme, is_default=True)

    backend = get_backend("email", account=acme)
    assert isinstance(backend, SmtpBackend)
    assert (backend.host, backend.port, backend.password) == ("smtp.example.net", 587, "pw-1")
    assert backend.pool_key.startswith(f"provider:{provider.pk}:")
    assert type(get_backend("email", account=globex)).__name__ == "LocmemBackend"
    provider_account_update(provider=provider, active=False, actor=SYSTEM)
    assert type(get_backend("email", account=acme)).__name__ == "LocmemBackend"


def test_a_switched_off_or_wrong_channel_provider_is_refused(acme):
    provider = relay(acme)

    with pytest.raises(DeliveryError, match="sends email, not sms"):
        get_backend("sms", provider=provider)
    provider_account_update(provider=provider, active=False, actor=SYSTEM)
    with pytest.raises(DeliveryError, match="switched off") as info:
        get_backend("email", provider=provider)
    assert info.value.permanent


def test_check_reports_a_relay_that_cannot_be_reached(acme):
    provider = relay(acme, data={"host": "127.0.0.1", "port": "9", "tls": "none", "timeout": "2"})

    with pytest.raises(DeliveryError, match=r"Cannot connect to 127\.0\.0\.1:9"):
        provider_account_check(provider=provider)


def test_delete_removes_it_and_audits(acme):
    provider = relay(acme)

    provider_account_delete(provider=provider, actor=SYSTEM)
    assert not ProviderAccount.objects.filter(pk=provider.pk).exists()
    assert AuditEvent.objects.filter(verb="provider_account.deleted").exists()


def test_lists_never_decrypt_secrets(acme, django_assert_num_queries):
    relay(acme)

    with django_assert_num_queries(1):
        listed = list(selectors.provider_account_list(acme, channel="email"))
    assert "secrets" in listed[0].get_deferred_fields()
