"""Per-render limits for user templates (content.sandbox): the budget a render spends, and the
guards the compiled templates call. Every refusal is a LimitExceeded with a message for people.

The budget lives in a thread-local (renders in a threaded web server do not share it); outside a
render (compile-time constant folding) there is none and the guards let values through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

try:
    from markupsafe._speedups import _escape_inner
except ImportError:  # pragma: no cover - markupsafe without its C speedups
    from markupsafe._native import _escape_inner  # type: ignore[no-redef]

MAX_OUTPUT = 1_000_000  # characters a render may produce (all parts of one message together)
MAX_STRING = 1_000_000  # characters of any one string a template builds
MAX_ALLOC = 16_000_000  # characters of text (and list items) a render may build, in all
MAX_STEPS = 100_000  # loop iterations + calls + filter calls per render
MAX_RANGE = 10_000  # items range() may produce per render, in total
MAX_INT_BITS = 16_384  # bits of an integer that `*` or `**` may produce
MAX_ITEMS = 100_000  # items a sorting/iterating filter accepts (one call is never interrupted)
MAX_WRAP_INPUT = 200_000  # characters wordwrap accepts (textwrap is slow on huge inputs)
TIME_LIMIT = 2.0  # seconds per render
DEADLINE_EVERY = 63  # check the clock every 64 steps (a clock read costs ~50 ns)


class LimitExceeded(Exception):
    """A render went past one of the limits above; the message says which, for the person."""


def mb(n: int) -> str:
    return f"{n / 1_000_000:g} MB"


class Budget:
    """What one render may still spend. Attributes start with "_" so templates cannot reach them."""

    __slots__ = ("_alloc", "_deadline", "_output", "_range", "_steps", "_time_limit")

    def __init__(self, time_limit: float = TIME_LIMIT) -> None:
        self._time_limit = time_limit
        self._deadline = time.monotonic() + time_limit
        self._steps = MAX_STEPS
        self._output = MAX_OUTPUT
        self._range = MAX_RANGE
        self._alloc = MAX_ALLOC

    def _tick(self) -> None:
        self._steps -= 1
        if not self._steps & DEADLINE_EVERY:
            if self._steps < 0:
                raise LimitExceeded(f"the template ran more than {MAX_STEPS:,} loop iterations and calls")
            if time.monotonic() > self._deadline:
                raise LimitExceeded(f"template took longer than {self._time_limit:g} s")

    def _check_clock(self) -> None:
        if time.monotonic() > self._deadline:
            raise LimitExceeded(f"template took longer than {self._time_limit:g} s")

    def _charge(self, n: int) -> None:
        self._output -= n
        if self._output < 0:
            raise LimitExceeded(f"output is larger than {mb(MAX_OUTPUT)}")


class _Local(threading.local):
    budget: Budget | None = None  # a class attribute: None in every thread until a render begins


_local = _Local()


def current() -> Budget | None:
    return _local.budget


def begin(time_limit: float = TIME_LIMIT) -> Budget:
    b = Budget(time_limit)
    _local.budget = b
    return b


def end() -> None:
    _local.budget = None


def checked_concat(pieces: tuple[str, ...]) -> str:
    """A run of a part's top-level output, joined and charged to the output budget."""
    out = "".join(pieces)
    b = _local.budget
    if b is not None:
        b._output -= len(out)
        if b._output < 0:
            raise LimitExceeded(f"output is larger than {mb(MAX_OUTPUT)}")
    return out


def out_escape(value: Any) -> str:
    """`{{ expression }}` at the top level of an autoescaped part: escape and charge its size.
    (Plain str, not Markup: the top level's output is only joined.)"""
    if type(value) is str:
        rv = _escape_inner(value)
    elif value is None:  # a field that is not set prints as nothing, not "None"
        return ""
    elif hasattr(value, "__html__"):
        rv = value.__html__()
    else:
        if type(value) is not int:
            check_size(deep_size(value))
        rv = _escape_inner(str(value))
    b = _local.budget
    if b is not None:
        b._output -= len(rv)
        if b._output < 0:
            raise LimitExceeded(f"output is larger than {mb(MAX_OUTPUT)}")
    return rv


def out_str(value: Any) -> str:
    """`{{ expression }}` at the top level of a text part: charge its size."""
    if type(value) is not str:
        if value is None:
            return ""
        if type(value) is not int:
            check_size(deep_size(value))
        value = str(value)
    b = _local.budget
    if b is not None:
        b._output -= len(value)
        if b._output < 0:
            raise LimitExceeded(f"output is larger than {mb(MAX_OUTPUT)}")
    return value


# --- sizes ------------------------------------------------------------------------------------------


_VIEWS = (type({}.items()), type({}.keys()), type({}.values()))


def deep_size(value: Any, limit: int = MAX_STRING, _seen: dict[int, tuple[Any, int, bool]] | None = None) -> int:
    """About how many characters str(value) has, stopping early once past `limit` (containers
    that hold the same big string many times would otherwise stringify to gigabytes).

    A container met again (shared references: `{% set a = [a, a] %}`) is counted from what its
    first walk found, so a structure doubled 20 times costs 20 walks, not a million leaves; the
    walk keeps each container it counted (`_seen`: id -> (it, size, whether the walk finished)),
    so no id is reused by another object while it runs."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset, dict, *_VIEWS)):
        if _seen is None:
            _seen = {}
        else:
            seen = _seen.get(id(value))
            if seen is not None and (seen[2] or seen[1] > limit):  # exact, or already past this limit
                return seen[1]
        total, finished = 2, True
        items: Iterable[Any] = value.items() if isinstance(value, dict) else value
        for item in items:
            total += deep_size(item, limit - total, _seen) + 2
            if total > limit:
                finished = False
                break
        _seen[id(value)] = (value, total, finished)
        return total
    if type(value) is int:
        return int(value.bit_length() * 0.302) + 2  # digits: a list of one big number many times is long
    return 24  # other numbers, dates, None, Undefined: short


def checked_value(value: Any) -> Any:
    """A list, tuple or dict a template builds (a literal, a filter's list): refused when it would
    print larger than MAX_STRING. Shared references double a structure's size with each
    `{% set a = [a, a] %}`, and one comparison (`a == b`) or str() of it would then run for hours
    in C, where no deadline reaches."""
    if deep_size(value) > MAX_STRING:
        raise LimitExceeded(f"the template builds a list larger than {mb(MAX_STRING)}")
    return value


def check_size(n: int) -> None:
    """About to build a text (or list) of `n` characters: refuse it past MAX_STRING, and charge it
    to the render's allocation budget (many allocations below MAX_STRING each still add up)."""
    if n > MAX_STRING:
        raise LimitExceeded(f"the template builds a text larger than {mb(MAX_STRING)}")
    allocate(n)


def allocate(n: int) -> None:
    b = _local.budget
    if b is not None:
        b._alloc -= n
        if b._alloc < 0:
            raise LimitExceeded(f"the template builds more than {mb(MAX_ALLOC)} of text in all")


def _checked_join(parts: tuple[Any, ...], markup: bool) -> str:
    total = 0
    for p in parts:
        total += len(p) if type(p) is str else deep_size(p)
    check_size(total)
    if markup:
        return Markup("").join(escape(p) for p in parts)
    return "".join(str(p) for p in parts)


def finalize(value: Any) -> Any:
    """Every `{{ expression }}` that is buffered (in a macro, a call or set block, a fragment) passes
    here: charge its size to the output budget (see _CodeGenerator.visit_Output)."""
    if value is None:
        return ""
    b = _local.budget
    if b is not None:
        b._charge(len(value) if type(value) is str else deep_size(value))
    return value


# --- guards the rewritten templates call ---------------------------------------------------------


@pass_context  # a context filter is never constant-folded at compile time
def _loop_guard(ctx: Context, iterable: Any, static: int) -> Iterator[Any]:
    b = _local.budget
    if b is None:  # compile-time use: nothing to guard
        yield from iterable
        return
    if isinstance(iterable, str):
        check_size(len(iterable))
    for item in iterable:
        b._tick()
        b._output -= static
        if b._output < 0:
            raise LimitExceeded(f"output is larger than {mb(MAX_OUTPUT)}")
        yield item


@pass_context
def _enter_guard(ctx: Context, value: str, static: int) -> str:
    b = _local.budget
    if b is not None:
        b._tick()
        b._charge(static)
    return value


def safe_range(*args: int) -> range:
    rng = range(*args)
    b = _local.budget
    n = len(rng)
    if n > MAX_RANGE or (b is not None and n > b._range):
        raise LimitExceeded(f"range is too large (at most {MAX_RANGE:,} items per message)")
    if b is not None:
        b._range -= n
    return rng
