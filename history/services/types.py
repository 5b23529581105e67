"""Custom event types: create, change, delete (audited). System types come from the catalogue."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from cdp import confcache
from history.catalogue import BY_NAME, FIRST_CUSTOM_ID, SYSTEM_TYPES
from history.models import CUSTOM_NAME_RE, Event, EventType
from history.schema import SchemaError, clean_schema

MAX_CUSTOM_TYPES = 500


class EventTypeError(Exception):
    """A request about event types that cannot be carried out; `errors` maps a field to why."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def sync_system_types(**_: Any) -> None:
    """Keep the EventType rows of the system catalogue in step with `history.catalogue` (post_migrate)."""
    existing = {t.pk: t for t in EventType.objects.filter(account__isnull=True)}
    for st in SYSTEM_TYPES:
        row = existing.get(st.id)
        if row is None:
            EventType.objects.create(id=st.id, account=None, name=st.name, label=st.label, description=st.description,
                                     properties=st.properties, strict=False)
        elif (row.name, row.label, row.description, row.properties) != (st.name, st.label, st.description, st.properties):
            EventType.objects.filter(pk=st.id).update(name=st.name, label=st.label, description=st.description,
                                                      properties=st.properties)
            confcache.changed()  # a bulk update sends no signal: the kept type books must go
    _reserve_system_ids()


def _reserve_system_ids() -> None:
    """Custom types get ids from FIRST_CUSTOM_ID up, so new system types always have room below."""
    from django.db import connection

    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT setval(pg_get_serial_sequence('history_eventtype', 'id'), "
                        "GREATEST((SELECT max(id) FROM history_eventtype), %s))", [FIRST_CUSTOM_ID - 1])
        elif connection.vendor == "sqlite":
            cur.execute("SELECT seq FROM sqlite_sequence WHERE name = 'history_eventtype'")
            row = cur.fetchone()
            if row is None:
                cur.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('history_eventtype', %s)", [FIRST_CUSTOM_ID - 1])
            elif row[0] < FIRST_CUSTOM_ID - 1:
                cur.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = 'history_eventtype'", [FIRST_CUSTOM_ID - 1])


def _clean(name: str | None, label: str, properties: Any, *, creating: bool) -> tuple[str, list[dict[str, Any]]]:
    errors: dict[str, str] = {}
    if creating:
        name = (name or "").strip()
        if name == "new":
            errors["name"] = "“new” is the address of the page that creates types; choose another name"
        elif name in BY_NAME or "." in name:
            errors["name"] = "names with a dot belong to the system catalogue; use lowercase letters, digits and _"
        elif not CUSTOM_NAME_RE.match(name):
            errors["name"] = "use 2-63 lowercase letters, digits and underscores, starting with a letter (e.g. cart_abandoned)"
    if len(label) > 200:
        errors["label"] = "at most 200 characters"
    try:
        schema = clean_schema(properties)
    except SchemaError as exc:
        errors.update(exc.errors)
        schema = []
    if errors:
        raise EventTypeError(errors)
    return name or "", schema


@transaction.atomic
def eventtype_create(*, account: Account, name: str, label: str = "", description: str = "",
                     properties: Any = None, strict: bool = True, actor: Actor) -> EventType:
    name, schema = _clean(name, label, properties, creating=True)
    if EventType.objects.filter(account=account).count() >= MAX_CUSTOM_TYPES:
        raise EventTypeError({"name": f"an account has at most {MAX_CUSTOM_TYPES} custom event types"})
    try:
        with transaction.atomic():
            et = EventType.objects.create(account=account, name=name, label=label.strip(), description=description.strip(),
                                          properties=schema, strict=strict)
    except IntegrityError:
        raise EventTypeError({"name": f"there is already an event type {name!r}"}) from None
    audit_log(account=account, actor=actor, verb="event_type.created", target=et, target_label=name,
              data={"properties": [p["name"] for p in schema], "strict": strict})
    return et


@transaction.atomic
def eventtype_update(*, event_type: EventType, actor: Actor, label: str | None = None, description: str | None = None,
                     properties: Any = None, strict: bool | None = None, enabled: bool | None = None) -> EventType:
    """Change a custom type. A new schema applies to events stored from now on; stored events keep
    what they were stored with."""
    if event_type.is_system:
        raise EventTypeError({"name": "system event types cannot be changed"})
    et = EventType.objects.select_for_update().get(pk=event_type.pk)
    _, schema = _clean(None, label if label is not None else et.label,
                       properties if properties is not None else et.properties, creating=False)
    changes: dict[str, Any] = {}
    for attr, value in (("label", label.strip() if label is not None else None),
                        ("description", description.strip() if description is not None else None),
                        ("properties", schema if properties is not None else None),
                        ("strict", strict), ("enabled", enabled)):
        if value is not None and getattr(et, attr) != value:
            changes[attr] = value
            setattr(et, attr, value)
    if changes:
        et.save()
        audit_log(account=et.account, actor=actor, verb="event_type.updated", target=et, target_label=et.name,
                  data={k: v if k != "properties" else [p["name"] for p in v] for k, v in changes.items()})
    return et


@transaction.atomic
def eventtype_delete(*, event_type: EventType, actor: Actor) -> None:
    """Delete a custom type that has no stored events (disable it otherwise)."""
    if event_type.is_system:
        raise EventTypeError({"name": "system event types cannot be deleted"})
    if Event.objects.filter(account_id=event_type.account_id, type_id=event_type.pk).exists():
        raise EventTypeError({"name": "events of this type are stored; disable the type instead (they stay in the history)"})
    audit_log(account=event_type.account, actor=actor, verb="event_type.deleted", target_label=event_type.name)
    event_type.delete()
