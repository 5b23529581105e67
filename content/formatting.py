"""Template filters that format dates, numbers and plurals in the recipient's timezone and language.

Timezone: the profile's `timezone` field when it names a zone, else the account's. Language: the
profile's `language` field when it is one of settings.LANGUAGES, else the account's. Both are read
from the render context (`profile`, `account`), so the filters work on the plain-data context alone.

Formats are Django's: a setting name ("DATE_FORMAT", "SHORT_DATE_FORMAT", "DATETIME_FORMAT",
"TIME_FORMAT"...) is localised; anything else is a `django.utils.dateformat` format string
("j F Y", "H:i").
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.utils import formats, translation
from jinja2 import pass_context
from jinja2.runtime import Context

LANGUAGE_CODES = frozenset(code for code, _ in settings.LANGUAGES)
MAX_FORMAT = 200  # characters of a format string
MAX_DECIMALS = 10

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "RUB": "₽", "JPY": "¥", "CNY": "¥", "INR": "₹",
                    "UAH": "₴", "KZT": "₸", "TRY": "₺", "BRL": "R$", "CAD": "CA$", "AUD": "A$"}


@lru_cache(maxsize=512)
def zone(name: str) -> zoneinfo.ZoneInfo | None:
    if not name or len(name) > 64:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def _get(ctx: Context, var: str, key: str) -> Any:
    d = ctx.resolve_or_missing(var)
    return d.get(key) if isinstance(d, dict) else None


def recipient_zone(ctx: Context) -> zoneinfo.ZoneInfo:
    return zone(_get(ctx, "profile", "timezone") or "") or zone(_get(ctx, "account", "timezone") or "") or UTC


def recipient_language(ctx: Context) -> str:
    for var in ("profile", "account"):
        lang = _get(ctx, var, "language")
        if isinstance(lang, str) and lang in LANGUAGE_CODES:
            return lang
    return settings.LANGUAGE_CODE.split("-")[0]


def _coerce(value: Any) -> date | datetime | dtime | None:
    if isinstance(value, (date, dtime)):  # datetime is a date
        return value
    if isinstance(value, str) and 0 < len(value) <= 40:
        text = value.strip().replace("Z", "+00:00")
        for parse in (datetime.fromisoformat, date.fromisoformat, dtime.fromisoformat):
            try:
                return parse(text)
            except ValueError:
                continue
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e11:
        return datetime.fromtimestamp(value, UTC)
    return None


def _format(ctx: Context, value: Any, fmt: str, default_fmt: str) -> Any:
    v = _coerce(value)
    if v is None:
        return value if value is not None else ""
    fmt = str(fmt or default_fmt)[:MAX_FORMAT]
    if isinstance(v, datetime):
        v = v.replace(tzinfo=UTC) if v.tzinfo is None else v
        v = v.astimezone(recipient_zone(ctx))
    with translation.override(recipient_language(ctx)):
        if isinstance(v, dtime):
            return formats.time_format(v, fmt)
        return formats.date_format(v, fmt)


@pass_context
def f_date(ctx: Context, value: Any, fmt: str = "DATE_FORMAT") -> Any:
    """`{{ profile.birthday|date }}`, `{{ data.order_at|date("j F Y") }}`."""
    return _format(ctx, value, fmt, "DATE_FORMAT")


@pass_context
def f_datetime(ctx: Context, value: Any, fmt: str = "DATETIME_FORMAT") -> Any:
    """A datetime (or ISO string) in the recipient's timezone: `{{ data.at|datetime("j M H:i") }}`."""
    return _format(ctx, value, fmt, "DATETIME_FORMAT")


@pass_context
def f_time(ctx: Context, value: Any, fmt: str = "TIME_FORMAT") -> Any:
    v = _coerce(value)
    if isinstance(v, datetime):
        v = (v.replace(tzinfo=UTC) if v.tzinfo is None else v).astimezone(recipient_zone(ctx)).time()
    elif not isinstance(v, dtime):
        return value if value is not None else ""
    with translation.override(recipient_language(ctx)):
        return formats.time_format(v, str(fmt or "TIME_FORMAT")[:MAX_FORMAT])


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not d.is_finite() or abs(d.adjusted()) > 30:
        return None
    return d


@pass_context
def f_number(ctx: Context, value: Any, decimals: int = 0) -> Any:
    """Grouped and localised: 1234.5|number(2) -> "1,234.50" (en), "1 234,50" (ru)."""
    d = _number(value)
    if d is None:
        return value if value is not None else ""
    decimals = max(0, min(int(decimals), MAX_DECIMALS))
    with translation.override(recipient_language(ctx)):
        return formats.number_format(round(d, decimals), decimals, use_l10n=True, force_grouping=True)


@pass_context
def f_money(ctx: Context, value: Any, currency: str = "USD", decimals: int = 2) -> Any:
    """`{{ data.total|money("EUR") }}` -> "€1,234.50" (en), "1 234,50 €" (ru and other languages)."""
    amount = f_number(ctx, value, decimals)
    if _number(value) is None:
        return amount
    code = str(currency or "").upper()[:3]
    symbol = CURRENCY_SYMBOLS.get(code, code)
    lang = recipient_language(ctx)
    if lang == "en":
        return f"{symbol}{amount}" if code in CURRENCY_SYMBOLS else f"{amount} {code}"
    return f"{amount}\u00a0{symbol}"


@pass_context
def f_plural(ctx: Context, value: Any, *forms: str) -> str:
    """The word form for a count: `{{ n }} {{ n|plural("item", "items") }}`; Russian takes three
    forms (one, few, many): `n|plural("товар", "товара", "товаров")`."""
    if not forms:
        return ""
    try:
        n = abs(int(value))
    except (TypeError, ValueError, OverflowError):
        return str(forms[-1])
    if recipient_language(ctx) == "ru" and len(forms) >= 3:
        if n % 10 == 1 and n % 100 != 11:
            return str(forms[0])
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return str(forms[1])
        return str(forms[2])
    return str(forms[0]) if n == 1 else str(forms[1] if len(forms) > 1 else forms[0])


FILTERS = {"date": f_date, "datetime": f_datetime, "time": f_time, "number": f_number, "money": f_money,
           "plural": f_plural}
