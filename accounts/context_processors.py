from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.models import Account
from accounts.permissions import Perm


class _Can:
    """`{% if can.members_manage %}` in templates: the current member's permissions by name."""

    def __init__(self, membership: Any) -> None:
        self._membership = membership

    def __getattr__(self, name: str) -> bool:
        try:
            perm = Perm[name.upper()]
        except KeyError:
            raise AttributeError(name) from None
        return bool(self._membership and self._membership.can(perm))


def current_account(request: HttpRequest) -> dict[str, Any]:
    membership = getattr(request, "membership", None)
    user = getattr(request, "user", None)
    # CurrentAccountMiddleware read them with the membership (an empty list for a user with no
    # account); the query is the fallback for a request it did not see (an error page before it ran).
    user_accounts = getattr(request, "user_accounts", None)
    if user_accounts is None:
        user_accounts = SimpleLazyObject(
            lambda: list(Account.objects.for_user(user)) if user and user.is_authenticated else [])
    return {
        "current_account": getattr(request, "account", None),
        "current_membership": membership,
        "can": _Can(membership),
        "SITE_NAME": settings.SITE_NAME,
        "user_accounts": user_accounts,
    }
