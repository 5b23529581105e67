"""Lint a channel's parts as written: what may go wrong when it is sent, found at save (and live in
the editor), each with its part and line.

Errors stop nothing by themselves (the save validates syntax separately); they are shown next to
the version. Codes (stable, for the UI and API): syntax, unknown-variable, unknown-field,
no-unsubscribe, html-too-large, img-no-alt, bad-link, relative-link, script, empty-subject, long-subject,
sms-segments, push-title-long, push-body-long, telegram-too-long.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from content import sandbox
from content.sms import sms_info

KNOWN_NAMES = frozenset({"profile", "subscription", "resource", "account", "links", "data", "range", "loop",
                         "_links", "caller", "varargs", "kwargs", "self"})
KNOWN_ATTRS = {
    "subscription": {"id", "channel", "address", "status", "categories", "opted_out"},
    "resource": {"id", "name", "slug", "description", "categories"},
    "account": {"id", "name", "timezone", "language"},
    "links": {"unsubscribe", "preferences", "view_online"},
}
PROFILE_ALWAYS = frozenset({"id", "email", "phone", "first_name", "last_name", "birthday", "gender", "timezone",
                            "created_at", "updated_at", "language"})
GMAIL_CLIP = 102 * 1024
SUBJECT_MAX = 100
SMS_MAX_SEGMENTS = 3
PUSH_TITLE_MAX = 65
PUSH_BODY_MAX = 240
TELEGRAM_MAX = 4096
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_HREF = re.compile(r"<a\b[^>]*?\bhref\s*=\s*([\"'])(.*?)\1", re.I | re.S)
_SCRIPT = re.compile(r"<script\b|<[a-z][^>]*\s(on[a-z]+)\s*=", re.I)


@dataclass(frozen=True)
class LintMessage:
    level: str  # error | warning | info
    code: str
    message: str
    part: str = ""
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _line(source: str, pos: int) -> int:
    return source.count("\n", 0, pos) + 1


def static_text(source: str) -> str:
    """The part without its template constructs: what is certainly sent."""
    return _JINJA.sub("", source)


def _parse(env: sandbox.SandboxEnvironment, part: str, source: str, out: list[LintMessage]) -> nodes.Template | None:
    try:
        return env.parse(source)
    except TemplateSyntaxError as e:
        out.append(LintMessage("error", "syntax", e.message or str(e), part, e.lineno))
        return None


def _variables(tree: nodes.Template, part: str, profile_fields: set[str] | None, out: list[LintMessage]) -> None:
    declared: set[str] = set()
    for node in tree.find_all((nodes.Name,)):
        if node.ctx in ("store", "param"):
            declared.add(node.name)
    for node in tree.find_all((nodes.Macro,)):
        declared.add(node.name)
    for node in tree.find_all((nodes.Import, nodes.FromImport)):
        if isinstance(node, nodes.Import):
            declared.add(node.target)
        else:
            declared.update(n if isinstance(n, str) else n[1] for n in node.names)
    seen: set[tuple[str, str]] = set()
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name not in declared and node.name not in KNOWN_NAMES:
            key = ("name", node.name)
            if key not in seen:
                seen.add(key)
                out.append(LintMessage("warning", "unknown-variable",
                                       f"unknown variable {node.name!r} (use profile., subscription., resource., "
                                       "account., links. or data.)", part, node.lineno))
    for node in tree.find_all(nodes.Getattr):
        if not (isinstance(node.node, nodes.Name) and node.node.ctx == "load") or node.node.name in declared:
            continue
        base, attr = node.node.name, node.attr
        if base == "profile" and profile_fields is not None and attr not in profile_fields:
            key = ("profile", attr)
            if key not in seen:
                seen.add(key)
                out.append(LintMessage("warning", "unknown-field",
                                       f"the profile database has no field {attr!r}", part, node.lineno))
        elif base in KNOWN_ATTRS and attr not in KNOWN_ATTRS[base]:
            key = (base, attr)
            if key not in seen:
                seen.add(key)
                out.append(LintMessage("warning", "unknown-variable", f"{base}.{attr} is not known", part,
                                       node.lineno))


def profile_field_names(database: Any) -> set[str] | None:
    if database is None:
        return None
    from profiles.models import Field

    return PROFILE_ALWAYS | set(Field.objects.filter(database=database).values_list("name", flat=True))


def _sources(channel: str, data: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    if channel == "telegram":
        yield "text", str(data.get("text") or "")
        for r, row in enumerate(data.get("buttons") or []):
            for c, b in enumerate(row or []):
                if isinstance(b, dict):
                    yield f"buttons[{r}][{c}].text", str(b.get("text") or "")
                    yield f"buttons[{r}][{c}].url", str(b.get("url") or "")
        return
    from content.rendering import CHANNEL_PARTS

    for part in CHANNEL_PARTS.get(channel, ()):
        yield part, str(data.get(part) or "")


def lint(channel: str, data: Mapping[str, Any], *, database: Any = None, kind: str = "marketing",
         compiled: Mapping[str, Any] | None = None, fragments: Mapping[str, str] | None = None) -> list[LintMessage]:
    """Messages about `data` (a channel's parts as written). `database`: the template's profile
    database (profile fields are checked against it when given); `compiled`: the saved form
    (the HTML size is measured after inlining); `fragments`: {key: html} of the account's
    fragments the parts include (an unsubscribe link may live in a footer fragment)."""
    out: list[LintMessage] = []
    env = sandbox.SandboxEnvironment()
    fields = profile_field_names(database)
    for part, source in _sources(channel, data):
        if not source:
            continue
        tree = _parse(env, part, source, out)
        if tree is not None:
            _variables(tree, part, fields, out)
    if channel == "email":
        _lint_email(data, kind, compiled, fragments, out)
    elif channel == "sms":
        info = sms_info(static_text(str(data.get("text") or "")))
        if info.segments > SMS_MAX_SEGMENTS:
            out.append(LintMessage("warning", "sms-segments",
                                   f"the text is {info.segments} SMS segments ({info.encoding}, {info.length} "
                                   f"characters) before variables", "text"))
    elif channel in ("webpush", "mobilepush"):
        if len(static_text(str(data.get("title") or ""))) > PUSH_TITLE_MAX:
            out.append(LintMessage("warning", "push-title-long",
                                   f"titles over {PUSH_TITLE_MAX} characters are cut off on most devices", "title"))
        if len(static_text(str(data.get("body") or ""))) > PUSH_BODY_MAX:
            out.append(LintMessage("warning", "push-body-long",
                                   f"texts over {PUSH_BODY_MAX} characters are cut off on most devices", "body"))
    elif channel == "telegram" and len(static_text(str(data.get("text") or ""))) > TELEGRAM_MAX:
        out.append(LintMessage("error", "telegram-too-long",
                               f"Telegram accepts at most {TELEGRAM_MAX} characters per message", "text"))
    return out


def _lint_email(data: Mapping[str, Any], kind: str, compiled: Mapping[str, Any] | None,
                fragments: Mapping[str, str] | None, out: list[LintMessage]) -> None:
    subject = str(data.get("subject") or "")
    html = str(data.get("html") or "")
    if not subject.strip():
        out.append(LintMessage("error", "empty-subject", "the subject is empty", "subject"))
    elif len(static_text(subject)) > SUBJECT_MAX:
        out.append(LintMessage("warning", "long-subject",
                               f"subjects over {SUBJECT_MAX} characters are cut off in most inboxes", "subject"))
    sources = [html, *((fragments or {}).values())]
    if kind == "marketing" and not any("links.unsubscribe" in s for s in sources):
        out.append(LintMessage("error", "no-unsubscribe",
                               "a marketing e-mail needs an unsubscribe link: <a href=\"{{ links.unsubscribe }}\">",
                               "html"))
    size = len(str(compiled.get("html") or "").encode()) if compiled else len(html.encode())
    if size > GMAIL_CLIP:
        out.append(LintMessage("warning", "html-too-large",
                               f"the HTML is {size / 1024:.0f} KB after inlining: Gmail clips messages over 102 KB",
                               "html"))
    m = _SCRIPT.search(html)
    if m:
        out.append(LintMessage("warning", "script", "e-mail clients remove scripts and event handlers (on...=)",
                               "html", _line(html, m.start())))
    for m in _IMG.finditer(html):
        if not re.search(r"\balt\s*=", m.group(0), re.I):
            out.append(LintMessage("warning", "img-no-alt", "an image has no alt text", "html", _line(html, m.start())))
    for m in _HREF.finditer(html):
        url = m.group(2).strip()
        low = url.lower()
        line = _line(html, m.start())
        if low.startswith(("javascript:", "data:", "vbscript:", "file:")):
            out.append(LintMessage("error", "bad-link", f"a link to {url[:60]!r} will not work in e-mail", "html", line))
        elif not url or low.startswith(("http://", "https://", "mailto:", "tel:", "#", "{{", "{%", "sms:")):
            continue
        else:
            out.append(LintMessage("warning", "relative-link",
                                   f"the link {url[:60]!r} is not an absolute http(s) URL", "html", line))
