"""Comparing versions part by part."""

from __future__ import annotations

from types import SimpleNamespace

from content.diff import version_diff


def v(number: int, channel: str = "email", **data):
    return SimpleNamespace(number=number, channel=channel, data=data)


def test_it_diffs_each_part_and_marks_what_changed() -> None:
    a = v(1, subject="Hello", html="<p>one</p>\n<p>two</p>\n<p>three</p>")
    b = v(2, subject="Hello", html="<p>one</p>\n<p>2</p>\n<p>three</p>\n<p>four</p>", preheader="new")
    diffs = {d.part: d for d in version_diff(a, b)}
    assert list(diffs) == ["subject", "preheader", "html"]
    assert not diffs["subject"].changed and diffs["subject"].unified == ""
    assert diffs["preheader"].changed
    html = diffs["html"]
    assert html.changed
    assert "--- v1 html" in html.unified and "+++ v2 html" in html.unified
    assert "-<p>two</p>" in html.unified and "+<p>2</p>" in html.unified
    kinds = [(r.kind, r.left_no, r.right_no) for r in html.rows]
    assert kinds == [("equal", 1, 1), ("replace", 2, 2), ("equal", 3, 3), ("insert", None, 4)]
    assert html.rows[1].left == "<p>two</p>" and html.rows[1].right == "<p>2</p>"


def test_it_diffs_telegram_buttons_as_json() -> None:
    a = v(1, "telegram", text="t", buttons=[[{"text": "A", "url": "https://a"}]])
    b = v(2, "telegram", text="t", buttons=[[{"text": "B", "url": "https://a"}]])
    buttons = next(d for d in version_diff(a, b) if d.part == "buttons")
    assert buttons.changed
    assert '-      "text": "A",' in buttons.unified and '+      "text": "B",' in buttons.unified


def test_deleted_lines_show_on_the_left_only() -> None:
    d = version_diff(v(1, "sms", text="a\nb\nc"), v(2, "sms", text="a\nc"))[0]
    assert [(r.kind, r.left_no, r.right_no) for r in d.rows] == [("equal", 1, 1), ("delete", 2, None), ("equal", 3, 2)]
