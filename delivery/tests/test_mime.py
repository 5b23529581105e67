"""delivery.mime: the fast wire format, checked by parsing it back with Python's email package."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.policy import default

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery import mime
from delivery.mime import AddressError, build_email, make_message_id, message_id_ref, verp_address, verp_parse


def build(**kw):
    args = {
        "from_name": "Northwind", "from_addr": "news@shop.example", "to": "olga@example.com", "subject": "Hello",
        "html": "<p>Hello</p>", "text": "Hello", "message_id": make_message_id("L42", "shop.example"),
    }
    args.update(kw)
    return build_email(**args)


def parse(built):
    raw = bytes(built)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF everywhere
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    return message_from_bytes(raw, policy=default)


def lf(value: str) -> str:
    return value.replace("\r\n", "\n")


SUBJECTS = [
    "Hello",
    "Ваш заказ №42 отправлен",
    "🎉 Party time 🎉 — “quotes” and 'apostrophes'",
    "A long subject " * 12,
    "Очень длинная тема письма, которая не помещается в одну строку заголовка " * 3,
    "looks like =?utf-8?q?an_encoded_word?= but is not",
    "tab\tand  double  spaces",
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subjects_decode_to_the_original(subject):
    message = parse(build(subject=subject))

    assert message["subject"] == subject


@pytest.mark.parametrize(
    "name", ["Northwind", "Ольга из Northwind", "Shop, Inc.", 'The "Best" Shop', "🛒 Cart & Co", ("Ünïcødé " * 10).strip()]
)
def test_display_names_decode_to_the_original(name):
    built = build(from_name=name)
    message = parse(built)

    assert message["from"].addresses[0].addr_spec == "news@shop.example"
    if name.isascii():
        assert message["from"].addresses[0].display_name == name
    else:
        # RFC 2047 6.2: whitespace between adjacent encoded-words is ignored. The legacy
        # decoder does that; the new address parser inserts a space (a CPython quirk).
        phrase = str(make_header(decode_header(built.get("From")))).rpartition(" <")[0]
        assert phrase == name


def test_a_line_break_in_a_header_value_cannot_inject_a_header():
    message = parse(build(subject="Hi\r\nBcc: victim@example.com", from_name="X\nBcc: v@example.com"))

    assert message["bcc"] is None
    assert "Bcc: victim@example.com" in message["subject"]


def test_it_builds_multipart_alternative_with_text_first_and_bodies_decode_exactly():
    html = "<html><body>\n  <p>Привет, Ольга! 🎉</p>\n\t<p>Line two&nbsp;</p>   \n</body></html>\n"
    text = "Привет, Ольга! 🎉\n\nLine two\n"
    message = parse(build(html=html, text=text))

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert lf(parts[0].get_content()) == text
    assert lf(parts[1].get_content()) == html


def test_plain_ascii_text_goes_as_readable_7bit_and_awkward_text_as_base64():
    readable = parse(build(text="Hello Olga,\nyour order shipped.\n"))
    awkward = parse(build(text="Trailing space \nand  runs\n"))
    long_line = parse(build(text="x" * 2000))

    assert readable.get_body(("plain",))["content-transfer-encoding"] == "7bit"
    assert awkward.get_body(("plain",))["content-transfer-encoding"] == "base64"
    assert lf(awkward.get_body(("plain",)).get_content()) == "Trailing space \nand  runs\n"
    assert long_line.get_body(("plain",))["content-transfer-encoding"] == "base64"
    assert long_line.get_body(("plain",)).get_content() == "x" * 2000


def test_a_huge_single_line_html_is_wrapped_by_base64():
    html = "<p>" + "y" * 30000 + "</p>"

    assert parse(build(html=html)).get_body(("html",)).get_content() == html


def test_html_only_and_text_only_messages_are_single_parts():
    html_only = parse(build(text=""))
    text_only = parse(build(html=""))

    assert html_only.get_content_type() == "text/html" and html_only.get_content() == "<p>Hello</p>"
    assert text_only.get_content_type() == "text/plain" and lf(text_only.get_content()).rstrip("\n") == "Hello"
    with pytest.raises(ValueError):
        build(html="", text="")


def test_it_sets_the_standard_headers():
    when = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
    message = parse(build(date=when, reply_to="help@shop.example", headers={"X-Campaign": "Spring sale"}))

    assert message["to"] == "olga@example.com"
    assert message["mime-version"] == "1.0"
    assert message["date"].datetime == when
    assert message["reply-to"] == "help@shop.example"
    assert message["x-campaign"] == "Spring sale"
    assert message["message-id"].startswith("<L42.") and message["message-id"].endswith("@shop.example>")


def test_the_date_defaults_to_now_in_rfc_5322_form():
    message = parse(build())

    assert abs((message["date"].datetime - datetime.now(UTC)).total_seconds()) < 5


def test_list_unsubscribe_carries_https_and_mailto_and_the_one_click_post():
    https = "https://cdp.example/p/unsubscribe/one-click/" + "a" * 80 + "/"
    message = parse(build(list_unsubscribe_https=https, list_unsubscribe_mailto="mailto:u@bounces.shop.example"))

    assert " ".join(str(message["list-unsubscribe"]).split()) == f"<{https}>, <mailto:u@bounces.shop.example>"
    assert message["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"


def test_there_is_no_one_click_post_without_an_https_url():
    message = parse(build(list_unsubscribe_mailto="mailto:u@x.example"))

    assert message["list-unsubscribe"] == "<mailto:u@x.example>"
    assert message["list-unsubscribe-post"] is None


def test_international_domains_are_sent_in_idna_form_and_bad_addresses_are_refused():
    message = parse(build(from_addr="news@bücher.example", to="ölga@example.com".replace("ö", "o")))

    assert message["from"].addresses[0].domain == "xn--bcher-kva.example"
    with pytest.raises(AddressError):
        build(to="victim@example.com>, <other@example.com")
    with pytest.raises(AddressError, match="SMTPUTF8"):
        build(to="ölga@example.com")


def test_the_envelope_sender_is_the_return_path_or_the_from_address():
    assert build().envelope_from == "news@shop.example"
    assert build(return_path="b+L1.x@bounces.shop.example").envelope_from == "b+L1.x@bounces.shop.example"


def test_the_message_id_names_the_ledger_row():
    message_id = make_message_id("L12345", "shop.example")

    assert message_id_ref(message_id) == "L12345"
    assert message_id != make_message_id("L12345", "shop.example")
    assert message_id_ref("<random@elsewhere.example>") is None


def test_a_verp_address_round_trips_and_a_forged_one_is_refused():
    address = verp_address("L987", "bounces.shop.example")

    assert address.startswith("b+L987.") and address.endswith("@bounces.shop.example")
    assert verp_parse(address) == "L987"
    assert verp_parse(address.lower()) == "l987"  # mail systems that lowercase local parts
    forged = address.replace("L987", "L988")
    assert verp_parse(forged) is None
    assert verp_parse("someone@bounces.shop.example") is None


@settings(max_examples=60, deadline=None)
@given(subject=st.text(min_size=0, max_size=300).filter(lambda s: "\r" not in s and "\n" not in s),
       body=st.text(min_size=1, max_size=3000))
def test_any_subject_and_body_survive_the_round_trip(subject, body):
    message = parse(build(subject=subject, text=body, html=f"<p>{body}</p>"))

    # The email package folds runs of whitespace at header edges; compare normalised text.
    assert " ".join(str(message["subject"]).split()) == " ".join(subject.split())
    expected = body.replace("\r\n", "\n").replace("\r", "\n")
    assert lf(message.get_body(("plain",)).get_content()) == expected


def test_long_line_probe_finds_a_line_at_the_limit():
    ok = (b"a" * 998 + b"\r\n") * 3
    too_long = b"a" * 10 + b"\r\n" + b"b" * 999 + b"\r\n"

    assert not mime._has_long_line(ok)
    assert mime._has_long_line(too_long)


# --- per-process caches ------------------------------------------------------------------------


def test_the_verp_mac_is_hmac_sha256_with_the_derived_key():
    import hashlib
    import hmac

    from django.conf import settings as django_settings

    key = hashlib.sha256(b"cdp-verp:" + django_settings.SECRET_KEY.encode()).digest()
    expected = hmac.new(key, b"l987", hashlib.sha256).hexdigest()[:10]

    assert verp_address("L987", "bounces.shop.example") == f"b+L987.{expected}@bounces.shop.example"


def test_the_verp_key_follows_a_secret_key_override(settings):
    before = verp_address("L987", "bounces.shop.example")

    settings.SECRET_KEY = "another secret key for this test only, long enough to be one"
    after = verp_address("L987", "bounces.shop.example")

    assert after != before
    assert verp_parse(after) == "L987"
    assert verp_parse(before) is None  # made with the old key


def test_the_verp_key_comes_back_when_the_override_ends(settings):
    from django.test import override_settings

    before = verp_address("L5", "bounces.shop.example")
    with override_settings(SECRET_KEY="a temporary secret key for this test, long enough to be one"):
        assert verp_address("L5", "bounces.shop.example") != before

    assert verp_address("L5", "bounces.shop.example") == before
    assert verp_parse(before) == "L5"


def test_the_from_header_is_cached_per_sender_and_each_sender_gets_its_own():
    mime._format_address.cache_clear()
    mime._from_header.cache_clear()
    first = build(from_name="Ольга из Northwind", from_addr="news@shop.example").get("From")
    again = build(from_name="Ольга из Northwind", from_addr="news@shop.example").get("From")
    other_name = parse(build(from_name="Bob's Bikes", from_addr="news@shop.example"))
    other_addr = parse(build(from_name="Ольга из Northwind", from_addr="deals@shop.example"))

    assert again is first  # the cached string
    assert mime._from_header.cache_info().hits >= 1
    assert other_name["from"].addresses[0].display_name == "Bob's Bikes"
    assert other_addr["from"].addresses[0].addr_spec == "deals@shop.example"
    assert mime.format_address("Ольга из Northwind", "news@shop.example") == first


def test_a_bad_from_address_is_refused_every_time_not_cached():
    for _ in range(2):
        with pytest.raises(AddressError):
            build(from_addr="not an address")


def _generic_canonical(built):
    from delivery.dkim import canonical_header

    return {name.lower(): canonical_header(name, value) for name, value in built.headers}


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"subject": "tab\tand  double  spaces " * 5, "from_name": ("Ünïcødé " * 10).strip()},
        {"html": "", "reply_to": "help@shop.example"},
        {"text": "", "list_unsubscribe_https": "https://cdp.example/p/u/" + "a" * 90 + "/",
         "list_unsubscribe_mailto": "mailto:u@bounces.shop.example"},
        {"list_unsubscribe_mailto": "mailto:u@x.example", "date": datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)},
        {"headers": {"X-Campaign": "Spring  sale  ", "Subject": "the last Subject wins", "MIME-Version": "2.0"}},
    ],
)
def test_the_canonical_headers_match_the_general_canonicalization(kw):
    built = build(**kw)

    assert built.canonical == _generic_canonical(built)


def test_an_unsubscribe_address_reads_back_only_with_its_own_mac():
    from delivery.mime import unsubscribe_address, unsubscribe_parse

    address = unsubscribe_address("L123", "bounces.shop.example")

    assert address.startswith("u+L123.") and address.endswith("@bounces.shop.example")
    assert unsubscribe_parse(address) == "L123"
    assert unsubscribe_parse(address.upper()) == "L123"  # some mail systems change the case
    assert unsubscribe_parse(address.replace("L123", "L124")) is None
    assert unsubscribe_parse(verp_address("L123", "bounces.shop.example").replace("b+", "u+", 1)) is None
