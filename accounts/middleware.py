from __future__ import annotations

from collections.abc import Callable

from django.db.models import F
from django.http import HttpRequest, HttpResponse

from accounts.models import Membership

SESSION_KEY = "current_account_id"


class CurrentAccountMiddleware:
    """Sets `request.account` and `request.membership` for a signed-in user.

    The current account is kept in the session; if it is missing or the user no longer belongs
    to it, the first account the user belongs to is used. One query per request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.account = None
        request.membership = None
        if request.user.is_authenticated and not request.path.startswith("/api/"):
            memberships = Membership.objects.filter(user=request.user).select_related("account")
            wanted = request.session.get(SESSION_KEY)
            membership = None
            if wanted is not None:
                membership = memberships.filter(account_id=wanted).first()
            if membership is None:
                # The account used last, so signing in lands where the person left off.
                membership = memberships.order_by(F("last_seen_at").desc(nulls_last=True), "account__name").first()
                if membership is not None:
                    request.session[SESSION_KEY] = membership.account_id
            if membership is not None:
                request.membership = membership
                request.account = membership.account
        return self.get_response(request)
