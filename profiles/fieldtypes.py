"""Field types: how a value from a CSV cell, a form or a JSON body becomes a stored value.

`convert(type, raw, ctx)` returns the value to store (JSON-ready: str, int, float, bool, list,
dict) or None for "empty", and raises `FieldValueError` with a reason a person can act on.
Stored forms are chosen so that ordering in the database is meaningful: dates as "YYYY-MM-DD",
datetimes as UTC "YYYY-MM-DDTHH:MM:SSZ", numbers as JSON numbers (jsonb compares them
numerically), e-mail lowercased, phones in E.164.

Hot path: an import calls these millions of times, so each is a small function without
allocation-heavy helpers; e-mail takes a fast path for plain ASCII addresses and falls back to
email-validator (no DNS) for anything unusual.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import phonenumbers
from django.db import models
from email_validator import EmailNotValidError, validate_email


class FieldType(models.TextChoices):
    STRING = "string", "String"
    TEXT = "text", "Text"
    INTEGER = "integer", "Integer"
    DECIMAL = "decimal", "Decimal"
    BOOLEAN = "boolean", "Yes / no"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    EMAIL = "email", "E-mail"
    PHONE = "phone", "Phone"
    ENUM = "enum", "One of a list"
    LIST = "list", "List of strings"
    JSON = "json", "JSON"


class FieldValueError(ValueError):
    """A value that does not fit its field; `str(exc)` says why, for a person."""


@dataclass(frozen=True)
class Context:
    """What conversion needs beyond the value: the account's defaults and the field's choices."""

    region: str = "US"
    tz: zoneinfo.ZoneInfo = field(default_factory=lambda: zoneinfo.ZoneInfo("UTC"))
    choices: tuple[str, ...] = ()


MAX_STRING = 1000
MAX_TEXT = 100_000
MAX_LIST_ITEMS = 200
MAX_LIST_ITEM = 200
MAX_JSON_BYTES = 64 * 1024
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _text(raw: Any, limit: int, what: str) -> str:
    if isinstance(raw, bool | dict | list):
        raise FieldValueError(f"expected {what}, got {type(raw).__name__}")
    value = str(raw).strip()
    if len(value) > limit:
        raise FieldValueError(f"longer than {limit:,} characters ({len(value):,})")
    if "\x00" in value:
        raise FieldValueError("contains a NUL character")
    return value


def to_string(raw: Any, ctx: Context) -> str:
    return _text(raw, MAX_STRING, "text")


def to_text(raw: Any, ctx: Context) -> str:
    return _text(raw, MAX_TEXT, "text")


_INT_RE = re.compile(r"[+-]?\d{1,19}")


def to_integer(raw: Any, ctx: Context) -> int:
    if isinstance(raw, bool):
        raise FieldValueError("expected a whole number, got true/false")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float):
        if not raw.is_integer():
            raise FieldValueError(f"{raw} is not a whole number")
        value = int(raw)
    else:
        text = str(raw).strip().replace("_", "")
        if not _INT_RE.fullmatch(text):
            raise FieldValueError(f"{_show(raw)} is not a whole number")
        value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise FieldValueError(f"{value} is out of range (64-bit integer)")
    return value


def to_decimal(raw: Any, ctx: Context) -> float | int:
    if isinstance(raw, bool):
        raise FieldValueError("expected a number, got true/false")
    if isinstance(raw, int):
        return to_integer(raw, ctx)
    text = str(raw).strip()
    if isinstance(raw, str) and "," in text:
        if "." in text or text.count(",") > 1:
            raise FieldValueError(f"{_show(raw)} is not a number (use . as the decimal separator, no thousands separators)")
        text = text.replace(",", ".")
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise FieldValueError(f"{_show(raw)} is not a number") from None
    if not d.is_finite():
        raise FieldValueError(f"{_show(raw)} is not a finite number")
    digits = len(d.normalize().as_tuple().digits)
    if digits > 15:
        raise FieldValueError(f"{_show(raw)} has more than 15 significant digits")
    if d == d.to_integral_value() and abs(d) <= INT_MAX:
        return int(d)
    return float(d)


_TRUE = frozenset({"true", "t", "yes", "y", "1", "on", "ja", "oui", "si", "да"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off", "nein", "non", "нет"})


def to_boolean(raw: Any, ctx: Context) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise FieldValueError(f"{_show(raw)} is not yes/no (use true/false, yes/no or 1/0)")


_DATE_DOTTED = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")


def to_date(raw: Any, ctx: Context) -> str:
    if isinstance(raw, datetime):
        return raw.date().isoformat()
    if isinstance(raw, date):
        return raw.isoformat()
    text = _text(raw, 40, "a date")
    try:
        if len(text) == 10 and text[4] == "-":
            return date.fromisoformat(text).isoformat()
        m = _DATE_DOTTED.fullmatch(text)
        if m:
            return date(int(m[3]), int(m[2]), int(m[1])).isoformat()
        if len(text) > 10 and text[4] == "-" and text[10] in "T ":
            return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise FieldValueError(f"{_show(raw)} is not a real date") from None
    raise FieldValueError(f"{_show(raw)} is not a date (use YYYY-MM-DD or DD.MM.YYYY)")


def to_datetime(raw: Any, ctx: Context) -> str:
    if isinstance(raw, bool):
        raise FieldValueError("expected a date and time, got true/false")
    if isinstance(raw, int | float):
        moment = _from_epoch(raw)
    elif isinstance(raw, datetime):
        moment = raw if raw.tzinfo else raw.replace(tzinfo=ctx.tz)
    else:
        text = _text(raw, 60, "a date and time")
        if text.isdigit():
            moment = _from_epoch(int(text))
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise FieldValueError(
                    f"{_show(raw)} is not a date and time (use ISO 8601, e.g. 2024-05-01T10:30:00+02:00)"
                ) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=ctx.tz)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_epoch(seconds: float) -> datetime:
    if seconds > 10**11:  # milliseconds
        seconds = seconds / 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise FieldValueError(f"{seconds} is not a valid Unix time") from None


# Addresses of this shape are valid for email-validator too (unless their domain is one of the
# special-use names it refuses), so they skip the slower full check.
_EMAIL_FAST = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test", "example", "internal", "home.arpa", "lan", "intranet", "corp", "private", "home")


def to_email(raw: Any, ctx: Context) -> str:
    text = _text(raw, 320, "an e-mail address").lower()
    if len(text) <= 254 and _EMAIL_FAST.fullmatch(text):
        tld = text.rsplit(".", 1)[1]
        if tld not in _SPECIAL_USE:
            return text
    return _email_slow(text)


@lru_cache(maxsize=4096)
def _email_slow(text: str) -> str:
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise FieldValueError(f"{_show(text)} is not a valid e-mail address: {exc}") from None
    return result.normalized.lower()


def to_phone(raw: Any, ctx: Context) -> str:
    if isinstance(raw, bool):
        raise FieldValueError("expected a phone number, got true/false")
    text = _text(raw, 40, "a phone number")
    if text[:1] == "+" and _E164.fullmatch(text):
        fast = _phone_e164(text)
        if fast is not None:
            return fast
    try:
        number = phonenumbers.parse(text, ctx.region or None)
    except phonenumbers.NumberParseException:
        raise FieldValueError(f"{_show(raw)} is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        where = f" in {ctx.region}" if not text.startswith("+") else ""
        raise FieldValueError(f"{_show(raw)} is not a valid phone number{where} (write it with +country code)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_E164 = re.compile(r"\+[1-9][0-9]{5,16}")


def _phone_e164(text: str) -> str | None:
    """A number already in E.164, at a tenth of parse + is_valid_number's cost: the same country
    code split and validity rule as phonenumbers (general pattern and one number type's pattern,
    with their possible lengths) on precompiled patterns. None where phonenumbers could do more
    (national prefix, leading zero, a calling code shared by several regions)."""
    digits = text[1:]
    for n in (1, 2, 3):
        rules = _phone_rules(int(digits[:n]))
        if rules is not False:
            break
    else:
        return None
    rest = digits[n:]
    if rules is None or not 2 <= len(rest) <= 17 or rest[0] == "0" or (rules[0] and rules[0].match(rest)):
        return None
    size, (lengths, pattern) = len(rest), rules[1]
    if not (lengths is None or size in lengths) or not pattern.fullmatch(rest):
        return None
    for lengths, pattern in rules[2]:
        if (lengths is None or size in lengths) and pattern.fullmatch(rest):
            return text
    return None


@lru_cache(maxsize=512)
def _phone_rules(cc: int) -> Any:
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if not regions:
        return False
    if len(regions) != 1 or regions[0] == "001":
        return None
    meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(cc, regions[0])
    if meta is None or meta.general_desc is None:
        return None

    def rule(desc: Any) -> tuple[Any, re.Pattern[str]]:
        return (frozenset(desc.possible_length) or None, re.compile(desc.national_number_pattern or ""))

    kinds = ("mobile", "fixed_line", "toll_free", "premium_rate", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail")
    prefix = re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None
    return prefix, rule(meta.general_desc), [rule(getattr(meta, k)) for k in kinds if getattr(meta, k) is not None]


def to_enum(raw: Any, ctx: Context) -> str:
    text = _text(raw, MAX_STRING, "one of the listed values")
    if text in ctx.choices:
        return text
    folded = text.casefold()
    for choice in ctx.choices:
        if choice.casefold() == folded:
            return choice
    allowed = ", ".join(ctx.choices[:20]) + (", …" if len(ctx.choices) > 20 else "")
    raise FieldValueError(f"{_show(raw)} is not one of: {allowed}")


_LIST_SPLIT = re.compile(r"\s*[,;|]\s*")


def to_list(raw: Any, ctx: Context) -> list[str]:
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError:
                raise FieldValueError(f"{_show(text)} is not a JSON list") from None
        else:
            raw = [p for p in _LIST_SPLIT.split(text) if p]
    if not isinstance(raw, list | tuple):
        raise FieldValueError("expected a list of strings")
    if len(raw) > MAX_LIST_ITEMS:
        raise FieldValueError(f"more than {MAX_LIST_ITEMS} items")
    out = []
    for item in raw:
        if isinstance(item, dict | list) or item is None:
            raise FieldValueError("list items must be strings")
        value = str(item).strip()
        if len(value) > MAX_LIST_ITEM:
            raise FieldValueError(f"an item is longer than {MAX_LIST_ITEM} characters")
        if value and value not in out:
            out.append(value)
    return out


def to_json(raw: Any, ctx: Context) -> Any:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise FieldValueError(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    try:
        # NaN and Infinity: Python's json reads and writes them, PostgreSQL's jsonb refuses them.
        size = len(json.dumps(raw, separators=(",", ":"), allow_nan=False))
    except ValueError:
        raise FieldValueError("NaN and Infinity are not valid JSON numbers") from None
    if size > MAX_JSON_BYTES:
        raise FieldValueError(f"larger than {MAX_JSON_BYTES // 1024} KB")
    return raw


def to_timezone(raw: Any, ctx: Context) -> str:
    text = _text(raw, 64, "a timezone")
    if text in _timezones():
        return text
    lowered = {tz.lower(): tz for tz in _timezones()}
    if text.lower() in lowered:
        return lowered[text.lower()]
    raise FieldValueError(f"{_show(raw)} is not a timezone name (such as Europe/Berlin)")


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


CONVERTERS: dict[str, Callable[[Any, Context], Any]] = {
    FieldType.STRING: to_string,
    FieldType.TEXT: to_text,
    FieldType.INTEGER: to_integer,
    FieldType.DECIMAL: to_decimal,
    FieldType.BOOLEAN: to_boolean,
    FieldType.DATE: to_date,
    FieldType.DATETIME: to_datetime,
    FieldType.EMAIL: to_email,
    FieldType.PHONE: to_phone,
    FieldType.ENUM: to_enum,
    FieldType.LIST: to_list,
    FieldType.JSON: to_json,
}


def is_empty(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip()) or (isinstance(raw, list | dict) and not raw)


def convert(field_type: str, raw: Any, ctx: Context, *, converter: Callable[[Any, Context], Any] | None = None) -> Any:
    """The stored form of `raw`, or None when it is empty. Raises FieldValueError."""
    if is_empty(raw):
        return None
    return (converter or CONVERTERS[field_type])(raw, ctx)


def can_convert_all(field_type: str, values: list[Any], ctx: Context) -> tuple[bool, str]:
    """Whether every stored value converts to `field_type`; on failure, the first bad value and why."""
    converter = CONVERTERS[field_type]
    for value in values:
        if value is None:
            continue
        try:
            converter(value, ctx)
        except FieldValueError as exc:
            return False, f"{_show(value)}: {exc}"
    return True, ""


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text[:60] + ("…" if len(text) > 60 else ""))
