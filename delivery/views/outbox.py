"""The outbox: what the file backend wrote instead of sending (the embedded default), newest first.

Marketers and up (Perm.CONTENT_EDIT): it is where a test send lands in a fresh install. Only the
account's own messages are read (delivery.outbox reads the account's directory; an id of another
account's message does not exist there: 404).

A message's HTML is shown only inside `<iframe sandbox>` (no allow-scripts, no allow-same-origin)
from its own URL, served with a CSP that forbids scripts, frames, forms and remote loads except
images: tenant HTML cannot run anything or reach this page.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from accounts.access import account_required
from accounts.permissions import Perm
from delivery import outbox as store
from delivery.models import ProviderAccount
from resources.models import CHANNEL_ICONS, Channel

PER_PAGE = 50
# The message HTML frame: inline styles and images (data:, https:) only; `sandbox` again in the
# header so the document is sandboxed even when opened on its own.
MESSAGE_CSP = (
    "default-src 'none'; img-src data: https:; style-src 'unsafe-inline'; font-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)


def file_backend_active(request: HttpRequest) -> bool:
    """Whether the account's e-mail goes to the outbox: no active default e-mail provider of
    another kind, and settings send e-mail through the file backend."""
    default = (ProviderAccount.objects.for_account(request.account)
               .filter(channel="email", is_default=True, active=True).only("kind").first())
    if default is not None:
        return default.kind == "file"
    config = getattr(settings, "DELIVERY_BACKENDS", {})
    entry = config.get("email") or config.get("default") or {}
    return entry.get("BACKEND", "").endswith(".file.FileBackend")


def _channel(channel: str) -> tuple[str, str]:
    """(icon, label) of a channel name; an unknown one (a hand-edited index) shows as itself."""
    if channel in Channel.values:
        return CHANNEL_ICONS.get(Channel(channel), "dot"), Channel(channel).label
    return "dot", channel


def _when(at: str, tz: tzinfo) -> datetime | None:
    """The index's ISO time in the account's timezone (None if it cannot be read)."""
    try:
        return datetime.fromisoformat(at).astimezone(tz)
    except (TypeError, ValueError):
        return None


def _cursor(raw: str) -> int | None:
    return int(raw) if raw.isdigit() else None


@require_GET
@account_required(Perm.CONTENT_EDIT)
def outbox_list(request: HttpRequest) -> HttpResponse:
    cursor = _cursor(request.GET.get("cursor", ""))
    page = store.outbox_page(request.account, cursor=cursor, limit=PER_PAGE)
    tz = request.account.tzinfo
    for entry in page.items:
        day, _, name = entry.id.partition("/")
        entry.day, entry.name = day, name  # type: ignore[attr-defined]
        entry.when = _when(entry.at, tz)  # type: ignore[attr-defined]
        entry.icon, entry.channel_label = _channel(entry.channel)  # type: ignore[attr-defined]
    context = {"page": page, "first_page": cursor is None, "file_active": file_backend_active(request),
               "section": "outbox"}
    return render(request, "delivery/outbox_list.html", context)


def _message(request: HttpRequest, day: str, name: str) -> store.OutboxMessage:
    """The account's message or Http404 (a malformed id or another account's file never matches)."""
    return store.outbox_message(request.account, f"{day}/{name}")


def _payload_rows(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in payload.items()]


@require_GET
@account_required(Perm.CONTENT_EDIT)
def outbox_message(request: HttpRequest, day: str, name: str) -> HttpResponse:
    message = _message(request, day, name)
    icon, label = _channel(message.channel)
    context = {"message": message, "day": day, "name": name, "payload_rows": _payload_rows(message.payload),
               "icon": icon, "channel_label": label, "section": "outbox"}
    return render(request, "delivery/outbox_message.html", context)


@require_GET
@account_required(Perm.CONTENT_EDIT)
@xframe_options_sameorigin
def outbox_html(request: HttpRequest, day: str, name: str) -> HttpResponse:
    message = _message(request, day, name)
    response = HttpResponse(message.html or "<p style='font-family:sans-serif;color:#64748b'>No HTML part.</p>",
                            content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = MESSAGE_CSP
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
@account_required(Perm.CONTENT_EDIT)
def outbox_raw(request: HttpRequest, day: str, name: str) -> HttpResponse:
    """The message as written: an .eml (message/rfc822) or the .json of another channel, as a download."""
    message = _message(request, day, name)
    is_email = name.endswith(".eml")
    response = HttpResponse(message.raw, content_type="message/rfc822" if is_email else "application/json")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, no-store"
    return response

