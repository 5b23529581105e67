"""The REST API at /api/v1/: one NinjaAPI, routers contributed by the apps.

Conventions every router follows:
- auth: `Authorization: Bearer <token>`; the token belongs to one account and carries a role;
  check permissions with `cdp.api.auth.require(request, Perm.X)`;
- objects are looked up through `.for_account(request.auth.account)`: another account's id is 404;
- errors: `{"error": {"code", "message", "details": [{"loc", "message", "type"}]}}` (see errors.py);
- lists: cursor pagination (see pagination.py);
- POST accepts `Idempotency-Key` (see middleware.py); rate limit per token, with X-RateLimit-* headers.
"""

from __future__ import annotations

from ninja import NinjaAPI

from cdp.api.auth import TokenAuth
from cdp.api.errors import install_error_handlers

api = NinjaAPI(
    title="Northwind CDP API",
    version="1",
    description=(
        "REST API of the customer data platform. Authenticate with `Authorization: Bearer <token>` "
        "(create tokens under Settings → API tokens). Errors share one shape: "
        '`{"error": {"code": ..., "message": ..., "details": [...]}}`. Lists use cursor pagination '
        "(`?limit=&cursor=`, answer `{items, next_cursor}`). POST requests accept an `Idempotency-Key` header."
    ),
    auth=TokenAuth(),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)
install_error_handlers(api)


def _register_routers() -> None:
    from accounts.api import router as accounts_router
    from profiles.api import router as profiles_router

    api.add_router("/", accounts_router)
    api.add_router("/", profiles_router)


_register_routers()
