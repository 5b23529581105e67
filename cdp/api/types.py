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
