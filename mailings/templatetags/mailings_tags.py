"""Template filters of the mailing pages: reason labels and rates."""

from __future__ import annotations

from django import template

from mailings.models import LedgerEntry

register = template.Library()

_REASONS = dict(LedgerEntry.Reason.choices)
_EXTRA = {"no_address": "No address on the channel", "capped": "Frequency cap reached",
          "outside_window": "Outside the send window"}


@register.filter
def reason_label(value: str) -> str:
    """"unsubscribed" -> "Unsubscribed"; "skipped:capped" -> "Frequency cap reached"; unknown keys readable."""
    key = str(value or "").split(":", 1)[-1]
    return _REASONS.get(key) or _EXTRA.get(key) or key.replace("_", " ").capitalize()


@register.filter
def pct(part: float | int | None, whole: float | int | None) -> str:
    """part of whole as "12.3%", "—" without a whole."""
    if not whole:
        return "—"
    return f"{100 * (part or 0) / whole:.1f}%"


@register.filter
def percent(value: float | None) -> str:
    """A rate already in 0..1 (or None) as "12.3%"."""
    if value is None:
        return "—"
    return f"{100 * value:.1f}%"
