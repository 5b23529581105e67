"""Save-time HTML work for an e-mail version: CSS inlining, the preheader, and the link catalogue.

Done once per saved version (never per message), in this order:

1. protect: every Jinja construct ({{ }}, {% %}, {# #}, raw blocks) is swapped for a placeholder
   the HTML parser leaves alone: an HTML comment `<!--cdpXXXXXXXXjNx-->` where it stands in
   content (so `{% for %}` between <table> and <tr> is not moved out of the table), a bare token
   `cdpXXXXXXXXjNx` inside a tag, a comment, or raw text (<title>...); XXXXXXXX is random per
   save, so text that happens to look like a placeholder is never mistaken for one. A <style>
   block with template constructs is set aside whole (kept as written, not inlined). `restore`
   puts everything back byte-exact.
2. inline: css_inline with remote stylesheets never loaded (<link rel=stylesheet> is dropped
   without a request), @media and other at-rules kept in a <style>. Skipped when there is no
   <style>, so HTML without CSS is kept exactly as written.
3. links: static http(s) hrefs of <a> are catalogued (deduplicated by URL) and replaced by the
   placeholder of `{{ _links[i] }}`, so a message's click-tracking rewrite costs one list index;
   hrefs with template expressions, mailto:, tel:, anchors, and unsubscribe/preference links are
   not tracked.
4. the text part can be generated from the HTML at this point (content.text), placeholders and all.
5. the preheader goes in as the hidden first element of <body>.
"""

from __future__ import annotations

import html as htmlmod
import re
import secrets
from dataclasses import dataclass, field

import css_inline

TOKEN = re.compile(r"cdp[0-9a-f]{8}j\d+x")  # any save's placeholder token (content.text keeps them)
_JINJA = re.compile(
    r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}"
    r"|\{\{(?:[^}\"']|\"[^\"]*\"|'[^']*'|\}(?!\}))*\}\}"
    r"|\{%(?:[^%\"']|\"[^\"]*\"|'[^']*'|%(?!\}))*%\}"
    r"|\{#.*?#\}",
    re.S,
)
_HTML_EVENTS = re.compile(r"<!--|-->|<(/?)([a-zA-Z][a-zA-Z0-9-]*)|>")
_RAW_TEXT = frozenset({"style", "script", "title", "textarea", "xmp"})
_A_TAG = re.compile(r"<a\b([^>]*)>(.*?)</a\s*>", re.S | re.I)
_HREF = re.compile(r"(\bhref\s*=\s*)\"([^\"]*)\"", re.I)
_TAGS = re.compile(r"<[^>]*>")
_BODY = re.compile(r"<body\b[^>]*>", re.I)
_UNTRACKED_WORDS = ("unsubscribe", "preferences")

PREHEADER_STYLE = ("display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;max-width:0px;"
                   "opacity:0;overflow:hidden;mso-hide:all")


@dataclass
class Protected:
    html: str
    table: list[str] = field(default_factory=list)
    prefix: str = field(default_factory=lambda: f"cdp{secrets.token_hex(4)}")

    def add(self, source: str) -> int:
        self.table.append(source)
        return len(self.table) - 1

    def token(self, source: str) -> str:
        """The placeholder for `source` (in a tag or raw text)."""
        return f"{self.prefix}j{self.add(source)}x"

    def comment(self, source: str, kind: str = "j") -> str:
        """The placeholder for `source` in content: an HTML comment. kind "s": a <style> set
        aside, which content.text leaves out of the text part."""
        return f"<!--{self.prefix}{kind}{self.add(source)}x-->"


def protect(source: str) -> Protected:
    """Swap Jinja constructs for placeholders that survive an HTML parser (see module doc)."""
    out: list[str] = []
    p = Protected("")
    state = {"tag": False, "comment": False, "raw": "", "opening": ""}
    pos = 0
    for m in _JINJA.finditer(source):
        chunk = source[pos:m.start()]
        _advance(state, chunk)
        out.append(chunk)
        if state["tag"] or state["comment"] or state["raw"]:
            out.append(p.token(m.group(0)))
        else:
            out.append(p.comment(m.group(0)))
        pos = m.end()
    out.append(source[pos:])
    p.html = "".join(out)
    return p


def _advance(state: dict, chunk: str) -> None:
    """Follow where the HTML stands at the end of `chunk`: in a tag, a comment, raw text, or content."""
    for ev in _HTML_EVENTS.finditer(chunk):
        tok = ev.group(0)
        if state["comment"]:
            if tok == "-->":
                state["comment"] = False
            continue
        if state["raw"]:
            if ev.group(1) and ev.group(2).lower() == state["raw"]:
                state["raw"] = ""
                state["tag"] = True
                state["opening"] = ""
            elif tok == ">" and state["tag"]:
                state["tag"] = False
            continue
        if tok == "<!--":
            state["comment"] = True
        elif tok == ">":
            if state["tag"]:
                state["tag"] = False
                if state.get("opening") in _RAW_TEXT:
                    state["raw"] = state["opening"]
                state["opening"] = ""
        elif tok != "-->":
            state["tag"] = True
            state["opening"] = "" if ev.group(1) else ev.group(2).lower()


_STYLE = re.compile(r"<style\b[^>]*>.*?</style\s*>", re.S | re.I)


def set_aside_templated_styles(p: Protected) -> None:
    """A <style> block with template constructs in it cannot be inlined (the CSS parser would drop
    the rules around a placeholder, and the constructs with them): keep it exactly as written, in
    place, behind a placeholder of its own; the other <style> blocks are inlined as usual."""

    def aside(m: re.Match[str]) -> str:
        if p.prefix not in m.group(0):
            return m.group(0)
        return p.comment(restore(m.group(0), p), kind="s")

    p.html = _STYLE.sub(aside, p.html)


def restore(text: str, p: Protected) -> str:
    """Put the template constructs back in place of `p`'s placeholders (what an HTML serializer
    made of an attribute-name placeholder, `token=""`, included)."""
    pattern = re.compile(rf"<!--{p.prefix}[js](\d+)x-->|{p.prefix}j(\d+)x(?:=\"\")?")

    def put(m: re.Match[str]) -> str:
        n = int(m.group(1) or m.group(2))
        return p.table[n] if n < len(p.table) else m.group(0)

    return pattern.sub(put, text)


def inline_css(html: str) -> str:
    """Inline <style> rules into style attributes; never fetch anything. HTML without <style> is
    returned unchanged."""
    if "<style" not in html.lower():
        return html
    inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True, keep_link_tags=False)
    return _without_added_tbody(inliner.inline(html), html)


def _without_added_tbody(out: str, source: str) -> str:
    """The HTML parser adds <tbody> to tables; the person did not write it and a placeholder (say
    {% for %}) next to <tr> would end up on the wrong side of it."""
    if "<tbody" in source.lower():
        return out
    return out.replace("<tbody>", "").replace("</tbody>", "")


def stylesheet(p: Protected) -> str:
    """The CSS of the <style> blocks that get inlined (not the ones set aside with template code):
    what the included fragments are styled with too (see `inline_fragment_css`)."""
    return "\n".join(m.group(1) for m in _STYLE_BODY.finditer(p.html) if p.prefix not in m.group(0))


_STYLE_BODY = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.S | re.I)


def inline_fragment_css(html: str, css: str) -> str:
    """A fragment's HTML (a header, a footer) with the including template's CSS inlined, as the
    template's own markup was at save time. Done once per compiled version per worker, never per
    message. Rules that need an ancestor outside the fragment (`.card p` around an include) do not
    match: the fragment is styled on its own, and its own <style> blocks are inlined as well."""
    if not css.strip() and "<style" not in html.lower():
        return html
    p = protect(html)
    set_aside_templated_styles(p)
    inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=False, keep_link_tags=False)
    try:
        out = inliner.inline_fragment(drop_remote_stylesheets(p.html), css)
    except (css_inline.InlineError, ValueError):  # CSS the inliner cannot use: the fragment as written
        return html
    return restore(_without_added_tbody(out, html), p)


def drop_remote_stylesheets(html: str) -> str:
    """<link rel=stylesheet> is never followed; without CSS to inline it is simply removed."""
    return re.sub(r"<link\b[^>]*\brel\s*=\s*[\"']?stylesheet[^>]*>", "", html, flags=re.I)


@dataclass
class CatalogueLink:
    url: str
    text: str


def is_trackable(url: str) -> bool:
    low = url.strip().lower()
    if not (low.startswith("http://") or low.startswith("https://")):
        return False
    if TOKEN.search(low):
        return False  # a template expression is part of it
    return not any(w in low for w in _UNTRACKED_WORDS)


def catalogue_links(p: Protected) -> list[CatalogueLink]:
    """Replace every trackable <a href> by the placeholder of `{{ _links[i] }}`; return the links
    in index order (one per distinct URL)."""
    links: list[CatalogueLink] = []
    index: dict[str, int] = {}

    def per_anchor(m: re.Match[str]) -> str:
        attrs, inner = m.group(1), m.group(2)
        h = _HREF.search(attrs)
        if not h:
            return m.group(0)
        url = htmlmod.unescape(h.group(2)).strip()
        if not is_trackable(url):
            return m.group(0)
        i = index.get(url)
        if i is None:
            text = " ".join(_TAGS.sub(" ", restore(inner, p)).split())
            i = index[url] = len(links)
            links.append(CatalogueLink(url=url, text=htmlmod.unescape(text)[:200]))
        mark = p.token(f"{{{{ _links[{i}] }}}}")
        new_attrs = attrs[:h.start()] + f'{h.group(1)}"{mark}"' + attrs[h.end():]
        return f"<a{new_attrs}>{inner}</a>"

    p.html = _A_TAG.sub(per_anchor, p.html)
    return links


def insert_preheader(html: str, preheader_source: str) -> str:
    """The preheader (a template source itself) as the hidden first element of <body>."""
    if not preheader_source.strip():
        return html
    block = f'<div style="{PREHEADER_STYLE}">{preheader_source}</div>'
    m = _BODY.search(html)
    if m:
        return html[:m.end()] + block + html[m.end():]
    return block + html
