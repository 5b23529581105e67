"""A condition tree in words, for the segment page and the explainer: "City is Berlin",
"Message opened at least once in the last 30 days (channel e-mail)", "In segment VIPs".

Names come from the builder's catalogue (field labels, event type labels, resources, segments);
a name the catalogue no longer has is shown as missing rather than hidden.
"""

from __future__ import annotations

from typing import Any

from resources.models import Channel, Status
from segments.views.builder import Catalogue, display_value, operator_label

_CHANNELS = dict(Channel.choices)
_STATUSES = dict(Status.choices)


def group_label(node: dict[str, Any]) -> str:
    """How a group reads: all / any of, or with NOT: not all / none of."""
    op = node.get("op") if node.get("op") in ("and", "or") else "and"
    if node.get("negate"):
        return "None of these" if op == "or" else "Not all of these"
    return "Any of these" if op == "or" else "All of these"


def _times(n: Any) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{display_value(n)} times"


def _window(window: Any) -> str:
    if not isinstance(window, dict):
        return ""
    if window.get("last_days") is not None:
        days = window["last_days"]
        return " in the last day" if days == 1 else f" in the last {display_value(days)} days"
    if window.get("from") or window.get("to"):
        return f" between {window.get('from') or '…'} and {window.get('to') or '…'}"
    if window.get("since"):
        return f" since {window['since']}"
    return ""


def describe(node: Any, cat: Catalogue) -> str:
    """One condition (not a group) as a sentence."""
    if not isinstance(node, dict):
        return "An unreadable condition"
    kind = node.get("type")
    if kind == "field":
        name = str(node.get("field") or "")
        f = cat.fields.get(name)
        label = f.label if f else f"{name or '?'} (missing field)"
        op = str(node.get("operator") or "")
        text = f"{label} {operator_label(op, f.type if f else '')}"
        if op in ("empty", "set"):
            return text
        value = node.get("value")
        if op in ("in_last_days", "in_next_days", "anniversary_in_days"):
            what = {"in_last_days": "in the last", "in_next_days": "in the next",
                    "anniversary_in_days": "has its anniversary within"}[op]
            return f"{label} {what} {display_value(value)} days"
        if op == "between":
            return f"{text} {display_value(value)} and {display_value(node.get('value2'))}"
        shown = display_value(value)
        return f"{text} {shown}" if shown else text
    if kind == "event":
        name = str(node.get("event") or "")
        et = cat.event_types.get(name)
        label = (et.label or et.name) if et else f"{name or '?'} (missing event type)"
        count = node.get("count") if isinstance(node.get("count"), dict) else {}
        op = count.get("op") or "exists"
        n = count.get("n") or 1
        if op == "not_exists":
            text = f"{label}: never"
        elif op == "at_least":
            text = f"{label} at least {_times(n)}"
        elif op == "at_most":
            text = f"{label} at most {_times(n)}"
        else:
            text = f"{label} at least once"
        text += _window(node.get("window"))
        where = node.get("where") if isinstance(node.get("where"), dict) else {}
        filters = []
        if where.get("channel"):
            filters.append(f"channel {_CHANNELS.get(where['channel'], where['channel'])}")
        if where.get("mailing_id"):
            filters.append(f"mailing #{where['mailing_id']}")
        if where.get("template_id"):
            filters.append(f"template #{where['template_id']}")
        if where.get("link_id"):
            filters.append(f"link #{where['link_id']}")
        for p in where.get("properties") or []:
            if isinstance(p, dict):
                op = str(p.get("operator") or "eq")
                shown = "" if op in ("empty", "set") else " " + display_value(p.get("value"))
                filters.append(f"{p.get('name')} {operator_label(op)}{shown}")
        return text + (f" ({', '.join(filters)})" if filters else "")
    if kind == "subscription":
        rid = node.get("resource")
        resource = cat.resources.get(rid) if isinstance(rid, int) else None
        rname = resource.name if resource else f"resource #{rid} (missing)"
        statuses = [_STATUSES.get(s, s).lower() for s in node.get("statuses") or ["subscribed"]]
        channel = _CHANNELS.get(node.get("channel") or "", node.get("channel") or "any channel")
        text = f"{' or '.join(statuses).capitalize()} to {rname} by {channel}"
        if node.get("category"):
            key = node["category"]
            text += f", category {resource.category_label(key) if resource else key}"
        return ("Not: " + text[0].lower() + text[1:]) if node.get("negate") else text
    if kind == "segment":
        sid = node.get("segment")
        seg = cat.segments.get(sid) if isinstance(sid, int) else None
        name = f"“{seg.name}”" if seg else f"#{sid} (missing segment)"
        return f"Not in segment {name}" if node.get("negate") else f"In segment {name}"
    if kind == "sample":
        return f"A stable random {display_value(node.get('percent'))}% of profiles"
    return "An unknown condition"


def tree_lines(tree: Any, cat: Catalogue) -> dict[str, Any] | None:
    """The tree as nested {"label", "text", "items"} for `segments/_words.html`; None when empty."""
    if not isinstance(tree, dict):
        return None

    def walk(node: Any) -> dict[str, Any]:
        if isinstance(node, dict) and node.get("type") == "group":
            return {"group": True, "label": group_label(node),
                    "items": [walk(c) for c in node.get("items") or []]}
        return {"group": False, "text": describe(node, cat)}

    out = walk(tree)
    if out.get("group") and not out["items"]:
        return None
    return out
