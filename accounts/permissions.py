"""Roles and what each may do: the one permission map every view, API route and template asks.

A permission is a capability, not a model: views ask `membership.can(Perm.MEMBERS_MANAGE)`,
API routes ask the token's role the same way, templates hide what the role cannot use.
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MARKETER = "marketer", "Marketer"
    ANALYST = "analyst", "Analyst"


class Perm(models.TextChoices):
    # Everyone in the account
    ACCOUNT_VIEW = "account.view", "See the account's dashboard and data"
    REPORTS_VIEW = "reports.view", "Read reports and analytics"
    JOBS_VIEW = "jobs.view", "Watch background jobs"
    # Marketers and up: the day-to-day work
    DATA_EDIT = "data.edit", "Edit profiles, import and export data"
    CONTENT_EDIT = "content.edit", "Write message templates"
    SEGMENTS_EDIT = "segments.edit", "Build segments"
    MAILINGS_EDIT = "mailings.edit", "Create, launch and stop mailings"
    SCENARIOS_EDIT = "scenarios.edit", "Build and run automation scenarios"
    # Admins and owners: configuration and people
    ACCOUNT_SETTINGS = "account.settings", "Change the account's name, timezone and defaults"
    MEMBERS_VIEW = "members.view", "See who belongs to the account"
    MEMBERS_MANAGE = "members.manage", "Invite, change roles and remove members"
    API_TOKENS_MANAGE = "api_tokens.manage", "Create and revoke API tokens"
    AUDIT_VIEW = "audit.view", "Read the audit log"
    DATABASES_MANAGE = "databases.manage", "Configure profile databases and their fields"
    CHANNELS_MANAGE = "channels.manage", "Configure resources, channels, sending domains and DKIM"
    # Owners only
    OWNERS_MANAGE = "owners.manage", "Grant or take away the owner role"


_EVERYONE = {Perm.ACCOUNT_VIEW, Perm.REPORTS_VIEW, Perm.JOBS_VIEW}
_MARKETER = _EVERYONE | {
    Perm.DATA_EDIT,
    Perm.CONTENT_EDIT,
    Perm.SEGMENTS_EDIT,
    Perm.MAILINGS_EDIT,
    Perm.SCENARIOS_EDIT,
}
_ADMIN = _MARKETER | {
    Perm.ACCOUNT_SETTINGS,
    Perm.MEMBERS_VIEW,
    Perm.MEMBERS_MANAGE,
    Perm.API_TOKENS_MANAGE,
    Perm.AUDIT_VIEW,
    Perm.DATABASES_MANAGE,
    Perm.CHANNELS_MANAGE,
}
_OWNER = _ADMIN | {Perm.OWNERS_MANAGE}

ROLE_PERMISSIONS: dict[str, frozenset[Perm]] = {
    Role.OWNER: frozenset(_OWNER),
    Role.ADMIN: frozenset(_ADMIN),
    Role.MARKETER: frozenset(_MARKETER),
    Role.ANALYST: frozenset(_EVERYONE),
}

# Higher number, more power. A member may only grant roles at or below their own.
ROLE_RANK = {Role.ANALYST: 1, Role.MARKETER: 2, Role.ADMIN: 3, Role.OWNER: 4}

ROLE_DESCRIPTIONS = {
    Role.OWNER: "Everything, including managing owners.",
    Role.ADMIN: "Configuration, channels, people, API tokens and the audit log.",
    Role.MARKETER: "Profiles, content, segments, mailings and scenarios.",
    Role.ANALYST: "Read-only access to data and reports.",
}


def role_has(role: str, perm: Perm | str) -> bool:
    return perm in ROLE_PERMISSIONS.get(role, frozenset())


def grantable_roles(role: str) -> list[Role]:
    """The roles a member with `role` may give to someone else (never above their own)."""
    rank = ROLE_RANK.get(role, 0)
    return [r for r in Role if ROLE_RANK[r] <= rank]
