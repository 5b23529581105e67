"""Suppression lists: addresses, e-mail domains and phones no message may be planned for."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from resources.addresses import AddressError, normalise_address, normalise_domain
from resources.models import Channel, Suppression
from resources.services.common import ResourceValidationError

# --- suppressions --------------------------------------------------------------------------------


def clean_suppression(kind: str, value: Any, *, region: str = "") -> str:
    """Raises ResourceValidationError."""
    try:
        if kind == Suppression.Kind.EMAIL:
            return normalise_address(Channel.EMAIL, value)
        if kind == Suppression.Kind.PHONE:
            return normalise_address(Channel.SMS, value, region=region)
        if kind == Suppression.Kind.DOMAIN:
            return normalise_domain(value)
    except AddressError as exc:
        raise ResourceValidationError({"value": str(exc)}) from None
    raise ResourceValidationError({"kind": f"unknown kind {kind!r}; use email, domain or phone"})


def guess_kind(value: str) -> str:
    """email for a@b.c, domain for @b.c or b.c, phone for the rest."""
    text = str(value).strip()
    if "@" in text[1:]:
        return Suppression.Kind.EMAIL
    if text.startswith("@") or re.search(r"[a-zA-Z]", text):
        return Suppression.Kind.DOMAIN
    return Suppression.Kind.PHONE


@transaction.atomic
def suppression_add(
    *, account: Account, kind: str, value: Any, actor: Actor, reason: str = Suppression.Reason.MANUAL,
    note: str = "", source: str = "ui",
) -> tuple[Suppression, bool]:
    """Add an address, domain or phone to the account's suppression list; returns (row, created).
    Adding one that is listed already changes nothing. Raises ResourceValidationError."""
    if reason not in Suppression.Reason.values:
        raise ResourceValidationError({"reason": f"use one of {', '.join(Suppression.Reason.values)}"})
    clean = clean_suppression(kind, value, region=account.default_phone_region or "")
    row, created = Suppression.objects.get_or_create(
        account=account, kind=kind, value=clean,
        defaults={"reason": reason, "note": note[:500], "source": source[:64], "created_by_label": actor.label[:200]},
    )
    if created:
        audit_log(account=account, actor=actor, verb="suppression.added", target=row, target_label=clean,
                  data={"kind": kind, "reason": reason})
    return row, created


@transaction.atomic
def suppressions_add_bulk(*, account_id: int, kind: str, values: Iterable[str], actor: Actor,
                          reason: str = Suppression.Reason.MANUAL, note: str = "", source: str = "") -> int:
    """Add many already-normalised values of one kind (bounced or complaining addresses) as
    `suppression_add` would: the new ones get a row and an audit event, listed ones are left
    alone; a few queries however many. Returns how many were added."""
    from accounts.models import AuditEvent

    values = sorted(set(values))
    known = set(Suppression.objects.filter(account_id=account_id, kind=kind, value__in=values).values_list("value", flat=True))
    new = [v for v in values if v not in known]
    if not new:
        return 0
    Suppression.objects.bulk_create([
        Suppression(account_id=account_id, kind=kind, value=v, reason=reason, note=note[:500], source=(source or reason)[:64],
                    created_by_label=actor.label[:200]) for v in new
    ], ignore_conflicts=True)
    created = Suppression.objects.filter(account_id=account_id, kind=kind, value__in=new)
    AuditEvent.objects.bulk_create([
        AuditEvent(account_id=account_id, actor_label=actor.label[:200], verb="suppression.added",
                   target_type=Suppression._meta.label_lower, target_id=str(s.pk), target_label=s.value[:300],
                   data={"kind": s.kind, "reason": reason})
        for s in created
    ])
    return len(new)


@transaction.atomic
def suppression_remove(*, suppression: Suppression, actor: Actor) -> None:
    audit_log(account=suppression.account, actor=actor, verb="suppression.removed", target_label=suppression.value,
              data={"kind": suppression.kind, "reason": suppression.reason})
    suppression.delete()
