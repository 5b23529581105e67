"""Click and open URLs: the fast makers (ClickLinks, and click_url/open_url on the same path) give
byte for byte what the original algorithm gives (reverse() per URL, a freshly keyed HMAC per token),
so tokens already sent and tokens sent now are the same tokens; they read back, a changed byte is
refused, and a changed SITE_URL, SECRET_KEY or script prefix is never served from a stale cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from dataclasses import replace

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import get_script_prefix, reverse, set_script_prefix

from history import tracking
from history.tracking import (
    CHANNELS,
    BadToken,
    Claims,
    ClickLinks,
    click_url,
    click_url_maker,
    open_url,
    read_token,
)

PINNED = {"SECRET_KEY": "pinned-secret-key-for-the-url-tests", "SITE_URL": "https://cdp.example.com"}


# --- the original algorithm, kept here as the reference -------------------------------------------


def _ref_varints(values: list[int]) -> bytes:
    out = bytearray()
    for v in values:
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
    return bytes(out)


def _ref_token(c: Claims) -> str:
    payload = _ref_varints([1, c.account_id, c.profile_id, c.ledger_id, c.mailing_id, c.run_id, c.resource_id,
                            c.link_id, CHANNELS.index(c.channel), c.sent_at])
    key = hashlib.sha256(f"cdp.history.tracking:{settings.SECRET_KEY}".encode()).digest()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()


def ref_open_url(c: Claims) -> str:
    return settings.SITE_URL + reverse("tracking:open", args=[_ref_token(c)])


def ref_click_url(c: Claims, link_id: int) -> str:
    return settings.SITE_URL + reverse("tracking:click", args=[_ref_token(replace(c, link_id=link_id))])


def _random_claims(rnd: random.Random) -> Claims:
    def n() -> int:
        return rnd.choice([0, 1, 127, 128, 16_383, 16_384, 2**63 - 1, rnd.randrange(2 ** rnd.choice([7, 14, 21, 40, 63]))])

    return Claims(account_id=n(), profile_id=n(), ledger_id=n(), mailing_id=n(), run_id=n(), resource_id=n(),
                  link_id=n(), channel=rnd.choice(CHANNELS), sent_at=rnd.randrange(2**33))


def _token(url: str) -> str:
    return url.rsplit("/", 1)[1].removesuffix(".gif")


# --- tests ------------------------------------------------------------------------------------------


@override_settings(**PINNED)
def test_it_makes_the_urls_it_made_before_the_fast_path():
    # Made by the code before ClickLinks (reverse() and a keyed HMAC per URL) under these settings.
    c = Claims(account_id=3, profile_id=1_234_567, ledger_id=2**40 + 5, mailing_id=77, run_id=9, resource_id=12,
               channel="email", sent_at=1_760_000_000)
    link = ClickLinks().for_message(c)
    assert click_url(c, 42) == link(42, "https://shop.example.com/") == (
        "https://cdp.example.com/t/c/AQOHrUuFgICAgCBNCQwqAYDwnccGIQ2h7o3npnAu8YU7")
    assert click_url(c, 70_000) == link(70_000, "") == (
        "https://cdp.example.com/t/c/AQOHrUuFgICAgCBNCQzwogQBgPCdxwZEtw1a7a0ROpdRBy0")
    assert open_url(c) == ClickLinks().open_url(c) == (
        "https://cdp.example.com/t/o/AQOHrUuFgICAgCBNCQwAAYDwnccGrk5KlV3h9WX40j_o.gif")


def test_it_is_byte_for_byte_the_original_algorithm_over_random_claims():
    rnd = random.Random(20240611)
    links = ClickLinks()
    for _ in range(2_000):
        c = _random_claims(rnd)
        maker = links.for_message(c)
        for link_id in (rnd.randrange(128), rnd.randrange(2**20), rnd.randrange(2**63)):
            want = ref_click_url(c, link_id)
            assert maker(link_id, "https://x.example/") == want
            assert click_url(c, link_id) == want
        assert open_url(c) == links.open_url(c) == ref_open_url(c)
        assert tracking.make_token(c) == _ref_token(c)


def test_the_tokens_of_the_fast_makers_read_back():
    rnd = random.Random(7)
    links = ClickLinks()
    for _ in range(300):
        c = _random_claims(rnd)
        link_id = rnd.randrange(2**32)
        click = links.for_message(c)(link_id, "")
        assert read_token(_token(click)) == replace(c, link_id=link_id)
        assert read_token(_token(links.open_url(c))) == c
    assert click_url_maker(c)(5, "") == click_url(c, 5)


def test_a_changed_byte_in_a_fast_token_is_refused():
    c = Claims(account_id=1, profile_id=2, ledger_id=3, resource_id=4, sent_at=1_760_000_000)
    token = _token(ClickLinks().for_message(c)(9, ""))
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for i in range(len(raw)):
        changed = bytearray(raw)
        changed[i] ^= 0x01
        with pytest.raises(BadToken):
            read_token(base64.urlsafe_b64encode(bytes(changed)).rstrip(b"=").decode())


def test_it_refuses_what_the_original_refused():
    c = Claims(account_id=1, profile_id=2)
    with pytest.raises(ValueError):
        ClickLinks().for_message(replace(c, channel="pigeon"))
    with pytest.raises(ValueError):
        ClickLinks().for_message(c)(-1, "")
    with pytest.raises(ValueError):
        click_url(replace(c, profile_id=-2), 1)


def test_it_follows_site_url_without_a_stale_prefix():
    c = Claims(account_id=1, profile_id=2, sent_at=1_760_000_000)
    before = click_url(c, 3)
    with override_settings(SITE_URL="https://links.example.net"):
        assert click_url(c, 3) == ClickLinks().for_message(c)(3, "") == ref_click_url(c, 3)
        assert click_url(c, 3).startswith("https://links.example.net/t/c/")
        assert open_url(c) == ref_open_url(c) and open_url(c).startswith("https://links.example.net/t/o/")
    assert click_url(c, 3) == before == ref_click_url(c, 3)


def test_it_follows_secret_key_without_a_stale_key():
    c = Claims(account_id=1, profile_id=2, sent_at=1_760_000_000)
    before = click_url(c, 3)
    with override_settings(SECRET_KEY="another-secret-key"):
        after = ClickLinks().for_message(c)(3, "")
        assert after == click_url(c, 3) == ref_click_url(c, 3) != before
        with pytest.raises(BadToken):
            read_token(_token(before))
    assert click_url(c, 3) == before
    with pytest.raises(BadToken):
        read_token(_token(after))


def test_it_follows_the_script_prefix():
    c = Claims(account_id=1, profile_id=2, sent_at=1_760_000_000)
    before = get_script_prefix()
    set_script_prefix("/cdp/")  # what the WSGI handler sets from SCRIPT_NAME or FORCE_SCRIPT_NAME
    try:
        assert click_url(c, 3) == ClickLinks().for_message(c)(3, "") == ref_click_url(c, 3)
        assert "/cdp/t/c/" in click_url(c, 3)
        assert open_url(c) == ref_open_url(c) and "/cdp/t/o/" in open_url(c)
    finally:
        set_script_prefix(before)
    assert click_url(c, 3) == ref_click_url(c, 3) and "/cdp/" not in click_url(c, 3)
