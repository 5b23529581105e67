"""From a rendered template to an OutboundMessage ready for a backend.

compose_email: Rendered email parts + Sender -> signed wire bytes with a VERP envelope sender,
a Message-ID naming the ref, and List-Unsubscribe headers for the subscription.
compose_other: the other channels' payloads (see delivery.backends.base.OutboundMessage).

The hot path (mailings) may call these per message: they do no queries when the sender's
domain is loaded (select_related("domain")) and a DkimSigner is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from delivery.backends.base import OutboundMessage
from delivery.dkim import DkimSigner, signer_for
from delivery.mime import build_email, make_message_id, unsubscribe_address, verp_address

if TYPE_CHECKING:
    from delivery.models import DkimKey, Sender
    from resources.models import Subscription

# Which rendered parts each channel's payload carries.
PAYLOAD_PARTS: dict[str, tuple[str, ...]] = {
    "sms": ("text",),
    "webpush": ("title", "body", "icon", "image", "url"),
    "mobilepush": ("title", "body", "icon", "image", "url", "data"),
    "telegram": ("text", "parse_mode", "buttons"),
}


def _parts(rendered: Any) -> Mapping[str, Any]:
    return rendered.parts if hasattr(rendered, "parts") else rendered


def compose_email(
    *,
    rendered: Any,
    sender: Sender,
    to: str,
    ref: str,
    subscription: Subscription | None = None,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    dkim_key: DkimKey | None = None,
    signer: DkimSigner | None = None,
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
) -> OutboundMessage:
    """One e-mail as an OutboundMessage (raw = the DKIM-signed bytes when a key/signer is given).

    rendered: content's Rendered (or its parts dict): subject, html, text.
    subscription: its RFC 8058 one-click URL goes into List-Unsubscribe (or pass
        `unsubscribe_url` directly, as the hot path does to avoid building it twice).
    unsubscribe_mailto: the address for mailto: unsubscribes; by default, when the message has an
        unsubscribe URL, a signed one on the bounce domain (delivery.mime.unsubscribe_address),
        so List-Unsubscribe offers both https and mailto (RFC 2369), as mailbox providers ask.
    message_id: the Message-ID of a first attempt, when this is the same message sent again
        (a transactional resend after a lost connection); by default a new one.
    Raises delivery.mime.AddressError for an unusable recipient."""
    parts = _parts(rendered)
    domain = sender.domain
    if unsubscribe_url is None and subscription is not None:
        from resources.tokens import one_click_url

        unsubscribe_url = one_click_url(subscription)
    if unsubscribe_mailto is None and unsubscribe_url:
        unsubscribe_mailto = unsubscribe_address(ref, domain.bounce_domain)
    built = build_email(
        from_name=sender.from_name,
        from_addr=sender.from_address,
        to=to,
        subject=parts.get("subject") or "",
        html=parts.get("html") or "",
        text=parts.get("text") or "",
        message_id=message_id or make_message_id(ref, domain.domain),
        reply_to=sender.reply_to or None,
        list_unsubscribe_https=unsubscribe_url,
        list_unsubscribe_mailto=f"mailto:{unsubscribe_mailto}?subject=unsubscribe" if unsubscribe_mailto else None,
        return_path=verp_address(ref, domain.bounce_domain),
        headers=headers,
    )
    if signer is None and dkim_key is not None:
        signer = signer_for(dkim_key)
    raw = signer.sign(built) if signer is not None else built.as_bytes()
    return OutboundMessage(channel="email", to=to, ref=ref, raw=raw, envelope_from=built.envelope_from)


def compose_other(
    channel: str, rendered: Any, *, to: str, ref: str, meta: Mapping[str, Any] | None = None,
    sender: str = "",
) -> OutboundMessage:
    """An SMS, push or Telegram message. `meta`: the subscription's channel details (web push
    keys, app platform, chat name). `sender`: the SMS sender id, when the caller picks one."""
    parts = _parts(rendered)
    names = PAYLOAD_PARTS.get(channel)
    if names is None:
        raise ValueError(f"Not a non-e-mail channel: {channel!r}")
    payload = {name: parts[name] for name in names if parts.get(name) not in (None, "")}
    if channel == "sms" and sender:
        payload["sender"] = sender
    return OutboundMessage(channel=channel, to=to, ref=ref, payload=payload, meta=dict(meta or {}))
