"""Cursor pagination, the one convention for API lists.

`GET /api/v1/things?limit=100&cursor=<next_cursor>` answers `{"items": [...], "next_cursor": "..."}`;
`next_cursor` is null on the last page. Items come newest first (by id); cursors are opaque.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Generic, TypeVar

from django.db.models import Model, QuerySet
from ninja import Schema

from cdp.api.errors import ApiError

T = TypeVar("T")
M = TypeVar("M", bound=Model)

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


class CursorPage(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def _encode(pk: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": pk}).encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        value = int(json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["id"])
        if not 1 <= value <= 2**63:  # a forged cursor must not overflow the query's parameter
            raise ValueError(value)
        return value
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise ApiError(400, "The cursor is not valid; use next_cursor from the previous page.", code="invalid_cursor",
                       details=[{"loc": ["query", "cursor"], "message": "not a cursor this API issued"}]) from exc


def paginate(qs: QuerySet[M], *, cursor: str | None, limit: int | None) -> dict[str, object]:
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(422, f"limit must be between 1 and {MAX_LIMIT}.", code="validation_error",
                       details=[{"loc": ["query", "limit"], "message": f"between 1 and {MAX_LIMIT}"}])
    qs = qs.order_by("-pk")
    if cursor:
        qs = qs.filter(pk__lt=_decode(cursor))
    rows = list(qs[: limit + 1])
    next_cursor = _encode(rows[limit - 1].pk) if len(rows) > limit else None
    return {"items": rows[:limit], "next_cursor": next_cursor}
