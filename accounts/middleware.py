from __future__ import annotations

from collections.abc import Callable

from django.db.models import F
from django.http import HttpRequest, HttpResponse

from accounts.models import Membership

SESSION_KEY = "current_account_id"


class CurrentAccountMiddleware:
    """Sets `request.account` and `request.membership` for a signed-in user, and
    `request.user_accounts` (the accounts they belong to, by name: the account switcher's list).

    The current account is kept in the session; if it is missing or the user no longer belongs
    to it, the account used last is taken. One query per request: every membership of the user
    with its account (a person belongs to a handful), so the layout needs no second query.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.account = None
        request.membership = None
        if request.user.is_authenticated and not request.path.startswith("/api/"):
            # The account used last first, so signing in lands where the person left off.
            memberships = list(Membership.objects.filter(user=request.user).select_related("account")
                               .order_by(F("last_seen_at").desc(nulls_last=True), "account__name", "account_id"))
            wanted = request.session.get(SESSION_KEY)
            membership = next((m for m in memberships if m.account_id == wanted), None) if wanted is not None else None
            if membership is None and memberships:
                membership = memberships[0]
                request.session[SESSION_KEY] = membership.account_id
            if membership is not None:
                request.membership = membership
                request.account = membership.account
            request.user_accounts = sorted((m.account for m in memberships), key=lambda a: (a.name, a.pk))
        return self.get_response(request)
