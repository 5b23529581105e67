"""Reading the file backend's outbox (delivery.backends.file) for the outbox page.

Listing reads the account's append-only index backwards from a byte offset (the cursor), in
blocks, so a page costs O(page) whatever the outbox size, and never lists the directory.
Only the account's own directory is read; an id that does not match the file naming (no
"..", no other account) is refused with Http404.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import Http404

from accounts.models import Account
from delivery.backends.file import INDEX, account_dir

_ID = re.compile(r"^\d{4}-\d{2}-\d{2}/\d{1,20}-[0-9a-f]{8}\.(eml|json)$")
_BLOCK = 64 * 1024


@dataclass
class OutboxEntry:
    id: str
    at: str
    channel: str
    to: str
    subject: str
    ref: str
    size: int


@dataclass
class OutboxPage:
    items: list[OutboxEntry]
    next_cursor: int | None  # pass back as `cursor` for the next (older) page; None: no more


@dataclass
class OutboxMessage:
    entry_id: str
    channel: str
    raw: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    subject: str = ""
    html: str = ""
    text: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    to: str = ""


def outbox_root() -> Path:
    return Path(getattr(settings, "DELIVERY_OUTBOX_DIR", settings.VAR_DIR / "outbox"))


def _entry(line: bytes) -> OutboxEntry | None:
    try:
        data = json.loads(line)
        return OutboxEntry(id=data["id"], at=data["at"], channel=data["channel"], to=data["to"],
                           subject=data.get("subject", ""), ref=data.get("ref", ""), size=int(data.get("size", 0)))
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line while a writer appends, or a hand-edited index


def outbox_page(account: Account, *, cursor: int | None = None, limit: int = 50) -> OutboxPage:
    """Newest first. `cursor`: the byte offset where the previous page stopped (None: the end)."""
    path = account_dir(outbox_root(), account.pk) / INDEX
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return OutboxPage(items=[], next_cursor=None)
    with handle:
        end = handle.seek(0, 2)
        pos = end if cursor is None else max(0, min(int(cursor), end))
        items: list[OutboxEntry] = []
        buf = b""  # the bytes [pos, ...) not handed out yet; they end at a line boundary
        while len(items) < limit and (pos > 0 or buf):
            if pos > 0:
                start = max(0, pos - _BLOCK)
                handle.seek(start)
                buf = handle.read(pos - start) + buf
                pos = start
            if pos > 0:
                first_nl = buf.find(b"\n")
                if first_nl == -1:
                    continue  # one line longer than a block: read further back
                carry, body, body_at = buf[: first_nl + 1], buf[first_nl + 1 :], pos + first_nl + 1
            else:
                carry, body, body_at = b"", buf, 0
            lines = body.split(b"\n")
            offsets = []
            at = body_at
            for line in lines:
                offsets.append(at)
                at += len(line) + 1
            for line, line_at in zip(reversed(lines), reversed(offsets), strict=True):
                entry = _entry(line) if line.strip() else None
                if entry is None:
                    continue
                items.append(entry)
                if len(items) >= limit:
                    return OutboxPage(items=items, next_cursor=line_at or None)
            buf = carry
        return OutboxPage(items=items, next_cursor=None)


def outbox_message(account: Account, entry_id: str) -> OutboxMessage:
    """One message of the account's outbox, parsed for display. Http404 for a bad/unknown id."""
    if not _ID.match(entry_id or ""):
        raise Http404("No such message.")
    path = account_dir(outbox_root(), account.pk) / entry_id
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise Http404("No such message.") from None
    if entry_id.endswith(".json"):
        data = json.loads(raw)
        return OutboxMessage(entry_id=entry_id, channel=data.get("channel", ""), raw=raw,
                             payload=data.get("payload", {}), to=data.get("to", ""),
                             subject=str(data.get("payload", {}).get("title") or data.get("payload", {}).get("text") or ""))
    msg: EmailMessage = message_from_bytes(raw, policy=default_policy)  # type: ignore[assignment]
    html_part = msg.get_body(("html",))
    text_part = msg.get_body(("plain",))
    return OutboxMessage(
        entry_id=entry_id, channel="email", raw=raw,
        headers=[(k, str(v)) for k, v in msg.items()],
        subject=str(msg.get("subject", "")), to=str(msg.get("to", "")),
        html=html_part.get_content() if html_part is not None else "",
        text=text_part.get_content() if text_part is not None else "",
    )
