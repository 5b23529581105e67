"""HMAC-SHA256 with the key prepared once: for MACs computed per message on hot paths (tracking
tokens, VERP addresses), where `hmac.new(key, ...)` would pad and hash the key on every call."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(x ^ 0x36 for x in range(256))  # HMAC's inner and outer pads as translate tables
_OPAD = bytes(x ^ 0x5C for x in range(256))


def keyed_sha256(key: bytes, *, length: int = 32) -> Callable[[bytes], bytes]:
    """`mac(payload)`: the first `length` bytes of HMAC-SHA256(key, payload) (RFC 2104), equal to
    `hmac.new(key, payload, hashlib.sha256).digest()[:length]`. The keyed inner and outer hash
    states are computed here, once; each call copies them."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    block = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(block.translate(_IPAD))
    outer = hashlib.sha256(block.translate(_OPAD))

    def mac(payload: bytes) -> bytes:
        i = inner.copy()
        i.update(payload)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()[:length]

    return mac
