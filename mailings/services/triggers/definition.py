"""Trigger definitions (`Mailing.trigger`): their shapes, and the property filters events must pass
(typed comparisons: the filter's value decides whether a property compares as a number, a
boolean, an instant or text)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime

from mailings.models import Mailing
from resources.models import Status

ON_EVENT, ON_SUBSCRIPTION, ON_CONFIRMATION, ON_API = "event", "subscription", "confirmation", "api"
# A scenario's send step: {"on": "scenario", "scenario_id", "step"}; made and changed by the scenario's
# publishing only, fired only by the step (never by events or the mailings API).
ON_SCENARIO = "scenario"
TRIGGER_KINDS = (ON_EVENT, ON_SUBSCRIPTION, ON_CONFIRMATION, ON_API, ON_SCENARIO)
# The ops a filter may use (mailings.services.lifecycle.validation.TRIGGER_OPS validates them).
FILTER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "in", "exists")
SUBSCRIPTION_TYPES = frozenset({"subscription.subscribed", "subscription.changed"})
# A subscription trigger fires when a subscription becomes sendable from one of these (a new one is
# "subscription.subscribed"; "subscription.changed" from these is a confirmation or a comeback;
# from suspended it is the end of a pause, which is no reason to say welcome again).
WELCOME_FROM = frozenset({Status.UNCONFIRMED, Status.UNSUBSCRIBED})


def delay_of(mailing: Mailing) -> timedelta:
    seconds = (mailing.trigger or {}).get("delay_seconds") or 0
    return timedelta(seconds=seconds if isinstance(seconds, int) and seconds > 0 else 0)


# --- property filters ----------------------------------------------------------------------------

_MISSING = object()


def _lookup(props: Any, path: str) -> Any:
    """The value at a dotted path ("items.0.sku"); _MISSING when some step is not there."""
    value = props
    for step in path.split("."):
        if isinstance(value, Mapping) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return _MISSING
    return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            return None
    else:
        return None
    return d if d.is_finite() else None


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _moment(value: Any) -> datetime | None:
    """A date or datetime from ISO text (a bare date is its UTC midnight); naive times are UTC."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and _DATE_RE.match(value.strip()):
        text = value.strip()
        try:
            dt = parse_datetime(text) or (datetime.combine(d, datetime.min.time()) if (d := parse_date(text)) else None)
        except ValueError:
            return None
        if dt is None:
            return None
    else:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def _typed(actual: Any, wanted: Any) -> tuple[Any, Any] | None:
    """(actual, wanted) converted to one comparable type, the filter's value deciding: a number
    compares numerically ("59.90" > 50), true/false as booleans, an ISO date or time as instants,
    anything else as text. None when the property cannot be read as that type."""
    if isinstance(wanted, bool):
        b = _boolean(actual)
        return None if b is None else (b, wanted)
    if isinstance(wanted, int | float | Decimal):
        n, w = _number(actual), _number(wanted)
        return None if n is None or w is None else (n, w)
    if isinstance(wanted, str):
        w_moment = _moment(wanted)
        if w_moment is not None:
            a_moment = _moment(actual)
            if a_moment is not None:
                return a_moment, w_moment
        if isinstance(actual, int | float | Decimal) and not isinstance(actual, bool):
            w_num = _number(wanted)
            if w_num is not None:
                return _number(actual), w_num
        if isinstance(actual, dict | list) or actual is None:
            return None
        return (str(actual).lower() if isinstance(actual, bool) else str(actual)), wanted
    if wanted is None:
        return actual, None
    return (actual, wanted) if type(actual) is type(wanted) else None


def filter_matches(props: Any, f: Mapping[str, Any]) -> bool:
    """Whether an event's properties pass one filter {property, op, value}."""
    actual = _lookup(props, str(f.get("property", "")))
    op, wanted = f.get("op"), f.get("value")
    if op == "exists":
        present = actual is not _MISSING and actual is not None
        return present if wanted is None or wanted is True else not present
    if op == "in":
        if actual is _MISSING or actual is None or not isinstance(wanted, list):
            return False
        return any((pair := _typed(actual, w)) is not None and pair[0] == pair[1] for w in wanted)
    if op == "contains":
        if actual is _MISSING or actual is None:
            return False
        if isinstance(actual, list):
            return any((pair := _typed(item, wanted)) is not None and pair[0] == pair[1] for item in actual)
        if isinstance(actual, dict):
            return str(wanted) in actual
        return str(wanted).casefold() in str(actual).casefold()
    if actual is _MISSING:
        return op == "ne"
    pair = _typed(actual, wanted)
    if pair is None:
        return op == "ne"
    a, w = pair
    try:
        if op == "eq":
            return a == w
        if op == "ne":
            return a != w
        if op == "gt":
            return a > w
        if op == "gte":
            return a >= w
        if op == "lt":
            return a < w
        if op == "lte":
            return a <= w
    except TypeError:  # None against a number, naive against aware: no order, so no match
        return False
    return False


def filters_match(props: Any, filters: Iterable[Mapping[str, Any]] | None) -> bool:
    return all(filter_matches(props, f) for f in (filters or []))


