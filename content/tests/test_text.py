"""HTML -> text for the generated text part."""

from __future__ import annotations

from content.rendering import text_from_html
from content.text import html_to_text


def test_it_turns_structure_into_readable_text() -> None:
    html = """<html><head><title>T</title><style>p { color: red }</style><script>alert(1)</script></head>
<body><div style="display: none">hidden preheader</div>
<h1>Big news</h1><h2>Sub</h2>
<p>First   paragraph
with <b>bold</b> &amp; entities.</p><p>Second<br>line</p>
<ul><li>One</li><li>Two <a href="https://x.example/2">link</a></li></ul>
<ol><li>First</li><li>Second</li></ol>
<table><tr><th>Name</th><td>Price</td></tr><tr><td>Lamp</td><td>19</td></tr></table>
<p><a href="https://x.example/">https://x.example/</a> <a href="mailto:a@b.example">write us</a>
<img src="logo.png" alt="Logo"> <img src="spacer.gif"></p></body></html>"""
    text = html_to_text(html)
    assert text.startswith("Big news\n========\n\nSub\n---\n\n")
    assert "First paragraph with bold & entities.\n\nSecond\nline\n" in text
    assert "- One\n- Two link (https://x.example/2)\n\n1. First\n2. Second\n\nName | Price\nLamp | 19\n\n" in text
    assert "https://x.example/ write us (a@b.example)" in text
    assert "Logo" in text
    for absent in ("alert", "color: red", "hidden preheader", "spacer", "<", "T\n"):
        assert absent not in text


def test_long_paragraphs_wrap_at_78_columns() -> None:
    text = html_to_text("<p>" + "word " * 60 + "</p><ul><li>" + "item " * 30 + "</li></ul>")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 78
    assert any(line.startswith("  item") for line in lines)  # list continuation indented


def test_template_constructs_are_kept_and_literal_braces_stay_literal() -> None:
    src = text_from_html('<p>Hi {{ profile.first_name }}{% if x > 1 %}!{% endif %}</p>'
                         '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a> &#123;&#123; not a variable &#125;&#125;</p>')
    assert "Hi {{ profile.first_name }}{% if x > 1 %}!{% endif %}" in src
    assert "Unsubscribe ({{ links.unsubscribe }})" in src
    assert '{{ "{" }}{ not a variable }}' in src


def test_empty_html_gives_empty_text() -> None:
    assert html_to_text("") == ""
    assert html_to_text("<style>x</style>") == ""


def test_a_generated_text_part_has_one_line_per_loop_item_and_no_stray_blank_lines() -> None:
    from content.tests.core_fixtures import compile_parts, ctx

    html = ("<h1>Hi {{ profile.first_name }}</h1><p>Thanks.</p>\n"
            "{% if profile.tags %}<p>Picked for you:</p>\n"
            "<ul>{% for t in profile.tags %}<li>{{ t }}</li>{% endfor %}</ul>{% endif %}\n"
            '<p><a href="https://shop.example/">Shop now</a></p>')
    version = compile_parts("email", {"subject": "s", "html": html})

    with_tags = version.render(ctx(profile={"first_name": "Ann", "tags": ["shoes", "hats"]})).parts["text"]
    without = version.render(ctx(profile={"first_name": "Ann", "tags": []})).parts["text"]

    assert "- shoes\n- hats\n" in with_tags
    assert "\n\n\n" not in with_tags and "\n\n\n" not in without
    assert "Picked for you" not in without and "Thanks.\n\nShop now (https://shop.example/)" in without
