"""Send a template version to one address through the real backend ("send a test")."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError

from accounts.audit import audit_log
from accounts.models import Account
from cdp.ratelimit import over_limit
from delivery.backends import DeliveryError, SendResult, get_backend
from delivery.compose import compose_email, compose_other
from delivery.models import DkimKey, ProviderAccount, Sender
from delivery.services.senders import sender_for_sending

if TYPE_CHECKING:
    from accounts.access import Actor


def test_send(
    *,
    account: Account,
    version: Any,
    address: str,
    actor: Actor,
    profile: Any = None,
    data: dict[str, Any] | None = None,
    sender: Sender | None = None,
    provider: ProviderAccount | None = None,
    context: dict[str, Any] | None = None,
) -> SendResult:
    """Render `version` (a content TemplateVersion of this account) for `profile` (or no
    profile) and `data`, compose it for its channel, send it to `address` through the
    provider account (or the account's default provider, or settings), audit
    "template.test_sent", and return the (successful) SendResult.

    E-mail needs a sender (given or the account's default) on a verified domain - except when
    the backend is a local one (file, console, locmem), so test sends reach the outbox before
    DNS is set up. The ref is "T" + random hex, so a test never names a ledger row.

    Raises content.rendering.RenderError (template errors), ValidationError (no/unusable
    sender, another account's objects, bad address), DeliveryError (the backend could not
    connect, or refused this message: the provider's text is kept).

    context: a ready render context (plain data) used instead of `profile` and `data`: the
    editor passes the one its preview shows (a chosen profile or the sample person), so the
    test looks like the preview."""
    from content.rendering import compiled, context_for

    if version.account_id != account.pk:
        raise ValidationError("Choose one of this account's templates.")
    if provider is not None and provider.account_id != account.pk:
        raise ValidationError("Choose one of this account's provider accounts.")
    address = (address or "").strip()
    if not address:
        raise ValidationError({"address": "Enter an address to send the test to."})
    # Tests go to any address someone types: a stolen session or token must not turn them into
    # a way to send mail in bulk.
    limit = settings.TEST_SEND_LIMIT_PER_HOUR
    wait = over_limit(f"test-send:{account.pk}", limit, window=3600)
    if wait:
        raise ValidationError(
            f"This account has sent {limit} tests in the last hour, the most allowed; try again in "
            f"{max(1, wait // 60)} minute(s)."
        )
    channel = version.channel
    if context is None:
        context = context_for(account=account, profile=profile, data=data)
    rendered = compiled(version).render(context)
    backend = get_backend(channel, provider=provider, account=account)
    ref = "T" + os.urandom(6).hex()
    if channel == "email":
        from delivery.mime import AddressError

        chosen = sender_for_sending(account=account, sender=sender, local_backend=getattr(backend, "local", False))
        key = (
            DkimKey.objects.filter(domain_id=chosen.domain_id, status=DkimKey.Status.ACTIVE)
            .select_related("domain").defer("private_key").first()
        )
        try:
            message = compose_email(rendered=rendered, sender=chosen, to=address, ref=ref, dkim_key=key)
        except AddressError as exc:
            raise ValidationError({"address": str(exc)}) from exc
    else:
        message = compose_other(channel, rendered, to=address, ref=ref)
    with backend:
        result = backend.send_many([message])[0]
    audit_log(
        account=account, actor=actor, verb="template.test_sent", target=version,
        target_label=str(getattr(version, "template", version)),
        data={"channel": channel, "to": address, "ok": result.ok, "error": result.error[:200]},
    )
    if not result.ok:
        raise DeliveryError(result.error or "The provider refused the message.", permanent=result.permanent)
    return result


test_send.__test__ = False  # type: ignore[attr-defined]  # pytest: a service, not a test
