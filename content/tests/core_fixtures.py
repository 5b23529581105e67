"""Helpers for the content-core tests: render a source in the sandbox, a shop database, a context."""

from __future__ import annotations

from typing import Any

from accounts.access import Actor
from content.rendering import CompiledVersion, build_context, prepare

SYSTEM = Actor.system()

ACCOUNT = {"id": 1, "name": "Acme", "timezone": "Europe/Berlin", "language": "en"}
PROFILE = {"id": 7, "first_name": "Olivia", "last_name": "Smith", "email": "olivia@example.com", "phone": "",
           "timezone": "", "points": 1234, "city": "Berlin",
           "products": [{"name": "Lamp", "price": 19.5}, {"name": "Desk", "price": 250}]}


def ctx(**overrides: Any) -> dict[str, Any]:
    base = {"account": dict(ACCOUNT), "profile": dict(PROFILE)}
    base.update(overrides)
    return build_context(**base)


def compile_parts(channel: str, data: dict[str, Any], fragments: dict[str, tuple[str, str]] | None = None,
                  links: list[dict[str, Any]] | None = None) -> CompiledVersion:
    prepared = prepare(channel, data)
    return CompiledVersion(channel=channel, compiled=prepared.compiled,
                           links=links if links is not None else prepared.links, fragments=fragments or {})


def render_text(source: str, context: dict[str, Any] | None = None,
                fragments: dict[str, tuple[str, str]] | None = None, **kw: Any) -> str:
    """Render `source` as an SMS text part."""
    cv = compile_parts("sms", {"text": source}, fragments)
    return cv.render(context if context is not None else ctx(), **kw).parts["text"]


def render_html(source: str, context: dict[str, Any] | None = None,
                fragments: dict[str, tuple[str, str]] | None = None) -> str:
    cv = CompiledVersion(channel="email", compiled={"subject": "s", "preheader": "", "html": source, "text": "t"},
                         links=[], fragments=fragments or {})
    return cv.render(context if context is not None else ctx()).parts["html"]
