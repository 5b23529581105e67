"""Forms of the profile pages. They parse input only; the services decide what is valid for a
field (types, choices, uniqueness) and their errors are shown on the field they name."""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from django import forms
from django.utils.html import escape
from django.utils.safestring import mark_safe

from accounts.models import TIMEZONE_CHOICES
from cdp.forms import StyledForm
from profiles.fieldtypes import FieldType
from profiles.models import Field, Profile
from profiles.services import Schema

MATCH_KEY_CHOICES = [("email", "E-mail address"), ("phone", "Phone number")]


class DatabaseCreateForm(StyledForm):
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"autofocus": True}))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    match_key = forms.ChoiceField(
        label="Recognise a person by", choices=MATCH_KEY_CHOICES, initial="email",
        help_text="Imports and the API find an existing profile by this value, so the same person is never stored twice.",
    )


class DatabaseSettingsForm(StyledForm):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    match_keys = forms.MultipleChoiceField(
        label="Match keys", widget=forms.CheckboxSelectMultiple,
        help_text="Unique fields that identify a profile. The first is the default for imports.",
    )

    def __init__(self, *args: Any, fields: list[Field], current: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current = current
        self.fields["match_keys"].choices = [(f.name, f.label) for f in fields if f.unique]
        self.fields["match_keys"].widget.attrs["class"] = "form-check-input"

    def clean_match_keys(self) -> list[str]:
        chosen = self.cleaned_data["match_keys"]
        # Keys already in use keep their order (the first stays the default); new ones follow.
        order = [k for k in self.current if k in chosen]
        return order + [k for k, _ in self.fields["match_keys"].choices if k in chosen and k not in order]


def _choices_text(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


class FieldAddForm(StyledForm):
    label = forms.CharField(max_length=200, help_text="What people see, e.g. “Loyalty points”.")
    name = forms.CharField(
        max_length=64, help_text="The key in imports, the API and templates: lowercase letters, digits and _.",
    )
    type = forms.ChoiceField(choices=FieldType.choices, initial=FieldType.STRING)
    choices = forms.CharField(
        label="Allowed values", required=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text="For “One of a list”: one value per line.",
    )
    default = forms.CharField(required=False, help_text="Given to new profiles that leave the field empty.")
    required = forms.BooleanField(required=False, help_text="New and edited profiles must have a value.")
    unique = forms.BooleanField(required=False, help_text="No two profiles may share a value (makes it a possible match key).")
    indexed = forms.BooleanField(required=False, help_text="Speeds up filters and segments on this field in big databases.")

    def clean_choices(self) -> list[str]:
        return _choices_text(self.cleaned_data["choices"])


class FieldEditForm(StyledForm):
    label = forms.CharField(max_length=200)
    type = forms.ChoiceField(
        choices=FieldType.choices,
        help_text="Stored values are converted; the change is refused if one of them does not fit the new type.",
    )
    choices = forms.CharField(
        label="Allowed values", required=False, widget=forms.Textarea(attrs={"rows": 5}),
        help_text="For “One of a list”: one value per line. A value still held by profiles cannot be removed.",
    )
    required = forms.BooleanField(required=False)
    unique = forms.BooleanField(required=False)
    indexed = forms.BooleanField(required=False)

    def __init__(self, *args: Any, field: Field, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {
            "label": field.label, "type": field.type, "choices": "\n".join(field.choices),
            "required": field.required, "unique": field.unique, "indexed": field.indexed,
        })
        super().__init__(*args, **kwargs)
        self.field = field
        if field.is_system:
            for name in ("type", "choices", "unique", "indexed"):
                self.fields[name].disabled = True
            self.fields["type"].help_text = "A system field keeps its type."
        if field.is_system or field.type != FieldType.ENUM:
            self.fields["choices"].help_text = "Only for “One of a list”: one value per line."

    def clean_choices(self) -> list[str]:
        value = self.cleaned_data["choices"]
        return _choices_text(value) if isinstance(value, str) else list(value or [])


# --- profiles ------------------------------------------------------------------------------------


class _DateInput(forms.DateInput):
    input_type = "date"


class _DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"


def _list_text(items: list[Any]) -> str:
    # Comma-separated unless an item holds a separator; then JSON, which the list type also reads.
    if any(any(sep in str(i) for sep in ",;|") for i in items):
        return json.dumps(items, ensure_ascii=False)
    return ", ".join(str(i) for i in items)


def form_value(f: Field, value: Any, tz: Any) -> Any:
    """A stored value as the text (or bool) its input shows."""
    if value is None or value == "":
        return None if f.type == FieldType.BOOLEAN else ""
    if f.type == FieldType.BOOLEAN:
        return bool(value)
    if f.type == FieldType.DATETIME:
        try:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
        moment = moment.astimezone(tz)
        # As browsers normalise a datetime-local value: seconds only when they are not zero.
        return moment.strftime("%Y-%m-%dT%H:%M:%S" if moment.second else "%Y-%m-%dT%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if f.type == FieldType.LIST and isinstance(value, list):
        return _list_text(value)
    if f.type == FieldType.JSON or isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@lru_cache(maxsize=1)
def _timezone_datalist() -> str:
    options = "".join(f'<option value="{escape(name)}">' for name, _ in TIMEZONE_CHOICES)
    return f'<datalist id="timezone-names">{options}</datalist>'


class _TimezoneInput(forms.TextInput):
    """A text input suggesting the ~600 timezone names from one cached <datalist>: a <select>
    renders each option through a template, which made the profile card ten times slower."""

    def __init__(self) -> None:
        super().__init__(attrs={"list": "timezone-names", "autocomplete": "off", "placeholder": "e.g. Europe/Berlin"})

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> str:
        return mark_safe(super().render(name, value, attrs, renderer) + _timezone_datalist())


def _form_field(f: Field, *, tz_name: str) -> forms.Field:
    # A required yes/no field is still a checkbox that may be left unticked (it means "no").
    common: dict[str, Any] = {"label": f.label, "required": f.required and f.type != FieldType.BOOLEAN}
    t = f.type
    if f.name == "timezone" and f.is_system:
        return forms.CharField(widget=_TimezoneInput(), **common)
    if t == FieldType.BOOLEAN:
        return forms.BooleanField(**common)
    if t == FieldType.ENUM:
        return forms.ChoiceField(choices=[("", "—")] + [(c, c) for c in f.choices], **common)
    if t in (FieldType.TEXT, FieldType.JSON):
        attrs = {"rows": 3}
        if t == FieldType.JSON:
            attrs["class"] = "font-monospace"
        return forms.CharField(widget=forms.Textarea(attrs=attrs),
                               help_text="JSON, such as {\"size\": \"M\"}" if t == FieldType.JSON else "", **common)
    if t == FieldType.INTEGER:
        return forms.CharField(widget=forms.NumberInput(attrs={"step": "1"}), **common)
    if t == FieldType.DECIMAL:
        return forms.CharField(widget=forms.NumberInput(attrs={"step": "any"}), **common)
    if t == FieldType.DATE:
        return forms.CharField(widget=_DateInput(), **common)
    if t == FieldType.DATETIME:
        return forms.CharField(widget=_DateTimeInput(attrs={"step": "1"}), help_text=f"In {tz_name}.", **common)
    if t == FieldType.LIST:
        return forms.CharField(help_text="Separate values with commas.", **common)
    if t == FieldType.EMAIL:
        return forms.CharField(widget=forms.EmailInput(attrs={"autocomplete": "off"}), **common)
    if t == FieldType.PHONE:
        return forms.CharField(widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "tel"}),
                               help_text="With +country code, or a number of the account's country.", **common)
    return forms.CharField(**common)


def profile_form(
    data: Any = None, *, schema: Schema, profile: Profile | None = None, prefix: str | None = None
) -> StyledForm:
    """A form with one input per writable field of the schema, suited to its type.

    On an existing profile, `changed_data` names exactly the inputs the person changed, so an
    edit sends only those to `profile_update` (an untouched field is never rewritten)."""
    tz = schema.ctx.tz
    declared = {f.name: _form_field(f, tz_name=str(tz)) for f in schema.writable()}
    initial = {} if profile is None else {
        f.name: form_value(f, profile.value(f.name), tz) for f in schema.writable()
    }
    form_class = type("ProfileForm", (StyledForm,), declared)
    form = form_class(data, initial=initial, prefix=prefix)
    for name, value in initial.items():
        field = form.fields[name]
        # A stored value the list no longer offers stays selectable, so saving another field keeps it.
        if isinstance(field, forms.ChoiceField) and value and value not in {c for c, _ in field.choices}:
            field.choices = [*field.choices, (value, value)]
    return form


def mark_invalid(form: forms.Form) -> None:
    """Style the inputs of errors added after cleaning (a service's refusal) like the form's own."""
    for name in form.errors:
        field = form.fields.get(name)
        if field is not None and "is-invalid" not in field.widget.attrs.get("class", ""):
            field.widget.attrs["class"] = (field.widget.attrs.get("class", "") + " is-invalid").strip()
            field.widget.attrs["aria-invalid"] = "true"


def error_text(label: str, reason: str) -> str:
    """A service's reason ("is required", "'x' is not a whole number") as a sentence."""
    reason = reason.strip()
    text = f"{label} {reason}" if reason.startswith("is ") else reason[:1].upper() + reason[1:]
    return text if text.endswith((".", "?", "!")) else text + "."
