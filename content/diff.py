"""Compare two versions part by part (the versions page): a unified diff and side-by-side rows."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from content.rendering import CHANNEL_PARTS


@dataclass(frozen=True)
class DiffRow:
    kind: str  # equal | insert | delete | replace
    left_no: int | None
    left: str
    right_no: int | None
    right: str


@dataclass
class PartDiff:
    part: str
    changed: bool
    unified: str
    rows: list[DiffRow] = field(default_factory=list)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value in (None, ""):
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False)


def text_diff(part: str, old: str, new: str, *, labels: tuple[str, str] = ("a", "b"), context: int = 3) -> PartDiff:
    a, b = old.splitlines(), new.splitlines()
    unified = "\n".join(difflib.unified_diff(a, b, fromfile=f"{labels[0]} {part}", tofile=f"{labels[1]} {part}",
                                             lineterm="", n=context))
    rows: list[DiffRow] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows.extend(DiffRow("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]) for k in range(i2 - i1))
        else:
            for k in range(max(i2 - i1, j2 - j1)):
                left_ok, right_ok = i1 + k < i2, j1 + k < j2
                kind = tag if tag != "replace" else ("replace" if left_ok and right_ok else
                                                     ("delete" if left_ok else "insert"))
                rows.append(DiffRow(kind, i1 + k + 1 if left_ok else None, a[i1 + k] if left_ok else "",
                                    j1 + k + 1 if right_ok else None, b[j1 + k] if right_ok else ""))
    return PartDiff(part=part, changed=a != b, unified=unified, rows=rows)


def version_diff(a: Any, b: Any) -> list[PartDiff]:
    """Per-part differences from version `a` to version `b` (TemplateVersions or anything with
    `channel`, `number` and `data`), in the channel's part order; parts empty in both are left out."""
    labels = (f"v{getattr(a, 'number', '')}", f"v{getattr(b, 'number', '')}")
    parts = list(CHANNEL_PARTS.get(b.channel, ()))
    for p in CHANNEL_PARTS.get(a.channel, ()):
        if p not in parts:
            parts.append(p)
    out = []
    for part in parts:
        old, new = _text((a.data or {}).get(part)), _text((b.data or {}).get(part))
        if not old and not new:
            continue
        out.append(text_diff(part, old, new, labels=labels))
    return out
