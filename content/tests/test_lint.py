"""Lint: what may go wrong when a version is sent, with part and line."""

from __future__ import annotations

import pytest

from content.lint import lint
from content.tests.core_fixtures import SYSTEM
from profiles.services import database_create, field_add

UNSUB = '<a href="{{ links.unsubscribe }}">Unsubscribe</a>'


def codes(messages) -> list[tuple[str, str, str, int | None]]:
    return [(m.level, m.code, m.part, m.line) for m in messages]


def test_a_clean_email_has_no_messages() -> None:
    data = {"subject": "Hi {{ profile.first_name }}", "html": f"<p>Hi</p><img src='x.png' alt='x'>{UNSUB}"}
    assert lint("email", data) == []


def test_syntax_errors_are_errors_with_their_line() -> None:
    msgs = lint("email", {"subject": "Hi {{ profile.first_name", "html": f"<p>a</p>\n{{% if x %}}\n{UNSUB}"})
    assert ("error", "syntax", "subject", 1) in codes(msgs)
    assert any(m.code == "syntax" and m.part == "html" and m.line == 3 for m in msgs)


def test_a_refused_construct_is_reported_as_a_syntax_error() -> None:
    msgs = lint("sms", {"text": "ok\n{{ ''.__class__ }}"})
    assert codes(msgs) == [("error", "syntax", "text", 2)]
    assert "'__class__' is not allowed" in msgs[0].message


def test_unknown_variables_and_attributes_are_warnings() -> None:
    msgs = lint("sms", {"text": "{{ first_name }} {{ account.nam }} {{ data.anything }} {{ links.unsubscribe }}\n"
                                "{% set y = 1 %}{{ y }}{% for p in profile.products %}{{ p.name }}{% endfor %}"})
    assert codes(msgs) == [("warning", "unknown-variable", "text", 1), ("warning", "unknown-variable", "text", 1)]
    assert "'first_name'" in msgs[0].message
    assert "account.nam" in msgs[1].message


def test_profile_fields_are_checked_against_the_database(acme) -> None:
    db = database_create(account=acme, name="Shop", actor=SYSTEM)
    field_add(database=db, name="city", label="City", type="string", actor=SYSTEM)
    msgs = lint("sms", {"text": "{{ profile.city }} {{ profile.first_name }} {{ profile.language }}\n{{ profile.cty }}"},
                database=db)
    assert codes(msgs) == [("warning", "unknown-field", "text", 2)]
    assert "'cty'" in msgs[0].message
    # Without a database nothing is known about custom fields: no guesses.
    assert lint("sms", {"text": "{{ profile.cty }}"}) == []


def test_a_marketing_email_needs_an_unsubscribe_link() -> None:
    data = {"subject": "s", "html": "<p>Buy now</p>"}
    assert ("error", "no-unsubscribe", "html", None) in codes(lint("email", data))
    assert lint("email", data, kind="transactional") == []
    # ... which may live in an included fragment
    assert lint("email", {"subject": "s", "html": '{% include "footer" %}'}, fragments={"footer": UNSUB}) == []


def test_email_checks(acme) -> None:
    html = (f"{UNSUB}\n<img src='a.png'>\n<a href='javascript:alert(1)'>x</a>\n<a href=\"/relative\">r</a>\n"
            "<a href='mailto:a@b.example'>m</a><a href='#top'>t</a>")
    msgs = codes(lint("email", {"subject": "x" * 101, "html": html}))
    assert ("warning", "long-subject", "subject", None) in msgs
    assert ("warning", "img-no-alt", "html", 2) in msgs
    assert ("error", "bad-link", "html", 3) in msgs
    assert ("warning", "relative-link", "html", 4) in msgs
    assert len([m for m in msgs if m[1] in ("bad-link", "relative-link")]) == 2
    assert ("error", "empty-subject", "subject", None) in codes(lint("email", {"subject": " ", "html": UNSUB}))


def test_scripts_and_event_handlers_are_warnings() -> None:
    assert codes(lint("email", {"subject": "s", "html": f"{UNSUB}\n<script>alert(1)</script>"})) == [
        ("warning", "script", "html", 2)]
    assert codes(lint("email", {"subject": "s", "html": f"{UNSUB}<img alt='x' src='x' onerror='alert(1)'>"})) == [
        ("warning", "script", "html", 1)]
    assert lint("email", {"subject": "s", "html": f"{UNSUB}<p>one=1 online</p>"}) == []


def test_html_over_102_kb_after_inlining_is_a_warning() -> None:
    data = {"subject": "s", "html": UNSUB}
    assert lint("email", data, compiled={"html": "x" * (102 * 1024)}) == []
    assert codes(lint("email", data, compiled={"html": "x" * (102 * 1024 + 1)})) == [
        ("warning", "html-too-large", "html", None)]


@pytest.mark.parametrize(("channel", "data", "expected"), [
    ("sms", {"text": "a" * 459}, []),
    ("sms", {"text": "a" * 460}, [("warning", "sms-segments", "text", None)]),
    ("sms", {"text": "{{ profile.first_name }}" * 40}, []),  # variables are not counted
    ("webpush", {"title": "t" * 66, "body": "b"}, [("warning", "push-title-long", "title", None)]),
    ("mobilepush", {"title": "t", "body": "b" * 241}, [("warning", "push-body-long", "body", None)]),
    ("telegram", {"text": "x" * 4097}, [("error", "telegram-too-long", "text", None)]),
    ("telegram", {"text": "x", "buttons": [[{"text": "{{ nope }}", "url": "https://x"}]]},
     [("warning", "unknown-variable", "buttons[0][0].text", 1)]),
])
def test_channel_limits(channel, data, expected) -> None:
    assert codes(lint(channel, data)) == expected


def test_messages_serialise() -> None:
    (m,) = lint("sms", {"text": "{{ x"})
    assert m.as_dict() == {"level": "error", "code": "syntax", "message": m.message, "part": "text", "line": 1}
