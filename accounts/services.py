"""Writes on accounts, people, tokens and jobs. Each function is atomic and writes its audit row.

Errors a person can fix are raised as `AccountError` with a message meant for them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.jobs import job_create
from accounts.models import Account, ApiToken, Invitation, Job, Membership, User, hash_secret
from accounts.permissions import ROLE_RANK, Perm, Role, role_has


class AccountError(Exception):
    """A request that breaks a rule of the account (last owner, role too high...)."""


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "account"
    slug, n = base, 1
    while Account.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def account_create(
    *, name: str, owner: User, actor: Actor, slug: str = "", timezone_name: str = "UTC", language: str = "en",
    default_phone_region: str = "US",
) -> Account:
    account = Account.objects.create(
        name=name,
        slug=slug or _unique_slug(name),
        timezone=timezone_name,
        language=language,
        default_phone_region=default_phone_region,
    )
    Membership.objects.create(account=account, user=owner, role=Role.OWNER)
    audit_log(account=account, actor=actor, verb="account.created", target=account)
    return account


@transaction.atomic
def account_update(*, account: Account, actor: Actor, **fields: Any) -> Account:
    allowed = {"name", "timezone", "language", "default_phone_region"}
    changes = {}
    for key, value in fields.items():
        if key not in allowed:
            raise TypeError(f"account_update() cannot change {key!r}")
        old = getattr(account, key)
        if old != value:
            changes[key] = {"from": old, "to": value}
            setattr(account, key, value)
    if changes:
        account.save(update_fields=list(changes))
        audit_log(account=account, actor=actor, verb="account.updated", target=account, data=changes)
    return account


# --- invitations --------------------------------------------------------------------------------


def _actor_role(account: Account, actor: Actor) -> str | None:
    if actor.token is not None:
        return actor.token.role
    if actor.user is not None:
        return (
            Membership.objects.filter(account=account, user=actor.user).values_list("role", flat=True).first()
        )
    return Role.OWNER  # the system (commands, demo data)


def _check_may_grant(account: Account, actor: Actor, role: str) -> None:
    actor_role = _actor_role(account, actor)
    if actor_role is None or not role_has(actor_role, Perm.MEMBERS_MANAGE):
        raise AccountError("Your role does not allow managing members.")
    if role not in Role.values:
        raise AccountError(f"Unknown role {role!r}.")
    if ROLE_RANK[role] > ROLE_RANK[actor_role]:
        raise AccountError(f"You cannot grant the {Role(role).label} role: it is above your own.")


@transaction.atomic
def invitation_create(*, account: Account, email: str, role: str, actor: Actor) -> Invitation:
    """Invite `email` to `account` with `role`; the e-mail goes out after commit.

    An earlier pending invitation of the same address is replaced. Raises AccountError when the
    address already belongs to a member or the role is above the inviter's.
    """
    email = email.strip().lower()
    _check_may_grant(account, actor, role)
    if Membership.objects.filter(account=account, user__email__iexact=email).exists():
        raise AccountError(f"{email} is already a member of {account.name}.")
    now = timezone.now()
    Invitation.objects.for_account(account).pending().filter(email__iexact=email).update(revoked_at=now)
    invitation = Invitation.objects.create(
        account=account,
        email=email,
        role=role,
        # The real key is made when the e-mail is sent, so it never travels through the broker.
        key_hash=hash_secret(Invitation.new_key()),
        invited_by=actor.user,
        expires_at=now + timedelta(days=settings.INVITATION_TTL_DAYS),
    )
    audit_log(account=account, actor=actor, verb="member.invited", target=invitation, target_label=email,
              data={"role": role})
    _enqueue_invitation_email(invitation)
    return invitation


def _enqueue_invitation_email(invitation: Invitation) -> None:
    from accounts.tasks import invitation_send_task

    invitation_send_task.delay_on_commit(invitation.pk)


@transaction.atomic
def invitation_resend(*, invitation: Invitation, actor: Actor) -> Invitation:
    if invitation.state not in ("pending", "expired"):
        raise AccountError("Only a pending or expired invitation can be sent again.")
    _check_may_grant(invitation.account, actor, invitation.role)
    invitation.expires_at = timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS)
    invitation.save(update_fields=["expires_at"])
    audit_log(account=invitation.account, actor=actor, verb="member.invitation_resent", target=invitation,
              target_label=invitation.email)
    _enqueue_invitation_email(invitation)
    return invitation


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: Actor) -> Invitation:
    if invitation.state != "pending":
        raise AccountError("This invitation is no longer pending.")
    _check_may_grant(invitation.account, actor, invitation.role)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_log(account=invitation.account, actor=actor, verb="member.invitation_revoked", target=invitation,
              target_label=invitation.email)
    return invitation


def invitation_issue_key(*, invitation_id: int) -> tuple[Invitation, str] | None:
    """Give a pending invitation a fresh secret key; returns it with the raw key (for the e-mail)."""
    key = Invitation.new_key()
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update(of=("self",)).select_related("account", "invited_by").filter(pk=invitation_id).first()
        )
        if invitation is None or invitation.state != "pending":
            return None
        invitation.key_hash = hash_secret(key)
        invitation.sent_at = timezone.now()
        invitation.save(update_fields=["key_hash", "sent_at"])
    return invitation, key


def invitation_by_key(key: str) -> Invitation | None:
    return Invitation.objects.select_related("account", "invited_by").filter(key_hash=hash_secret(key)).first()


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User, actor: Actor) -> Membership:
    """Make `user` a member with the invited role. The invitation is used up.

    Raises AccountError if the invitation is no longer pending or was sent to another address.
    """
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.state != "pending":
        raise AccountError(f"This invitation is {invitation.state}. Ask for a new one.")
    if invitation.email.lower() != user.email.lower():
        raise AccountError(f"This invitation was sent to {invitation.email}; you are signed in as {user.email}.")
    membership, created = Membership.objects.get_or_create(
        account=invitation.account, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    if created:
        audit_log(account=invitation.account, actor=actor, verb="member.joined", target=membership,
                  target_label=user.email, data={"role": invitation.role})
    return membership


@transaction.atomic
def user_create_from_invitation(*, invitation: Invitation, full_name: str, password: str, actor: Actor) -> User:
    """A new person signs up through the invitation link: create the user and the membership."""
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=invitation.email, password=password, full_name=full_name)
    except IntegrityError as exc:
        raise AccountError(f"An account for {invitation.email} already exists: sign in to accept.") from exc
    invitation_accept(invitation=invitation, user=user, actor=Actor(user=user, ip=actor.ip))
    return user


# --- memberships -------------------------------------------------------------------------------


def _check_may_manage(membership: Membership, actor: Actor, new_role: str | None = None) -> None:
    account = membership.account
    actor_role = _actor_role(account, actor)
    if actor_role is None or not role_has(actor_role, Perm.MEMBERS_MANAGE):
        raise AccountError("Your role does not allow managing members.")
    if ROLE_RANK[membership.role] > ROLE_RANK[actor_role]:
        raise AccountError("Only an owner can change an owner.")
    if new_role is not None:
        _check_may_grant(account, actor, new_role)


def _check_keeps_an_owner(membership: Membership) -> None:
    if membership.role == Role.OWNER:
        others = Membership.objects.for_account(membership.account).owners().exclude(pk=membership.pk)
        if not others.select_for_update().exists():
            raise AccountError("An account needs at least one owner. Make someone else owner first.")


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    membership = Membership.objects.select_for_update().select_related("account", "user").get(pk=membership.pk)
    if membership.role == role:
        return membership
    _check_may_manage(membership, actor, new_role=role)
    if role != Role.OWNER:
        _check_keeps_an_owner(membership)
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_log(account=membership.account, actor=actor, verb="member.role_changed", target=membership,
              target_label=membership.user.email, data={"from": old, "to": role})
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Actor) -> None:
    membership = Membership.objects.select_for_update().select_related("account", "user").get(pk=membership.pk)
    leaving = actor.user is not None and actor.user.pk == membership.user_id
    if not leaving:
        _check_may_manage(membership, actor)
    _check_keeps_an_owner(membership)
    audit_log(account=membership.account, actor=actor, verb="member.left" if leaving else "member.removed",
              target=membership, target_label=membership.user.email, data={"role": membership.role})
    membership.delete()


# --- API tokens --------------------------------------------------------------------------------


@transaction.atomic
def api_token_create(
    *, account: Account, name: str, role: str, actor: Actor, expires_at: Any = None, create_profiles: bool = False,
) -> tuple[ApiToken, str]:
    """Create a token; returns it with the raw secret, which is shown once and never stored."""
    actor_role = _actor_role(account, actor)
    if actor_role is None or not role_has(actor_role, Perm.API_TOKENS_MANAGE):
        raise AccountError("Your role does not allow managing API tokens.")
    if ROLE_RANK.get(role, 99) > ROLE_RANK[actor_role]:
        raise AccountError(f"A token cannot have a role above your own ({Role(actor_role).label}).")
    raw = ApiToken.generate()
    token = ApiToken.objects.create(
        account=account,
        name=name.strip() or "API token",
        role=role,
        token_hash=hash_secret(raw),
        hint=raw[: len(ApiToken.PREFIX) + 6],
        created_by=actor.user,
        expires_at=expires_at,
        create_profiles=create_profiles,
    )
    audit_log(account=account, actor=actor, verb="api_token.created", target=token,
              data={"role": role, "create_profiles": create_profiles})
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Actor) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_log(account=token.account, actor=actor, verb="api_token.revoked", target=token)
    return token


# --- audit export ------------------------------------------------------------------------------


@transaction.atomic
def audit_export_start(*, account: Account, actor: Actor, filters: dict[str, str]) -> Job:
    from accounts.tasks import audit_export_task

    job = job_create(
        account=account, kind="audit.export", title="Audit log export", created_by=actor.user, params=filters
    )
    audit_log(account=account, actor=actor, verb="audit.exported", target=job, data={"filters": filters})
    audit_export_task.delay_on_commit(job.pk)
    return job
