"""What the editor does with a draft that is not saved: render it for a preview, lint it, and the
variables it can use. The one place the pages meet content.rendering / content.lint, so the
preview, the lint panel and the API render the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.utils import timezone

from content import rendering
from content.lint import lint
from content.models import Template
from content.rendering import RenderError
from profiles.fieldtypes import FieldType
from profiles.models import Field, Profile, ProfileDatabase
from resources.models import Subscription

MAX_SAMPLE_DATA = 64 * 1024

# What a preview without a chosen profile shows: a plausible person, not blanks.
_SAMPLE_SYSTEM: dict[str, Any] = {
    "email": "alex.sample@example.com",
    "phone": "+15550100123",
    "first_name": "Alex",
    "last_name": "Sample",
    "birthday": date(1990, 5, 17),
    "gender": "other",
    "timezone": "",
}
_SAMPLE_BY_TYPE: dict[str, Any] = {
    FieldType.STRING: "Sample", FieldType.TEXT: "Sample text", FieldType.INTEGER: 42, FieldType.DECIMAL: 19.99,
    FieldType.BOOLEAN: True, FieldType.DATE: date(2026, 1, 15), FieldType.EMAIL: "sample@example.com",
    FieldType.PHONE: "+15550100123", FieldType.LIST: ["one", "two"], FieldType.JSON: {},
}


@dataclass
class Outcome:
    """A draft rendered for the preview: the parts, or the error that stopped it."""

    parts: dict[str, Any] = field(default_factory=dict)
    error: RenderError | None = None


def sample_profile(fields: list[Field]) -> dict[str, Any]:
    """A sample person with a value for every field of the database."""
    out: dict[str, Any] = {"id": 0, **_SAMPLE_SYSTEM}
    now = timezone.now()
    out.update(created_at=now, updated_at=now)
    for f in fields:
        if f.is_system:
            continue
        if f.type == FieldType.ENUM:
            out[f.name] = (f.choices or ["option"])[0]
        elif f.type == FieldType.DATETIME:
            out[f.name] = now
        else:
            out[f.name] = _SAMPLE_BY_TYPE.get(f.type, "Sample")
    return out


def parse_sample_data(raw: str) -> tuple[dict[str, Any], str]:
    """The editor's "data" box (the trigger payload to preview with) -> (data, problem)."""
    raw = (raw or "").strip()
    if not raw:
        return {}, ""
    if len(raw) > MAX_SAMPLE_DATA:
        return {}, f"The sample data is larger than {MAX_SAMPLE_DATA // 1024} KB."
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return {}, f"The sample data is not JSON: {exc}."
    if not isinstance(value, dict):
        return {}, "The sample data must be a JSON object, like {\"order\": {\"total\": 12.5}}."
    return value, ""


def preview_context(
    *, template: Template, channel: str, profile: Profile | None = None, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The plain-data context a preview renders with: the chosen profile (and its first
    subscription on the channel, for real unsubscribe links), or a sample person."""
    subscription = None
    if profile is not None:
        subscription = (Subscription.objects.for_account(template.account)
                        .filter(profile=profile, channel=channel).select_related("resource").order_by("priority", "id")
                        .first())
    ctx = rendering.context_for(account=template.account, profile=profile, subscription=subscription,
                                resource=subscription.resource if subscription else None, data=data or {})
    if profile is None:
        fields = list(template.database.fields.all()) if template.database_id else []
        ctx["profile"] = sample_profile(fields)
    return ctx


def render_draft(*, template: Template, channel: str, data: dict[str, Any], context: dict[str, Any]) -> Outcome:
    """Render unsaved `data` of `channel`, as a saved version would render (never raises for a
    template's own mistakes: they come back in `Outcome.error`)."""
    try:
        compiled = rendering.compile_draft(account=template.account, channel=channel, data=data, kind=template.kind)
        return Outcome(parts=dict(compiled.render(context).parts))
    except RenderError as exc:
        return Outcome(error=exc)


def lint_draft(*, template: Template, channel: str, data: dict[str, Any]) -> list[Any]:
    """Lint messages of unsaved `data` (errors first), with the template's kind taken into account."""
    messages = lint(channel, data, database=template.database, kind=template.kind)
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(messages, key=lambda m: order.get(getattr(m, "level", "info"), 3))


def profile_pick(template: Template, raw: str | int | None) -> Profile | None:
    """The profile chosen to preview as: one of the template's database, else None."""
    try:
        pk = int(raw or 0)
    except (TypeError, ValueError):
        return None
    if pk <= 0 or not template.database_id:
        return None
    return Profile.objects.for_account(template.account).filter(database_id=template.database_id, pk=pk).first()


# --- the variables sidebar --------------------------------------------------------------------------


@dataclass(frozen=True)
class VariableGroup:
    title: str
    items: list[tuple[str, str]]  # (expression, label)


def variables(database: ProfileDatabase | None, fields: list[Field] | None = None) -> list[VariableGroup]:
    """What the sidebar offers to insert, per group."""
    if database is not None:
        fields = fields if fields is not None else list(database.fields.all())
        profile = [(f"profile.{f.name}", f.label) for f in fields]
    else:
        profile = [("profile.first_name", "First name"), ("profile.last_name", "Last name"),
                   ("profile.email", "E-mail"), ("profile.phone", "Phone")]
    return [
        VariableGroup("Profile", profile),
        VariableGroup("Subscription", [("subscription.address", "Address"), ("subscription.channel", "Channel"),
                                       ("subscription.status", "Status")]),
        VariableGroup("Resource", [("resource.name", "Name"), ("resource.slug", "Slug")]),
        VariableGroup("Account", [("account.name", "Name"), ("account.timezone", "Timezone"),
                                  ("account.language", "Language")]),
        VariableGroup("Links", [("links.unsubscribe", "Unsubscribe"), ("links.preferences", "Preferences"),
                                ("links.view_online", "View online")]),
        VariableGroup("Trigger data", [("data", "The whole payload")]),
    ]


def render_saved(*, version: Any, context: dict[str, Any]) -> Outcome:
    """Render a saved version through the per-worker compiled cache (what mailings send)."""
    try:
        return Outcome(parts=dict(rendering.compiled(version).render(context).parts))
    except RenderError as exc:
        return Outcome(error=exc)
