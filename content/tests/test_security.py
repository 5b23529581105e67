"""F14 regressions: structures that grow by shared references, and numbers that print long, are
refused within the render's limits instead of running for hours inside one C call."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from content import limits, sandbox
from content.rendering import RenderError
from content.tests.core_fixtures import render_text


def doubled(name: str, levels: int, step: str = "[{n}, {n}]") -> str:
    """`{% set a = [a, a] %}` `levels` times: 2**levels leaves from `levels` lines."""
    return f"{{% set {name} = [1] %}}" + "".join(f"{{% set {name} = {step.format(n=name)} %}}" for _ in range(levels))


@pytest.mark.parametrize("expression", ["a == b", "a < b", "a in [b]", "[a, b]|max|length", "a.count(b)",
                                        "{'k': a}.items()|string|length", "a.index(b)"])
def test_a_structure_doubled_by_shared_references_is_refused_quickly(expression):
    # 24 levels: 16M leaves. Each level that the lists share costs nothing to build, but comparing
    # or printing two of them walks every leaf in C where the deadline cannot stop it (at 40 levels,
    # hours). It must be refused when it is built, within the time limit.
    source = doubled("a", 24) + doubled("b", 24) + f"{{{{ {expression} }}}}"
    start = time.process_time()
    with pytest.raises(RenderError) as exc:
        render_text(source)
    assert "list larger than 1 MB" in exc.value.message
    assert time.process_time() - start < sandbox.TIME_LIMIT
    assert render_text("Hi {{ profile.first_name }}") == "Hi Olivia"


@pytest.mark.parametrize("step", ["[0]|batch(3, {n})|list", "['', '']|map('default', {n}, true)|list",
                                  "({n}, {n})", "{{'x': {n}, 'y': {n}}}"])
def test_filters_and_tuples_and_dicts_cannot_double_a_structure_either(step):
    with pytest.raises(RenderError) as exc:
        render_text(doubled("a", 24, step) + "{{ a|length }}")
    assert "list larger than 1 MB" in exc.value.message


def test_a_list_of_one_huge_number_is_as_long_as_it_prints():
    # 30,000 times a 4,001-digit number "is" 1 MB by item count but prints 120 MB: the text was
    # built (memory) before any size check saw it.
    tracemalloc.start()
    try:
        with pytest.raises(RenderError) as exc:
            render_text("{% set x = 10 ** 4000 %}{% set l = [x] * 30000 %}{{ l|string|length }}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "larger than 1 MB" in exc.value.message
    assert peak < 32_000_000, f"peak {peak / 1e6:.0f} MB"


def test_ordinary_literals_still_render():
    source = ("{% for k, v in {'a': 1}.items() %}{{ k }}{{ v }}{% endfor %}{% set x, y = 1, profile.points %}"
              "{{ x }} {{ y }} {{ [profile.first_name, 2] }} {{ {'n': profile.points} }} {{ (profile.city,) }}")
    assert render_text(source) == "a11 1234 ['Olivia', 2] {'n': 1234} ('Berlin',)"


def _walk_size(value, limit=limits.MAX_STRING):
    """deep_size as it was before it remembered shared containers: every reference walked again."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        total = 2
        for item in (value.items() if isinstance(value, dict) else value):
            total += _walk_size(item, limit - total) + 2
            if total > limit:
                return total
        return total
    return limits.deep_size(value)


def test_a_shared_container_is_sized_once_and_to_the_same_figure(monkeypatch):
    shared_text = "x" * 100
    a: object = [1, shared_text]
    for n in range(10):  # the first list ~1,500 times, each reached through shared references
        a = [a, {"k": a, n: (a, shared_text)}] if n % 3 == 0 else [a, a]
    size = limits.deep_size(a)
    assert size == _walk_size(a) and 100_000 < size < limits.MAX_STRING
    # Past a lower limit both stop early (the figure then only says "more than the limit").
    assert limits.deep_size(a, limit=50_000) > 50_000 and _walk_size(a, limit=50_000) > 50_000

    calls = 0
    original = limits.deep_size

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(limits, "deep_size", counting)
    b: object = [1]
    for _ in range(40):  # 2**40 leaves by reference: walked leaf by leaf, this stopped after ~250,000
        b = [b, b]
    assert limits.deep_size(b) > limits.MAX_STRING
    assert calls < 200, calls
