"""The provider kinds declared for the registry build working backends from their forms."""

from __future__ import annotations

import json

import pytest

from delivery.backends import get_kind, kinds
from delivery.tests.providers.fake_push import make_service_account
from delivery.tests.providers.test_apns import p8
from delivery.vapid import generate_vapid_keys

FORMS = {
    "http_sms": lambda: {"url": "https://sms.example/api", "auth": "bearer", "secret": "tok"},
    "twilio": lambda: {"account_sid": "AC1", "auth_token": "tok", "from_number": "+15005550006"},
    "webpush": lambda: (
        lambda k: {
            "vapid_private_key": k.private_key,
            "vapid_public_key": k.public_key,
            "vapid_subject": "mailto:ops@acme.example",
        }
    )(generate_vapid_keys()),
    "fcm": lambda: {
        "service_account": json.dumps(make_service_account("p", "https://oauth2.example/token")[0])
    },
    "apns": lambda: {"team_id": "T", "key_id": "K", "private_key": p8()[0], "topic": "com.acme.app"},
    "telegram": lambda: {"bot_token": "1:abc"},
}
SECRETS = {
    "http_sms": {"secret"},
    "twilio": {"auth_token"},
    "webpush": {"vapid_private_key"},
    "fcm": {"service_account"},
    "apns": {"private_key"},
    "telegram": {"bot_token"},
}


@pytest.mark.parametrize("kind", sorted(FORMS))
def test_each_kind_splits_its_secrets_and_builds_its_backend(kind):
    spec = get_kind(kind)
    options, secrets = spec.clean(FORMS[kind]())

    assert {f.name for f in spec.secret_fields} == SECRETS[kind] == set(secrets)
    assert not set(options) & SECRETS[kind]
    backend = spec.backend_class()(**options, **secrets)
    assert backend.channel in spec.channels
    assert callable(getattr(backend, spec.check))


def test_the_registry_lists_every_provider_kind():
    assert set(FORMS) <= set(kinds())
