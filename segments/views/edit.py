"""The builder: create and edit a segment, with the condition tree edited in place.

One view per page (create, edit) answers every request the builder makes, told apart by the
posted `action` (the clicked button's value, so the page works without JavaScript):

- save (the default): validate through the core and save, or show its errors at the conditions;
- count: the live count (how many match, how long it took, ~10 of them, warnings), debounced by
  htmx as the person edits; its errors are swapped into each condition's error slot;
- add:<group path>:<kind>, remove:<path>, addprop:<path>, rmprop:<path>:<i>: change the tree's
  shape and answer the builder again (htmx) or the whole page (no JavaScript);
- refresh:<path>: one condition again (its field, operator or event type changed, so its
  operators and inputs do), or the whole page when no path is given.

The tree is read from the builder's fields (see segments/forms.py) and kept, as JSON, in the hidden
`conditions` field too.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from profiles.models import ProfileDatabase
from segments import services
from segments.conditions import Catalog, SegmentError, clean_conditions, conditions_warnings
from segments.forms import (
    SegmentForm,
    apply_action,
    empty_tree,
    has_tree_fields,
    node_at,
    prune_unfinished,
    tree_from_fields,
    tree_from_json,
    unprune_path,
)
from segments.models import Segment
from segments.views import get_segment
from segments.views.builder import Catalogue, TreeErrors, build_nodes, node_paths
from segments.views.words import describe

SAMPLE_SIZE = 10
SLOW_MS = 1000
# Errors of the segment itself (not of a condition) go to these form fields.
FORM_KEYS = {"name": "name", "slug": "name", "description": "description", "kind": "kind", "schedule": "schedule_type",
             "schedule.every_hours": "every_hours", "schedule.daily_at": "daily_at", "schedule.cron": "cron"}


def _databases(request: HttpRequest) -> list[ProfileDatabase]:
    return list(ProfileDatabase.objects.for_account(request.account).order_by("name", "id"))


def _posted_tree(data: QueryDict, cat: Catalogue) -> dict[str, Any]:
    if has_tree_fields(data):
        return tree_from_fields(data, cat.types())
    return tree_from_json(data.get("conditions", "")) or empty_tree()


def _split_errors(exc: SegmentError) -> tuple[dict[str, str], dict[str, str]]:
    """(form field -> message, condition path -> message) of a core error."""
    form_errors, tree_errors = {}, {}
    for path, message in exc.errors.items():
        head = path.split(".", 1)[0]
        if path in FORM_KEYS or head in ("name", "slug", "description", "kind", "schedule"):
            form_errors[FORM_KEYS.get(path) or FORM_KEYS.get(head, "schedule_type")] = message
        elif path.startswith("conditions."):
            tree_errors[path.removeprefix("conditions.")] = message
        elif path == "conditions":
            tree_errors[""] = message
        else:
            tree_errors[path] = message
    return form_errors, tree_errors


def _is_empty(tree: dict[str, Any]) -> bool:
    return tree.get("type") == "group" and not tree.get("items")


def _context(request: HttpRequest, *, database: ProfileDatabase, segment: Segment | None, form: SegmentForm,
             tree: dict[str, Any], cat: Catalogue, errors: TreeErrors, form_url: str) -> dict[str, Any]:
    root = build_nodes(tree, cat, errors)
    return {
        "database": database,
        "databases": _databases(request) if segment is None else [],
        "segment": segment,
        "form": form,
        "root": root,
        "nodes": node_paths(root),
        "tree_json": json.dumps(tree, ensure_ascii=False),
        "cat": cat,
        "form_url": form_url,
        "root_errors": errors.at(""),
        "section": "segments",
    }


def _count(database: ProfileDatabase, segment: Segment | None, tree: dict[str, Any], cat: Catalogue) -> dict[str, Any]:
    """The live count's context: how many match, how long, who (a few), warnings, or the errors.
    Conditions still being filled in are left out of it (and said so), not reported as errors."""
    pruned, paths, unfinished = prune_unfinished(tree)
    out: dict[str, Any] = {"count": None, "ms": None, "sample": [], "warnings": [], "errors": {},
                           "unfinished": unfinished, "empty": _is_empty(pruned)}
    catalog = Catalog.load(database)
    try:
        clean = clean_conditions(_preview_salts(pruned), catalog, segment_id=segment.pk if segment else None,
                                 fill_salts=False)
        out["count"], out["ms"] = services.segment_count(database=database, conditions=clean, segment=segment)
        out["sample"] = services.segment_sample(database=database, conditions=clean, limit=SAMPLE_SIZE, segment=segment)
    except SegmentError as exc:
        out["errors"] = {unprune_path(path, paths): message for path, message in exc.errors.items()}
        return out
    out["warnings"] = [(_where(clean, path, cat), message) for path, message in conditions_warnings(clean, catalog)]
    if out["ms"] > SLOW_MS:
        out["warnings"].append(("", f"Counting took {out['ms'] / 1000:.1f} s: every use of this segment will take as "
                                    "long. Narrow the time windows, or use fewer text searches."))
    return out


def _where(tree: dict[str, Any], path: str, cat: Catalogue) -> str:
    """Which condition a warning is about, in words."""
    node = node_at(tree, path)
    if node is None or node.get("type") == "group":
        return ""
    return describe(node, cat)


def _preview_salts(tree: Any) -> Any:
    """A new sample condition gets its salt when saved; until then the count uses a fixed one, so
    the number does not jump at each keystroke."""
    if isinstance(tree, dict) and tree.get("type") == "sample" and not tree.get("salt"):
        return {**tree, "salt": "preview"}
    if isinstance(tree, dict) and tree.get("type") == "group" and isinstance(tree.get("items"), list):
        return {**tree, "items": [_preview_salts(i) for i in tree["items"]]}
    return tree


def _builder(request: HttpRequest, *, database: ProfileDatabase, segment: Segment | None) -> HttpResponse:
    form_url = request.get_full_path()
    cat = Catalogue.load(request, database, segment)
    errors = TreeErrors()
    if request.method != "POST":
        form = SegmentForm(initial=SegmentForm.initial_for(segment) if segment else None)
        tree = (segment.conditions if segment and isinstance(segment.conditions, dict) else None) or empty_tree()
        return render(request, "segments/segment_form.html",
                      _context(request, database=database, segment=segment, form=form, tree=tree, cat=cat,
                               errors=errors, form_url=form_url))

    form = SegmentForm(request.POST)
    tree = _posted_tree(request.POST, cat)
    action = request.POST.get("action", "save")[:200]
    htmx = bool(getattr(request, "htmx", False))

    if action == "count":
        result = _count(database, segment, tree, cat)
        root = build_nodes(tree, cat, TreeErrors.of(result["errors"]), hints=result["unfinished"])
        context = {"database": database, "result": result, "nodes": node_paths(root), "oob": True,
                   "tree_json": json.dumps(tree, ensure_ascii=False), "cat": cat}
        if htmx:
            return render(request, "segments/segment_form.html#count", context)
        form.is_valid()
        ctx = _context(request, database=database, segment=segment, form=form, tree=tree, cat=cat,
                       errors=TreeErrors.of(result["errors"]), form_url=form_url)
        ctx.update(result=result)
        return render(request, "segments/segment_form.html", ctx)

    if action.startswith("refresh"):
        path = action.partition(":")[2]
        if htmx and ":" in action and node_at(tree, path) is not None:
            root = build_nodes(tree, cat, errors)
            node = next(n for n in node_paths(root) if n["path"] == path)
            parent = node_at(tree, path.rpartition(".")[0] if "." in path else "") if path else None
            join = str(parent.get("op") or "and").upper() if parent else ""
            response = render(request, "segments/_node.html",
                              {"node": node, "cat": cat, "form_url": form_url, "join": join})
            response["HX-Trigger"] = "segments:changed"
            return response
        form.is_valid()
        return render(request, "segments/segment_form.html",
                      _context(request, database=database, segment=segment, form=form, tree=tree, cat=cat,
                               errors=errors, form_url=form_url))

    if action != "save":
        apply_action(tree, action)
        context = _context(request, database=database, segment=segment, form=form, tree=tree, cat=cat,
                           errors=errors, form_url=form_url)
        if htmx:
            response = render(request, "segments/segment_form.html#builder", context)
            response["HX-Trigger"] = "segments:changed"
            return response
        form.is_valid()
        return render(request, "segments/segment_form.html", context)

    # Save.
    if form.is_valid():
        kind = form.cleaned_data["kind"]
        conditions: dict[str, Any] | None = tree
        if kind == Segment.Kind.STATIC and _is_empty(tree):
            conditions = None  # a list filled by hand, a CSV or the API
        actor = Actor.from_request(request)
        values = {"name": form.cleaned_data["name"].strip(), "description": form.cleaned_data["description"].strip(),
                  "kind": kind, "conditions": conditions, "schedule": form.schedule()}
        try:
            if segment is None:
                saved = services.segment_create(database=database, actor=actor, **values)
                messages.success(request, _created_message(saved))
            else:
                saved = services.segment_update(segment=segment, actor=actor, **values)
                messages.success(request, f"{saved.name} is saved.")
        except SegmentError as exc:
            form_errors, tree_errors = _split_errors(exc)
            for name, message in form_errors.items():
                form.add_error(name if name in form.fields else None, message)
            errors = TreeErrors.of(tree_errors)
            if tree_errors:
                form.add_error(None, "The segment is not saved yet: fix the conditions marked in red.")
        else:
            return redirect(saved)
    context = _context(request, database=database, segment=segment, form=form, tree=tree, cat=cat, errors=errors,
                       form_url=form_url)
    return render(request, "segments/segment_form.html", context, status=400)


def _created_message(segment: Segment) -> str:
    if segment.kind == Segment.Kind.STATIC:
        return f"{segment.name} is saved: a snapshot of who matched now." if segment.conditions else \
            f"{segment.name} is saved. Add members from a CSV file or by pasting their e-mail addresses."
    if segment.kind == Segment.Kind.UPDATABLE:
        return f"{segment.name} is saved and updates on its schedule."
    return f"{segment.name} is saved: it is evaluated whenever it is used."


@require_http_methods(["GET", "POST"])
@account_required(Perm.SEGMENTS_EDIT)
def segment_create(request: HttpRequest) -> HttpResponse:
    databases = _databases(request)
    if not databases:
        messages.info(request, "Segments group the profiles of a database: create a database first.")
        return redirect("segments:list")
    slug = request.GET.get("db", "")
    database = next((d for d in databases if d.slug == slug), None) if slug else databases[0]
    if database is None:
        database = get_object_or_404(ProfileDatabase.objects.for_account(request.account), slug=slug)
    return _builder(request, database=database, segment=None)


@require_http_methods(["GET", "POST"])
@account_required(Perm.SEGMENTS_EDIT)
def segment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_segment(request, pk)
    return _builder(request, database=segment.database, segment=segment)
