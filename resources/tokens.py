"""Signed links for people without a login: unsubscribe, one-click unsubscribe, preferences, confirmation.

A token names one subscription and its profile, signed with SECRET_KEY and a salt per purpose,
so an unsubscribe token cannot confirm and a token edited to name another subscription fails the
signature. The views check that the subscription still belongs to that profile (a merge moves it,
an erasure deletes it). Confirmation tokens expire; unsubscribe links never do (a link in a
years-old message must still work). Rotating SECRET_KEY (keep the old one in SECRET_KEY_FALLBACKS
for a while) invalidates all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

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


def make_token(purpose: str, subscription: Subscription) -> str:
    payload = [subscription.pk, subscription.profile_id]
    if purpose == CONFIRM:
        return signing.TimestampSigner(salt=_salt(purpose)).sign_object(payload)
    return signing.Signer(salt=_salt(purpose)).sign_object(payload)


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


def _absolute(path: str) -> str:
    return settings.SITE_URL + path


def unsubscribe_url(subscription: Subscription) -> str:
    """The link in a message's footer: a page that asks to confirm (GET shows, POST acts)."""
    return _absolute(reverse("public:unsubscribe", args=[make_token(UNSUBSCRIBE, subscription)]))


def one_click_url(subscription: Subscription) -> str:
    """The List-Unsubscribe URL of RFC 8058 (List-Unsubscribe-Post: List-Unsubscribe=One-Click)."""
    return _absolute(reverse("public:one_click", args=[make_token(UNSUBSCRIBE, subscription)]))


def preferences_url(subscription: Subscription) -> str:
    return _absolute(reverse("public:preferences", args=[make_token(PREFERENCES, subscription)]))


def confirmation_url(subscription: Subscription) -> str:
    """The double opt-in link; the confirmation message (a trigger mailing) carries it."""
    return _absolute(reverse("public:confirm", args=[make_token(CONFIRM, subscription)]))


def list_unsubscribe_headers(subscription: Subscription) -> dict[str, str]:
    """The headers an e-mail to this subscription carries (RFC 2369 + RFC 8058)."""
    return {
        "List-Unsubscribe": f"<{one_click_url(subscription)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
