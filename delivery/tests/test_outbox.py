"""delivery.outbox: the file backend's messages, newest first, paged, per account."""

from __future__ import annotations

import pytest
from django.http import Http404

from delivery.backends import OutboundMessage, get_backend
from delivery.mime import build_email
from delivery.outbox import outbox_message, outbox_page

FILE = {"BACKEND": "delivery.backends.file.FileBackend", "OPTIONS": {}}


@pytest.fixture(autouse=True)
def _file_backend(settings):
    settings.DELIVERY_BACKENDS = {"default": FILE, "email": FILE}


def send(account, count, start=0):
    messages = []
    for n in range(start, start + count):
        built = build_email(from_name="Shop", from_addr="news@shop.example", to=f"p{n}@example.com",
                            subject=f"Message {n}", html=f"<p>Hello {n}</p>", text=f"Hello {n}",
                            message_id=f"<L{n}.x@shop.example>")
        messages.append(OutboundMessage(channel="email", to=f"p{n}@example.com", ref=f"L{n}", raw=bytes(built)))
    with get_backend("email", account=account) as backend:
        assert all(r.ok for r in backend.send_many(messages))


def test_pages_go_newest_first_without_gaps_or_repeats(acme):
    send(acme, 23)
    seen, cursor, pages = [], None, 0
    while True:
        page = outbox_page(acme, cursor=cursor, limit=10)
        seen += [e.subject for e in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert seen == [f"Message {n}" for n in range(22, -1, -1)]
    assert pages == 3


def test_paging_reads_across_index_blocks(acme, monkeypatch):
    from delivery import outbox

    monkeypatch.setattr(outbox, "_BLOCK", 150)  # smaller than one line: every read is partial
    send(acme, 7)

    first = outbox_page(acme, limit=4)
    second = outbox_page(acme, cursor=first.next_cursor, limit=4)
    assert [e.ref for e in first.items + second.items] == ["L6", "L5", "L4", "L3", "L2", "L1", "L0"]
    assert second.next_cursor is None


def test_each_account_sees_only_its_own_messages(acme, globex):
    send(acme, 2)
    send(globex, 1, start=100)

    assert [e.ref for e in outbox_page(globex).items] == ["L100"]
    acme_id = outbox_page(acme).items[0].id
    with pytest.raises(Http404):
        outbox_message(globex, acme_id)


def test_a_message_opens_with_its_parts_and_bad_ids_are_404(acme):
    send(acme, 1)
    entry = outbox_page(acme).items[0]
    message = outbox_message(acme, entry.id)

    assert message.subject == "Message 0" and message.to == "p0@example.com"
    assert message.html == "<p>Hello 0</p>" and message.text.strip() == "Hello 0"
    assert ("Subject", "Message 0") in message.headers
    for bad in ("../../etc/passwd", f"../{acme.pk}/{entry.id}", "index.jsonl", entry.id.replace(".eml", ".json")):
        with pytest.raises(Http404):
            outbox_message(acme, bad)


def test_an_empty_outbox_is_an_empty_page(acme):
    assert outbox_page(acme).items == [] and outbox_page(acme).next_cursor is None


def test_other_channels_open_as_their_payload(acme):
    with get_backend("sms", account=acme) as backend:
        backend.send_many([OutboundMessage(channel="sms", to="+4915112345678", ref="S1", payload={"text": "Code 1"})])
    entry = outbox_page(acme).items[0]

    message = outbox_message(acme, entry.id)
    assert (entry.channel, message.payload, message.subject) == ("sms", {"text": "Code 1"}, "Code 1")
