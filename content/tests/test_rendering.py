"""Rendering: every channel's parts, link rewriting, fragments, formatting in the recipient's
timezone and language, the per-worker cache, and the plain-data context."""

from __future__ import annotations

import time
import timeit
from datetime import UTC, date, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from content import rendering
from content.models import Fragment, Template, TemplateVersion
from content.rendering import RenderError, build_context, compiled, context_for, profile_dict
from content.services import fragment_save, template_create, template_version_save
from content.tests.core_fixtures import SYSTEM, compile_parts, ctx, render_html, render_text

EMAIL = {
    "subject": "Hello {{ profile.first_name }}",
    "preheader": "Your {{ profile.points }} points",
    "html": """<html><head><style>p { color: #333; }</style></head><body>
<p>Hi {{ profile.first_name }},</p>
{% for p in profile.products %}<p>{{ p.name }}: {{ p.price|money("EUR") }}</p>{% endfor %}
<p><a href="https://shop.example/sale?a=1&amp;b=2">Sale</a> <a href="https://shop.example/sale?a=1&amp;b=2">Again</a>
<a href="https://shop.example/{{ profile.id }}">Mine</a> <a href="mailto:help@shop.example">Help</a>
<a href="{{ links.unsubscribe }}">Unsubscribe</a></p></body></html>""",
}


def test_an_email_renders_every_part() -> None:
    r = compile_parts("email", EMAIL).render(ctx())
    assert r.channel == "email"
    assert set(r.parts) == {"subject", "preheader", "html", "text"}
    assert r.parts["subject"] == "Hello Olivia"
    assert r.parts["preheader"] == "Your 1234 points"
    assert '<p style="color: #333;">Hi Olivia,</p>' in r.parts["html"]
    assert "Lamp: €19.50" in r.parts["html"] and "Desk: €250.00" in r.parts["html"]
    assert r.parts["html"].index("Your 1234 points") < r.parts["html"].index("Hi Olivia")  # preheader first
    assert "Hi Olivia," in r.parts["text"]
    assert "Sale (https://shop.example/sale?a=1&b=2)" in r.parts["text"]


def test_without_a_link_callable_the_original_urls_come_out() -> None:
    html = compile_parts("email", EMAIL).render(ctx()).parts["html"]
    assert html.count('href="https://shop.example/sale?a=1&amp;b=2"') == 2
    assert 'href="https://shop.example/7"' in html
    assert 'href="mailto:help@shop.example"' in html
    assert 'href="#unsubscribe"' in html


def test_a_link_callable_rewrites_only_the_catalogued_links() -> None:
    cv = compile_parts("email", EMAIL, links=[{"id": 41, "url": "https://shop.example/sale?a=1&b=2", "text": "Sale"}])
    calls = []

    def track(link_id: int, url: str) -> str:
        calls.append((link_id, url))
        return f"https://t.example/c/{link_id}?x=1&y=2"

    r = cv.render(ctx(links={"unsubscribe": "https://u.example/x", "preferences": "https://p.example/x"}), link=track)
    assert calls == [(41, "https://shop.example/sale?a=1&b=2")]
    assert r.parts["html"].count('href="https://t.example/c/41?x=1&amp;y=2"') == 2
    assert 'href="https://shop.example/7"' in r.parts["html"]  # has a template expression: not tracked
    assert 'href="https://u.example/x"' in r.parts["html"]
    assert "(https://t.example/c/41?x=1&y=2)" in r.parts["text"]


def test_a_subject_cannot_carry_a_line_break() -> None:
    cv = compile_parts("email", {"subject": "Hi {{ data.x }}", "html": "<p>x</p>"})
    assert cv.render(ctx(data={"x": "a\r\nBcc: evil@example.com"})).parts["subject"] == "Hi a Bcc: evil@example.com"


def test_the_other_channels_render_their_parts() -> None:
    sms = compile_parts("sms", {"text": "Hi {{ profile.first_name }} <3"}).render(ctx())
    assert sms.parts == {"text": "Hi Olivia <3"}
    push = compile_parts("webpush", {"title": "Hi {{ profile.first_name }}", "body": "b", "url": "https://x/{{ profile.id }}"})
    assert push.render(ctx()).parts == {"title": "Hi Olivia", "body": "b", "icon": "", "image": "", "url": "https://x/7"}
    tg = compile_parts("telegram", {"text": "<b>{{ data.x }}</b>", "parse_mode": "HTML",
                                    "buttons": [[{"text": "Open {{ profile.first_name }}", "url": "https://x/{{ profile.id }}"}]]})
    r = tg.render(ctx(data={"x": "a<b"}))
    assert r.parts["text"] == "<b>a&lt;b</b>"  # HTML parse mode: variables escaped
    assert r.parts["parse_mode"] == "HTML"
    assert r.parts["buttons"] == [[{"text": "Open Olivia", "url": "https://x/7"}]]
    plain = compile_parts("telegram", {"text": "{{ data.x }}"}).render(ctx(data={"x": "a<b"}))
    assert plain.parts == {"text": "a<b", "parse_mode": "", "buttons": []}


def test_telegram_markdown_v2_escapes_every_value_but_keeps_the_authors_markup() -> None:
    source = ("*Hi {{ profile.first_name }}*, your total is {{ data.total }} {{ data.note|safe }}"
              "{% macro m(x) %}_{{ x }}_{% endmacro %} {{ m(data.code) }}"
              "{% set s %}~{{ data.code }}~{% endset %} {{ s }}")
    version = compile_parts("telegram", {"text": source, "parse_mode": "MarkdownV2"})
    r = version.render(ctx(profile={"first_name": "Anna_Maria"},
                           data={"total": "9.99 (incl. VAT)", "note": "*bold*", "code": "A-1"}))

    # Unescaped, "_", ".", "(" and "-" break Telegram's parser ("can't parse entities").
    assert r.parts["text"] == r"*Hi Anna\_Maria*, your total is 9\.99 \(incl\. VAT\) *bold* _A\-1_ ~A\-1~"
    assert r.parts["parse_mode"] == "MarkdownV2"


def test_slices_work() -> None:
    assert render_text("{{ 'abcdef'[1:3] }} {{ [1, 2, 3, 4][::2] }} {{ 'abc'[-1] }}") == "bc [1, 3] c"


def test_html_is_escaped_and_text_is_not() -> None:
    c = ctx(data={"x": "Tom & <Jerry>"})
    assert render_html("<p>{{ data.x }}</p>", c) == "<p>Tom &amp; &lt;Jerry&gt;</p>"
    assert render_text("{{ data.x }}", c) == "Tom & <Jerry>"
    assert render_html("{{ data.x|safe }}", c) == "Tom & <Jerry>"


def test_missing_variables_and_none_render_as_nothing() -> None:
    assert render_text("[{{ profile.nope }}][{{ profile.nope.deeper }}][{{ nothing }}]") == "[][][]"
    c = ctx(profile={"birthday": None})
    assert render_text("[{{ profile.birthday }}]", c) == "[]"
    assert render_html("[{{ profile.birthday }}]", c) == "[]"
    assert render_text("{% macro m() %}[{{ profile.birthday }}]{% endmacro %}{{ m() }}", c) == "[]"


@pytest.mark.parametrize(("source", "profile", "expected"), [
    ('{{ data.at|datetime("j M Y H:i") }}', {"timezone": ""}, "1 Mar 2026 10:30"),  # account: Berlin
    ('{{ data.at|datetime("j M Y H:i") }}', {"timezone": "America/New_York"}, "1 Mar 2026 04:30"),
    ('{{ data.at|datetime("j M Y H:i") }}', {"timezone": "Not/AZone"}, "1 Mar 2026 10:30"),
    ('{{ data.day|date("j E Y") }}', {"language": "ru"}, "5 мая 2026"),
    ('{{ data.day|date("j F Y") }}', {"language": "xx"}, "5 May 2026"),
    ("{{ data.at|time }}", {"timezone": "UTC"}, "9:30 a.m."),
    ('{{ "2026-03-01T09:30:00Z"|date("Y-m-d H:i") }}', {"timezone": "Asia/Tokyo"}, "2026-03-01 18:30"),
    ("{{ 1234567.891|number(2) }}", {}, "1,234,567.89"),
    ("{{ 1234567.891|number(2) }}", {"language": "ru"}, "1\xa0234\xa0567,89"),
    ('{{ 1234.5|money("USD") }}', {}, "$1,234.50"),
    ('{{ 1234.5|money("CHF") }}', {}, "1,234.50 CHF"),
    ('{{ 1234.5|money("EUR") }}', {"language": "ru"}, "1\xa0234,50\xa0€"),
    ('{{ "abc"|number }}', {}, "abc"),
    ('{{ 1|plural("item", "items") }} {{ 2|plural("item", "items") }}', {}, "item items"),
    ('{% for n in [1, 3, 5, 11, 21, 22] %}{{ n|plural("товар", "товара", "товаров") }} {% endfor %}', {"language": "ru"},
     "товар товара товаров товаров товар товара "),
])
def test_formatting_follows_the_recipients_timezone_and_language(source, profile, expected) -> None:
    c = ctx(profile=profile, data={"at": datetime(2026, 3, 1, 9, 30, tzinfo=UTC), "day": date(2026, 5, 5)})
    assert render_text(source, c) == expected


def test_render_is_fast_enough_for_the_hot_path() -> None:
    """Not a benchmark (bench/ has that): a guard against an accidental 10x regression (~200 µs a
    message on the 2-core machines). This process's CPU time, so the other test worker and the
    database sharing the cores do not count."""
    cv = compile_parts("email", EMAIL)
    c = ctx()
    cv.render(c)
    per = min(timeit.repeat(lambda: cv.render(c, link=lambda i, u: u), number=200, repeat=3,
                            timer=time.process_time)) / 200
    assert per < 0.001, f"{per * 1e6:.0f} µs per message"


# --- with the database ------------------------------------------------------------------------------


@pytest.fixture
def welcome(acme) -> Template:
    return template_create(account=acme, name="Welcome", kind="marketing", actor=SYSTEM)


def test_a_saved_version_renders_with_catalogued_link_ids(acme, welcome) -> None:
    from history.models import Link

    version = template_version_save(template=welcome, channel="email", data=EMAIL, actor=SYSTEM)
    link = Link.objects.get(account=acme, url="https://shop.example/sale?a=1&b=2")
    assert version.links == [{"id": link.pk, "url": "https://shop.example/sale?a=1&b=2", "text": "Sale"}]
    r = compiled(version).render(ctx(), link=lambda i, u: f"https://t/{i}")
    assert f'href="https://t/{link.pk}"' in r.parts["html"]


def test_compiled_versions_are_cached_and_render_without_queries(acme, welcome, django_assert_num_queries) -> None:
    version = template_version_save(template=welcome, channel="email", data=EMAIL, actor=SYSTEM)
    first = compiled(version)
    with CaptureQueriesContext(connection) as q:
        assert compiled(version) is first
        for _ in range(20):
            first.render(ctx())
    assert len(q.captured_queries) == 0


def test_a_fragment_change_reaches_the_next_render(acme, welcome) -> None:
    footer = fragment_save(account=acme, key="footer", name="Footer", html="<p>Old footer</p>", actor=SYSTEM)
    version = template_version_save(template=welcome, channel="email",
                                    data={"subject": "s", "html": '<p>Body</p>{% include "footer" %}'}, actor=SYSTEM)
    r = compiled(version).render(ctx())
    assert "Old footer" in r.parts["html"]
    assert "Old footer" in r.parts["text"]  # the text part gets the fragment's generated text
    fragment_save(account=acme, key="footer", name="Footer", html="<p>New footer</p>", text="New text footer",
                  fragment=footer, actor=SYSTEM)
    r = compiled(version).render(ctx())
    assert "New footer" in r.parts["html"]
    assert "New text footer" in r.parts["text"]


def test_a_version_saved_with_fragments_nested_two_deep_renders(acme, welcome) -> None:
    fragment_save(account=acme, key="inner", name="Inner", html="<b>inner {{ profile.first_name }}</b>", actor=SYSTEM)
    fragment_save(account=acme, key="outer", name="Outer", html='<i>{% include "inner" %}</i>', actor=SYSTEM)
    version = template_version_save(template=welcome, channel="sms", data={"text": '{% include "outer" %}'}, actor=SYSTEM)
    rendering.clear_cache()
    assert compiled(version).render(ctx()).parts["text"] == "inner Olivia"


def test_the_cache_is_bounded(acme, welcome, monkeypatch) -> None:
    monkeypatch.setattr(rendering, "MAX_CACHED", 2)
    versions = [template_version_save(template=welcome, channel="sms", data={"text": f"v{i}"}, actor=SYSTEM)
                for i in range(4)]
    for v in versions:
        compiled(v)
    assert len(rendering._CACHE) == 2
    assert list(rendering._CACHE) == [versions[2].pk, versions[3].pk]


def test_context_for_builds_plain_data_with_real_links(acme) -> None:
    from profiles.services import database_create, field_add, profile_create
    from resources.services import resource_create, subscription_create
    from resources.services.common import Via

    db = database_create(account=acme, name="Shop", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", actor=SYSTEM)
    profile = profile_create(database=db, values={"email": "o@example.com", "first_name": "Olivia", "city": "Oslo"},
                             actor=SYSTEM)
    resource = resource_create(account=acme, database=db, actor=SYSTEM, values={
        "name": "News", "channels": ["email"], "categories": [{"key": "deals", "label": "Deals"}]})
    sub = subscription_create(profile=profile, resource=resource, channel="email", address="o@example.com",
                              actor=SYSTEM, via=Via(source="test"))
    c = context_for(account=acme, subscription=sub, data={"order": 5})
    assert c["profile"]["first_name"] == "Olivia" and c["profile"]["city"] == "Oslo"
    assert c["profile"]["email"] == "o@example.com"
    assert c["subscription"]["address"] == "o@example.com" and c["subscription"]["categories"] == ["deals"]
    assert c["resource"]["name"] == "News"
    assert c["account"] == {"id": acme.pk, "name": "Acme", "timezone": acme.timezone, "language": acme.language}
    assert c["links"]["unsubscribe"].startswith("http") and "/p/" in c["links"]["unsubscribe"]
    assert c["data"] == {"order": 5}
    preview = context_for(account=acme, profile=profile)
    assert preview["links"] == rendering.PREVIEW_LINKS and preview["subscription"] == {}


def test_build_context_takes_rows_from_the_hot_path() -> None:
    row = {"id": 3, "email": None, "first_name": "A", "data": {"city": "Rome"}}
    assert profile_dict(row) == {"id": 3, "email": "", "first_name": "A", "city": "Rome"}
    c = build_context(account={"name": "X"}, profile=profile_dict(row))
    assert render_text("{{ profile.first_name }} {{ profile.city }} {{ account.name }}", c) == "A Rome X"


def test_render_errors_name_the_part_and_line(acme, welcome) -> None:
    version = TemplateVersion(account=acme, template=welcome, channel="email", number=1,
                              compiled={"subject": "s", "preheader": "", "html": "<p>\n{{ 1 / 0 }}</p>", "text": "t"})
    cv = rendering.CompiledVersion(channel="email", compiled=version.compiled, links=[], fragments={})
    with pytest.raises(RenderError) as exc:
        cv.render(ctx())
    assert (exc.value.part, exc.value.line) == ("html", 2)
    assert "division by zero" in exc.value.message


def test_an_unknown_channel_is_refused() -> None:
    with pytest.raises(RenderError):
        rendering.prepare("fax", {})


def test_fragments_are_read_once_at_compile(acme, welcome) -> None:
    Fragment.objects.create(account=acme, key="a", name="A", html="A")
    version = template_version_save(template=welcome, channel="sms", data={"text": '{% include "a" %}'}, actor=SYSTEM)
    rendering.clear_cache()
    with CaptureQueriesContext(connection) as q:
        cv = compiled(version)
    assert 1 <= len(q.captured_queries) <= 3
    assert cv.render(ctx()).parts["text"] == "A"


def test_compile_draft_writes_nothing_and_renders_the_original_links(acme) -> None:
    from history.models import Link

    cv = rendering.compile_draft(account=acme, channel="email", data=EMAIL)
    assert Link.objects.count() == 0
    assert [lk["id"] for lk in cv.links] == [0]
    assert 'href="https://shop.example/sale?a=1&amp;b=2"' in cv.render(ctx()).parts["html"]


def test_check_reports_every_broken_part(acme) -> None:
    errors = rendering.check(account_id=acme.pk, channel="email", compiled={
        "subject": "{{ x", "preheader": "", "html": "<p>\n{% include 'nope' %}</p>", "text": "ok"})
    assert [(e.part, e.line) for e in errors] == [("subject", 1), ("html", 2)]
    assert errors[1].message == "no fragment named 'nope'"
