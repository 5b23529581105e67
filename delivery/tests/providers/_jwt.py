"""JWT verification for the emulators, written independently of the backends' signer:
RS256 (PKCS#1 v1.5) and ES256 (raw r||s, RFC 7518 3.4) with `cryptography`."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


class BadToken(Exception):
    pass


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(token: str, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> tuple[dict, dict]:
    """(header, claims) of a token whose signature `public_key` verifies; raises BadToken."""
    try:
        head, body, signature = token.split(".")
        header: dict[str, Any] = json.loads(_b64(head))
        claims: dict[str, Any] = json.loads(_b64(body))
        raw = _b64(signature)
    except ValueError as exc:
        raise BadToken(f"malformed token: {exc}") from exc
    signed = f"{head}.{body}".encode()
    try:
        if header.get("alg") == "RS256" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(raw, signed, padding.PKCS1v15(), hashes.SHA256())
        elif header.get("alg") == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey):
            if len(raw) != 64:
                raise BadToken("ES256 signature is not 64 bytes")
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        else:
            raise BadToken(f"unexpected alg {header.get('alg')!r}")
    except InvalidSignature as exc:
        raise BadToken("bad signature") from exc
    return header, claims
