"""One address per channel, normalised the same way everywhere (forms, API, imports, the public endpoint).

`normalise_address(channel, raw, region=...)` returns the stored form or raises AddressError with
a message a person can act on.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from profiles.fieldtypes import Context, FieldValueError, to_email, to_phone
from resources.models import Channel


class AddressError(ValueError):
    """An address that is not valid for its channel."""


# FCM registration tokens (~150-180 chars of [A-Za-z0-9_:-]) and APNs device tokens (64 hex).
_PUSH_TOKEN = re.compile(r"[A-Za-z0-9_:.\-]{32,4096}")
# Telegram chat ids: users are positive, groups negative, supergroups/channels -100...
_TELEGRAM_CHAT = re.compile(r"-?[1-9][0-9]{0,19}")
MAX_WEBPUSH_ENDPOINT = 2048


def normalise_address(channel: str, raw: Any, *, region: str = "") -> str:
    """The stored form of an address on `channel`. Raises AddressError."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise AddressError("the address is empty")
    if channel == Channel.EMAIL:
        try:
            return to_email(raw, Context(region=region))
        except FieldValueError as exc:
            raise AddressError(str(exc)) from None
    if channel == Channel.SMS:
        try:
            return to_phone(raw, Context(region=region))
        except FieldValueError as exc:
            raise AddressError(str(exc)) from None
    text = str(raw).strip()
    if channel == Channel.WEBPUSH:
        parts = urlsplit(text)
        if parts.scheme != "https" or not parts.netloc or len(text) > MAX_WEBPUSH_ENDPOINT:
            raise AddressError("a web push address is the subscription's endpoint: an https:// URL of at most 2,048 characters")
        return text
    if channel == Channel.MOBILEPUSH:
        if not _PUSH_TOKEN.fullmatch(text):
            raise AddressError("a mobile push address is a device token (FCM or APNs): 32 or more letters, digits, and : _ - .")
        return text
    if channel == Channel.TELEGRAM:
        if isinstance(raw, bool) or not _TELEGRAM_CHAT.fullmatch(text):
            raise AddressError("a Telegram address is a numeric chat id, such as 123456789 or -1001234567890")
        return text
    raise AddressError(f"unknown channel {channel!r}")


def email_domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def normalise_domain(raw: Any) -> str:
    """An e-mail domain for a suppression (example.com, also accepted as @example.com). Raises AddressError."""
    text = str(raw or "").strip().lower().lstrip("@")
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise AddressError(f"{raw!r} is not a domain name") from None
    labels = text.split(".")
    ok = len(text) <= 253 and len(labels) >= 2 and all(
        re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", label) for label in labels
    )
    if not ok:
        raise AddressError(f"{raw!r} is not a domain name (write it like example.com)")
    return text


def profile_address(channel: str, profile_email: str | None, profile_phone: str | None) -> str | None:
    """The address a profile's own fields give for a channel (e-mail and SMS), else None."""
    if channel == Channel.EMAIL:
        return profile_email or None
    if channel == Channel.SMS:
        return profile_phone or None
    return None
