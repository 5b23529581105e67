"""delivery.dkim: signatures made with `cryptography`, verified by dkimpy against a local DNS."""

from __future__ import annotations

import dkim as dkimpy
import pytest

from delivery import dkim
from delivery.mime import build_email, make_message_id


@pytest.fixture(scope="module")
def keypair():
    return dkim.generate_keypair()


def dns_for(records: dict[str, str]):
    def dnsfunc(name, timeout=5):
        return records.get(name.decode().rstrip("."), "").encode()

    return dnsfunc


def make(**kw):
    args = {
        "from_name": "Ольга из Northwind", "from_addr": "news@shop.example", "to": "olga@example.com",
        "subject": "Ваш заказ 🎉 " * 6, "html": "<p>Hello  Olga</p>\n\t<p>two</p>   \n", "text": "Hello Olga\n",
        "message_id": make_message_id("L7", "shop.example"),
        "list_unsubscribe_https": "https://cdp.example/p/u/abc/", "list_unsubscribe_mailto": "mailto:u@bounces.shop.example",
    }
    args.update(kw)
    return build_email(**args)


def test_a_signed_built_message_verifies_with_dkimpy(keypair):
    private, public = keypair
    signed = dkim.sign(make(), domain="shop.example", selector="cdp202611", private_key=private)

    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=shop.example; s=cdp202611;")
    assert dkimpy.verify(signed, dnsfunc=dns_for({"cdp202611._domainkey.shop.example": dkim.txt_value(public)}))


def test_it_signs_the_listed_headers_that_the_message_has(keypair):
    private, _ = keypair
    signed = dkim.sign(make(), domain="shop.example", selector="s", private_key=private)
    header = signed.split(b"\r\n\r\n")[0].decode()
    h_tag = " ".join(header.split()).split(" h=")[1].split(";")[0]

    assert h_tag == "from:to:subject:date:message-id:list-unsubscribe:list-unsubscribe-post"
    no_unsub = dkim.sign(make(list_unsubscribe_https=None, list_unsubscribe_mailto=None), domain="shop.example",
                         selector="s", private_key=private)
    assert b"h=from:to:subject:date:message-id;" in no_unsub


def test_raw_bytes_from_elsewhere_are_canonicalized_and_verify(keypair):
    private, public = keypair
    raw = (b"From: a@shop.example\r\nTo: b@example.com\r\nSubject:  spaced   out \r\n\tfolded\r\n"
           b"Date: Sun, 1 Mar 2026 12:00:00 +0000\r\nMessage-ID: <x@shop.example>\r\n\r\n"
           b"body  with   runs \t \r\nand trailing blank lines\r\n\r\n\r\n")
    signed = dkim.sign(raw, domain="shop.example", selector="s", private_key=private)

    assert dkimpy.verify(signed, dnsfunc=dns_for({"s._domainkey.shop.example": dkim.txt_value(public)}))


def test_a_tampered_body_fails_verification(keypair):
    private, public = keypair
    signed = dkim.sign(make(text="Pay 10 EUR\n", html=""), domain="shop.example", selector="s", private_key=private)
    tampered = signed.replace(b"Pay 10 EUR", b"Pay 99 EUR")

    assert tampered != signed
    assert not dkimpy.verify(tampered, dnsfunc=dns_for({"s._domainkey.shop.example": dkim.txt_value(public)}))


def test_a_tampered_subject_fails_verification(keypair):
    private, public = keypair
    signed = dkim.sign(make(subject="Invoice"), domain="shop.example", selector="s", private_key=private)
    tampered = signed.replace(b"Subject: Invoice", b"Subject: Invoice!")

    assert not dkimpy.verify(tampered, dnsfunc=dns_for({"s._domainkey.shop.example": dkim.txt_value(public)}))


def test_a_different_published_key_fails_verification(keypair):
    private, _ = keypair
    _, other_public = dkim.generate_keypair()
    signed = dkim.sign(make(), domain="shop.example", selector="s", private_key=private)

    assert not dkimpy.verify(signed, dnsfunc=dns_for({"s._domainkey.shop.example": dkim.txt_value(other_public)}))


def test_generated_keys_are_rsa_2048_and_the_public_key_is_base64_der(keypair):
    private, public = keypair
    key = dkim.load_private_key(private)

    assert key.key_size == 2048
    assert dkim.public_key_b64(key) == public
    assert "BEGIN PRIVATE KEY" in private


def test_a_non_rsa_or_broken_key_is_refused():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(dkim.DkimError, match="RSA"):
        dkim.load_private_key(ec_pem)
    with pytest.raises(dkim.DkimError):
        dkim.load_private_key("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_the_signer_is_cached_per_key_and_decrypts_once(acme, django_assert_num_queries):
    from accounts.access import Actor
    from delivery.selectors import dkim_key_for_signing
    from delivery.services import sending_domain_create

    domain = sending_domain_create(account=acme, domain="shop.example", actor=Actor.system())
    key = dkim_key_for_signing(domain)
    first = dkim.signer_for(key)  # reads the deferred private key: one query
    again = dkim_key_for_signing(domain)

    with django_assert_num_queries(0):
        assert dkim.signer_for(again) is first
    assert first.selector == key.selector and first.domain == "shop.example"
    signed = first.sign(make())
    assert dkimpy.verify(signed, dnsfunc=dns_for({key.record_name: key.txt_value}))


@pytest.mark.parametrize("extra", [{}, {"headers": {"Subject": "Overridden  subject"}}, {"html": ""}])
def test_a_built_message_signs_the_same_with_or_without_its_canonical_headers(keypair, extra):
    import dataclasses
    import time

    private, public = keypair
    built = make(**extra)
    bare = dataclasses.replace(built, canonical=None)
    args = {"domain": "shop.example", "selector": "s", "private_key": private, "timestamp": int(time.time())}

    signed = dkim.sign(built, **args)
    assert signed == dkim.sign(bare, **args) == dkim.sign(bytes(built), **args)
    assert dkimpy.verify(signed, dnsfunc=dns_for({"s._domainkey.shop.example": dkim.txt_value(public)}))


def test_each_domain_and_selector_gets_its_own_signature_tags(keypair):
    private, public = keypair
    records = {"a._domainkey.shop.example": dkim.txt_value(public), "b._domainkey.other.example": dkim.txt_value(public)}
    first = dkim.sign(make(), domain="shop.example", selector="a", private_key=private)
    second = dkim.sign(make(from_addr="news@other.example"), domain="other.example", selector="b", private_key=private)

    assert b"d=shop.example; s=a;" in first and b"d=other.example; s=b;" in second
    assert dkimpy.verify(first, dnsfunc=dns_for(records)) and dkimpy.verify(second, dnsfunc=dns_for(records))


@pytest.mark.parametrize("text", ["Hello Olga\n", "Hello Olga", "Pay 10 EUR\r\n", "\n", "two\n\nparagraphs\n"])
def test_a_text_only_message_verifies_whatever_its_last_line_break(keypair, text):
    private, public = keypair
    built = make(text=text, html="")
    signed = dkim.sign(built, domain="shop.example", selector="s", private_key=private)

    assert not built.body.endswith(b"\r\n\r\n")
    assert dkimpy.verify(signed, dnsfunc=dns_for({"s._domainkey.shop.example": dkim.txt_value(public)}))
