"""Senders: From addresses on the account's sending domains.

A sender may be created on a domain that is not verified yet (the UI warns), but mail goes
out from it only once the domain is verified: `sender_for_sending` refuses otherwise, except
for local backends (file, console, locmem) where nothing leaves the machine - that is what
makes `make run` and test sends to the outbox work before DNS is set up.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError

from accounts.audit import audit_log
from accounts.models import Account
from cdp.protect import used_by
from cdp.sentinels import UNSET
from delivery.models import Sender, SendingDomain

if TYPE_CHECKING:
    from accounts.access import Actor

# RFC 5322 dot-atom, ASCII only (a non-ASCII local part needs SMTPUTF8).
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def _local_part(domain: SendingDomain, local_part: str | None, from_address: str | None) -> str:
    if from_address:
        local, at, host = from_address.strip().rpartition("@")
        if not at or not local:
            raise ValidationError({"from_address": "Enter an address such as news@" + domain.domain + "."})
        host = host.lower().rstrip(".")
        try:
            host_ascii = host.encode("idna").decode("ascii")
        except UnicodeError:
            host_ascii = host
        if host_ascii != domain.domain:
            raise ValidationError({"from_address": f"The address must be on {domain.unicode_domain}, not {host}."})
        local_part = local
    local_part = (local_part or "").strip()
    if len(local_part) > 64 or not _LOCAL_PART.match(local_part):
        raise ValidationError({"local_part": "Letters, digits and . _ - + only, such as news or hello.team."})
    return local_part


def _clean_reply_to(reply_to: str) -> str:
    reply_to = (reply_to or "").strip()
    if reply_to:
        try:
            validate_email(reply_to)
        except ValidationError as exc:
            raise ValidationError({"reply_to": "Enter a valid e-mail address."}) from exc
    return reply_to


def sender_create(
    *,
    account: Account,
    domain: SendingDomain,
    actor: Actor,
    local_part: str | None = None,
    from_address: str | None = None,
    from_name: str = "",
    reply_to: str = "",
    is_default: bool = False,
) -> Sender:
    """Add a sender. Give `local_part` ("news") or `from_address` ("news@shop.example", refused
    on another domain). The account's first sender becomes its default.
    Raises ValidationError (keyed by field)."""
    if domain.account_id != account.pk:
        raise ValidationError({"domain": "Choose one of this account's domains."})
    local = _local_part(domain, local_part, from_address)
    reply = _clean_reply_to(reply_to)
    try:
        with transaction.atomic():
            first = not Sender.objects.for_account(account).exists()
            if is_default and not first:
                Sender.objects.for_account(account).filter(is_default=True).update(is_default=False)
            sender = Sender.objects.create(
                account=account, domain=domain, local_part=local, from_name=from_name.strip(),
                reply_to=reply, is_default=is_default or first,
            )
            audit_log(account=account, actor=actor, verb="sender.created", target=sender)
    except IntegrityError as exc:
        raise ValidationError({"local_part": f"{local}@{domain.domain} is already a sender."}) from exc
    return sender


def sender_update(
    *,
    sender: Sender,
    actor: Actor,
    from_name: str = UNSET,
    local_part: str = UNSET,
    reply_to: str = UNSET,
    is_default: bool = UNSET,
) -> Sender:
    """Change a sender's fields (the domain is fixed: make a new sender for another domain)."""
    changed: list[str] = []
    if from_name is not UNSET:
        sender.from_name = from_name.strip()
        changed.append("from_name")
    if local_part is not UNSET:
        sender.local_part = _local_part(sender.domain, local_part, None)
        changed.append("local_part")
    if reply_to is not UNSET:
        sender.reply_to = _clean_reply_to(reply_to)
        changed.append("reply_to")
    try:
        with transaction.atomic():
            if is_default is not UNSET and is_default != sender.is_default:
                if is_default:
                    Sender.objects.for_account(sender.account).filter(is_default=True).update(is_default=False)
                sender.is_default = is_default
                changed.append("is_default")
            if changed:
                sender.save(update_fields=changed)
                audit_log(account=sender.account, actor=actor, verb="sender.updated", target=sender,
                          data={"fields": changed})
    except IntegrityError as exc:
        raise ValidationError({"local_part": f"{sender.from_address} is already a sender."}) from exc
    return sender


def sender_delete(*, sender: Sender, actor: Actor) -> None:
    """Delete a sender. Raises ValidationError while something (a mailing) still uses it."""
    try:
        with transaction.atomic():
            audit_log(account=sender.account, actor=actor, verb="sender.deleted", target=sender)
            sender.delete()
    except (ProtectedError, RestrictedError) as exc:
        raise ValidationError(f"{sender.from_address} is {used_by(exc)}; change them first.") from exc


def sender_for_sending(*, account: Account, sender: Sender | None = None, local_backend: bool = False) -> Sender:
    """The sender to send from: the given one (must be the account's) or the account's default.

    Raises ValidationError when there is none, or when its domain is not verified - unless
    `local_backend` (file/console/locmem: nothing leaves the machine)."""
    if sender is None:
        sender = (
            Sender.objects.for_account(account).select_related("domain").order_by("-is_default", "id").first()
        )
        if sender is None:
            raise ValidationError("Add a sender (a From address on a sending domain) before sending e-mail.")
    elif sender.account_id != account.pk:
        raise ValidationError("Choose one of this account's senders.")
    if not sender.is_usable and not local_backend:
        raise ValidationError(
            f"{sender.from_address} cannot send yet: its domain {sender.domain.unicode_domain} is not verified. "
            "Publish the DNS records and press “Verify DNS”."
        )
    return sender
