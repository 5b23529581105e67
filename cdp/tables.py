"""The one table every list page uses: search, filters, sort and keyset pagination.

Pagination never counts the whole table: pages move by a cursor on (sort field, id), so page
500 costs what page 1 costs, and the result count is bounded (`COUNT` over at most
`count_limit + 1` rows, shown as "1,000+" beyond). Sortable fields must be NOT NULL.

Usage in a view:

    table = Table(request, qs, columns=[...], search_fields=["user__email"], row_template="...")
    if table.is_partial_request:
        return render(request, "components/table.html", {"table": table})
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest


@dataclass(frozen=True)
class Column:
    label: str
    sort: str = ""  # a NOT NULL model field path to sort by; empty means not sortable
    classes: str = ""


@dataclass(frozen=True)
class Filter:
    name: str
    label: str
    choices: Sequence[tuple[str, str]]
    lookup: str = ""  # queryset lookup; defaults to the name

    def apply(self, qs: QuerySet, value: str) -> QuerySet:
        return qs.filter(**{self.lookup or self.name: value})


@dataclass
class EmptyState:
    title: str = "Nothing here yet"
    text: str = ""
    icon: str = "inbox"
    action_url: str = ""
    action_label: str = ""


@dataclass
class Table:
    request: HttpRequest
    queryset: QuerySet
    columns: Sequence[Column]
    row_template: str
    id: str = "table"
    search_fields: Sequence[str] = ()
    search_placeholder: str = "Search"
    filters: Sequence[Filter] = ()
    default_sort: str = "-id"
    per_page: int = 25
    count_limit: int = 1000
    empty: EmptyState = field(default_factory=EmptyState)

    def __post_init__(self) -> None:
        params = self.request.GET
        self.q = params.get("q", "").strip()[:200]
        self.active_filters = {
            f.name: params[f.name]
            for f in self.filters
            if params.get(f.name) and params[f.name] in {c for c, _ in f.choices}
        }
        sortable = {c.sort for c in self.columns if c.sort}
        requested = params.get("sort", "")
        self.sort = requested if requested.lstrip("-") in sortable else self.default_sort
        qs = self.queryset
        for term in self.q.split():
            if self.search_fields:
                cond = Q()
                for f in self.search_fields:
                    cond |= Q(**{f"{f}__icontains": term})
                qs = qs.filter(cond)
        for f in self.filters:
            if f.name in self.active_filters:
                qs = f.apply(qs, self.active_filters[f.name])
        self.filtered = qs
        self._paginate(params.get("after", ""), params.get("before", ""))

    # --- pagination ---------------------------------------------------------------------------

    @property
    def _sort_field(self) -> str:
        return self.sort.lstrip("-")

    @property
    def _descending(self) -> bool:
        return self.sort.startswith("-")

    def _ordered(self, qs: QuerySet, reverse: bool = False) -> QuerySet:
        desc = self._descending != reverse
        f = self._sort_field
        pk = "pk"
        return qs.order_by(f"-{f}" if desc else f, f"-{pk}" if desc else pk)

    def _cursor_filter(self, qs: QuerySet, value: Any, pk: int, forward: bool) -> QuerySet:
        # Forward in a descending sort means smaller values; backward means larger.
        smaller = self._descending == forward
        op = "lt" if smaller else "gt"
        f = self._sort_field
        if f in ("pk", "id"):
            return qs.filter(**{f"pk__{op}": pk})
        return qs.filter(Q(**{f"{f}__{op}": value}) | Q(**{f: value, f"pk__{op}": pk}))

    def _paginate(self, after: str, before: str) -> None:
        qs = self.filtered
        n = self.per_page
        self.has_prev = self.has_next = False
        cursor_after, cursor_before = _decode(after), _decode(before)
        if cursor_before is not None:
            rows = list(self._ordered(self._cursor_filter(qs, *cursor_before, forward=False), reverse=True)[: n + 1])
            self.has_prev = len(rows) > n
            rows = list(reversed(rows[:n]))
            self.has_next = True
        else:
            if cursor_after is not None:
                qs = self._cursor_filter(qs, *cursor_after, forward=True)
                self.has_prev = True
            rows = list(self._ordered(qs)[: n + 1])
            self.has_next = len(rows) > n
            rows = rows[:n]
        self.rows = rows

    def _cursor_for(self, row: Model) -> str:
        value: Any = row
        for part in self._sort_field.split("__"):
            value = getattr(value, "pk" if part in ("pk", "id") else part)
        return _encode(value, row.pk)

    # --- URLs and display ---------------------------------------------------------------------

    def _url(self, **changes: str) -> str:
        params = {"q": self.q, **self.active_filters}
        if self.sort != self.default_sort:
            params["sort"] = self.sort
        params.update(changes)
        query = urlencode({k: v for k, v in params.items() if v})
        return f"{self.request.path}?{query}" if query else self.request.path

    @property
    def next_url(self) -> str:
        return self._url(after=self._cursor_for(self.rows[-1])) if self.has_next and self.rows else ""

    @property
    def prev_url(self) -> str:
        return self._url(before=self._cursor_for(self.rows[0])) if self.has_prev and self.rows else ""

    @property
    def base_url(self) -> str:
        return self._url()

    def header(self) -> list[dict[str, Any]]:
        out = []
        for col in self.columns:
            entry: dict[str, Any] = {"label": col.label, "classes": col.classes, "url": "", "state": ""}
            if col.sort:
                if self._sort_field == col.sort:
                    entry["state"] = "desc" if self._descending else "asc"
                    new = col.sort if self._descending else f"-{col.sort}"
                else:
                    new = col.sort
                entry["url"] = self._url(sort=new)
            out.append(entry)
        return out

    def filter_widgets(self) -> list[dict[str, Any]]:
        return [
            {"name": f.name, "label": f.label, "choices": f.choices, "value": self.active_filters.get(f.name, "")}
            for f in self.filters
        ]

    @property
    def is_filtered(self) -> bool:
        return bool(self.q or self.active_filters)

    @property
    def count_label(self) -> str:
        """"42 results" or "1,000+ results", from a COUNT bounded by count_limit; no query when
        the page holds every row (no page before or after it): its rows are the count."""
        if not self.has_prev and not self.has_next:
            n = len(self.rows)
        else:
            n = self.filtered.order_by()[: self.count_limit + 1].count()
        if n > self.count_limit:
            return f"{self.count_limit:,}+ results"
        return f"{n:,} result" + ("" if n == 1 else "s")

    @property
    def is_partial_request(self) -> bool:
        htmx = getattr(self.request, "htmx", None)
        return bool(htmx and htmx.target == self.id)


def _encode(value: Any, pk: int) -> str:
    if isinstance(value, datetime | date):
        value = value.isoformat()
    elif isinstance(value, Decimal):
        value = str(value)
    raw = json.dumps([value, pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[Any, int] | None:
    if not cursor:
        return None
    try:
        value, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return value, int(pk)
    except (ValueError, TypeError, binascii.Error):
        return None  # a mangled cursor shows the first page rather than an error
