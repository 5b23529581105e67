"""Event types (admin): the system catalogue and the account's own types in one table, creating
and changing a custom type with its property schema, deleting one that has no events.

Everyone in the account may look (ACCOUNT_VIEW); defining types is DATABASES_MANAGE, like the
fields of a profile database: a type's schema is the shape segments and triggers read events by.
Nothing here counts events: the detail page asks one EXISTS-like question through the
(account, type, -id) index (the latest event of the type), never COUNT(*) over the table.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone as tz
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.tables import Column, EmptyState, Filter, Table
from history.catalogue import SYSTEM_TYPES
from history.forms import STRICT_HELP, EventTypeForm, PropertyFormSet, add_type_errors
from history.models import Event, EventType, PropertyType
from history.services import EventTypeError, eventtype_create, eventtype_delete, eventtype_update
from profiles.models import ProfileDatabase

GROUP_LABELS = {
    "custom": "Your own",
    "messages": "Messages",
    "subscriptions": "Subscriptions",
    "site": "Website",
    "app": "App",
    "orders": "Orders",
    "promo": "Promo codes",
}
SUMMARY_PROPERTIES = 4


class GroupFilter(Filter):
    """Your own types, or one group of the system catalogue (groups live in the catalogue, not the table)."""

    def apply(self, qs: QuerySet, value: str) -> QuerySet:
        if value == "custom":
            return qs.filter(account__isnull=False)
        return qs.filter(account__isnull=True, id__in=[t.id for t in SYSTEM_TYPES if t.group == value])


def _types(request: HttpRequest) -> QuerySet[EventType]:
    return EventType.objects.visible_to(request.account)


def get_event_type(request: HttpRequest, name: str) -> EventType:
    """A system type or one of the current account's, by name; another account's is a 404."""
    return get_object_or_404(_types(request), name=name)


def _can_manage(request: HttpRequest) -> bool:
    return request.membership.can(Perm.DATABASES_MANAGE)


def properties_summary(event_type: EventType) -> dict[str, Any]:
    props = event_type.properties or []
    shown = [{"name": p["name"], "type": p["type"], "required": bool(p.get("required"))}
             for p in props[:SUMMARY_PROPERTIES]]
    return {"shown": shown, "more": max(0, len(props) - SUMMARY_PROPERTIES)}


# --- the list ------------------------------------------------------------------------------------


def _table(request: HttpRequest, can_manage: bool) -> Table:
    return Table(
        request,
        _types(request),
        id="event-types",
        columns=[Column("Event type", sort="name"), Column("Group"), Column("Properties"), Column("On mismatch"),
                 Column("Status"), *([Column("", classes="text-end")] if can_manage else [])],
        search_fields=["name", "label"],
        search_placeholder="Search names and labels",
        filters=[GroupFilter("group", "All groups", list(GROUP_LABELS.items()))],
        default_sort="name",
        per_page=50,
        row_template="history/_type_row.html",
        empty=EmptyState("No event types match", "Try another word, or clear the search.", icon="search"),
    )


def _decorate(rows: list[EventType]) -> None:
    for row in rows:
        row.summary = properties_summary(row)
        row.group_label = GROUP_LABELS.get(row.group, row.group.capitalize())


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def type_list(request: HttpRequest) -> HttpResponse:
    can_manage = _can_manage(request)
    table = _table(request, can_manage)
    _decorate(table.rows)
    context = {"table": table, "can_manage": can_manage}
    if table.is_partial_request:
        return render(request, "components/table.html", context)
    context.update({"has_custom": EventType.objects.for_account(request.account).exists(), "section": "event_types"})
    return render(request, "history/type_list.html", context)


# --- create and change ---------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATABASES_MANAGE)
def type_create(request: HttpRequest) -> HttpResponse:
    data = request.POST if request.method == "POST" else None
    form = EventTypeForm(data)
    properties = PropertyFormSet(data, extra=3)
    if data is not None and form.is_valid() and properties.is_valid():
        schema, rows = properties.schema()
        try:
            event_type = eventtype_create(
                account=request.account, name=form.cleaned_data["name"], label=form.cleaned_data["label"],
                description=form.cleaned_data["description"], properties=schema, strict=form.is_strict,
                actor=Actor.from_request(request),
            )
        except EventTypeError as exc:
            add_type_errors(form, properties, exc, rows)
        else:
            messages.success(request, f"{event_type.name} is ready: integrations can send it now.")
            return redirect(event_type)
    context = {"form": form, "properties": properties, "section": "event_types", "property_types": PropertyType.choices}
    return render(request, "history/type_create.html", context, status=400 if data is not None else 200)


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def type_detail(request: HttpRequest, name: str) -> HttpResponse:
    """A custom type's page with its edit form (DATABASES_MANAGE), or a read-only card (system
    types, and everyone else)."""
    event_type = get_event_type(request, name)
    editable = not event_type.is_system and _can_manage(request)
    form = properties = None
    status = 200
    if request.method == "POST":
        if event_type.is_system:
            raise PermissionDenied("System event types cannot be changed.")
        if not editable:
            raise PermissionDenied("Your role does not allow changing event types.")
    if editable:
        data = request.POST if request.method == "POST" else None
        form = EventTypeForm(data, event_type=event_type)
        properties = PropertyFormSet(data, initial=PropertyFormSet.initial_for(event_type), extra=1)
        if data is not None:
            status = 400
            if form.is_valid() and properties.is_valid():
                schema, rows = properties.schema()
                try:
                    eventtype_update(event_type=event_type, label=form.cleaned_data["label"],
                                     description=form.cleaned_data["description"], properties=schema,
                                     strict=form.is_strict, enabled=form.cleaned_data["enabled"],
                                     actor=Actor.from_request(request))
                except EventTypeError as exc:
                    add_type_errors(form, properties, exc, rows)
                else:
                    messages.success(request, f"{event_type.name} is saved. Events stored from now on are checked "
                                              "against the new properties.")
                    return redirect(event_type)
    latest = (Event.objects.for_account(request.account).filter(type_id=event_type.pk).order_by("-id")
              .values("occurred_at", "received_at").first())
    context = {
        "event_type": event_type,
        "editable": editable,
        "can_manage": _can_manage(request),
        "form": form,
        "properties": properties,
        "property_types": PropertyType.choices,
        "group_label": GROUP_LABELS.get(event_type.group, event_type.group.capitalize()),
        "mode_help": STRICT_HELP["strict" if event_type.strict else "loose"],
        "latest": latest,
        "example": example_request(event_type, _example_database(request)) if event_type.public else None,
        "section": "event_types",
    }
    return render(request, "history/type_detail.html", context, status=status)


# --- delete --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATABASES_MANAGE)
def type_delete(request: HttpRequest, name: str) -> HttpResponse:
    """Delete a custom type without events; one with events is refused by the service, and the
    page offers to disable it instead (a POST with action=disable)."""
    event_type = get_object_or_404(EventType.objects.for_account(request.account), name=name)
    actor = Actor.from_request(request)
    error = ""
    if request.method == "POST":
        if request.POST.get("action") == "disable":
            eventtype_update(event_type=event_type, enabled=False, actor=actor)
            messages.success(request, f"{event_type.name} is disabled: the API refuses new events of it; stored ones stay.")
            return redirect(event_type)
        try:
            eventtype_delete(event_type=event_type, actor=actor)
        except EventTypeError as exc:
            reason = exc.errors.get("name") or str(exc)
            error = reason[:1].upper() + reason[1:] + ("" if reason.endswith(".") else ".")
        else:
            messages.success(request, f"{event_type.name} is deleted.")
            return redirect("history:types")
    has_events = bool(error) or Event.objects.for_account(request.account).filter(type_id=event_type.pk).exists()
    context = {"event_type": event_type, "has_events": has_events, "error": error, "section": "event_types"}
    return render(request, "history/type_delete.html", context, status=409 if error else 200)


# --- the example request -------------------------------------------------------------------------


def _example_database(request: HttpRequest) -> str:
    slug = ProfileDatabase.objects.for_account(request.account).order_by("id").values_list("slug", flat=True).first()
    return slug or "your-database"


def example_value(prop: dict[str, Any], now: Any) -> Any:
    """A plausible value of a property's type (what the docs and the detail page show)."""
    name = prop["name"].lower()
    type_ = prop["type"]
    if type_ == PropertyType.INTEGER:
        return 3 if "qty" in name or "quantity" in name or "count" in name else 42
    if type_ == PropertyType.DECIMAL:
        return 19.99
    if type_ == PropertyType.BOOLEAN:
        return True
    if type_ == PropertyType.DATE:
        return (now + timedelta(days=7)).date().isoformat()
    if type_ == PropertyType.DATETIME:
        return now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    if type_ == PropertyType.ENUM:
        return (prop.get("choices") or ["value"])[0]
    if type_ == PropertyType.LIST:
        return ["red", "blue"]
    if type_ == PropertyType.JSON:
        return {"key": "value"}
    if "url" in name:
        return "https://shop.example.com/cart"
    if "email" in name:
        return "ann@example.com"
    if "currency" in name:
        return "EUR"
    if name == "id" or name.endswith("_id"):
        return "1001"
    if name in ("sku", "code"):
        return f"{name.upper()}-1001"
    return "example"


def example_request(event_type: EventType, database: str, now: Any = None) -> dict[str, str]:
    """The JSON body of POST /api/v1/events for this type, with every property filled in, and a
    curl line that sends it."""
    now = now or tz.now().astimezone(UTC)
    body = {
        "database": database,
        "id": f"{event_type.name.replace('.', '-')}-0001",
        "event": event_type.name,
        "time": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "profile": {"email": "ann@example.com"},
        "properties": {p["name"]: example_value(p, now) for p in event_type.properties or []},
    }
    payload = json.dumps(body, indent=2, ensure_ascii=False)
    url = settings.SITE_URL + "/api/v1/events"
    curl = (f"curl -X POST {url} \\\n  -H \"Authorization: Bearer $API_TOKEN\" \\\n"
            f"  -H 'Content-Type: application/json' \\\n  -d @event.json")
    return {"payload": payload, "curl": curl, "url": url, "tokens_url": reverse("accounts:api_tokens")}
