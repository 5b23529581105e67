"""Who is acting, in which account, and may they: the helpers every view and service uses."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect

from accounts.permissions import Perm

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from accounts.models import ApiToken, User


def client_ip(request: HttpRequest) -> str | None:
    """The client's address. Behind a proxy, set the proxy to overwrite X-Forwarded-For's first hop."""
    from django.conf import settings

    if getattr(settings, "USE_X_FORWARDED_FOR", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip() or None
    return request.META.get("REMOTE_ADDR") or None


@dataclass(frozen=True)
class Actor:
    """Who did something: a signed-in user, an API token, a subscriber on a public page (no
    login: `subscriber=True`), or the system (none of these)."""

    user: User | None = None
    token: ApiToken | None = None
    ip: str | None = None
    subscriber: bool = False

    @classmethod
    def from_request(cls, request: HttpRequest) -> Actor:
        user = request.user if getattr(request, "user", None) and request.user.is_authenticated else None
        token = getattr(request, "api_token", None)
        return cls(user=user, token=token, ip=client_ip(request))

    @classmethod
    def system(cls) -> Actor:
        return cls()

    @property
    def label(self) -> str:
        if self.user is not None:
            return self.user.email
        if self.token is not None:
            return f"API token “{self.token.name}”"
        if self.subscriber:
            return "Subscriber"
        return "System"

    @property
    def kind(self) -> str:
        """user | token | subscriber | system."""
        if self.user is not None:
            return "user"
        if self.token is not None:
            return "token"
        return "subscriber" if self.subscriber else "system"

    @property
    def role(self) -> str | None:
        if self.token is not None:
            return self.token.role
        return None


def account_required(perm: Perm | None = Perm.ACCOUNT_VIEW) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Signed in, a member of the current account, and (if given) holding `perm`.

    Without a membership the person is sent to the page that explains it; without the
    permission they get the styled 403 page. Objects of other accounts are the view's job:
    it looks them up through `.for_account(request.account)`, so they are a 404.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if getattr(request, "membership", None) is None:
                return redirect("accounts:no_account")
            if perm is not None and not request.membership.can(perm):
                raise PermissionDenied(f"Your role does not allow this ({perm.label.lower()}).")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
