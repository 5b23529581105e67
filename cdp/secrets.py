"""Secrets at rest: DKIM private keys and provider credentials are stored encrypted.

Key: `CDP_SECRETS_KEY` in the environment (settings.SECRETS_KEYS): one or more Fernet keys
(urlsafe base64 of 32 bytes, `Fernet.generate_key()`), comma separated. The FIRST encrypts,
every one decrypts (MultiFernet), so a rotation is: put the new key first, keep the old one
after it, re-encrypt the stored rows (delivery.services.secrets_reencrypt), then drop the old.

When `CDP_SECRETS_KEY` is unset (the embedded default, `make run`), the key is derived from
SECRET_KEY with HKDF-SHA256 (info "cdp-secrets"): it works out of the box, and changing
SECRET_KEY then makes stored secrets unreadable (`SecretError` says so). Production sets its own.

Ciphertext is the Fernet token (ASCII, starts with "gAAAAA"); it carries its own timestamp and
HMAC, so a tampered or foreign value fails loudly instead of decrypting to garbage.

The model fields store ciphertext and hand back plaintext in Python. Forms must never render
a stored secret back (`formfield()` gives a PasswordInput that does not render its value);
the UI shows "saved" and "leave blank to keep".
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django import forms
from django.conf import settings
from django.db import models

PREFIX = "gAAAAA"  # every Fernet token (version byte 0x80 + timestamp) starts with it


class SecretError(Exception):
    """A stored secret cannot be decrypted: wrong/rotated-away key, or not a token at all."""


def _derive_from_secret_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"cdp-secrets-v1", info=b"cdp-secrets")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if keys:
        try:
            return MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError) as exc:
            raise SecretError(
                "CDP_SECRETS_KEY is not a valid list of Fernet keys (urlsafe base64 of 32 bytes, "
                "comma separated; make one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)."
            ) from exc
    return MultiFernet([Fernet(_derive_from_secret_key(secret_key))])


def keyring() -> MultiFernet:
    """The current MultiFernet (cached per settings value, so tests can override settings)."""
    keys = tuple(k.strip() for k in getattr(settings, "SECRETS_KEYS", ()) if k.strip())
    return _fernet(keys, settings.SECRET_KEY)


def generate_key() -> str:
    return Fernet.generate_key().decode()


def encrypt(plaintext: str) -> str:
    """Encrypt with the first key. Returns an ASCII token; the same plaintext encrypts
    differently each time (random IV)."""
    return keyring().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt with any configured key. Raises SecretError with a clear message otherwise."""
    try:
        return keyring().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise SecretError(
            "Could not decrypt a stored secret: it was encrypted with a key that is not in "
            "CDP_SECRETS_KEY (or SECRET_KEY changed while CDP_SECRETS_KEY is unset). Add the old "
            "key after the new one, or enter the secret again."
        ) from exc


def reencrypt(token: str) -> str:
    """The same secret under the first (newest) key; for key rotation."""
    try:
        return keyring().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise SecretError("Could not re-encrypt a stored secret: no configured key opens it.") from exc


class SecretInput(forms.PasswordInput):
    """A password input that never renders a stored value back into the page."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs={"autocomplete": "new-password", **(attrs or {})}, render_value=False)


class EncryptedTextField(models.TextField):
    """A text column holding ciphertext; Python sees the plaintext str ("" stays "").

    Not searchable or orderable in SQL (the column is random-looking ciphertext)."""

    description = "Encrypted text"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)

    def to_python(self, value: Any) -> Any:
        # loaddata hands back the ciphertext that value_to_string wrote.
        if isinstance(value, str) and value.startswith(PREFIX):
            try:
                return decrypt(value)
            except SecretError:
                return value
        return super().to_python(value)

    def value_to_string(self, obj: models.Model) -> str:
        # Serialization (dumpdata) keeps the ciphertext, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj)) or ""

    def formfield(self, **kwargs: Any) -> forms.Field:
        kwargs.setdefault("widget", SecretInput)
        kwargs.setdefault("required", False)
        return super().formfield(**kwargs)


class EncryptedJSONField(models.TextField):
    """A dict of secrets stored as one ciphertext of its JSON; Python sees the dict.

    Empty dict and NULL both read back as {} so callers can always `.get()`."""

    description = "Encrypted JSON"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", dict)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> dict[str, Any]:
        if not value:
            return {}
        return json.loads(decrypt(value))

    def to_python(self, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        if not value:
            return {}
        if isinstance(value, str) and value.startswith(PREFIX):
            return json.loads(decrypt(value))
        return json.loads(value)

    def get_prep_value(self, value: Any) -> str:
        if not value:
            return ""
        return encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))

    def value_to_string(self, obj: models.Model) -> str:
        # Serialization (dumpdata) keeps the ciphertext, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj))

    def formfield(self, **kwargs: Any) -> forms.Field | None:
        # Secrets are edited key by key through the provider form, never as one JSON blob.
        return None
