"""The profile card's "Subscriptions" tab (registered with profiles in AppConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.permissions import Perm
from profiles.models import Profile
from resources.selectors import profile_ledger, profile_subscriptions


def subscriptions_tab_context(request: HttpRequest, profile: Profile) -> dict[str, Any]:
    return {
        "resource_groups": profile_subscriptions(profile),
        "ledger": list(profile_ledger(profile, limit=50)),
        "can_edit_subscriptions": request.membership.can(Perm.DATA_EDIT),
    }
