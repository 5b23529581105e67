"""Rendering message templates: compile a version once per worker, render it per message fast.

Contract (var/helper-notes/COMMON.md):
- `compiled(version) -> CompiledVersion`, cached per worker per version (a bounded LRU emptied
  when fragments change: `cdp.confcache.watch(Fragment)` in ContentConfig.ready());
- `CompiledVersion.render(context, *, link=None) -> Rendered(channel, parts)`; `link(link_id, url)`
  rewrites the catalogued links (click tracking); without it the original URLs come out;
- `context_for(...)` builds the plain-data context from model instances (previews, test sends,
  the API); the hot path builds the same shape from rows with `build_context(...)`.

Everything a template may do is limited by content.sandbox (F14); any failure, at compile or at
render, is a RenderError naming the part and the line. A render never queries the database: the
account's fragments a version includes are read when it is compiled.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jinja2 import BaseLoader, TemplateNotFound, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context

from cdp import confcache
from content import inline, sandbox
from content.text import html_to_text

if TYPE_CHECKING:
    from accounts.models import Account
    from content.models import TemplateVersion

CHANNEL_PARTS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "preheader", "html", "text"),
    "sms": ("text",),
    "webpush": ("title", "body", "icon", "image", "url"),
    "mobilepush": ("title", "body", "icon", "image", "url"),
    "telegram": ("text", "parse_mode", "buttons"),
}
REQUIRED_PARTS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "html"),
    "sms": ("text",),
    "webpush": ("title", "body"),
    "mobilepush": ("title", "body"),
    "telegram": ("text",),
}
# Source size limits per part, in characters (the HTML limit is before inlining).
PART_LIMITS: dict[str, int] = {
    "subject": 2_000, "preheader": 2_000, "html": 256_000, "text": 128_000, "title": 1_000, "body": 4_000,
    "icon": 2_000, "image": 2_000, "url": 2_000, "buttons": 8_000,
}
CHANNEL_TEXT_LIMITS = {"sms": 4_000, "telegram": 16_000}
TELEGRAM_PARSE_MODES = ("", "HTML", "MarkdownV2")
MAX_BUTTONS = 24
PREVIEW_LINKS = {"unsubscribe": "#unsubscribe", "preferences": "#preferences"}
PROFILE_SYSTEM = ("id", "email", "phone", "first_name", "last_name", "birthday", "gender", "timezone", "created_at",
                  "updated_at")
MAX_CACHED = 512  # compiled versions kept per worker
MAX_INLINE = 8  # levels of fragment includes expanded at compile time
MAX_INLINE_SOURCE = 512_000  # characters of fragment source expanded into one part


class RenderError(Exception):
    """A template that cannot compile or render. `part` ("subject", "html", "buttons[0][1].url"...),
    `line` (1-based, in that part or in the named fragment) when known."""

    def __init__(self, message: str, *, part: str = "", line: int | None = None) -> None:
        self.message = message
        self.part = part
        self.line = line
        where = ", ".join(x for x in (part, f"line {line}" if line else "") if x)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(slots=True)
class Rendered:
    channel: str
    parts: dict[str, Any] = field(default_factory=dict)


# --- compiling ---------------------------------------------------------------------------------------


class FragmentLoader(BaseLoader):
    """Only the account's own fragments, by key, from the snapshot taken at compile time."""

    def __init__(self, sources: Mapping[str, str]) -> None:
        self.sources = dict(sources)

    def get_source(self, environment: Any, template: str) -> tuple[str, None, Callable[[], bool]]:
        source = self.sources.get(template)
        if source is None:
            raise TemplateNotFound(template)
        return source, None, lambda: True


@dataclass
class Prepared:
    """What a save stores in TemplateVersion.compiled / links / size."""

    compiled: dict[str, Any]
    links: list[dict[str, Any]]
    size: int


def prepare(channel: str, data: Mapping[str, Any], *,
            ensure_links: Callable[[list[str]], dict[str, int]] | None = None) -> Prepared:
    """The part sources the renderer compiles: for e-mail, the CSS-inlined HTML with the preheader
    and link placeholders and the text part (generated when absent); links catalogued with ids
    from `ensure_links(urls) -> {url: id}` (0 without it: drafts)."""
    if channel not in CHANNEL_PARTS:
        raise RenderError(f"unknown channel {channel!r}", part="channel")
    compiled: dict[str, Any] = {}
    links: list[dict[str, Any]] = []
    size = 0
    if channel == "email":
        p = inline.protect(str(data.get("html") or ""))
        inline.set_aside_templated_styles(p)
        p.html = inline.drop_remote_stylesheets(p.html)
        css = inline.stylesheet(p)
        if css.strip():
            compiled["css"] = css  # included fragments get it at compile time
        p.html = inline.inline_css(p.html)
        found = inline.catalogue_links(p)
        text = str(data.get("text") or "")
        compiled["text_generated"] = not text.strip()
        if not text.strip():
            text = inline.restore(html_to_text(p.html), p)
        html = inline.insert_preheader(inline.restore(p.html, p), str(data.get("preheader") or ""))
        ids = ensure_links([lk.url for lk in found]) if (ensure_links and found) else {}
        links = [{"id": ids.get(lk.url, 0), "url": lk.url, "text": lk.text} for lk in found]
        compiled.update(subject=str(data.get("subject") or ""), preheader=str(data.get("preheader") or ""),
                        html=html, text=text)
        size = len(html.encode())
    elif channel == "telegram":
        compiled["text"] = str(data.get("text") or "")
        compiled["parse_mode"] = str(data.get("parse_mode") or "")
        compiled["buttons"] = [[{"text": str(b.get("text") or ""), "url": str(b.get("url") or "")} for b in row]
                               for row in (data.get("buttons") or [])]
    else:
        for part in CHANNEL_PARTS[channel]:
            compiled[part] = str(data.get(part) or "")
    return Prepared(compiled=compiled, links=links, size=size)


def _references(tree: nodes.Template) -> list[tuple[str, int]]:
    return [(n.template.value, n.lineno) for n in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport))
            if isinstance(n.template, nodes.Const)]


def _syntax_error(e: TemplateSyntaxError, part: str, fragment: str | None = None) -> RenderError:
    message = e.message or str(e)
    if fragment:
        message = f"in fragment {fragment!r}: {message}"
    return RenderError(message, part=part, line=e.lineno)


class CompiledVersion:
    """A version's parts compiled in the sandbox, ready to render many messages."""

    def __init__(self, *, channel: str, compiled: Mapping[str, Any], links: list[dict[str, Any]],
                 fragments: Mapping[str, tuple[str, str]], version_id: int | None = None,
                 collect: list[RenderError] | None = None) -> None:
        self.channel = channel
        self._collect = collect  # when given, compile errors are appended here (every part checked)
        self.version_id = version_id
        self.links = links
        self.compiled_at = time.monotonic()
        self._urls = tuple(lk["url"] for lk in links)
        self._link_pairs = tuple((int(lk.get("id") or 0), lk["url"]) for lk in links)
        css = str(compiled.get("css") or "")
        html_sources = {k: inline.inline_fragment_css(v[0], css) for k, v in fragments.items()}
        text_sources = {k: v[1] for k, v in fragments.items()}
        self._html_env = sandbox.SandboxEnvironment(loader=FragmentLoader(html_sources), autoescape=True)
        self._text_env = sandbox.SandboxEnvironment(loader=FragmentLoader(text_sources), autoescape=False)
        self._fragments = fragments
        self._templates: list[tuple[str, Any]] = []
        self._buttons: list[list[tuple[Any, Any]]] = []
        self.parse_mode = ""
        self._text_generated = False
        if channel == "email":
            self._add("subject", compiled.get("subject", ""), self._text_env)
            self._add("preheader", compiled.get("preheader", ""), self._text_env)
            self._add("html", compiled.get("html", ""), self._html_env)
            if compiled.get("text_generated"):
                # The text made from the HTML keeps its template tags on lines of their own; like
                # Jinja's trim_blocks, a tag's line break is dropped, so a loop gives one line per
                # item and a false condition leaves no stray blank lines (render collapses the rest).
                self._text_generated = True
                env = sandbox.SandboxEnvironment(loader=FragmentLoader(text_sources), autoescape=False,
                                                 trim_blocks=True, lstrip_blocks=True)
                self._add("text", compiled.get("text", ""), env)
            else:
                self._add("text", compiled.get("text", ""), self._text_env)
        elif channel == "telegram":
            self.parse_mode = str(compiled.get("parse_mode") or "")
            if self.parse_mode == "HTML":
                env = self._html_env
            elif self.parse_mode == "MarkdownV2":
                env = sandbox.SandboxEnvironment(loader=FragmentLoader(text_sources), markdown_v2=True)
            else:
                env = self._text_env
            self._add("text", compiled.get("text", ""), env)
            for r, row in enumerate(compiled.get("buttons") or []):
                self._buttons.append([
                    (self._compile(f"buttons[{r}][{c}].text", b.get("text", ""), self._text_env),
                     self._compile(f"buttons[{r}][{c}].url", b.get("url", ""), self._text_env))
                    for c, b in enumerate(row)
                ])
        else:
            for part in CHANNEL_PARTS[channel]:
                self._add(part, compiled.get(part, ""), self._text_env)

    def _add(self, part: str, source: str, env: sandbox.SandboxEnvironment) -> None:
        self._templates.append((part, self._compile(part, source, env)))

    def _compile(self, part: str, source: str, env: sandbox.SandboxEnvironment) -> Any:
        if self._collect is None:
            return self._compile_part(part, source, env)
        try:
            return self._compile_part(part, source, env)
        except RenderError as e:
            self._collect.append(e)
            return None

    def _compile_part(self, part: str, source: str, env: sandbox.SandboxEnvironment) -> Any:
        source = str(source or "")
        try:
            tree = env.parse(source)
        except TemplateSyntaxError as e:
            raise _syntax_error(e, part) from None
        for name, line in _references(tree):
            self._load_fragment(env, name, part, line)
        self._inline_left = MAX_INLINE_SOURCE
        self._inline_includes(tree, env, 0)
        try:
            return env.from_string(tree)
        except TemplateSyntaxError as e:
            raise _syntax_error(e, part) from None

    def _inline_includes(self, node: nodes.Node, env: sandbox.SandboxEnvironment, depth: int) -> None:
        """Replace `{% include "key" %}` of a known fragment by the fragment's own nodes in a scope
        of their own (what an include with context does, minus a template lookup, a context copy
        and a generator per message). Deeper than MAX_INLINE (a fragment that includes itself)
        or past MAX_INLINE_SOURCE the include stays an include: it renders as one, or fails
        ("nest too deeply"). Runtime errors in inlined code report the fragment's line numbers."""
        for field_name in node.fields:
            value = getattr(node, field_name, None)
            if isinstance(value, list):
                for i, child in enumerate(value):
                    if (isinstance(child, nodes.Include) and child.with_context and depth < MAX_INLINE
                            and isinstance(child.template, nodes.Const) and child.template.value in self._fragments):
                        key = child.template.value
                        source, _, _ = env.loader.get_source(env, key)
                        self._inline_left -= len(source)
                        if self._inline_left < 0:
                            continue  # fragments including fragments many times: the rest stays includes
                        body = env.parse(source, key).body
                        value[i] = nodes.Scope(body, lineno=child.lineno)
                        value[i].set_environment(env)
                        self._inline_includes(value[i], env, depth + 1)
                    elif isinstance(child, nodes.Node):
                        self._inline_includes(child, env, depth)
            elif isinstance(value, nodes.Node):
                self._inline_includes(value, env, depth)

    def _load_fragment(self, env: sandbox.SandboxEnvironment, name: str, part: str, line: int) -> None:
        if name not in self._fragments:
            raise RenderError(f"no fragment named {name!r}", part=part, line=line)
        try:
            env.get_template(name)  # compiled now, cached in the environment: never per message
        except TemplateSyntaxError as e:
            raise _syntax_error(e, part, fragment=name) from None

    # -- rendering --

    def render(self, context: Mapping[str, Any], *, link: Callable[[int, str], str] | None = None,
               time_limit: float = sandbox.TIME_LIMIT) -> Rendered:
        """Every part for one recipient. Raises RenderError (part, line) on any failure: a limit of
        content.sandbox, a refused attribute, a missing fragment..."""
        vars_ = dict(context)
        vars_["range"] = sandbox.safe_range
        vars_["_links"] = self._urls if link is None else [link(i, u) for i, u in self._link_pairs]
        parts: dict[str, Any] = {}
        part = ""
        sandbox.begin(time_limit)
        try:
            for part, tmpl in self._templates:
                parts[part] = "".join(tmpl.root_render_func(Context(tmpl.environment, vars_, None, tmpl.blocks)))
            if self._buttons:
                rows = []
                for r, row in enumerate(self._buttons):
                    out_row = []
                    for c, (t_text, t_url) in enumerate(row):
                        part = f"buttons[{r}][{c}]"
                        out_row.append({
                            "text": "".join(t_text.root_render_func(Context(t_text.environment, vars_, None, {}))),
                            "url": "".join(t_url.root_render_func(Context(t_url.environment, vars_, None, {}))).strip(),
                        })
                    rows.append(out_row)
                parts["buttons"] = rows
        except RenderError:
            raise
        except Exception as e:  # a user template may fail in any way; the worker lives on
            raise render_error(e, part) from None
        finally:
            sandbox.end()
        if self.channel == "email":
            # A header cannot hold line breaks (header injection); the preheader is one line too.
            parts["subject"] = " ".join(parts["subject"].split())
            parts["preheader"] = " ".join(parts["preheader"].split())
            if self._text_generated:
                parts["text"] = _BLANK_LINES.sub("\n\n", parts["text"]).strip("\n") + "\n"
        elif self.channel == "telegram":
            parts["parse_mode"] = self.parse_mode
            parts.setdefault("buttons", [])
        return Rendered(self.channel, parts)


_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")  # two or more blank lines


def render_error(e: BaseException, part: str) -> RenderError:
    """A RenderError for an exception raised while rendering `part`, with the template line."""
    line = None
    fragment = None
    tb = e.__traceback__
    while tb is not None:
        tmpl = tb.tb_frame.f_globals.get("__jinja_template__")
        if tmpl is not None:
            line = tmpl.get_corresponding_lineno(tb.tb_lineno)
            fragment = tmpl.name
        tb = tb.tb_next
    if isinstance(e, TemplateNotFound):
        message = f"no fragment named {e.name!r}"
    elif isinstance(e, RecursionError):
        message = "templates nest too deeply (a macro or fragment that calls itself?)"
    elif isinstance(e, MemoryError):
        message = "the template needs too much memory"
    elif isinstance(e, (sandbox.LimitExceeded, SecurityError, UndefinedError)):
        message = str(e)
    else:
        message = str(e) or type(e).__name__
    if fragment:
        message = f"in fragment {fragment!r}: {message}"
    return RenderError(message, part=part, line=line)


def fragments_for(account_id: int, compiled: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The account's fragments the parts include (transitively): {key: (html, text)}, the text
    generated from the HTML when the fragment has none. One query per level of nesting."""
    from content.models import Fragment

    env = sandbox.SandboxEnvironment()
    wanted: set[str] = set()
    for source in _sources(compiled):
        wanted |= _referenced(env, source)
    found: dict[str, tuple[str, str]] = {}
    while wanted - set(found):
        todo = wanted - set(found)
        rows = list(Fragment.objects.filter(account_id=account_id, key__in=sorted(todo)).values_list("key", "html",
                                                                                                   "text"))
        for key, html, text in rows:
            found[key] = (html, text if text.strip() else text_from_html(html))
            wanted |= _referenced(env, html) | _referenced(env, found[key][1])
        if not rows:
            break
    return found


def text_from_html(html: str) -> str:
    """The text-part source generated from an HTML source, its template constructs kept."""
    p = inline.protect(html)
    return inline.restore(html_to_text(p.html), p)


def _sources(compiled: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in compiled.items():
        if isinstance(value, str) and key not in ("parse_mode",):
            out.append(value)
        elif key == "buttons":
            out.extend(str(b.get(k, "")) for row in value for b in row for k in ("text", "url"))
    return out


def _referenced(env: sandbox.SandboxEnvironment, source: str) -> set[str]:
    if "{%" not in source:
        return set()
    try:
        return {name for name, _ in _references(env.parse(source))}
    except TemplateSyntaxError:
        return set()  # reported with its line when the part is compiled


def check(*, account_id: int, channel: str, compiled: Mapping[str, Any]) -> list[RenderError]:
    """Every compile error of every part (syntax, refused constructs, missing fragments), in part
    order; empty when the parts compile."""
    errors: list[RenderError] = []
    CompiledVersion(channel=channel, compiled=compiled, links=[], fragments=fragments_for(account_id, compiled),
                    collect=errors)
    return errors


def compile_version(version: TemplateVersion) -> CompiledVersion:
    """Compile a saved version (reads its account's fragments: one query per nesting level)."""
    return CompiledVersion(channel=version.channel, compiled=version.compiled, links=list(version.links or []),
                           fragments=fragments_for(version.account_id, version.compiled), version_id=version.pk)


def compile_draft(*, account: Account, channel: str, data: Mapping[str, Any], kind: str = "marketing") -> CompiledVersion:
    """Compile parts that are not saved (the editor's live preview): the same path as a save, minus
    the link catalogue and the database write. Not cached. Raises RenderError."""
    prepared = prepare(channel, data)
    return CompiledVersion(channel=channel, compiled=prepared.compiled, links=prepared.links,
                           fragments=fragments_for(account.pk, prepared.compiled))


_CACHE: OrderedDict[int, CompiledVersion] = confcache.register(OrderedDict())  # type: ignore[assignment]


def compiled(version: TemplateVersion) -> CompiledVersion:
    """The version compiled, cached per worker (LRU of MAX_CACHED). Fragment changes reach the next
    call: saving a Fragment bumps the configuration generation (cdp.confcache), which empties this
    cache here at once and in other processes within a few seconds. Raises RenderError."""
    usable = confcache.check(fresh_within=2.0)
    hit = _CACHE.get(version.pk)
    if hit is not None and (usable or time.monotonic() - hit.compiled_at < confcache.MAX_AGE):
        with contextlib.suppress(KeyError):  # another thread evicted it meanwhile: the hit is still good
            _CACHE.move_to_end(version.pk)
        return hit
    cv = compile_version(version)
    _CACHE[version.pk] = cv
    while len(_CACHE) > MAX_CACHED:
        _CACHE.popitem(last=False)
    return cv


def clear_cache() -> None:
    _CACHE.clear()


# --- the render context --------------------------------------------------------------------------------


def account_dict(account: Account) -> dict[str, Any]:
    return {"id": account.pk, "name": account.name, "timezone": account.timezone, "language": account.language}


def profile_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A profile row (Profile.objects.values(...) with "data") as the template sees it: custom
    fields and system fields side by side; missing text fields are ""."""
    out = dict(row.get("data") or {})
    for key in PROFILE_SYSTEM:
        if key in row:
            v = row[key]
            out[key] = "" if v is None and key in ("email", "phone") else v
    return out


def profile_row(profile: Any) -> dict[str, Any]:
    row = {key: getattr(profile, key, None) for key in PROFILE_SYSTEM}
    row["data"] = profile.data or {}
    return row


def resource_dict(resource: Any) -> dict[str, Any]:
    return {"id": resource.pk, "name": resource.name, "slug": resource.slug, "description": resource.description,
            "categories": [dict(c) for c in (resource.categories or []) if isinstance(c, dict)]}


def subscription_dict(subscription: Any, resource: Any = None) -> dict[str, Any]:
    opted_out = list(subscription.opted_out or [])
    keys = [c.get("key") for c in ((resource.categories if resource is not None else None) or [])
            if isinstance(c, dict)]
    return {"id": subscription.pk, "channel": subscription.channel, "address": subscription.address,
            "status": subscription.status, "categories": [k for k in keys if k and k not in opted_out],
            "opted_out": opted_out}


def build_context(*, account: Mapping[str, Any], profile: Mapping[str, Any] | None = None,
                  subscription: Mapping[str, Any] | None = None, resource: Mapping[str, Any] | None = None,
                  links: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The render context from plain dicts (the hot path: rows loaded in bulk, no instances)."""
    return {"account": account, "profile": profile if profile is not None else {},
            "subscription": subscription if subscription is not None else {},
            "resource": resource if resource is not None else {},
            "links": links if links is not None else PREVIEW_LINKS, "data": data if data is not None else {}}


def context_for(*, account: Account, profile: Any = None, subscription: Any = None, resource: Any = None,
                data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The render context from model instances (previews, test sends, the API). Plain data only.
    Unsubscribe and preference links are real when a subscription is given, "#..." otherwise."""
    from resources import tokens

    if subscription is not None and resource is None:
        resource = subscription.resource
    if subscription is not None and profile is None:
        profile = subscription.profile
    links: dict[str, Any] = dict(PREVIEW_LINKS)
    if subscription is not None:
        links = {"unsubscribe": tokens.unsubscribe_url(subscription),
                 "preferences": tokens.preferences_url(subscription)}
    return build_context(
        account=account_dict(account),
        profile=profile_dict(profile_row(profile)) if profile is not None else {},
        subscription=subscription_dict(subscription, resource) if subscription is not None else {},
        resource=resource_dict(resource) if resource is not None else {},
        links=links, data=dict(data or {}),
    )
