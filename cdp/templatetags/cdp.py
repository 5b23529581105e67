from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.conf import settings
from django.template.loader import render_to_string
from django.urls import get_script_prefix
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

register = template.Library()

NAV_TEMPLATE = "components/nav.html"
_nav_cache: dict[tuple[str, str, bool, str], str] = {}
NAV_CACHE_MAX = 1000  # sections x roles x staff: a few hundred at most; the bound guards a mistake


@register.simple_tag(takes_context=True)
def nav(context: Any) -> SafeString:
    """The sidebar (components/nav.html). What it shows depends only on the page's section, the
    member's role (its `can.*` links), whether the user is staff and the URL prefix, so it is
    rendered once per process for each of those and reused: its two dozen URL reverses and
    permission checks cost a few milliseconds of CPU on every page otherwise. The template gets
    exactly those inputs, so nothing else can leak into a shared copy. DEBUG renders it each time
    (template edits show at once)."""
    from accounts.context_processors import _Can

    membership = context.get("current_membership")
    user = context.get("user")
    section = str(context.get("section") or "")
    is_staff = bool(getattr(user, "is_staff", False))
    key = (section, str(getattr(membership, "role", "") or ""), is_staff, get_script_prefix())
    html = None if settings.DEBUG else _nav_cache.get(key)
    if html is None:
        html = render_to_string(NAV_TEMPLATE, {"section": section, "can": _Can(membership),
                                               "user": {"is_staff": is_staff}})
        if len(_nav_cache) < NAV_CACHE_MAX:
            _nav_cache[key] = html
    return mark_safe(html)  # our own template's output, escaped when it was rendered


@register.filter
def ago(value: datetime | None) -> str:
    """"just now", "5 minutes ago", "2 days, 3 hours ago"."""
    if not value:
        return ""
    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value, depth=1)} ago"
