"""VAPID key generation and the applicationServerKey format browsers need."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from delivery.vapid import VapidKeyError, application_server_key, generate_vapid_keys, load_private_key


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_it_generates_a_p256_pair_with_an_uncompressed_unpadded_public_key():
    keys = generate_vapid_keys()

    public = b64url_decode(keys.public_key)
    assert len(public) == 65 and public[0] == 4
    assert "=" not in keys.public_key and "+" not in keys.public_key and "/" not in keys.public_key
    assert len(b64url_decode(keys.private_key)) == 32
    assert application_server_key(keys.private_key) == keys.public_key
    assert generate_vapid_keys().private_key != keys.private_key


def test_its_private_key_is_readable_by_py_vapid_and_signs_for_the_public_key():
    keys = generate_vapid_keys()
    vapid = Vapid02.from_string(keys.private_key)
    headers = vapid.sign({"aud": "https://push.example", "sub": "mailto:ops@acme.example"})

    assert headers["Authorization"].endswith(f"k={keys.public_key}")
    assert Vapid02.verify(headers["Authorization"])


def test_it_reads_pem_keys_and_refuses_other_curves_and_garbage():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert load_private_key(pem).private_numbers() == key.private_numbers()

    other = (
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(VapidKeyError, match="P-256"):
        load_private_key(other)
    with pytest.raises(VapidKeyError):
        load_private_key("not a key")
