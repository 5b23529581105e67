"""The REST API at /api/v1/: one NinjaAPI, routers contributed by the apps.

Conventions every router follows:
- auth: `Authorization: Bearer <token>`; the token belongs to one account and carries a role;
  check permissions with `cdp.api.auth.require(request, Perm.X)`;
- objects are looked up through `.for_account(request.auth.account)`: another account's id is 404;
- errors: `{"error": {"code", "message", "details": [{"loc", "message", "type"}]}}` (see errors.py);
- lists: cursor pagination (see pagination.py);
- POST accepts `Idempotency-Key` (see middleware.py); rate limit per token, with X-RateLimit-* headers.

The NinjaAPI object lives in cdp.api.v1 (imported by the URLconf), so an app's api.py can import
the helpers here (auth, errors, pagination) in any order without a circular import.
"""


from __future__ import annotations
