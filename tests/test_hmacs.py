"""cdp.hmacs: the pre-keyed HMAC the hot paths share is HMAC-SHA256 exactly."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from cdp.hmacs import keyed_sha256


@pytest.mark.parametrize("key", [b"", b"k", b"x" * 32, b"y" * 64, b"z" * 65, bytes(range(200))])
@pytest.mark.parametrize("length", [5, 12, 32])
def test_it_equals_hmac_new_for_short_block_sized_and_long_keys(key, length):
    mac = keyed_sha256(key, length=length)
    for payload in (b"", b"L123", bytes(range(256)) * 3):
        assert mac(payload) == hmac.new(key, payload, hashlib.sha256).digest()[:length]
