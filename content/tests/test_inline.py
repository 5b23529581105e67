"""Save-time HTML work: CSS inlining that keeps template constructs byte-exact and never fetches
anything, the hidden preheader, and the link catalogue."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest

from content import inline
from content.rendering import prepare
from content.tests.core_fixtures import SYSTEM, ctx


def _round_trip(html: str) -> str:
    p = inline.protect(html)
    p.html = inline.inline_css(p.html)
    return inline.restore(p.html, p)


@pytest.mark.parametrize("construct", [
    "{{ a > b }}",
    "{{ '<b>' ~ x }}",
    '{{ "}}" }}',
    "{% if a < b %}x{% endif %}",
    "{#- a comment with <tags> -#}",
    "{%- for p in profile.products -%}",
    "{% raw %}{{ literally }}{% endraw %}",
])
def test_template_constructs_survive_inlining_byte_exact(construct: str) -> None:
    html = f"<html><head><style>p {{ color: red; }}</style></head><body><p>{construct}</p></body></html>"
    out = _round_trip(html)
    assert construct in out
    assert 'style="color: red;"' in out


def test_constructs_in_attributes_and_between_table_rows_stay_in_place() -> None:
    html = ("<html><head><style>td { padding: 4px; }</style></head><body><table>"
            "{% for p in products %}<tr><td {% if p.sale %}class=\"sale\"{% endif %} "
            "title=\"{{ p.name }}\">{{ p.name }}</td></tr>{% endfor %}</table>"
            "<a href=\"{{ links.unsubscribe }}\">u</a></body></html>")
    out = _round_trip(html)
    assert "<table>{% for p in products %}<tr>" in out
    assert "</tr>{% endfor %}</table>" in out
    assert "{% if p.sale %}" in out and 'title="{{ p.name }}"' in out
    assert 'href="{{ links.unsubscribe }}"' in out
    assert "<tbody>" not in out


def test_constructs_in_a_title_and_a_comment_survive() -> None:
    html = ("<html><head><style>.x { color: red; }</style><title>{{ subject }}</title></head>"
            "<body><!-- note {{ hidden }} --><p class=\"x\">x</p></body></html>")
    out = _round_trip(html)
    assert "<title>{{ subject }}</title>" in out
    assert "<!-- note {{ hidden }} -->" in out
    assert '<p class="x" style="color: red;">' in out


def test_a_templated_style_block_is_kept_as_written_and_the_others_inlined() -> None:
    templated = "<style>{% if dark %}p { color: white; }{% endif %} .b { color: {{ brand }}; }</style>"
    html = f"<html><head>{templated}<style>.x {{ font-weight: bold; }}</style></head><body><p class=\"x\">x</p></body></html>"
    prepared = prepare("email", {"subject": "s", "html": html})
    assert templated in prepared.compiled["html"]
    assert '<p class="x" style="font-weight: bold;">' in prepared.compiled["html"]
    assert prepared.compiled["text"] == "x\n"
    # In the body too (no <head>), and never in the generated text part.
    prepared = prepare("email", {"subject": "s", "html": f"{templated}<p>Hi</p>"})
    assert templated in prepared.compiled["html"]
    assert prepared.compiled["text"] == "Hi\n"


def test_media_queries_are_kept_in_a_style_block() -> None:
    html = ("<html><head><style>p { color: red; } @media (max-width: 600px) { p { color: blue; } }</style></head>"
            "<body><p>x</p></body></html>")
    out = inline.inline_css(html)
    assert '<p style="color: red;">' in out
    assert "@media (max-width: 600px)" in out


def test_text_that_looks_like_a_placeholder_stays_text() -> None:
    html = "<style>p { color: red; }</style><p>cdpj0x cdp00000000j0x {{ x }}</p>"
    assert "<p style=\"color: red;\">cdpj0x cdp00000000j0x {{ x }}</p>" in _round_trip(html)


def test_html_without_style_is_kept_as_written() -> None:
    html = "<p>  Hello <br/> {{ x }} </p>"
    assert inline.inline_css(html) == html


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback TCP server that records every connection it gets."""
    hits: list[bytes] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    hits.append(conn.recv(1024))
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/css\r\n\r\np { color: green; }")
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join(2)
    srv.close()


def test_remote_stylesheets_cause_zero_requests(listener, acme) -> None:
    from content.services import template_create, template_version_save

    port, hits = listener
    html = (f'<html><head><link rel="stylesheet" href="http://127.0.0.1:{port}/x.css">'
            f'<style>@import url("http://127.0.0.1:{port}/y.css"); p {{ color: red; }}</style></head>'
            f'<body><p>x</p><a href="{{{{ links.unsubscribe }}}}">u</a></body></html>')
    template = template_create(account=acme, name="Remote", kind="marketing", actor=SYSTEM)
    version = template_version_save(template=template, channel="email", data={"subject": "s", "html": html},
                                    actor=SYSTEM)
    from content.rendering import compiled

    compiled(version).render(ctx())
    # Without a <style> to inline, the <link> is removed too (an e-mail client would fetch it).
    prepare("email", {"subject": "s", "html": f'<link rel="stylesheet" href="http://127.0.0.1:{port}/z.css"><p>x</p>'})
    assert hits == []
    assert f"127.0.0.1:{port}/x.css" not in version.compiled["html"]
    assert f"127.0.0.1:{port}/z.css" not in prepare(
        "email", {"subject": "s", "html": f'<link rel="stylesheet" href="http://127.0.0.1:{port}/z.css"><p>x</p>'}
    ).compiled["html"]
    # The listener does record a request (so the zero above means something).
    with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
        probe.sendall(b"GET /probe HTTP/1.0\r\n\r\n")
        probe.recv(100)
    assert hits and hits[0].startswith(b"GET /probe")


def test_the_preheader_is_the_hidden_first_element_of_the_body() -> None:
    out = inline.insert_preheader('<html><body class="b"><p>first</p></body></html>', "Hi {{ name }}")
    assert out.startswith('<html><body class="b"><div style="display:none;')
    assert "Hi {{ name }}</div><p>first</p>" in out
    assert inline.insert_preheader("<p>x</p>", "pre").startswith('<div style="display:none;')
    assert inline.insert_preheader("<p>x</p>", "  ") == "<p>x</p>"


def test_only_static_http_links_are_catalogued_once_each() -> None:
    html = """<p><a href="https://a.example/x?q=1&amp;r=2">First <b>link</b></a>
<a class="btn" href="https://a.example/x?q=1&amp;r=2">Same URL</a>
<a href="http://b.example/">B</a>
<a href="https://a.example/{{ profile.id }}">Personal</a>
<a href="{{ links.unsubscribe }}">Unsubscribe</a>
<a href="https://a.example/unsubscribe">Their own unsubscribe</a>
<a href="mailto:x@example.com">Mail</a> <a href="tel:+49">Call</a> <a href="#top">Top</a>
<a href="javascript:alert(1)">JS</a> <a name="anchor">No href</a></p>"""
    prepared = prepare("email", {"subject": "s", "html": html})
    assert [(lk["url"], lk["text"]) for lk in prepared.links] == [
        ("https://a.example/x?q=1&r=2", "First link"),
        ("http://b.example/", "B"),
    ]
    compiled_html = prepared.compiled["html"]
    assert compiled_html.count('href="{{ _links[0] }}"') == 2
    assert 'class="btn" href="{{ _links[0] }}"' in compiled_html
    assert 'href="{{ _links[1] }}"' in compiled_html
    for kept in ('href="https://a.example/{{ profile.id }}"', 'href="{{ links.unsubscribe }}"',
                 'href="mailto:x@example.com"', 'href="javascript:alert(1)"'):
        assert kept in compiled_html
    assert prepared.size == len(compiled_html.encode())


def test_saving_catalogues_links_per_account(acme, globex) -> None:
    from content.services import template_create, template_version_save
    from history.models import Link

    html = '<p><a href="https://shared.example/">x</a><a href="{{ links.unsubscribe }}">u</a></p>'
    ids = []
    for account in (acme, globex):
        t = template_create(account=account, name="T", kind="marketing", actor=SYSTEM)
        v = template_version_save(template=t, channel="email", data={"subject": "s", "html": html}, actor=SYSTEM)
        ids.append(v.links[0]["id"])
        assert Link.objects.get(pk=v.links[0]["id"]).account_id == account.pk
    assert ids[0] != ids[1]


def test_included_fragments_are_styled_by_the_templates_css(acme) -> None:
    from content.rendering import compiled
    from content.services import fragment_save, template_create, template_version_save

    system = SYSTEM
    fragment_save(account=acme, key="footer", name="Footer", actor=system,
                  html='<p class="legal">{{ account.name }} &middot; <a href="{{ links.unsubscribe }}">Unsubscribe</a></p>')
    template = template_create(account=acme, name="Styled", kind="marketing", actor=system)
    version = template_version_save(template=template, channel="email", actor=system, data={
        "subject": "s",
        "html": "<style>.legal { color: #6b7280; font-size: 12px; } a { color: #2563eb; }</style>"
                '<p>Hi</p>{% include "footer" %}'})

    html = compiled(version).render(ctx()).parts["html"]

    assert re.search(r'<p class="legal" style="color: #6b7280; ?font-size: 12px;?">', html), html
    assert re.search(r'<a href="#unsubscribe" style="color: #2563eb;?">Unsubscribe</a>', html), html
