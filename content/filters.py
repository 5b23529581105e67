"""The filters user templates may use: an allow-list of Jinja's, plus content.formatting's, each
wrapped so it ticks the render's budget and cannot build more than the limits allow (see
content.sandbox for the whole picture)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import wraps
from types import GeneratorType
from typing import Any

from jinja2 import pass_environment
from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.filters import make_attrgetter
from markupsafe import Markup

from content import formatting
from content.limits import (
    MAX_ALLOC,
    MAX_ITEMS,
    MAX_RANGE,
    MAX_STRING,
    MAX_WRAP_INPUT,
    Budget,
    LimitExceeded,
    _enter_guard,
    _local,
    _loop_guard,
    allocate,
    check_size,
    checked_value,
    deep_size,
    mb,
)


def _wrap(f: Callable[..., Any], *, stringifies: bool = False, pre: Callable[..., None] | None = None,
          heavy: bool = False) -> Callable[..., Any]:
    """A filter that ticks the budget, refuses a stringified container or a result too large.
    `heavy` filters iterate or sort their input in one call nothing can interrupt: their input is
    limited to MAX_ITEMS and the clock is read before each call."""
    ctx_arg = getattr(f, "jinja_pass_arg", None) is not None

    @wraps(f)  # keeps jinja_pass_arg (pass_context / pass_eval_context / pass_environment)
    def filtered(*args: Any, **kwargs: Any) -> Any:
        b = _local.budget
        value = args[1] if ctx_arg else args[0]
        if b is not None:
            b._tick()
            if heavy:
                b._check_clock()
        if heavy and hasattr(value, "__len__") and len(value) > MAX_ITEMS:
            raise LimitExceeded(f"at most {MAX_ITEMS:,} items per filter")
        if stringifies and type(value) is not str:
            check_size(deep_size(value))
        if pre is not None:
            pre(value, *args[2 if ctx_arg else 1:], **kwargs)
        rv = f(*args, **kwargs)
        if isinstance(rv, str):
            n = len(rv)
            if n > MAX_STRING:
                raise LimitExceeded(f"the template builds a text larger than {mb(MAX_STRING)}")
            if b is not None:
                b._alloc -= n
                if b._alloc < 0:
                    raise LimitExceeded(f"the template builds more than {mb(MAX_ALLOC)} of text in all")
        elif isinstance(rv, list):
            allocate(len(checked_value(rv)))
        elif isinstance(rv, GeneratorType) and b is not None:
            return _ticking(rv, b)  # map/select/batch... run lazily inside their consumer: keep counting
        return rv

    return filtered


def _ticking(items: Iterator[Any], b: Budget) -> Iterator[Any]:
    for item in items:
        b._tick()
        yield item


def _int_arg(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        return default


def _pre_center(value: Any, width: Any = 80) -> None:
    check_size(_int_arg(width))


def _pre_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    w = len(width) if isinstance(width, str) else _int_arg(width)
    s = str(value) if isinstance(value, str) else ""
    check_size(len(s) + (s.count("\n") + 1) * max(w, 0))


def _pre_replace(value: Any, old: Any, new: Any, count: Any = None) -> None:
    s, old_s, new_s = str(value) if isinstance(value, str) else "", str(old), str(new)
    occurrences = s.count(old_s) if old_s else len(s) + 1
    if count is not None:
        occurrences = min(occurrences, max(_int_arg(count), 0))
    check_size(len(s) + occurrences * max(len(new_s) - len(old_s), 0))


def _pre_wordwrap(value: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None,
                  *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_WRAP_INPUT:
        raise LimitExceeded(f"wordwrap accepts at most {MAX_WRAP_INPUT:,} characters")
    wrapstring = kwargs.get("wrapstring", wrapstring)
    s = value if isinstance(value, str) else ""
    lines = min(len(s), len(s) // max(_int_arg(kwargs.get("width", width), 79), 1) + s.count(" ") + s.count("\n")) + 1
    check_size(len(s) + lines * len(str(wrapstring or "\n")))


def _pre_count(value: Any, n: Any = 1, *args: Any, **kwargs: Any) -> None:
    if _int_arg(n) > MAX_RANGE:
        raise LimitExceeded(f"at most {MAX_RANGE:,} groups")


def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    total = len(str(d)) * len(items)
    for item in items:
        total += len(item) if type(item) is str else deep_size(item)
        if total > MAX_STRING:
            check_size(total)
    return JINJA_FILTERS["join"](eval_ctx, items, d, attribute)


_join.jinja_pass_arg = JINJA_FILTERS["join"].jinja_pass_arg  # type: ignore[attr-defined]


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja's sum, for numbers only: adding lists or strings one by one is quadratic."""
    items = list(iterable)
    if attribute is not None:
        getter = make_attrgetter(environment, attribute)
        items = [getter(x) for x in items]
    for item in (start, *items):
        if isinstance(item, bool) or not isinstance(item, (int, float, Decimal)):
            raise LimitExceeded("sum adds numbers only")
    return sum(items, start)


def striptags(value: Any) -> str:
    """Linear-time tag stripping (markupsafe's rebuilds the string per tag: quadratic on big input)."""
    s = str(value)
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        lt = s.find("<", i)
        if lt == -1:
            out.append(s[i:])
            break
        out.append(s[i:lt])
        if s.startswith("<!--", lt):
            end = s.find("-->", lt + 4)
            if end == -1:
                out.append(s[lt:])
                break
            i = end + 3
            continue
        gt = s.find(">", lt)
        if gt == -1:
            out.append(s[lt:])
            break
        i = gt + 1
    return Markup(" ".join("".join(out).split())).unescape()  # noqa: S704 - unescaping, not marking safe


# Allowed Jinja filters, and how each is guarded. Not allowed, on purpose:
# - attr: getattr by a computed name, the classic way round attribute checks;
# - format: str.format / %-formatting with widths and attribute lookups (sandbox escapes in the past);
# - xmlattr: turns data into markup attributes; pprint: reprs internals; tojson: emits unescaped
#   JSON marked safe, wrong in most HTML contexts and never needed in a message;
# - random, lipsum-like generators, urlize, filesizeformat, forceescape: not needed; fewer is safer.
_STRINGIFY = {"capitalize", "escape", "e", "lower", "string", "title", "trim", "truncate", "upper", "urlencode",
              "wordcount", "safe", "striptags"}
_ALLOWED = ["default", "d", "upper", "lower", "title", "capitalize", "trim", "truncate", "length", "count", "first",
            "last", "round", "int", "float", "abs", "escape", "e", "urlencode", "wordcount", "sort", "unique", "min",
            "max", "sum", "list", "safe", "reverse", "string", "dictsort", "items", "map", "select", "reject",
            "selectattr", "rejectattr", "groupby"]
_HEAVY = {"sort", "unique", "list", "map", "select", "reject", "selectattr", "rejectattr", "groupby", "dictsort",
          "join", "sum", "min", "max", "batch", "slice", "reverse", "items"}
_PRE = {"center": _pre_center, "indent": _pre_indent, "replace": _pre_replace, "wordwrap": _pre_wordwrap,
        "batch": _pre_count, "slice": _pre_count}


def build_filters() -> dict[str, Callable[..., Any]]:
    filters: dict[str, Callable[..., Any]] = {}
    for name in _ALLOWED:
        filters[name] = _wrap(JINJA_FILTERS[name], stringifies=name in _STRINGIFY, heavy=name in _HEAVY)
    for name, pre in _PRE.items():
        filters[name] = _wrap(JINJA_FILTERS[name], stringifies=name in ("center", "indent", "replace"), pre=pre,
                              heavy=name in _HEAVY)
    filters["join"] = _wrap(_join, heavy=True)
    filters["sum"] = _wrap(_sum, heavy=True)
    filters["striptags"] = _wrap(striptags, stringifies=True)
    for name, f in formatting.FILTERS.items():
        filters[name] = _wrap(f)
    filters["_loop"] = _loop_guard
    filters["_enter"] = _enter_guard
    return filters
