"""One error shape for every API error: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, ValidationError

log = logging.getLogger(__name__)

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ErrorDetail(Schema):
    loc: list[str | int] = []
    message: str
    type: str = ""


class ErrorBody(Schema):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorOut(Schema):
    error: ErrorBody


# The error answers every route may give, for its OpenAPI `response={200: ..., **ERRORS}`.
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut, 429: ErrorOut}


class ApiError(Exception):
    """Raise from an endpoint to answer with the error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "",
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES.get(status, "error")
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def error_response(
    status: int, message: str, *, code: str = "", details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body = {"error": {"code": code or STATUS_CODES.get(status, "error"), "message": message, "details": details or []}}
    response = JsonResponse(body, status=status)
    for k, v in (headers or {}).items():
        response[k] = v
    return response


def too_big_response() -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
    return error_response(413, f"The request body is larger than {limit // 1024:,} KB. Send the data in smaller requests.")


def _validation_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        loc = [p for p in e.get("loc", []) if p not in ("body", "payload")] or list(e.get("loc", []))
        out.append({"loc": [str(p) if not isinstance(p, int) else p for p in loc], "message": e.get("msg", ""), "type": e.get("type", "")})
    return out


def install_error_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(ApiError)
    def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return error_response(exc.status, exc.message, code=exc.code, details=exc.details, headers=exc.headers)

    @api.exception_handler(ValidationError)
    def _validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        details = _validation_details(exc.errors)
        where = ", ".join(".".join(str(p) for p in d["loc"]) for d in details if d["loc"])
        message = "The request is not valid" + (f": check {where}." if where else ".")
        return error_response(422, message, details=details)

    @api.exception_handler(AuthenticationError)
    def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        message = getattr(request, "_api_auth_error", "") or "Send a valid API token as 'Authorization: Bearer <token>'."
        return error_response(401, message, headers={"WWW-Authenticate": 'Bearer realm="api"'})

    @api.exception_handler(AuthorizationError)
    def _forbidden_ninja(request: HttpRequest, exc: AuthorizationError) -> HttpResponse:
        return error_response(403, str(exc) or "This token's role does not allow this.")

    @api.exception_handler(RequestDataTooBig)
    def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        return too_big_response()

    @api.exception_handler(PermissionDenied)
    def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        return error_response(403, str(exc) or "This token's role does not allow this.")

    @api.exception_handler(Http404)
    def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(404, "Not found.")

    @api.exception_handler(HttpError)
    def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        return error_response(exc.status_code, str(exc.message) if hasattr(exc, "message") else str(exc))

    @api.exception_handler(Exception)
    def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        log.exception("API error on %s %s", request.method, request.path)
        return error_response(500, "Something went wrong on our side. It has been logged; try again later.")


@csrf_exempt  # token-authenticated like the API: a POST to an unknown path is a JSON 404, not a CSRF page
def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    return error_response(404, f"There is no API endpoint at /api/v1/{path}.")
