"""Writing the audit trail. Services call `audit_log` inside their own transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models

from accounts.models import Account, AuditEvent

if TYPE_CHECKING:
    from accounts.access import Actor

# verb -> how the audit log page says it. Apps add theirs with `register_verbs`.
VERBS: dict[str, str] = {
    "account.created": "created the account",
    "account.updated": "changed account settings",
    "member.invited": "invited a member",
    "member.invitation_resent": "resent an invitation",
    "member.invitation_revoked": "revoked an invitation",
    "member.joined": "joined the account",
    "member.role_changed": "changed a member's role",
    "member.removed": "removed a member",
    "member.left": "left the account",
    "auth.login": "signed in",
    "auth.login_failed": "failed to sign in",
    "auth.locked_out": "was locked out after failed sign-ins",
    "auth.logout": "signed out",
    "auth.password_changed": "changed their password",
    "auth.password_reset": "reset their password",
    "api_token.created": "created an API token",
    "api_token.revoked": "revoked an API token",
    "audit.exported": "exported the audit log",
}


def register_verbs(verbs: dict[str, str]) -> None:
    """For higher apps, from their AppConfig.ready()."""
    VERBS.update(verbs)


def verb_label(verb: str) -> str:
    return VERBS.get(verb, verb.replace("_", " ").replace(".", ": "))


def audit_log(
    *,
    account: Account | None,
    actor: Actor,
    verb: str,
    target: models.Model | None = None,
    target_label: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        account=account,
        actor=actor.user,
        actor_token=actor.token,
        actor_label=actor.label,
        verb=verb,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=(target_label if target_label is not None else (str(target) if target is not None else ""))[:300],
        data=data or {},
        ip=actor.ip,
    )
