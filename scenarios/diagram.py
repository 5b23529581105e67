"""The scenario diagram: where each step's card goes and how its exits are drawn.

The page draws the flow server-side: each step is an absolutely positioned HTML card (so it can
hold links, figures and htmx attributes) on a canvas, and the connectors are one SVG under the
cards. This module does the geometry and the words; the template only places what it is given.

- Layout follows the stored grid cell (Step.col, Step.row): the flow reads left to right and the
  canvas scrolls horizontally, so 30 steps stay readable. Two steps in the same cell (an import,
  a concurrent edit) are shown one below the other rather than on top of each other.
- A step's exits leave from its right edge, spread over its height, each labelled with the exit's
  name ("yes", "timeout", "A · 50%") just outside the card, where the gap between columns leaves
  room; connectors enter a card at the middle of its left edge.
- A connector to a column further right is a smooth curve; one to another row of the same column
  runs along the column's right side and enters the target's near edge (bottom or top); one that
  goes back (a loop) runs dashed below both cards and comes back in from the left, so a connector
  never crosses the cards it joins.
- An exit that goes nowhere is a short dashed stub (the validation panel says so in words).

Pure functions over plain rows: no queries here (the view loads steps, transitions and names in a
bounded number of queries and passes them in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scenarios.graph import STEP_KINDS, exit_label, exits_of

CARD_W = 212
CARD_H = 108
GAP_X = 88  # room for exit labels between columns
GAP_Y = 48  # room for loop-backs between rows
PAD = 28
STUB = 34  # the dashed stub of an unconnected exit

WEEKDAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


@dataclass
class Port:
    step_key: str
    exit: str
    label: str
    x: int
    y: int
    connected: bool
    target_key: str = ""


@dataclass
class Node:
    key: str
    kind: str
    title: str
    icon: str
    kind_label: str
    group: str
    summary: str
    col: int
    row: int
    x: int
    y: int
    ports: list[Port] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    step: Any = None  # the Step row, for templates that need more

    @property
    def style(self) -> str:
        return f"left:{self.x}px;top:{self.y}px;width:{CARD_W}px;height:{CARD_H}px"


@dataclass
class Edge:
    source: str
    exit: str
    target: str
    d: str  # SVG path data
    label: str
    label_x: float
    label_y: float
    back: bool  # a loop back (drawn below the cards)


@dataclass
class Diagram:
    nodes: list[Node]
    edges: list[Edge]
    stubs: list[Port]
    width: int
    height: int

    @property
    def by_key(self) -> dict[str, Node]:
        return {n.key: n for n in self.nodes}


def cell_origin(col: int, row: int) -> tuple[int, int]:
    return PAD + col * (CARD_W + GAP_X), PAD + row * (CARD_H + GAP_Y)


def placed_cells(steps: Sequence[Any]) -> dict[str, tuple[int, int]]:
    """{step key: (col, row)} as drawn: the stored cell, or the first free one below it when two
    steps claim the same cell (in a stable order: row, col, key number)."""
    taken: set[tuple[int, int]] = set()
    out: dict[str, tuple[int, int]] = {}
    for s in sorted(steps, key=lambda s: (s.row, s.col, _key_number(s.key))):
        col, row = int(s.col), int(s.row)
        while (col, row) in taken:
            row += 1
        taken.add((col, row))
        out[s.key] = (col, row)
    return out


def free_cell(steps: Iterable[Any], col: int, row: int) -> tuple[int, int]:
    """The cell (col, row) if nobody is there, else the first free one below it in that column."""
    taken = {(int(s.col), int(s.row)) for s in steps}
    while (col, row) in taken:
        row += 1
    return col, row


def build(
    steps: Sequence[Any],
    transitions: Iterable[Any],
    *,
    names: Mapping[str, Mapping[int, str]] | None = None,
    problems: Mapping[str, list[str]] | None = None,
    figures: Mapping[str, dict[str, Any]] | None = None,
) -> Diagram:
    """The drawing of a version's steps (rows with key, kind, title, config, col, row) and
    transitions (rows with source_id, exit, target_id; the ids are the steps' pks).

    `names`: {"templates"|"segments"|"resources"|"senders"|"providers"|"steps": {id: name}} for
    the one-line summaries; `problems`: {step key: [messages]}; `figures`: {step key: {...}}."""
    names = names or {}
    problems = problems or {}
    figures = figures or {}
    cells = placed_cells(steps)
    key_of_pk = {s.pk: s.key for s in steps}
    targets: dict[tuple[str, str], str] = {}
    for t in transitions:
        src, dst = key_of_pk.get(t.source_id), key_of_pk.get(t.target_id)
        if src and dst:
            targets[(src, t.exit)] = dst

    nodes: list[Node] = []
    for s in steps:
        col, row = cells[s.key]
        x, y = cell_origin(col, row)
        spec = STEP_KINDS.get(s.kind)
        node = Node(
            key=s.key, kind=s.kind, title=s.title or (spec.label if spec else s.kind),
            icon=spec.icon if spec else "question-circle", kind_label=spec.label if spec else s.kind,
            group=spec.group if spec else "unknown", summary=step_summary(s.kind, s.config or {}, names),
            col=col, row=row, x=x, y=y, problems=list(problems.get(s.key, [])),
            figures=dict(figures.get(s.key, {})), step=s)
        exits = exits_of(s.kind, s.config or {})
        for i, ex in enumerate(exits):
            py = round(y + CARD_H * (i + 1) / (len(exits) + 1))
            target = targets.get((s.key, ex), "")
            node.ports.append(Port(step_key=s.key, exit=ex, label=exit_label(s.kind, s.config or {}, ex), x=x + CARD_W, y=py,
                                   connected=bool(target), target_key=target))
        nodes.append(node)

    by_key = {n.key: n for n in nodes}
    edges: list[Edge] = []
    stubs: list[Port] = []
    for n in nodes:
        for p in n.ports:
            if not p.target_key or p.target_key not in by_key:
                stubs.append(p)
                continue
            edges.append(_edge(n, p, by_key[p.target_key]))

    max_col = max((n.col for n in nodes), default=0)
    max_row = max((n.row for n in nodes), default=0)
    width = PAD * 2 + (max_col + 1) * CARD_W + max_col * GAP_X + STUB + 8
    height = PAD * 2 + (max_row + 1) * CARD_H + max_row * GAP_Y + GAP_Y // 2
    return Diagram(nodes=nodes, edges=edges, stubs=stubs, width=width, height=height)


def _edge(src: Node, port: Port, dst: Node) -> Edge:
    sx, sy = port.x, port.y
    tx, ty = dst.x, dst.y + CARD_H / 2
    label_x, label_y = sx + 8, sy - 6
    if dst.col > src.col:
        bend = max(36.0, (tx - sx) / 2)
        d = f"M{sx:.0f},{sy:.0f} C{sx + bend:.0f},{sy:.0f} {tx - bend:.0f},{ty:.0f} {tx - 6:.0f},{ty:.0f}"
        return Edge(src.key, port.exit, dst.key, d, port.label, label_x, label_y, back=False)
    if dst.col == src.col and dst.row != src.row:
        # The same column: out to the right, along the column, then into the near edge of the
        # target (its bottom when it is above, its top when below) through the gap between rows.
        center = dst.x + CARD_W / 2
        if dst.row < src.row:
            lane, end = dst.y + CARD_H + GAP_Y / 2, dst.y + CARD_H + 6
        else:
            lane, end = dst.y - GAP_Y / 2, dst.y - 6
        d = f"M{sx:.0f},{sy:.0f} H{sx + 18:.0f} V{lane:.0f} H{center:.0f} V{end:.0f}"
        return Edge(src.key, port.exit, dst.key, d, port.label, label_x, label_y, back=False)
    # Back (a loop): out to the right, down under both cards, back left, and in from the left.
    below = max(src.y, dst.y) + CARD_H + GAP_Y / 2
    out_x = sx + 18
    in_x = tx - 22
    d = (f"M{sx:.0f},{sy:.0f} H{out_x:.0f} V{below:.0f} H{in_x:.0f} V{ty:.0f} H{tx - 6:.0f}")
    return Edge(src.key, port.exit, dst.key, d, port.label, label_x, label_y, back=True)


def _key_number(key: str) -> int:
    digits = "".join(c for c in key if c.isdigit())
    return int(digits) if digits else 0


# --- the one-line summaries ---------------------------------------------------------------------------


def duration_words(seconds: int | None) -> str:
    """12 -> "12 seconds", 172800 -> "2 days", 5400 -> "90 minutes"."""
    s = int(seconds or 0)
    if s == 0:
        return "no time"
    for unit, name in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if s % unit == 0:
            n = s // unit
            return f"{n} {name}{'' if n == 1 else 's'}"
    return f"{s} seconds"


def _name(names: Mapping[str, Mapping[int, str]], what: str, raw: Any) -> str:
    try:
        pk = int(raw)
    except (TypeError, ValueError):
        return ""
    return names.get(what, {}).get(pk, f"#{pk} (missing)")


def _filters_words(filters: Any) -> str:
    if not isinstance(filters, list) or not filters:
        return ""
    parts = []
    for f in filters[:2]:
        if isinstance(f, Mapping):
            op = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}.get(str(f.get("op")), str(f.get("op")))
            parts.append(f"{f.get('property')} {op} {f.get('value')}" if f.get("op") != "exists"
                         else f"{f.get('property')} set")
    more = f" +{len(filters) - 2}" if len(filters) > 2 else ""
    return " where " + ", ".join(parts) + more


def step_summary(kind: str, config: Mapping[str, Any], names: Mapping[str, Mapping[int, str]]) -> str:
    """One line saying what a step does, with the names of what it refers to."""
    c = config
    if kind == "entry.segment":
        seg = _name(names, "segments", c.get("segment_id")) or "a segment (choose one)"
        return f"Enters {seg}" + (" · members at start" if c.get("members_at_start") else "")
    if kind == "entry.database":
        return "A new profile in the database"
    if kind == "entry.event":
        return f"Event {c.get('type') or '(choose a type)'}" + _filters_words(c.get("filters"))
    if kind == "entry.subscription":
        res = _name(names, "resources", c.get("resource_id")) or "(choose a resource)"
        return f"Subscribes to {res} by {c.get('channel') or 'email'}"
    if kind == "entry.api":
        return "POST …/enter with a match key"
    if kind == "send":
        tpl = _name(names, "templates", c.get("template_id")) or "(choose a template)"
        return f"{tpl} · {c.get('channel') or 'email'}"
    if kind == "wait":
        mode = c.get("mode") or "duration"
        if mode == "duration":
            return f"Wait {duration_words(c.get('seconds'))}"
        if mode == "until":
            return f"Until {str(c.get('at') or '?')[:16].replace('T', ' ')}"
        if mode == "field":
            off = int(c.get("offset_seconds") or 0)
            sign = "+" if off >= 0 else "-"
            return f"Until the profile's {c.get('field') or '?'}" + (f" {sign} {duration_words(abs(off))}" if off else "")
        if mode == "time_of_day":
            days = c.get("weekdays") or []
            on = ", ".join(WEEKDAY_NAMES[d] for d in days if isinstance(d, int) and 0 <= d < 7)
            return f"Until {c.get('time') or '?'} local time" + (f" on {on}" if on else "")
        return mode
    if kind == "wait_event":
        return (f"{c.get('type') or '(choose a type)'} or {duration_words(c.get('timeout_seconds'))}"
                + _filters_words(c.get("filters")))
    if kind == "condition":
        if c.get("test") == "message":
            return f"Message of {c.get('step') or '?'} was {c.get('what') or 'opened'}?"
        return "Profile matches: " + conditions_words(c.get("conditions"), names)
    if kind == "split":
        branches = [b for b in c.get("branches") or [] if isinstance(b, Mapping)]
        return " / ".join(f"{b.get('label') or str(b.get('exit', '')).upper()} {b.get('weight', 0)}%" for b in branches) or "No branches"
    if kind == "update":
        values = c.get("values") or {}
        if not isinstance(values, Mapping) or not values:
            return "Set (choose fields)"
        return "Set " + ", ".join(f"{k} = {v}" for k, v in list(values.items())[:2]) + (" …" if len(values) > 2 else "")
    if kind == "subscription":
        res = _name(names, "resources", c.get("resource_id")) or "(choose a resource)"
        return f"{str(c.get('status') or 'subscribed').capitalize()} on {res} {c.get('channel') or ''}".strip()
    if kind == "segment":
        seg = _name(names, "segments", c.get("segment_id")) or "(choose a segment)"
        return f"{'Remove from' if c.get('action') == 'remove' else 'Add to'} {seg}"
    if kind == "webhook":
        url = str(c.get("url") or "(no URL)")
        return f"POST {url[:40]}{'…' if len(url) > 40 else ''}"
    if kind == "exit":
        return "The trip ends here"
    return kind


def conditions_words(tree: Any, names: Mapping[str, Mapping[int, str]]) -> str:
    """A short reading of a segments condition tree (the first items of its root group)."""
    if not isinstance(tree, Mapping):
        return "(no condition)"
    items = tree.get("items") if tree.get("type") == "group" else [tree]
    words = []
    for node in (items or [])[:2]:
        if not isinstance(node, Mapping):
            continue
        t = node.get("type")
        if t == "segment":
            words.append(("not in " if node.get("negate") else "in ") + _name(names, "segments", node.get("segment")))
        elif t == "field":
            words.append(f"{node.get('field')} {node.get('operator')} {node.get('value', '')}".strip())
        elif t == "subscription":
            words.append(("no " if node.get("negate") else "") + "subscription to "
                         + _name(names, "resources", node.get("resource")) + f" {node.get('channel', '')}")
        elif t == "event":
            words.append(f"event {node.get('event')}")
        elif t == "group":
            words.append("(…)")
    joiner = f" {tree.get('op', 'and')} "
    more = " …" if len(items or []) > 2 else ""
    return (joiner.join(words) + more) or "(no condition)"
