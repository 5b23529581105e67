"""Provider accounts: how a channel's messages leave (an SMTP relay, an SMS API, a bot...).

Values come in as one dict of field name -> raw value (what a form or the API posted); the
kind's spec (delivery.backends.KindSpec) validates them and splits secrets (encrypted, never
shown again; left blank on edit = keep) from options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError

from accounts.audit import audit_log
from accounts.models import Account
from cdp.protect import used_by
from cdp.sentinels import UNSET
from delivery.backends import DeliveryError, get_backend, get_kind
from delivery.models import ProviderAccount

if TYPE_CHECKING:
    from accounts.access import Actor



def _spec(kind: str, channel: str):  # -> KindSpec
    try:
        spec = get_kind(kind)
    except DeliveryError as exc:
        raise ValidationError({"kind": exc.message}) from exc
    if channel not in spec.channels:
        raise ValidationError({"kind": f"{spec.label} does not send {channel}."})
    return spec


def _unset_other_defaults(account: Account, channel: str, keep: int | None) -> None:
    ProviderAccount.objects.for_account(account).filter(channel=channel, is_default=True).exclude(pk=keep).update(
        is_default=False
    )


def provider_account_create(
    *,
    account: Account,
    channel: str,
    kind: str,
    name: str,
    data: dict[str, Any],
    actor: Actor,
    is_default: bool = False,
    active: bool = True,
) -> ProviderAccount:
    """Add a provider account. `data`: the kind's fields (options and secrets together).
    With `is_default` it becomes the channel's default (the previous default stops being it).
    Raises ValidationError keyed by field."""
    spec = _spec(kind, channel)
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the provider account a name."})
    options, secrets = spec.clean(data)
    try:
        with transaction.atomic():
            if is_default:
                _unset_other_defaults(account, channel, None)
            provider = ProviderAccount.objects.create(
                account=account, channel=channel, kind=kind, name=name, options=options, secrets=secrets,
                is_default=is_default, active=active,
            )
            audit_log(account=account, actor=actor, verb="provider_account.created", target=provider,
                      data={"channel": channel, "kind": kind})
    except IntegrityError as exc:
        raise ValidationError({"name": f"A provider account named “{name}” exists."}) from exc
    return provider


def provider_account_update(
    *,
    provider: ProviderAccount,
    actor: Actor,
    name: str = UNSET,
    data: dict[str, Any] | None = None,
    is_default: bool = UNSET,
    active: bool = UNSET,
) -> ProviderAccount:
    """Change a provider account. `data` replaces the options; a secret left blank keeps its
    saved value. The audit entry names the changed fields, never secret values."""
    changed: list[str] = []
    if name is not UNSET:
        if not name.strip():
            raise ValidationError({"name": "Give the provider account a name."})
        provider.name = name.strip()
        changed.append("name")
    if data is not None:
        spec = _spec(provider.kind, provider.channel)
        provider.options, provider.secrets = spec.clean(data, existing_secrets=provider.secrets)
        changed += ["options", "secrets"]
    if active is not UNSET:
        provider.active = active
        changed.append("active")
    try:
        with transaction.atomic():
            if is_default is not UNSET and is_default != provider.is_default:
                if is_default:
                    _unset_other_defaults(provider.account, provider.channel, provider.pk)
                provider.is_default = is_default
                changed.append("is_default")
            if changed:
                provider.save(update_fields=[*changed, "updated_at"])
                audit_log(account=provider.account, actor=actor, verb="provider_account.updated", target=provider,
                          data={"fields": changed})
    except IntegrityError as exc:
        raise ValidationError({"name": f"A provider account named “{provider.name}” exists."}) from exc
    return provider


def provider_account_delete(*, provider: ProviderAccount, actor: Actor) -> None:
    """Delete a provider account. Raises ValidationError while a mailing sends through it."""
    try:
        with transaction.atomic():
            audit_log(account=provider.account, actor=actor, verb="provider_account.deleted", target=provider,
                      data={"channel": provider.channel, "kind": provider.kind})
            provider.delete()
    except (ProtectedError, RestrictedError) as exc:
        raise ValidationError(f"“{provider.name}” is {used_by(exc)}; change them first.") from exc


def provider_account_check(*, provider: ProviderAccount) -> str:
    """Test the credentials ("test connection"): the backend's `check()` when it has one,
    otherwise open() + close(). Returns a short description of what worked; raises
    DeliveryError with the provider's message when it does not work."""
    backend = get_backend(provider.channel, provider=provider)
    check = getattr(backend, get_kind(provider.kind).check, None)
    if callable(check):
        return str(check())
    backend.open()
    backend.close()
    return "Connected."
