"""Field types shared by API schemas, validated the same way the UI's forms validate them."""

from __future__ import annotations

from typing import Annotated

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from pydantic import AfterValidator, Field


def _email(value: str) -> str:
    value = value.strip()
    try:
        validate_email(value)
    except DjangoValidationError as exc:
        raise ValueError(f"{value!r} is not a valid e-mail address") from exc
    return value.lower()


Email = Annotated[str, Field(max_length=254, json_schema_extra={"format": "email"}), AfterValidator(_email)]
