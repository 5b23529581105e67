"""Bearer-token authentication scoped to one account and role, with a per-token rate limit."""

from __future__ import annotations

import copy
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from accounts.models import ApiToken, hash_secret
from accounts.permissions import Perm
from cdp import confcache
from cdp.api.errors import ApiError
from cdp.ratelimit import count_in

log = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(minutes=1)


# Active tokens by hash, with their account, kept per process until any configuration changes
# (a revocation, a role or account change: see cdp.confcache). Expiry is checked on every use.
_TOKENS: dict[str, ApiToken] = confcache.register({})
MAX_CACHED_TOKENS = 10_000


def token_lookup(raw: str, *, cached: bool = False) -> ApiToken | None:
    """The active token `raw` names, with its account; `cached`: the caller has just synced the
    configuration cache (the API's authentication), so a token seen before needs no query."""
    if not raw or len(raw) > 200:
        return None
    digest = hash_secret(raw)
    if cached:
        hit = _TOKENS.get(digest)
        if hit is not None and hit.is_active:
            # Copies: a request that changes its token or account object in memory (and fails
            # before saving) must not hand the change to the next request.
            token = copy.copy(hit)
            token.account = copy.copy(hit.account)
            return token
    token = ApiToken.objects.active().select_related("account").filter(token_hash=digest).first()
    if cached and token is not None:
        if len(_TOKENS) >= MAX_CACHED_TOKENS:
            _TOKENS.clear()
        _TOKENS[digest] = token
    return token


def bearer_from(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _count_request(raw: str) -> tuple[int | None, bool]:
    """Count the request against its token's rate window and read the configuration generation,
    in one Redis round trip: (requests in this minute or None if the cache is down, whether the
    per-process caches may be used). The window is keyed by the token's hash, so the count is
    taken before the token is looked up."""
    key = f"api-rate:{hash_secret(raw)[:32]}:{int(time.time() // 60)}"
    try:
        made = cache.make_and_validate_key(key)
        got = confcache.pipeline_get([("incr", (made,)), ("expire", (made, 120))])
        if got is not None:
            results, gen = got
            return int(results[0]), confcache.sync(gen)
        return count_in(key, timeout=120), confcache.check()  # other backends: separate calls
    except Exception:  # the cache being down lets the request through (logged), never refuses it
        log.warning("API rate limit unavailable", exc_info=True)
        confcache.sync(None)
        return None, False


def _rate_limit(request: HttpRequest, token: ApiToken, used: int | None) -> None:
    if used is None:
        return
    limit = token.rate_limit_per_minute or settings.API_RATE_LIMIT_PER_MINUTE
    now = time.time()
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
        used, fresh = _count_request(token) if token and len(token) <= 200 else (None, False)
        api_token = getattr(request, "api_token", None) or token_lookup(token, cached=fresh)
        if api_token is None:
            request._api_auth_error = "The API token is unknown, revoked or expired."
            return None
        _rate_limit(request, api_token, used)
        request.api_token = api_token
        request.account = api_token.account
        now = timezone.now()
        if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
            api_token.last_used_at = now
            cached = _TOKENS.get(api_token.token_hash)
            if cached is not None:  # the cached object too (requests get copies), or every request would write it
                cached.last_used_at = now
        return api_token


def require(request: HttpRequest, perm: Perm) -> None:
    """Raise 403 unless the request's token role has `perm`."""
    token: ApiToken = request.auth
    if not token.can(perm):
        raise ApiError(403, f"A token with the {token.get_role_display()} role cannot {perm.label[0].lower()}{perm.label[1:]}.")
