"""VAPID keys (RFC 8292) for web push: generate a pair and show the public key the way
browsers want it.

A web page subscribes with `pushManager.subscribe({userVisibleOnly: true,
applicationServerKey: "<public key>"})` where the key is the P-256 public point, uncompressed
(65 bytes, 0x04 || X || Y), base64url without padding. The private key is stored (encrypted,
in the provider account's secrets) as the raw 32-byte scalar, base64url without padding: the
format pywebpush/py_vapid read with `Vapid.from_string`. PEM keys are accepted too.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


# base64url without padding (RFC 7515 / RFC 8292). Here, not in delivery.backends._http (which
# uses b64url for its JWTs): the providers page imports this module, and _http imports httpx
# (with rich and pygments, ~5 MB) that a process only needs to send through an HTTP provider.
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    raw = text.encode("ascii") if isinstance(text, str) else text
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


class VapidKeyError(ValueError):
    """The text is not a P-256 private key in a format we read."""


@dataclass(frozen=True, slots=True)
class VapidKeys:
    """private_key: raw scalar, base64url (SECRET). public_key: the applicationServerKey."""

    private_key: str
    public_key: str


def generate_vapid_keys() -> VapidKeys:
    """A new P-256 key pair."""
    key = ec.generate_private_key(ec.SECP256R1())
    return VapidKeys(private_key=private_key_text(key), public_key=public_key_text(key))


def private_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def public_key_text(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> str:
    """The applicationServerKey: the uncompressed public point, base64url, no padding."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return b64url(
        public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def load_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from the raw base64url scalar, a PEM block or base64 DER.

    Raises VapidKeyError for anything else (another curve, RSA, garbage).
    """
    text = (text or "").strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text.replace("\n", "").replace("+", "-").replace("/", "_"))
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, base64.binascii.Error) as exc:
        raise VapidKeyError(f"not a VAPID private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VapidKeyError("a VAPID key must be an elliptic-curve P-256 key")
    return key


def application_server_key(private_key: str) -> str:
    """The public key browsers need, derived from the stored private key."""
    return public_key_text(load_private_key(private_key))
