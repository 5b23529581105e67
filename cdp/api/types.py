"""Field types shared by API schemas, validated the same way the UI's forms validate them."""

from __future__ import annotations

from typing import Annotated, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import models
from pydantic import AfterValidator, Field, PlainValidator, ValidationInfo, WithJsonSchema


def _email(value: str) -> str:
    value = value.strip()
    try:
        validate_email(value)
    except DjangoValidationError as exc:
        raise ValueError(f"{value!r} is not a valid e-mail address") from exc
    return value.lower()


Email = Annotated[str, Field(max_length=254, json_schema_extra={"format": "email"}), AfterValidator(_email)]


def slug_ref(model: type[models.Model], *, what: str, example: str, related: tuple[str, ...] = ("account",)) -> Any:
    """A path parameter naming one of the token's account's `model` rows by slug: resolved before
    the body is read, and an ApiError 404 (never a validation error) for an unknown slug or another
    account's row. Use as the parameter's type: `db: slug_ref(ProfileDatabase, ...)`."""
    from cdp.api.errors import ApiError

    def resolve(slug: Any, info: ValidationInfo) -> Any:
        request = info.context["request"]
        obj = model.objects.for_account(request.auth.account).select_related(*related).filter(slug=str(slug)).first()
        if obj is None:
            raise ApiError(404, f"There is no {what} {str(slug)!r} in this account.")
        return obj

    return Annotated[
        model,
        PlainValidator(resolve),
        WithJsonSchema({"type": "string", "description": f"The {what}'s slug.", "examples": [example]}),
    ]


MAX_ID = 2**63 - 1  # a bigint primary key; larger numbers name nothing (and must not reach the database)


def id_ref(model: type[models.Model], *, what: str, example: int, related: tuple[str, ...] = (),
           queryset: Any = None) -> Any:
    """A path parameter naming one of the token's account's `model` rows by id: resolved before the
    body is read, and an ApiError 404 (never a validation error) for an unknown id, a number out of
    range or another account's row. `queryset(account)` replaces `model.objects.for_account(account)`
    when the route wants more loaded. Use as the parameter's type: `template_id: id_ref(Template, ...)`."""
    from cdp.api.errors import ApiError

    def resolve(value: Any, info: ValidationInfo) -> Any:
        account = info.context["request"].auth.account
        try:
            pk = int(value)
        except (TypeError, ValueError):
            pk = 0
        obj = None
        if 0 < pk <= MAX_ID:
            qs = queryset(account) if queryset is not None else model.objects.for_account(account)
            obj = qs.select_related(*related).filter(pk=pk).first() if related else qs.filter(pk=pk).first()
        if obj is None:
            raise ApiError(404, f"There is no {what} {str(value)[:20]} in this account.")
        return obj

    return Annotated[
        model,
        PlainValidator(resolve),
        WithJsonSchema({"type": "integer", "description": f"The {what}'s id.", "examples": [example]}),
    ]
