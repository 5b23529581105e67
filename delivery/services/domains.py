"""Sending domains and their DKIM keys: create, verify (DNS check), delete; generate, rotate,
remove keys. Every write is audited in the same transaction.

Key generation (RSA-2048, ~0.1 s) and DNS lookups (up to a few seconds) run OUTSIDE the
database transaction, so no row lock is held while they work.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import audit_log
from accounts.models import Account
from delivery import dkim
from delivery.dns import UNKNOWN, DomainCheck, Resolve, check_domain
from delivery.models import DkimKey, SendingDomain

if TYPE_CHECKING:
    from accounts.access import Actor

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def normalize_domain(value: str, *, field: str = "domain") -> str:
    """The ASCII (IDNA), lowercase form of a domain name; raises ValidationError({field: ...}).

    "Shop.Example." -> "shop.example"; "bücher.example" -> "xn--bcher-kva.example"."""
    raw = (value or "").strip().rstrip(".").lower()
    if "@" in raw or "/" in raw or " " in raw:
        raise ValidationError({field: "Enter a domain name only, such as shop.example."})
    try:
        ascii_name = raw.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValidationError({field: f"“{value}” is not a valid domain name."}) from exc
    labels = ascii_name.split(".")
    if (
        len(ascii_name) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValidationError({field: f"“{value}” is not a valid domain name (such as shop.example)."})
    return ascii_name


def default_return_path_domain(domain: str) -> str:
    """bounces.<domain>: the VERP envelope domain (see delivery.models.SendingDomain)."""
    return f"bounces.{domain}"


def _next_selector(domain: SendingDomain) -> str:
    """cdp<yyyymm>, then cdp<yyyymm>b, c... when this month's is taken (rotation in one month)."""
    base = f"cdp{timezone.now():%Y%m}"
    taken = set(DkimKey.objects.filter(domain=domain, selector__startswith=base).values_list("selector", flat=True))
    if base not in taken:
        return base
    for suffix in "bcdefghijklmnopqrstuvwxyz":
        if base + suffix not in taken:
            return base + suffix
    raise ValidationError({"selector": "Too many keys this month; remove retired keys first."})


def _clean_selector(selector: str | None, domain: SendingDomain) -> str:
    if not selector:
        return _next_selector(domain)
    selector = selector.strip().lower()
    if not _SELECTOR.match(selector):
        raise ValidationError({"selector": "Letters, digits and hyphens, up to 63 characters."})
    if DkimKey.objects.filter(domain=domain, selector=selector).exists():
        raise ValidationError({"selector": f"The selector “{selector}” is already used on this domain."})
    return selector


def sending_domain_create(
    *, account: Account, domain: str, actor: Actor, return_path_domain: str | None = None, with_key: bool = True
) -> SendingDomain:
    """Add a sending domain (status pending) and, with `with_key`, its first DKIM key.

    Raises ValidationError({"domain": ...}) for a bad or already added domain."""
    name = normalize_domain(domain)
    bounce = normalize_domain(return_path_domain, field="return_path_domain") if return_path_domain else None
    if bounce and not (bounce == name or bounce.endswith("." + name)):
        raise ValidationError({"return_path_domain": f"Use {name} or a subdomain of it."})
    if SendingDomain.objects.for_account(account).filter(domain=name).exists():
        raise ValidationError({"domain": f"{name} is already added."})
    keypair = dkim.generate_keypair() if with_key else None
    try:
        with transaction.atomic():
            obj = SendingDomain.objects.create(
                account=account, domain=name, return_path_domain=bounce or default_return_path_domain(name)
            )
            if keypair is not None:
                _key_create(obj, keypair, _next_selector(obj))
            audit_log(account=account, actor=actor, verb="sending_domain.created", target=obj)
    except IntegrityError as exc:  # a concurrent add of the same domain
        raise ValidationError({"domain": f"{name} is already added."}) from exc
    return obj


def _key_create(domain: SendingDomain, keypair: tuple[str, str], selector: str) -> DkimKey:
    private_pem, public_b64 = keypair
    return DkimKey.objects.create(
        account_id=domain.account_id, domain=domain, selector=selector, private_key=private_pem,
        public_key=public_b64, key_size=dkim.KEY_SIZE,
    )


def sending_domain_verify(*, domain: SendingDomain, actor: Actor | None = None, resolve: Resolve | None = None) -> DomainCheck:
    """Check DNS and store the result (last_check, checked_at).

    Status: verified when the active DKIM key's record matches; a verified domain whose record
    no longer matches becomes failing (pending stays pending); when the DKIM lookup could not
    be done (offline) the status is left as it was. Never raises for DNS trouble."""
    check = check_domain(domain, resolve=resolve)
    dkim_records = [r for r in check.records if r.purpose == "dkim" and not r.retired]
    now = timezone.now()
    with transaction.atomic():
        locked = SendingDomain.objects.select_for_update().get(pk=domain.pk)
        before = locked.status
        if check.dkim_ok:
            locked.status = SendingDomain.Status.VERIFIED
            if before != SendingDomain.Status.VERIFIED:
                locked.verified_at = now
        elif (
            before == SendingDomain.Status.VERIFIED
            and dkim_records
            and all(r.status != UNKNOWN for r in dkim_records)
        ):
            locked.status = SendingDomain.Status.FAILING
        locked.last_check = check.as_json()
        locked.checked_at = now
        locked.save(update_fields=["status", "verified_at", "last_check", "checked_at"])
        if actor is not None:
            audit_log(account=locked.account, actor=actor, verb="sending_domain.checked", target=locked,
                      data={"status": locked.status, "was": before})
    for field in ("status", "verified_at", "last_check", "checked_at"):
        setattr(domain, field, getattr(locked, field))
    return check


def sending_domain_delete(*, domain: SendingDomain, actor: Actor) -> None:
    """Delete the domain and its DKIM keys. Raises ValidationError while senders use it."""
    with transaction.atomic():
        senders = list(domain.senders.values_list("local_part", flat=True)[:5])
        if senders:
            names = ", ".join(f"{s}@{domain.domain}" for s in senders)
            raise ValidationError(f"Senders use {domain.domain} ({names}); delete them first.")
        audit_log(account=domain.account, actor=actor, verb="sending_domain.deleted", target=domain)
        domain.delete()


def dkim_key_generate(*, domain: SendingDomain, actor: Actor, selector: str | None = None) -> DkimKey:
    """The domain's first (active) key. Raises ValidationError when it already has an active
    key (rotate instead) or the selector is bad/taken."""
    if domain.dkim_keys.filter(status=DkimKey.Status.ACTIVE).exists():
        raise ValidationError("This domain already has an active DKIM key; rotate it instead.")
    keypair = dkim.generate_keypair()
    try:
        with transaction.atomic():
            SendingDomain.objects.select_for_update().get(pk=domain.pk)
            key = _key_create(domain, keypair, _clean_selector(selector, domain))
            audit_log(account=domain.account, actor=actor, verb="dkim_key.generated", target=key)
    except IntegrityError as exc:
        raise ValidationError("Another key was generated at the same time; reload the page.") from exc
    return key


def dkim_key_rotate(*, domain: SendingDomain, actor: Actor, selector: str | None = None) -> DkimKey:
    """A new active key with a new selector; the old active key becomes retired (it stays
    published so mail in flight verifies, until `dkim_key_remove`).

    The domain goes back to pending: the new key's record is not in DNS yet, and mail signed
    with an unpublished key fails DKIM. Publish the new record, then verify."""
    keypair = dkim.generate_keypair()
    now = timezone.now()
    with transaction.atomic():
        locked = SendingDomain.objects.select_for_update().get(pk=domain.pk)
        sel = _clean_selector(selector, locked)
        old = list(locked.dkim_keys.filter(status=DkimKey.Status.ACTIVE))
        DkimKey.objects.filter(pk__in=[k.pk for k in old]).update(status=DkimKey.Status.RETIRED, retired_at=now)
        key = _key_create(locked, keypair, sel)
        if locked.status != SendingDomain.Status.PENDING:
            locked.status = SendingDomain.Status.PENDING
            locked.save(update_fields=["status"])
        audit_log(account=locked.account, actor=actor, verb="dkim_key.rotated", target=key,
                  data={"retired": [k.selector for k in old]})
    domain.status = locked.status
    return key


def dkim_key_remove(*, key: DkimKey, actor: Actor) -> None:
    """Delete a retired key (unpublish its record afterwards). Raises ValidationError for the
    active key: it signs mail; rotate first."""
    if key.status == DkimKey.Status.ACTIVE:
        raise ValidationError("The active key signs this domain's mail; rotate to a new key before removing it.")
    with transaction.atomic():
        audit_log(account=key.account, actor=actor, verb="dkim_key.removed", target=key)
        key.delete()
