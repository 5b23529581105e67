"""Bearer-token authentication scoped to one account and role, with a per-token rate limit."""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from accounts.models import ApiToken, hash_secret
from accounts.permissions import Perm
from cdp.api.errors import ApiError

LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_lookup(raw: str) -> ApiToken | None:
    if not raw or len(raw) > 200:
        return None
    return ApiToken.objects.active().select_related("account").filter(token_hash=hash_secret(raw)).first()


def bearer_from(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _rate_limit(request: HttpRequest, token: ApiToken) -> None:
    limit = token.rate_limit_per_minute or settings.API_RATE_LIMIT_PER_MINUTE
    now = time.time()
    window = int(now // 60)
    key = f"api-rate:{token.pk}:{window}"
    cache.add(key, 0, timeout=120)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=120)
        used = 1
    request._api_rate = (limit, max(0, limit - used), int(60 - now % 60) + 1)
    if used > limit:
        raise ApiError(
            429,
            f"Rate limit of {limit} requests a minute for this token exceeded. Retry after {request._api_rate[2]} s.",
            headers={"Retry-After": str(request._api_rate[2])},
        )


class TokenAuth(HttpBearer):
    def __call__(self, request: HttpRequest) -> ApiToken | None:
        if not request.headers.get("Authorization"):
            request._api_auth_error = "Send your API token as 'Authorization: Bearer <token>'."
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        api_token = getattr(request, "api_token", None) or token_lookup(token)
        if api_token is None:
            request._api_auth_error = "The API token is unknown, revoked or expired."
            return None
        _rate_limit(request, api_token)
        request.api_token = api_token
        request.account = api_token.account
        now = timezone.now()
        if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
        return api_token


def require(request: HttpRequest, perm: Perm) -> None:
    """Raise 403 unless the request's token role has `perm`."""
    token: ApiToken = request.auth
    if not token.can(perm):
        raise ApiError(403, f"A token with the {token.get_role_display()} role cannot {perm.label[0].lower()}{perm.label[1:]}.")
