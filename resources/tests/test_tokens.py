"""Unsubscribe, one-click and preference URLs: the fast maker (LinkMaker, and the functions on the
same path) gives byte for byte what Django's Signer and reverse() give per call, so links already
sent and links sent now carry the same tokens; they read back, a changed token is refused, and a
changed SITE_URL, SECRET_KEY or script prefix is never served from a stale cache."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core import signing
from django.test import override_settings
from django.urls import get_script_prefix, reverse, set_script_prefix

from resources import tokens
from resources.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, LinkMaker, TokenData, TokenError, read_token

PINNED = {"SECRET_KEY": "pinned-secret-key-for-the-url-tests", "SITE_URL": "https://cdp.example.com"}
SALTS = {UNSUBSCRIBE: "resources.token.unsubscribe", PREFERENCES: "resources.token.preferences"}


# --- the original algorithm, kept here as the reference: Django's Signer and reverse() per URL ----


def _ref_token(purpose: str, sid: int, pid: int) -> str:
    return signing.Signer(salt=SALTS[purpose]).sign_object([sid, pid])


def ref_urls(sid: int, pid: int) -> tuple[str, str, str]:
    unsub, prefs = _ref_token(UNSUBSCRIBE, sid, pid), _ref_token(PREFERENCES, sid, pid)
    return (settings.SITE_URL + reverse("public:unsubscribe", args=[unsub]),
            settings.SITE_URL + reverse("public:one_click", args=[unsub]),
            settings.SITE_URL + reverse("public:preferences", args=[prefs]))


def project_urls(sid: int, pid: int) -> tuple[str, str, str]:
    sub = SimpleNamespace(pk=sid, profile_id=pid)
    return tokens.unsubscribe_url(sub), tokens.one_click_url(sub), tokens.preferences_url(sub)


def _token(url: str) -> str:
    return url.split("/p/", 1)[1].split("/")[1]


def _ids(rnd: random.Random) -> tuple[int, int]:
    def n() -> int:
        return rnd.choice([0, 1, 9, 10, 2**31 - 1, 2**63 - 1, rnd.randrange(2 ** rnd.choice([8, 20, 31, 40, 63]))])

    return n(), n()


# --- tests ------------------------------------------------------------------------------------------


@override_settings(**PINNED)
def test_it_makes_the_urls_it_made_before_the_fast_path():
    # Made by the code before LinkMaker (a Signer and reverse() per URL) under these settings.
    want = ("https://cdp.example.com/p/u/Wzk4NzY1NDMyMSwxMjM0NTY3XQ:g_HeARsYJ63qe7cMYenLilz2fE7LtwFfyraUfaQjUfM/",
            "https://cdp.example.com/p/u/Wzk4NzY1NDMyMSwxMjM0NTY3XQ:g_HeARsYJ63qe7cMYenLilz2fE7LtwFfyraUfaQjUfM/one-click/",
            "https://cdp.example.com/p/prefs/Wzk4NzY1NDMyMSwxMjM0NTY3XQ:RVlP5lTIhi-Q8Nos1pbQXxea-xs-hW9o7OjrqWZzaiQ/")
    links = LinkMaker()
    assert links.footer(987_654_321, 1_234_567) == want
    assert (links.unsubscribe(987_654_321, 1_234_567), links.one_click(987_654_321, 1_234_567),
            links.preferences(987_654_321, 1_234_567)) == want
    assert project_urls(987_654_321, 1_234_567) == want


def test_it_is_byte_for_byte_djangos_signer_over_random_subscriptions():
    rnd = random.Random(20240611)
    links = LinkMaker()
    for _ in range(2_000):
        sid, pid = _ids(rnd)
        want = ref_urls(sid, pid)
        assert links.footer(sid, pid) == want
        assert (links.unsubscribe(sid, pid), links.one_click(sid, pid), links.preferences(sid, pid)) == want
        assert project_urls(sid, pid) == want
        sub = SimpleNamespace(pk=sid, profile_id=pid)
        assert tokens.make_token(UNSUBSCRIBE, sub) == _ref_token(UNSUBSCRIBE, sid, pid)
        assert tokens.make_token(PREFERENCES, sub) == _ref_token(PREFERENCES, sid, pid)


def test_ids_that_are_not_plain_ints_are_serialized_as_django_does():
    for sid, pid in ((5, True), ("12", 3), (7.0, 8)):
        assert LinkMaker().footer(sid, pid) == ref_urls(sid, pid) == project_urls(sid, pid)


def test_the_tokens_of_the_fast_maker_read_back_for_their_purpose_only():
    rnd = random.Random(7)
    links = LinkMaker()
    for _ in range(200):
        sid, pid = _ids(rnd)
        unsub, one_click, prefs = links.footer(sid, pid)
        assert read_token(UNSUBSCRIBE, _token(unsub)) == read_token(UNSUBSCRIBE, _token(one_click)) == TokenData(sid, pid)
        assert read_token(PREFERENCES, _token(prefs)) == TokenData(sid, pid)
        for purpose in (PREFERENCES, CONFIRM):
            with pytest.raises(TokenError):
                read_token(purpose, _token(unsub))
        with pytest.raises(TokenError):
            read_token(UNSUBSCRIBE, _token(prefs))


def test_a_changed_token_is_refused():
    token = _token(LinkMaker().unsubscribe(41, 42))
    value, signature = token.split(":")
    other_value = _token(LinkMaker().unsubscribe(41, 43)).split(":")[0]
    changed = {
        "another subscription's value": f"{other_value}:{signature}",
        "a character of the signature": f"{value}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        "a character of the value": f"{'X' if value[0] != 'X' else 'Y'}{value[1:]}:{signature}",
        "no signature": value,
    }
    for name, bad in changed.items():
        with pytest.raises(TokenError):
            read_token(UNSUBSCRIBE, bad)
            pytest.fail(name)


def test_it_follows_site_url_without_a_stale_prefix():
    before = project_urls(1, 2)
    with override_settings(SITE_URL="https://links.example.net"):
        assert project_urls(1, 2) == LinkMaker().footer(1, 2) == ref_urls(1, 2)
        assert all(u.startswith("https://links.example.net/p/") for u in project_urls(1, 2))
    assert project_urls(1, 2) == before == ref_urls(1, 2)


def test_it_follows_secret_key_and_old_links_work_from_the_fallbacks():
    before = project_urls(1, 2)
    with override_settings(SECRET_KEY="another-secret-key"):
        after = LinkMaker().footer(1, 2)
        assert after == project_urls(1, 2) == ref_urls(1, 2) != before
        with pytest.raises(TokenError):
            read_token(UNSUBSCRIBE, _token(before[0]))
    assert project_urls(1, 2) == before
    with override_settings(SECRET_KEY="another-secret-key", SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert read_token(UNSUBSCRIBE, _token(before[0])) == TokenData(1, 2)


def test_it_follows_the_script_prefix():
    before = get_script_prefix()
    set_script_prefix("/cdp/")  # what the WSGI handler sets from SCRIPT_NAME or FORCE_SCRIPT_NAME
    try:
        assert project_urls(1, 2) == LinkMaker().footer(1, 2) == ref_urls(1, 2)
        assert all("/cdp/p/" in u for u in project_urls(1, 2))
    finally:
        set_script_prefix(before)
    assert project_urls(1, 2) == ref_urls(1, 2) and not any("/cdp/" in u for u in project_urls(1, 2))


def test_a_confirmation_url_reads_back_and_follows_the_settings():
    sub = SimpleNamespace(pk=5, profile_id=6)
    with override_settings(SITE_URL="https://links.example.net"):
        url = tokens.confirmation_url(sub)
        token = _token(url)
        assert url == settings.SITE_URL + reverse("public:confirm", args=[token])
    assert read_token(CONFIRM, token) == TokenData(5, 6)
    assert tokens.confirmation_url(sub).startswith(settings.SITE_URL + "/p/confirm/")
