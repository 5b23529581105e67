"""Signed links for people without a login: unsubscribe, one-click unsubscribe, preferences, confirmation.

A token names one subscription and its profile, signed with SECRET_KEY and a salt per purpose,
so an unsubscribe token cannot confirm and a token edited to name another subscription fails the
signature. The views check that the subscription still belongs to that profile (a merge moves it,
an erasure deletes it). Confirmation tokens expire; unsubscribe links never do (a link in a
years-old message must still work). Rotating SECRET_KEY (keep the old one in SECRET_KEY_FALLBACKS
for a while) invalidates all of them.

The footer links of every message are on the sending hot path. `LinkMaker` (built once per batch)
makes them as `django.core.signing.Signer(salt=...).sign_object([subscription, profile])` would,
byte for byte, without what costs there: the route prefixes (SITE_URL + the reversed path up to
the token) and Django's salted-HMAC key (sha256(salt + "signer" + SECRET_KEY)) with its keyed HMAC
state are computed once, not per call; the one-click URL shares the unsubscribe URL's token. The
functions below take the same path. The caches are keyed by the values they depend on (SECRET_KEY,
SITE_URL, ROOT_URLCONF, the script prefix, the request's urlconf): a changed setting is never
served a stale prefix or key. Tokens are read by Django's own Signer (SECRET_KEY_FALLBACKS too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.encoding import force_bytes

from resources.models import Subscription

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"
PURPOSES = (UNSUBSCRIBE, PREFERENCES, CONFIRM)


class TokenError(Exception):
    """A token that is forged, for another purpose, or expired (`expired=True`)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class TokenData:
    subscription_id: int
    profile_id: int


def _salt(purpose: str) -> str:
    assert purpose in PURPOSES, purpose
    return f"resources.token.{purpose}"


@lru_cache(maxsize=16)
def _signature(purpose: str, secret: str | bytes) -> Callable[[bytes], str]:
    """`Signer(salt=_salt(purpose)).signature` (SHA-256) under this secret, keyed once: Django's
    salted_hmac derives sha256(salt + "signer" + secret) and keys an HMAC with it on every call."""
    key = hashlib.sha256(force_bytes(_salt(purpose) + "signer") + force_bytes(secret)).digest()
    keyed = hmac.new(key, digestmod=hashlib.sha256)

    def signature(value: bytes) -> str:
        mac = keyed.copy()
        mac.update(value)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    return signature


def _value(subscription_id: int, profile_id: int) -> str:
    """The signed part of a token: sign_object's base64url of the JSON [subscription, profile]."""
    if type(subscription_id) is int and type(profile_id) is int:
        data = f"[{subscription_id},{profile_id}]".encode()
    else:
        data = signing.JSONSerializer().dumps([subscription_id, profile_id])
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(purpose: str, subscription: Subscription) -> str:
    payload = [subscription.pk, subscription.profile_id]
    if purpose == CONFIRM:
        return signing.TimestampSigner(salt=_salt(purpose)).sign_object(payload)
    value = _value(*payload)
    return f"{value}:{_signature(purpose, settings.SECRET_KEY)(value.encode())}"


def read_token(purpose: str, token: str) -> TokenData:
    """Raises TokenError."""
    try:
        if purpose == CONFIRM:
            payload = signing.TimestampSigner(salt=_salt(purpose)).unsign_object(token, max_age=settings.SUBSCRIPTION_CONFIRM_MAX_AGE)
        else:
            payload = signing.Signer(salt=_salt(purpose)).unsign_object(token)
    except signing.SignatureExpired:
        raise TokenError("This link has expired.", expired=True) from None
    except (signing.BadSignature, ValueError, TypeError, UnicodeDecodeError):
        raise TokenError("This link is not valid.") from None
    if not (isinstance(payload, list) and len(payload) == 2 and all(type(x) is int for x in payload)):
        raise TokenError("This link is not valid.")
    return TokenData(subscription_id=payload[0], profile_id=payload[1])


_MARKER = "TOKEN"  # stands for the token in a reversed route: reverse() leaves a token's characters as they are


@lru_cache(maxsize=64)
def _route(name: str, site_url: str, script_prefix: str, urlconf: str) -> tuple[str, str]:
    """(before the token, after it) in the absolute URL of route `name`: `site_url + reverse(name,
    args=[token])` is `head + token + tail` for every token (base64url and ":", which the route's
    <str:token> takes and quoting leaves alone). Called in the thread whose script prefix and
    urlconf are the arguments (they are the cache's key)."""
    path = reverse(name, args=[_MARKER], urlconf=urlconf)
    head, found, tail = path.rpartition(_MARKER)
    if not found:
        raise RuntimeError(f"the route {name} no longer takes the token as it is: {path}")
    return site_url + head, tail


def _routes(*names: str) -> list[tuple[str, str]]:
    site_url, prefix, urlconf = settings.SITE_URL, get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF
    return [_route(f"public:{name}", site_url, prefix, urlconf) for name in names]


class LinkMaker:
    """Unsubscribe, one-click and preference URLs of many subscriptions, byte-identical to
    `unsubscribe_url`, `one_click_url` and `preferences_url` (the same tokens, readable by
    `read_token`). Build one per batch (or worker): it reverses the routes for the current
    SITE_URL, script prefix and urlconf, and keys the signatures for SECRET_KEY, once; build a new
    one after changing those. ~2 us a URL."""

    def __init__(self) -> None:
        (self._unsub, self._unsub_end), (self._one_click, self._one_click_end), (self._prefs, self._prefs_end) = (
            _routes("unsubscribe", "one_click", "preferences"))
        secret = settings.SECRET_KEY
        self._unsub_sig, self._prefs_sig = _signature(UNSUBSCRIBE, secret), _signature(PREFERENCES, secret)

    def _unsub_token(self, subscription_id: int, profile_id: int) -> str:
        value = _value(subscription_id, profile_id)
        return f"{value}:{self._unsub_sig(value.encode())}"

    def unsubscribe(self, subscription_id: int, profile_id: int) -> str:
        """The link in a message's footer: a page that asks to confirm (GET shows, POST acts)."""
        return self._unsub + self._unsub_token(subscription_id, profile_id) + self._unsub_end

    def one_click(self, subscription_id: int, profile_id: int) -> str:
        """The List-Unsubscribe URL of RFC 8058 (List-Unsubscribe-Post: List-Unsubscribe=One-Click)."""
        return self._one_click + self._unsub_token(subscription_id, profile_id) + self._one_click_end

    def preferences(self, subscription_id: int, profile_id: int) -> str:
        value = _value(subscription_id, profile_id)
        return f"{self._prefs}{value}:{self._prefs_sig(value.encode())}{self._prefs_end}"

    def footer(self, subscription_id: int, profile_id: int) -> tuple[str, str, str]:
        """(unsubscribe, one-click, preferences) of one message: the first two share their token."""
        value = _value(subscription_id, profile_id)
        unsub = f"{value}:{self._unsub_sig(value.encode())}"
        return (self._unsub + unsub + self._unsub_end, self._one_click + unsub + self._one_click_end,
                f"{self._prefs}{value}:{self._prefs_sig(value.encode())}{self._prefs_end}")


def unsubscribe_url(subscription: Subscription) -> str:
    """The link in a message's footer: a page that asks to confirm (GET shows, POST acts)."""
    return LinkMaker().unsubscribe(subscription.pk, subscription.profile_id)


def one_click_url(subscription: Subscription) -> str:
    """The List-Unsubscribe URL of RFC 8058 (List-Unsubscribe-Post: List-Unsubscribe=One-Click)."""
    return LinkMaker().one_click(subscription.pk, subscription.profile_id)


def preferences_url(subscription: Subscription) -> str:
    return LinkMaker().preferences(subscription.pk, subscription.profile_id)


def confirmation_url(subscription: Subscription) -> str:
    """The double opt-in link; the confirmation message (a trigger mailing) carries it."""
    (head, tail), = _routes("confirm")
    return head + make_token(CONFIRM, subscription) + tail


def list_unsubscribe_headers(subscription: Subscription) -> dict[str, str]:
    """The headers an e-mail to this subscription carries (RFC 2369 + RFC 8058)."""
    return {
        "List-Unsubscribe": f"<{one_click_url(subscription)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
