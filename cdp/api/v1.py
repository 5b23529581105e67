"""The /api/v1/ NinjaAPI and the routers the apps contribute."""

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
    from content.api import router as content_router
    from delivery.api import router as delivery_router
    from history.api import router as history_router
    from mailings.api import router as mailings_router
    from profiles.api import router as profiles_router
    from resources.api import router as resources_router
    from scenarios.api import router as scenarios_router
    from segments.api import router as segments_router

    api.add_router("/", accounts_router)
    api.add_router("/", profiles_router)
    api.add_router("/", resources_router)
    api.add_router("/", history_router)
    api.add_router("/", segments_router)
    api.add_router("/", content_router)
    api.add_router("/", delivery_router)
    api.add_router("/", mailings_router)
    api.add_router("/", scenarios_router)


_register_routers()
