"""Writes of the delivery app. Modules: domains (sending domains + DKIM keys), senders,
providers (provider accounts), test_send (render + compose + send one message), secrets
(re-encryption after a key rotation)."""

from __future__ import annotations

from delivery.services.domains import (  # noqa: F401
    default_return_path_domain,
    dkim_key_generate,
    dkim_key_remove,
    dkim_key_rotate,
    normalize_domain,
    sending_domain_create,
    sending_domain_delete,
    sending_domain_verify,
)
from delivery.services.providers import (  # noqa: F401
    provider_account_check,
    provider_account_create,
    provider_account_delete,
    provider_account_update,
)
from delivery.services.secrets import secrets_reencrypt  # noqa: F401
from delivery.services.senders import (  # noqa: F401
    sender_create,
    sender_delete,
    sender_for_sending,
    sender_update,
)
from delivery.services.test_send import test_send  # noqa: F401
