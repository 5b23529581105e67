"""HTML -> plain text, for the text part of an e-mail written only in HTML (save time, not per message).

html.parser based: headings (underlined), paragraphs and line breaks, lists ("- item", "1. item"),
links as "text (url)" (just "url" when the text is the URL), tables row by row (cells joined with
" | "), images by their alt text, no <style>/<script>/<head> content, hidden
elements (display:none) dropped, paragraphs wrapped at 78 columns.

Jinja placeholders (content.inline.protect: `<!--cdpXXXXXXXXjNx-->` comments and tokens) pass
through as text so the caller restores them: the generated text is itself a template source.
Literal "{{", "{%" and "{#" coming from the HTML's text are escaped so they stay literal.
"""

from __future__ import annotations

import re
import textwrap
from html.parser import HTMLParser

WIDTH = 78
_PLACEHOLDER = re.compile(r"cdp[0-9a-f]{8}j\d+x")  # content.inline.TOKEN
_BLOCK = frozenset({"p", "div", "section", "article", "header", "footer", "blockquote", "center", "main", "nav",
                    "aside", "form", "address", "figure", "figcaption", "dl", "dt", "dd", "pre", "hr"})
_SKIP = frozenset({"style", "script", "head", "title", "noscript", "template"})
_HEADINGS = {"h1": "=", "h2": "-", "h3": "", "h4": "", "h5": "", "h6": ""}
_VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source"})
_LITERAL_JINJA = re.compile(r"\{(?=[{%#])")
CELL = "\x00"  # between table cells; becomes " | " (not whitespace, so it survives collapsing)
_CELL = re.compile(r"\s*\x00\s*")


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []  # finished lines/paragraphs ("" = blank line)
        self.line: list[str] = []
        self.skip = 0
        self.hidden: list[str] = []  # tag names of open hidden elements
        self.lists: list[list[int]] = []  # per open list: [ordered?, counter]
        self.links: list[tuple[str, int]] = []  # (href, position in self.line when opened)
        self.heading: str | None = None
        self.pre = 0
        self.row: list[str] | None = None

    # -- helpers --

    def _text(self) -> str:
        return "".join(self.line)

    def gap(self) -> None:
        if self.blocks and self.blocks[-1] != "":
            self.blocks.append("")

    def flush(self, blank: bool = True) -> None:
        text = self._text()
        self.line = []
        if self.pre:
            lines = text.split("\n")
        else:
            collapsed = _CELL.sub(" | ", " ".join(text.split()).strip("\x00 "))
            lines = [collapsed] if collapsed else []
        if not lines:
            if blank:
                self.gap()
            return
        for ln in lines:
            self.blocks.append(ln)
        if blank:
            self.blocks.append("")

    # -- parser callbacks --

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if self.hidden or (tag not in _VOID and "display:none" in a.get("style", "").replace(" ", "").lower()):
            if tag not in _VOID:
                self.hidden.append(tag)
            return
        if tag in _SKIP:
            self.skip += 1
            return
        if self.skip:
            return
        if tag in _HEADINGS:
            self.flush()
            self.heading = tag
        elif tag in _BLOCK:
            self.flush()
            if tag == "pre":
                self.pre += 1
            if tag == "hr":
                self.blocks.extend(["-" * 20, ""])
        elif tag == "br":
            self.flush(blank=False)
        elif tag in ("ul", "ol"):
            self.flush()
            self.lists.append([tag == "ol", 0])
        elif tag == "table":
            self.flush()
        elif tag == "li":
            self.flush(blank=False)
            if self.lists:
                self.lists[-1][1] += 1
                ordered, n = self.lists[-1]
                indent = "  " * (len(self.lists) - 1)
                self.line.append(f"{indent}{n}. " if ordered else f"{indent}- ")
            else:
                self.line.append("- ")
        elif tag == "tr":
            self.flush(blank=False)
            self.row = []
        elif tag in ("td", "th"):
            if self.row is not None and self.line:
                self.line.append(CELL)
        elif tag == "a":
            self.links.append((a.get("href", ""), len(self.line)))
        elif tag == "img":
            alt = a.get("alt", "").strip()
            if alt:
                self.line.append(alt)

    def handle_endtag(self, tag: str) -> None:
        if self.hidden:
            if self.hidden[-1] == tag:
                self.hidden.pop()
            return
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag in _HEADINGS and self.heading == tag:
            text = " ".join(self._text().split())
            self.line = []
            if text:
                self.blocks.append(text)
                if _HEADINGS[tag]:
                    self.blocks.append(_HEADINGS[tag] * min(len(text), WIDTH))
                self.blocks.append("")
            self.heading = None
        elif tag in _BLOCK:
            self.flush()
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
        elif tag in ("ul", "ol"):
            self.flush()
            if self.lists:
                self.lists.pop()
        elif tag == "li":
            self.flush(blank=False)
        elif tag == "tr":
            self.flush(blank=False)
            self.row = None
        elif tag == "table":
            self.flush()
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            text = " ".join("".join(self.line[start:]).split())
            href = href.strip()
            if href and not href.startswith("#") and not href.lower().startswith(("mailto:", "tel:", "javascript:")):
                if not text:
                    self.line.append(href)
                elif text != href:
                    self.line.append(f" ({href})")
            elif href.lower().startswith("mailto:") and text and text not in href:
                self.line.append(f" ({href[7:]})")

    def handle_data(self, data: str) -> None:
        if self.skip or self.hidden:
            return
        self.line.append(_LITERAL_JINJA.sub('{{ "{" }}', data))

    def handle_comment(self, data: str) -> None:
        # A Jinja placeholder stands in content as a comment: keep it, as text.
        if self.skip or self.hidden:
            return
        if _PLACEHOLDER.fullmatch(data):
            self.line.append(data)


def html_to_text(html: str, *, width: int = WIDTH) -> str:
    """Readable plain text of an HTML document (see module doc)."""
    conv = _Converter()
    conv.feed(html)
    conv.close()
    conv.flush()
    out: list[str] = []
    for block in conv.blocks:
        if block and len(block) > width and not block.startswith(("=", "-" * 20)):
            indent = re.match(r"\s*(?:\d+\. |- )?", block)
            lead = " " * len(indent.group(0)) if indent else ""
            out.extend(textwrap.wrap(block, width=width, subsequent_indent=lead, break_long_words=False,
                                     break_on_hyphens=False) or [""])
        else:
            out.append(block)
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n" if text.strip() else ""
