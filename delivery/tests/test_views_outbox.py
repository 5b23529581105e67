"""The outbox pages: the file backend's messages of the account only, newest first, paginated; one
message's headers, sandboxed HTML, text part and raw download."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Account
from delivery.backends.base import OutboundMessage
from delivery.backends.file import FileBackend
from delivery.mime import build_email, make_message_id
from delivery.views import outbox as outbox_views

HTML = '<p>Hello <b>Ada</b></p><script>parent.alert(1)</script><img src="https://img.example/a.png" alt="">'


@pytest.fixture(autouse=True)
def _outbox_dir(settings, tmp_path) -> None:
    settings.DELIVERY_OUTBOX_DIR = tmp_path / "outbox"
    settings.DELIVERY_BACKENDS = {"default": {"BACKEND": "delivery.backends.file.FileBackend",
                                              "OPTIONS": {"directory": str(tmp_path / "outbox")}}}


def write(account: Account, *messages: OutboundMessage) -> list[str]:
    """Send through the file backend as the account; the ids ("day/file") it wrote."""
    from django.conf import settings

    backend = FileBackend(directory=str(settings.DELIVERY_OUTBOX_DIR))
    backend.account_id = account.pk
    with backend:
        return [r.provider_id for r in backend.send_many(list(messages))]


def email(subject: str = "Spring sale", to: str = "ada@example.com", html: str = HTML) -> OutboundMessage:
    raw = build_email(from_name="Northwind", from_addr="news@shop.example", to=to, subject=subject, html=html,
                      text="Hello Ada", message_id=make_message_id("L1", "shop.example"))
    raw = raw.as_bytes() if hasattr(raw, "as_bytes") else raw
    return OutboundMessage(channel="email", to=to, ref="L1", raw=raw, envelope_from="b@bounces.shop.example")


def test_it_lists_the_accounts_messages_newest_first(login, alice, acme, globex):
    write(acme, email("First"), OutboundMessage(channel="sms", to="+4915112345678", payload={"text": "Hi Ada"}))
    write(acme, email("Third"))
    write(globex, email("Globex secret"))
    response = login(alice).get(reverse("delivery:outbox"))
    assert response.status_code == 200
    body = response.content.decode()
    assert body.index("Third") < body.index("Hi Ada") < body.index("First")
    assert "Globex secret" not in body


def test_it_pages_by_cursor(login, alice, acme, monkeypatch):
    monkeypatch.setattr(outbox_views, "PER_PAGE", 2)
    write(acme, *[email(f"Message {n}") for n in range(5)])
    client = login(alice)
    first = client.get(reverse("delivery:outbox")).content.decode()
    assert "Message 4" in first and "Message 3" in first and "Message 2" not in first
    older = first.split('data-testid="older"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = client.get(reverse("delivery:outbox") + older).content.decode()
    assert "Message 2" in second and "Message 1" in second and "Message 4" not in second


def test_an_empty_outbox_explains_when_it_fills(login, alice):
    body = login(alice).get(reverse("delivery:outbox")).content.decode()
    assert "The outbox is empty" in body and "file backend" in body
    assert 'data-testid="not-active"' not in body


def test_it_says_when_email_goes_through_a_real_provider(login, alice, settings):
    settings.DELIVERY_BACKENDS = {"email": {"BACKEND": "delivery.backends.locmem.LocmemBackend"}}
    assert 'data-testid="not-active"' in login(alice).get(reverse("delivery:outbox")).content.decode()


def test_a_message_shows_headers_text_and_a_sandboxed_frame(login, alice, acme):
    [mid] = write(acme, email("Spring sale"))
    day, name = mid.split("/")
    client = login(alice)
    body = client.get(reverse("delivery:outbox_message", args=[day, name])).content.decode()
    assert "Spring sale" in body and "news@shop.example" in body and "Message-ID" in body
    assert "Hello Ada" in body
    frame = body.split('data-testid="html-frame"')[0].rsplit("<iframe", 1)[1]
    assert 'sandbox=""' in frame and "allow-scripts" not in frame
    assert "<script>parent.alert" not in body  # the HTML is only in the frame's own document


def test_the_frame_document_forbids_scripts(login, alice, acme):
    [mid] = write(acme, email())
    response = login(alice).get(reverse("delivery:outbox_html", args=mid.split("/")))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert "<b>Ada</b>" in response.content.decode()


def test_the_raw_source_downloads_as_eml(login, alice, acme):
    [mid] = write(acme, email("Raw one"))
    response = login(alice).get(reverse("delivery:outbox_raw", args=mid.split("/")))
    assert response["Content-Type"] == "message/rfc822"
    assert response["Content-Disposition"] == f'attachment; filename="{mid.split("/")[1]}"'
    assert b"Subject: Raw one" in response.content


def test_another_channels_message_shows_its_payload(login, alice, acme):
    [mid] = write(acme, OutboundMessage(channel="telegram", to="4242", payload={"text": "Hi <b>Ada</b>",
                                                                              "parse_mode": "HTML"}))
    body = login(alice).get(reverse("delivery:outbox_message", args=mid.split("/"))).content.decode()
    assert "Hi &lt;b&gt;Ada&lt;/b&gt;" in body and "parse_mode" in body


def test_an_analyst_is_refused(login, bob):
    assert login(bob).get(reverse("delivery:outbox")).status_code == 403


def test_another_accounts_message_is_a_404(login, charlie, acme):
    [mid] = write(acme, email("Acme only"))
    client = login(charlie)
    for name in ("outbox_message", "outbox_html", "outbox_raw"):
        assert client.get(reverse(f"delivery:{name}", args=mid.split("/"))).status_code == 404


def test_a_forged_id_is_a_404(login, alice, acme):
    write(acme, email())
    client = login(alice)
    assert client.get(reverse("delivery:outbox_message", args=["2026-01-01", "..%2Findex.jsonl"])).status_code == 404
    assert client.get(reverse("delivery:outbox_raw", args=["2026-01-01", "1-deadbeef.eml"])).status_code == 404
