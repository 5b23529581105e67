"""API request handling around the endpoints: Idempotency-Key replay and rate-limit headers.

A POST with `Idempotency-Key: <key>` (1-255 printable characters) runs once per account and
key. A retry with the same body gets the first response again, with `Idempotent-Replayed: true`;
the same key with a different body (or path) is 409 `idempotency_key_reused`; a retry while the
first request still runs is 409 `idempotency_key_in_use`. Server errors (5xx) and rate-limit
answers are not kept, so a retry runs again. Keys are kept API_IDEMPOTENCY_TTL_HOURS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.models import IdempotencyKey
from cdp import confcache
from cdp.api.auth import bearer_from, token_lookup
from cdp.api.errors import error_response, too_big_response

API_PREFIX = "/api/v1/"
# A first request that has not finished after this long is taken to have died; its key is free again.
IN_PROGRESS_TIMEOUT = timedelta(minutes=5)


def _request_hash(request: HttpRequest) -> str:
    h = hashlib.sha256()
    h.update(request.method.encode() + b" " + request.get_full_path().encode() + b"\n")
    h.update(request.body)
    return h.hexdigest()


def _create(**values: object) -> IdempotencyKey | None:
    """INSERT the key's row; None when the key is taken. Outside a transaction the INSERT is its
    own (one round trip, a conflict spoils nothing); inside one, in a savepoint."""
    try:
        if not transaction.get_connection().in_atomic_block:
            return IdempotencyKey.objects.create(**values)
        with transaction.atomic():
            return IdempotencyKey.objects.create(**values)
    except IntegrityError:
        return None


def _claim(request: HttpRequest, account: object, key: str, digest: str) -> IdempotencyKey | None:
    """The key's row made for this request, or None when another request holds the key (the
    caller replays it). A first request's key is one INSERT; only a key already taken is looked
    at again: one kept past API_IDEMPOTENCY_TTL_HOURS, or whose first request has not finished
    within IN_PROGRESS_TIMEOUT (taken to have died), is free again and made anew."""
    values = {"account": account, "key": key, "request_hash": digest, "method": request.method,
              "path": request.path[:500]}
    record = _create(**values)
    if record is not None:
        return record
    now = timezone.now()
    ttl = timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)
    with transaction.atomic():
        freed, _ = IdempotencyKey.objects.filter(account=account, key=key).filter(
            Q(created_at__lt=now - ttl) | Q(completed_at__isnull=True, created_at__lt=now - IN_PROGRESS_TIMEOUT)
        ).delete()
        return _create(**values) if freed else None


class ApiMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key is not None:
            response = self._idempotent(request, key)
        else:
            response = self.get_response(request)
        rate = getattr(request, "_api_rate", None)
        if rate is not None:
            response["X-RateLimit-Limit"] = str(rate[0])
            response["X-RateLimit-Remaining"] = str(rate[1])
            response["X-RateLimit-Reset"] = str(rate[2])
        return response

    def _idempotent(self, request: HttpRequest, key: str) -> HttpResponse:
        if not 1 <= len(key) <= 255 or not key.isprintable():
            return error_response(
                400, "Idempotency-Key must be 1 to 255 printable characters.", code="invalid_idempotency_key",
                details=[{"loc": ["header", "Idempotency-Key"], "message": "1-255 printable characters"}],
            )
        # The per-process token cache, checked against the configuration generation (one Redis
        # read; the authentication then finds the token on the request and looks nothing up).
        token = token_lookup(bearer_from(request), cached=confcache.check())
        if token is None:
            return self.get_response(request)  # the endpoint answers 401
        request.api_token = token
        try:
            digest = _request_hash(request)
        except RequestDataTooBig:
            return too_big_response()
        record = _claim(request, token.account, key, digest)
        if record is None:
            return self._replay(request, token.account, key, digest)

        response = self.get_response(request)
        if response.status_code >= 500 or response.status_code == 429 or response.streaming:
            IdempotencyKey.objects.filter(pk=record.pk).delete()
            return response
        IdempotencyKey.objects.filter(pk=record.pk).update(
            status_code=response.status_code,
            response_body=bytes(response.content),
            content_type=response.get("Content-Type", "application/json"),
            completed_at=timezone.now(),
        )
        return response

    def _replay(self, request: HttpRequest, account, key: str, digest: str) -> HttpResponse:
        record = IdempotencyKey.objects.filter(account=account, key=key).first()
        if record is None:  # removed between our insert and this read: let the client retry
            return error_response(409, "This Idempotency-Key is being processed; retry shortly.", code="idempotency_key_in_use")
        if record.request_hash != digest:
            return error_response(
                409,
                "This Idempotency-Key was already used with a different request. Use a new key for a new request.",
                code="idempotency_key_reused",
                details=[{"loc": ["header", "Idempotency-Key"], "message": f"first used for {record.method} {record.path}"}],
            )
        if record.completed_at is None:
            return error_response(409, "The first request with this Idempotency-Key is still running; retry shortly.",
                                  code="idempotency_key_in_use", headers={"Retry-After": "1"})
        response = HttpResponse(bytes(record.response_body or b""), status=record.status_code,
                                content_type=record.content_type or "application/json")
        response["Idempotent-Replayed"] = "true"
        return response
