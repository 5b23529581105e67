"""Profiles: the list (search, filters, columns), export, the card (data, history), new, merge, erase."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import Truncator
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.tables import Column, EmptyState, Table
from profiles.exporting import profiles_export_start
from profiles.fieldtypes import FieldType
from profiles.forms import error_text, mark_invalid, profile_form
from profiles.models import Field, Profile, ProfileChange, ProfileDatabase
from profiles.selectors import (
    MAX_CONDITIONS,
    NO_VALUE_OPERATORS,
    OPERATORS,
    TYPE_OPERATORS,
    Condition,
    FilterError,
    operator_label,
    search_kind,
)
from profiles.selectors import profile_list as profile_list_query
from profiles.services import (
    ProfileError,
    ProfileValidationError,
    Schema,
    profile_create,
    profile_erase,
    profile_find,
    profile_merge,
    profile_update,
)
from profiles.views import get_database

DEFAULT_COLUMNS = ["email", "first_name", "last_name", "phone", "created_at"]
MAX_COLUMNS = 12
# Columns sort only where an index keeps the keyset cheap: "Updated" has one. The default order is
# the newest id first (imports may set "Created" to an earlier date, so it is not offered as a sort).
SORTS = {"updated_at": "updated_at"}
# The card's tabs, in order: (key, label). Later apps add theirs with `add_card_tab`.
TABS: list[tuple[str, str]] = [("data", "Data"), ("history", "History")]


@dataclass(frozen=True)
class CardTab:
    """A tab another app adds to the profile card: its template is included in the tab pane with
    the card's context plus what `context(request, profile)` returns."""

    key: str
    label: str
    template: str
    context: Callable[[HttpRequest, Profile], dict[str, Any]]


CARD_TABS: dict[str, CardTab] = {}


def add_card_tab(tab: CardTab, *, after: str | None = None) -> None:
    if tab.key in CARD_TABS:
        return
    CARD_TABS[tab.key] = tab
    keys = [k for k, _ in TABS]
    TABS.insert(keys.index(after) + 1 if after in keys else len(TABS), (tab.key, tab.label))
HISTORY_PAGE = 50


def _columns_key(database: ProfileDatabase) -> str:
    return f"profiles.columns.{database.pk}"


def _profile_qs(request: HttpRequest, database: ProfileDatabase):  # type: ignore[no-untyped-def]
    return Profile.objects.for_account(request.account).filter(database=database)


def _get_profile(request: HttpRequest, database: ProfileDatabase, pk: int) -> Profile:
    return get_object_or_404(_profile_qs(request, database), pk=pk)


def _require(request: HttpRequest, perm: Perm) -> None:
    if not request.membership.can(perm):
        raise PermissionDenied(f"Your role does not allow this ({perm.label.lower()}).")


def display(f: Field | None, value: Any, tz: Any) -> str:
    """A stored value as a cell or a line of the card shows it."""
    if value is None or value == "" or value == []:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if f is not None and f.type == FieldType.DATETIME:
        try:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
        moment = moment.astimezone(tz)
        return f"{moment:%b} {moment.day}, {moment:%Y %H:%M}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list) and (f is None or f.type == FieldType.LIST):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def initials(profile: Profile) -> str:
    parts = [p for p in (profile.first_name, profile.last_name) if p.strip()]
    if not parts:
        parts = [(profile.email or "").split("@")[0] or ("#" if profile.phone else "?")]
    return "".join(p.strip()[0] for p in parts[:2]).upper()


# --- the list ------------------------------------------------------------------------------------


@dataclass
class ProfileTable(Table):
    """The shared Table, with the filter rows (f/op/v) kept in its sort and page links."""

    extra_params: tuple[tuple[str, str], ...] = ()

    def _url(self, **changes: str) -> str:
        url = super()._url(**changes)
        if not self.extra_params:
            return url
        return url + ("&" if "?" in url else "?") + urlencode(self.extra_params)

    @property
    def is_filtered(self) -> bool:
        return bool(self.q or self.extra_params)


def _conditions(params: QueryDict) -> list[Condition]:
    """Filter rows from f0/op0/v0, f1/op1/v1...: numbered, so a row's parts can never shift
    into another row when a browser or htmx leaves an empty value out."""
    out = []
    for i in range(MAX_CONDITIONS):
        name = params.get(f"f{i}", "")
        if name:
            out.append(Condition(name[:64], params.get(f"op{i}", "")[:16], params.get(f"v{i}", "").strip()[:500]))
    return out


def condition_params(conditions: list[Condition]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (f"{k}{i}", v)
        for i, c in enumerate(conditions)
        for k, v in (("f", c.field), ("op", c.op), ("v", c.value))
        if v
    )


def _list_url(request: HttpRequest, q: str, table: Table, params: tuple[tuple[str, str], ...]) -> str:
    query = [("q", q)] if q else []
    if table.sort != table.default_sort:
        query.append(("sort", table.sort))
    query += list(params)
    return request.path + ("?" + urlencode(query) if query else "")


def _chosen_columns(request: HttpRequest, database: ProfileDatabase, fields: dict[str, Field]) -> list[str]:
    stored = request.session.get(_columns_key(database)) or DEFAULT_COLUMNS
    return [n for n in stored if n in fields][:MAX_COLUMNS] or [n for n in DEFAULT_COLUMNS if n in fields]


def _filter_fields(fields: dict[str, Field]) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "label": f.label, "type": f.type, "choices": f.choices,
         "ops": TYPE_OPERATORS.get(f.type, [])}
        for f in fields.values() if TYPE_OPERATORS.get(f.type)
    ]


CELL_CHARS = 60


def _cell(text: str) -> tuple[str, str]:
    """(the whole value, what the cell shows): `truncatechars:60`, without its cost when the text
    is short enough (Truncator counts fewer characters than len(), never more)."""
    return text, text if len(text) <= CELL_CHARS else Truncator(text).chars(CELL_CHARS)


def _list_context(request: HttpRequest, database: ProfileDatabase, sch: Schema) -> dict[str, Any]:
    q = request.GET.get("q", "").strip()[:200]
    conditions = [
        # A row whose field was just chosen (or changed: the page's script clears the operator)
        # starts with the field type's first operator.
        Condition(c.field, TYPE_OPERATORS[sch.fields[c.field].type][0], c.value)
        if not c.op and c.field in sch.fields and TYPE_OPERATORS.get(sch.fields[c.field].type) else c
        for c in _conditions(request.GET)
    ]
    filter_error: FilterError | None = None
    try:
        qs = profile_list_query(database=database, q=q, conditions=conditions, fields=sch.fields, ctx=sch.ctx)
    except FilterError as exc:
        filter_error = exc
        qs = _profile_qs(request, database).none()
    columns = _chosen_columns(request, database, sch.fields)
    extra = condition_params(conditions)
    table = ProfileTable(
        request,
        qs,
        id="profiles",
        columns=[Column(sch.fields[n].label, sort=SORTS.get(n, "")) for n in columns],
        row_template="profiles/_profile_row.html",
        default_sort="-id",
        extra_params=extra,
        empty=EmptyState(
            "No profiles match" if q or conditions else "No profiles yet",
            "Try another search or filter." if q or conditions else "Add a profile or import a file of them.",
            icon="person-vcard",
        ),
    )
    tz = sch.ctx.tz
    # Cells are worked out here, not by per-cell filters and a {% url %} a row in the row template:
    # on the busiest page, Python is several times cheaper than the template language for this.
    for row in table.rows:
        row.url = reverse("profiles:profile_detail", args=[database.slug, row.pk])
        row.cells = [_cell(display(sch.fields[n], row.value(n), tz)) for n in columns]
    by_name = {f["name"]: f for f in _filter_fields(sch.fields)}
    filter_rows = []
    for i, c in enumerate(conditions):
        others = condition_params([o for j, o in enumerate(conditions) if j != i])
        f = by_name.get(c.field)
        filter_rows.append({
            "field": c.field, "op": c.op, "value": c.value, "meta": f,
            "ops": [(k, operator_label(k, f["type"] if f else "")) for k in (f["ops"] if f else OPERATORS)]
            + ([(c.op, OPERATORS[c.op])] if f and c.op in OPERATORS and c.op not in f["ops"] else []),
            "error": str(filter_error) if filter_error is not None and filter_error.index == i else "",
            "remove_url": _list_url(request, q, table, others),
        })
    if len(filter_rows) < MAX_CONDITIONS:
        filter_rows.append({"field": "", "op": "", "value": "", "meta": None, "ops": list(OPERATORS.items()), "error": "",
                            "remove_url": ""})
    return {
        "database": database,
        "table": table,
        "q": q,
        "search_kind": search_kind(q),
        "filter_rows": filter_rows,
        "filter_error": str(filter_error) if filter_error is not None and filter_error.index is None else "",
        "filter_fields": _filter_fields(sch.fields),
        "operators": OPERATORS,
        "no_value_operators": NO_VALUE_OPERATORS,
        "export_params": condition_params([c for c in conditions if c.is_complete]),
        "columns": columns,
        "all_fields": list(sch.fields.values()),
        "query_string": request.GET.urlencode(),
        "section": "profiles",
    }


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def profile_list(request: HttpRequest, db: str) -> HttpResponse:
    """GET: the list. POST: the column chooser (kept in the session per database), then back."""
    database = get_database(request, db)
    sch = Schema.load(database)
    if request.method == "POST":
        key = _columns_key(database)
        chosen = [n for n in request.POST.getlist("columns") if n in sch.fields][:MAX_COLUMNS]
        if request.POST.get("reset") or not chosen:
            request.session.pop(key, None)
        else:
            request.session[key] = chosen
        url = reverse("profiles:profile_list", args=[database.slug])
        # Back to the same search and filters (re-encoded, so nothing but a query string gets in).
        query = QueryDict(request.POST.get("query", "")[:2000]).urlencode()
        return redirect(f"{url}?{query}" if query else url)
    context = _list_context(request, database, sch)
    if context["table"].is_partial_request:
        return render(request, "profiles/_profile_table.html", context)
    return render(request, "profiles/profile_list.html", context)


@require_POST
@account_required(Perm.DATA_EDIT)
def profile_export(request: HttpRequest, db: str) -> HttpResponse:
    """Start an export of what the list shows (its search and filters); watch it on the job page."""
    database = get_database(request, db)
    q = request.POST.get("q", "").strip()[:200]
    conditions = [c for c in _conditions(request.POST) if c.is_complete]
    try:
        profile_list_query(database=database, q=q, conditions=conditions)
    except FilterError as exc:
        messages.error(request, f"Fix the filter first: {exc}")
        return redirect("profiles:profile_list", database.slug)
    job = profiles_export_start(database=database, actor=Actor.from_request(request), q=q, conditions=conditions)
    return redirect(job)


# --- new profile ---------------------------------------------------------------------------------


def _add_errors(form: Any, sch: Schema, exc: ProfileError) -> None:
    if isinstance(exc, ProfileValidationError):
        for name, reason in exc.errors.items():
            label = sch.fields[name].label if name in sch.fields else name
            form.add_error(name if name in form.fields else None, error_text(label, reason))
    else:
        form.add_error(None, str(exc))
    mark_invalid(form)


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATA_EDIT)
def profile_create_view(request: HttpRequest, db: str) -> HttpResponse:
    database = get_database(request, db)
    sch = Schema.load(database)
    form = profile_form(request.POST or None, schema=sch)
    if request.method == "POST" and form.is_valid():
        values = {n: v for n, v in form.cleaned_data.items() if v not in ("", None, False)}
        try:
            profile = profile_create(database=database, values=values, actor=Actor.from_request(request))
        except ProfileError as exc:
            _add_errors(form, sch, exc)
        else:
            messages.success(request, "Profile created.")
            return redirect(reverse("profiles:profile_detail", args=[database.slug, profile.pk]))
    context = {"database": database, "form": form, "section": "profiles"}
    return render(request, "profiles/profile_create.html", context, status=400 if form.is_bound else 200)


# --- the card ------------------------------------------------------------------------------------


def _history(request: HttpRequest, profile: Profile, sch: Schema) -> dict[str, Any]:
    qs = ProfileChange.objects.for_account(request.account).filter(profile=profile).order_by("-id")
    before = request.GET.get("before", "")
    if before.isdigit():
        qs = qs.filter(id__lt=int(before))
    changes = list(qs[: HISTORY_PAGE + 1])
    more = len(changes) > HISTORY_PAGE
    changes = changes[:HISTORY_PAGE]
    tz = sch.ctx.tz
    entries = []
    for change in changes:
        lines = []
        for name, pair in (change.changes or {}).items():
            f = sch.fields.get(name)
            old, new = [*list(pair), None, None][:2] if isinstance(pair, list) else (None, pair)
            lines.append({"label": f.label if f else name, "name": name,
                          "old": display(f, old, tz), "new": display(f, new, tz)})
        entries.append({"change": change, "lines": lines})
    return {"entries": entries, "next_before": changes[-1].pk if more and changes else None}


def _card_values(profile: Profile, sch: Schema) -> list[dict[str, Any]]:
    tz = sch.ctx.tz
    return [
        {"field": f, "value": display(f, profile.value(f.name), tz)}
        for f in sch.fields.values()
    ]


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def profile_detail(request: HttpRequest, db: str, pk: int) -> HttpResponse:
    """The card. GET shows a tab; POST saves the data form (DATA_EDIT), sending only changed fields."""
    database = get_database(request, db)
    profile = _get_profile(request, database, pk)
    tab = request.GET.get("tab", "data")
    if tab not in dict(TABS):
        tab = "data"
    sch = Schema.load(database)
    can_edit = request.membership.can(Perm.DATA_EDIT)
    form = None
    status = 200
    if request.method == "POST":
        _require(request, Perm.DATA_EDIT)
        tab = "data"
        form = profile_form(request.POST, schema=sch, profile=profile)
        if form.is_valid():
            values = {n: form.cleaned_data[n] for n in form.changed_data}
            if not values:
                messages.info(request, "Nothing to save: no field was changed.")
                return redirect(request.path)
            try:
                diff = profile_update(profile=profile, values=values, actor=Actor.from_request(request))
            except ProfileError as exc:
                _add_errors(form, sch, exc)
            else:
                labels = [sch.fields[n].label for n in diff if n in sch.fields]
                messages.success(request, "Saved: " + ", ".join(labels) + "." if labels else "Nothing changed.")
                return redirect(request.path)
        status = 400
    elif tab == "data" and can_edit:
        form = profile_form(schema=sch, profile=profile)
    context: dict[str, Any] = {
        "database": database,
        "profile": profile,
        "tabs": TABS,
        "tab": tab,
        "form": form,
        "can_edit": can_edit,
        "initials": initials(profile),
        "read_only": [
            {"label": f.label, "value": display(f, profile.value(f.name), sch.ctx.tz)}
            for f in sch.fields.values() if f.read_only
        ],
        "section": "profiles",
    }
    if tab == "data":
        context["values"] = _card_values(profile, sch)
    elif tab == "history":
        context.update(_history(request, profile, sch))
    elif tab in CARD_TABS:
        context.update(CARD_TABS[tab].context(request, profile), tab_template=CARD_TABS[tab].template)
    template = "profiles/profile_detail.html"
    if request.htmx and request.htmx.target == "profile-tab":
        template += "#tab"
    return render(request, template, context, status=status)


# --- merge and erase -----------------------------------------------------------------------------


def _find_duplicate(request: HttpRequest, database: ProfileDatabase, target: Profile, text: str) -> tuple[Profile | None, str]:
    kind = search_kind(text)
    found: Profile | None = None
    try:
        if kind in ("email", "phone"):
            found = profile_find(database=database, key=kind, value=text)
        elif text.lstrip("#").isdigit():
            found = _profile_qs(request, database).filter(pk=int(text.lstrip("#"))).first()
        else:
            return None, "Enter the duplicate's e-mail address, phone number or profile id (such as #123)."
    except ProfileValidationError as exc:
        return None, error_text(kind, next(iter(exc.errors.values())))
    if found is None:
        return None, f"No profile in {database.name} has {text}."
    if found.pk == target.pk:
        return None, "That is this profile. Look up the other one."
    return found, ""


def _merge_preview(target: Profile, source: Profile, sch: Schema) -> list[dict[str, Any]]:
    """Field by field: what each has and what the merged profile keeps (the target's, gaps filled)."""
    tz = sch.ctx.tz
    rows = []
    for f in sch.fields.values():
        mine, theirs = target.value(f.name), source.value(f.name)
        if f.is_system:
            result = mine if mine not in (None, "") else theirs
        else:
            result = mine if f.name in target.data else theirs
        if f.read_only and f.name == "created_at":
            result = min(target.created_at, source.created_at)
        elif f.read_only:
            continue
        rows.append({
            "label": f.label, "target": display(f, mine, tz), "source": display(f, theirs, tz),
            "result": display(f, result, tz), "filled": display(f, mine, tz) == "" and display(f, theirs, tz) != "",
        })
    return rows


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATA_EDIT)
def profile_merge_view(request: HttpRequest, db: str, pk: int) -> HttpResponse:
    """Merge a duplicate into this profile: find it, compare side by side, confirm."""
    database = get_database(request, db)
    target = _get_profile(request, database, pk)
    if request.method == "POST":
        source = get_object_or_404(_profile_qs(request, database), pk=request.POST.get("source") or 0)
        try:
            profile_merge(target=target, source=source, actor=Actor.from_request(request))
        except ProfileError as exc:
            messages.error(request, str(exc))
            return redirect(reverse("profiles:profile_merge", args=[database.slug, target.pk]))
        messages.success(request, f"Profile #{source.pk} was merged into this one.")
        return redirect(reverse("profiles:profile_detail", args=[database.slug, target.pk]))
    find = request.GET.get("find", "").strip()[:200]
    source, error = (None, "")
    if find:
        source, error = _find_duplicate(request, database, target, find)
    sch = Schema.load(database)
    context = {
        "database": database,
        "profile": target,
        "find": find,
        "source": source,
        "error": error,
        "preview": _merge_preview(target, source, sch) if source else [],
        "section": "profiles",
    }
    return render(request, "profiles/profile_merge.html", context)


ERASE_WORD = "ERASE"


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATA_EDIT)
def profile_erase_view(request: HttpRequest, db: str, pk: int) -> HttpResponse:
    database = get_database(request, db)
    profile = _get_profile(request, database, pk)
    error = ""
    if request.method == "POST":
        if request.POST.get("confirm", "").strip() == ERASE_WORD:
            pk = profile.pk
            profile_erase(profile=profile, actor=Actor.from_request(request))
            messages.success(request, f"Profile #{pk} is erased. Imports will not bring this person back.")
            return redirect(database)
        error = f"Type {ERASE_WORD} in capitals to confirm."
    context = {"database": database, "profile": profile, "error": error, "erase_word": ERASE_WORD, "section": "profiles"}
    return render(request, "profiles/profile_erase.html", context, status=400 if error else 200)
