"""F14: malicious templates are refused with a clear error, within the time cap, and the worker
renders the next message as if nothing happened."""

from __future__ import annotations

import time

import pytest

from content import limits, sandbox
from content.models import Fragment
from content.rendering import RenderError, compile_draft
from content.tests.core_fixtures import compile_parts, ctx, render_html, render_text

CAP = sandbox.TIME_LIMIT  # seconds: every refusal below must come within the render time limit (+ slack)
# Timed in this process's CPU time: on a loaded machine (the other test worker, the database) the
# wall clock also counts other processes' work, and these tests are about the render's own.

PAYLOADS = [
    ("{{ ''.__class__ }}", "access to attribute '__class__' is not allowed"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "access to attribute '__subclasses__' is not allowed"),
    ("{{ profile.__class__.__base__ }}", "access to attribute '__base__' is not allowed"),
    ("{% set n = '__cla' ~ 'ss__' %}{{ ''[n] }}", "access to attribute '__class__' is not allowed"),
    ("{{ ['a']|map(attribute='__class__')|list }}", "access to attribute '__class__' is not allowed"),
    ("{{ cycler.__init__.__globals__ }}", "access to attribute '__globals__' is not allowed"),
    ("{{ range.__globals__ }}", "access to attribute '__globals__' is not allowed"),
    ("{{ lipsum(1000000000) }}", "'lipsum' is undefined"),
    ("{{ cycler(1, 2).next() }}", "'cycler' is undefined"),
    ("{{ namespace(a=1) }}", "'namespace' is undefined"),
    ("{{ dict(a=1) }}", "'dict' is undefined"),
    ("{{ 'x'|attr('format') }}", "No filter named 'attr'"),
    ("{{ '{0.__class__}'.format(1) }}", "access to attribute 'format' is not allowed"),
    ("{{ '{:>1000000000}'.format(1) }}", "access to attribute 'format' is not allowed"),
    ("{{ '%s' % profile }}", "% string formatting operator is not allowed"),
    ("{{ self._TemplateReference__context }}", "access to attribute '_TemplateReference__context' is not allowed"),
    ("{{ range(10**9) }}", "range is too large"),
    ("{% for i in range(10**9) %}{% endfor %}", "range is too large"),
    ("{{ 'a' * 10**9 }}", "larger than 1 MB"),
    ("{{ ['a'] * 10**9 }}", "larger than 1 MB"),
    ("{{ 10 ** (10 ** 10) }}", "number that is too large"),
    ("{{ 'a'.ljust(1000000000) }}", "access to attribute 'ljust' is not allowed"),
    ("{{ (1).to_bytes(1000000000, 'big') }}", "access to attribute 'to_bytes' is not allowed"),
    ("{{ 'a'|center(1000000000) }}", "larger than 1 MB"),
    ("{{ 'a'|indent(1000000000, true) }}", "larger than 1 MB"),
    ("{{ ('a' * 1000)|replace('a', 'b' * 100000) }}", "larger than 1 MB"),
    ("{{ [1]|batch(1000000000, 'x')|list }}", "at most 10,000 groups"),
    ("{{ ('ab' * 100000)|list|sort|first }}", "at most 100,000 items per filter"),
    ("{% set b = 'a' * 1000000 %}{{ [b, b] ~ '' }}", "larger than 1 MB"),
    ("{% set b = 'a' * 1000000 %}{{ ([b] * 1000)|join }}", "larger than 1 MB"),
    ("{% set b = 'a' * 1000000 %}{{ [b, b, b]|string }}", "larger than 1 MB"),
    ("{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ f('a', 40) }}", "larger than 1 MB"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nest too deeply"),
    # 2**40 calls: the call budget or the clock, whichever comes first on a busy machine.
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
     ("loop iterations and calls", "template took longer than 2 s")),
    ("{% set s = 'a' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}", "loop iterations and calls"),
    ("{% set b = 'a' * 1000 %}{% for i in range(5000) %}{{ b }}{% endfor %}", "output is larger than 1 MB"),
    ("{% set b = 'a' * 1000 %}{% macro m() %}{% for i in range(5000) %}{{ b }}{% endfor %}{% endmacro %}{{ m() }}",
     "output is larger than 1 MB"),
    ("{% macro m() %}{% for i in range(5000) %}" + "x" * 1000 + "{% endfor %}{% endmacro %}{{ m()|length }}",
     "output is larger than 1 MB"),
    ("{% for i in range(9000) %}{{ loop.cycle('a' * 500000, 'b') }}{% endfor %}", "output is larger than 1 MB"),
    ("{% for i in range(3) %}{{ loop.cycle.__self__ }}{% endfor %}", "access to attribute '__self__' is not allowed"),
    ("{% for i in range(3) recursive %}{{ loop(range(3)) }}{% endfor %}", "recursive loops are not supported"),
    ('{% include "/etc/passwd" %}', "no fragment named '/etc/passwd'"),
    ('{% include "../settings.py" %}', "no fragment named '../settings.py'"),
    ("{% include profile.city %}", "need a fragment key in quotes"),
    ('{% import "footer" as f %}', "no fragment named 'footer'"),
    ('{% extends "layout" %}', "{% extends %} and {% block %} are not supported"),
    ("{% block x %}hi{% endblock %}", "{% extends %} and {% block %} are not supported"),
    ("{{ profile.products.append(1) }}", "access to attribute 'append' is not allowed"),
    ("{{ ('a ' * 100000)|wordwrap(1, wrapstring='x' * 100000) }}", "larger than 1 MB"),
    ("{{ range(10000)|batch(1)|list|sum(start=[]) }}", "sum adds numbers only"),
    # Many allocations, each under the 1 MB limit, no loop and no output: the total is capped.
    ("".join(f"{{% set a{i} = 'a' * 1000000 %}}" for i in range(40)), "builds more than 16 MB of text in all"),
    ("{% set b = 'a' * 999999 %}" + "".join(f"{{% set a{i} = b[1:] %}}" for i in range(40)),
     "builds more than 16 MB of text in all"),
    ("{% set b = 'a' * 999999 %}" + "".join(f"{{% set a{i} = b.upper() %}}" for i in range(40)),
     "builds more than 16 MB of text in all"),
    ("{% set b = 'a' * 999999 %}" + "".join(f"{{% set a{i} = b|lower %}}" for i in range(40)),
     "builds more than 16 MB of text in all"),
    ("{{ profile.update({'a': 1}) }}", "access to attribute 'update' is not allowed"),
]


@pytest.mark.parametrize(("source", "message"), PAYLOADS, ids=lambda v: v[:60] if isinstance(v, str) else v)
def test_it_refuses_the_payload_quickly_and_keeps_rendering(source: str, message: str | tuple[str, ...]) -> None:
    start = time.process_time()
    with pytest.raises(RenderError) as exc:
        render_text(source)
    elapsed = time.process_time() - start
    expected = message if isinstance(message, tuple) else (message,)
    assert any(m in exc.value.message for m in expected), exc.value.message
    assert exc.value.part == "text"
    assert elapsed < CAP + 0.5, f"refused after {elapsed:.2f} s"
    # The worker is fine: the next message renders.
    assert render_text("Hi {{ profile.first_name }}") == "Hi Olivia"
    assert sandbox.current() is None


def test_self_is_harmless() -> None:
    assert "TemplateReference" in render_text("{{ self }}")


def test_it_refuses_a_payload_in_an_html_part_with_its_line() -> None:
    with pytest.raises(RenderError) as exc:
        render_html("<p>ok</p>\n<p>{{ ''.__class__ }}</p>")
    assert exc.value.part == "html"
    assert exc.value.line == 2


def test_it_reports_the_runtime_line_of_a_limit() -> None:
    with pytest.raises(RenderError) as exc:
        render_text("line one\nline two\n{{ range(20000)|list }}")
    assert exc.value.line == 3
    assert "range is too large" in str(exc.value)


def test_it_stops_a_slow_loop_with_no_output_at_the_deadline(monkeypatch) -> None:
    # With the iteration budget out of the way, the clock alone must stop it.
    monkeypatch.setattr(limits, "MAX_STEPS", 10**12)
    source = ("{% set s = 'a' * 3000 %}{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}"
              "{% endfor %}{% endfor %}")
    start = time.process_time()  # CPU time: on a loaded machine the wall clock also counts others' work
    with pytest.raises(RenderError) as exc:
        render_text(source, time_limit=0.3)
    spent = time.process_time() - start
    assert "template took longer than 0.3 s" in exc.value.message
    assert spent < 1.5  # the deadline (0.3 s) plus at most one uninterrupted filter call


def test_it_stops_slow_filters_in_straight_line_code_at_the_deadline(monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_STEPS", 10**12)
    source = "{% set big = ('b a ' * 25000)|list %}" + "{{ big|sort|unique|list|length }}" * 400
    cv = compile_parts("sms", {"text": source})
    with pytest.raises(RenderError):  # the first render also compiles the 400 expressions (not timed)
        cv.render(ctx(), time_limit=0.3)
    start = time.process_time()  # CPU time: on a loaded machine the wall clock also counts others' work
    with pytest.raises(RenderError) as exc:
        cv.render(ctx(), time_limit=0.3)
    assert "template took longer than 0.3 s" in exc.value.message
    # The deadline (0.3 s) plus at most one uninterrupted filter call (~0.3 s on 100,000 items),
    # where all 400 expressions would take ~40 s.
    assert time.process_time() - start < 1.5


def test_a_fragment_that_includes_itself_is_refused() -> None:
    with pytest.raises(RenderError) as exc:
        render_text('{% include "loop" %}', fragments={"loop": ('{% include "loop" %}', '{% include "loop" %}')})
    assert "nest too deeply" in exc.value.message


def test_a_fragment_cannot_reach_past_the_sandbox_either() -> None:
    with pytest.raises(RenderError) as exc:
        render_text('{% include "evil" %}', fragments={"evil": ("", "x\n{{ ''.__class__ }}")})
    assert "in fragment 'evil'" in exc.value.message
    assert exc.value.line == 2


def test_imported_macros_work_but_private_names_do_not() -> None:
    frag = {"m": ("", "{% macro hi(n) %}Hi {{ n }}{% endmacro %}{% macro _secret() %}s{% endmacro %}")}
    assert render_text('{% import "m" as m %}{{ m.hi(profile.first_name) }}', fragments=frag) == "Hi Olivia"
    with pytest.raises(RenderError):
        render_text('{% from "m" import _secret %}{{ _secret() }}', fragments=frag)


def test_lazy_filters_keep_counting_inside_their_consumer(monkeypatch) -> None:
    # `select` runs inside `list`, one filter call: its items must tick the budget themselves, or
    # this would run to the end (~0.3 s) past a 0.05 s limit.
    monkeypatch.setattr(limits, "MAX_STEPS", 10**12)
    source = "{% set big = range(5000)|list %}{{ (range(1000)|list * 30)|select('in', big)|list|length }}"
    with pytest.raises(RenderError) as exc:
        render_text(source, time_limit=0.05)
    assert "template took longer than 0.05 s" in exc.value.message
    assert render_text(source.replace("* 30", "* 1")) == "1000"


def test_numbers_still_add_up() -> None:
    assert render_text("{{ [1, 2.5, 3]|sum }} {{ profile.products|sum(attribute='price') }}") == "6.5 269.5"


def test_striptags_is_linear_on_hostile_input() -> None:
    start = time.process_time()
    assert render_text("{{ ('<b>x' * 200000)|striptags|length }}") == str(200000)
    assert render_text("{{ ('<' * 300000)|striptags|length }}") == "300000"
    assert time.process_time() - start < 1.0


def test_escaped_output_cannot_inject_markup() -> None:
    html = render_html("<p>{{ data.x }}</p>", ctx(data={"x": "<script>alert(1)</script>"}))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_another_accounts_fragment_is_not_found(acme, globex) -> None:
    Fragment.objects.create(account=globex, key="secret", name="Secret", html="globex only")
    Fragment.objects.create(account=acme, key="footer", name="Footer", html="acme footer")
    cv = compile_draft(account=acme, channel="email", data={"subject": "s", "html": '{% include "footer" %}'})
    assert "acme footer" in cv.render(ctx()).parts["html"]
    with pytest.raises(RenderError) as exc:
        compile_draft(account=acme, channel="email", data={"subject": "s", "html": '{% include "secret" %}'})
    assert exc.value.message == "no fragment named 'secret'"
    assert exc.value.part == "html"
    assert exc.value.line == 1


def test_only_plain_data_reaches_a_template(acme) -> None:
    from content.rendering import context_for

    context = context_for(account=acme)
    plain = (dict, list, str, int, float, bool, type(None))

    def walk(v):
        assert isinstance(v, plain), type(v)
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(context)


def test_a_fragment_that_includes_itself_twice_compiles_quickly_and_is_refused() -> None:
    body = '{% include "x" %}{% include "x" %}' + "y" * 50_000
    start = time.process_time()
    with pytest.raises(RenderError) as exc:
        render_text('{% include "x" %}', fragments={"x": (body, body)})
    assert exc.value.message == "in fragment 'x': output is larger than 1 MB"
    assert time.process_time() - start < CAP + 1
