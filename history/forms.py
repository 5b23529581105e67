"""Forms of the event type and history settings pages. They parse input only: `history.services`
decides what is valid (names, property schemas, retention bounds), and its errors are shown on
the field, or the property row and field, they name."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.forms import BaseFormSet, formset_factory

from cdp.forms import StyledForm
from history.models import EventType, PropertyType
from history.schema import MAX_PROPERTIES_IN_SCHEMA
from history.services import MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, EventTypeError
from profiles.forms import error_text, mark_invalid

STRICT_CHOICES = [
    ("strict", "Reject events whose properties don't match"),
    ("loose", "Store them, marked untyped"),
]
STRICT_HELP = {
    "strict": "The API answers the event with the reason and stores nothing (the rest of its batch is stored).",
    "loose": "Stored as sent and flagged untyped: segments and triggers ignore its typed properties.",
}

# /history/types/new/ is the create page, so a type of that name could not be opened.
RESERVED_NAMES = frozenset({"new"})
_ROW_ERROR = re.compile(r"^properties\[(\d+)\](?:\.(\w+))?$")


class EventTypeForm(StyledForm):
    """Create (with `name`) or change (with `enabled`) a custom event type; the properties are a
    PropertyFormSet beside it."""

    label = forms.CharField(max_length=200, required=False, widget=forms.TextInput(attrs={"autofocus": True}),
                            help_text="What people see in segments, triggers and the timeline, e.g. “Cart abandoned”.")
    name = forms.CharField(
        max_length=64, help_text="What integrations send as <code>event</code>: lowercase letters, digits and _, "
                                 "starting with a letter. It cannot be changed later.",
        widget=forms.TextInput(attrs={"class": "font-monospace", "placeholder": "cart_abandoned", "autocomplete": "off",
                                      "spellcheck": "false", "data-slug-max": "63"}),
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    strict = forms.ChoiceField(label="Events whose properties don't match", choices=STRICT_CHOICES, initial="strict",
                               widget=forms.RadioSelect)
    enabled = forms.BooleanField(label="Enabled", required=False,
                                 help_text="A disabled type is refused by the API. Stored events stay.")

    def __init__(self, *args: Any, event_type: EventType | None = None, **kwargs: Any) -> None:
        if event_type is not None:
            kwargs.setdefault("initial", {"label": event_type.label, "description": event_type.description,
                                          "strict": "strict" if event_type.strict else "loose",
                                          "enabled": event_type.enabled})
        super().__init__(*args, **kwargs)
        if event_type is None:
            del self.fields["enabled"]
            self.order_fields(["label", "name"])
        else:
            del self.fields["name"]
            self.fields["label"].widget.attrs.pop("autofocus", None)
        self.fields["strict"].widget.attrs["class"] = "form-check-input"  # radios, not a text input

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if name in RESERVED_NAMES:
            raise forms.ValidationError(f"“{name}” is the address of the page that creates types; choose another name.")
        return name

    @property
    def is_strict(self) -> bool:
        return self.cleaned_data["strict"] == "strict"

    def strict_options(self) -> list[dict[str, Any]]:
        """The radios with their explanations (rendered by history/_type_form_fields.html)."""
        return [{"radio": radio, "help": STRICT_HELP[radio.data["value"]]} for radio in self["strict"]]


class PropertyForm(StyledForm):
    """One row of the property schema editor. Every field is optional: a row without a name is
    blank and left out; the service checks the rest."""

    # Name and type are labelled by aria-label: the editor shows one header row over its columns.
    name = forms.CharField(max_length=63, required=False,
                           widget=forms.TextInput(attrs={"class": "font-monospace", "placeholder": "e.g. sku",
                                                         "autocomplete": "off", "spellcheck": "false",
                                                         "aria-label": "Property name"}))
    type = forms.ChoiceField(choices=PropertyType.choices, initial=PropertyType.STRING,
                             widget=forms.Select(attrs={"aria-label": "Type"}))
    required = forms.BooleanField(required=False)
    choices = forms.CharField(
        label="Allowed values", max_length=4000, required=False,
        widget=forms.TextInput(attrs={"placeholder": "small, medium, large",
                                      "aria-label": "Allowed values (comma-separated)"}),
    )

    def is_blank(self) -> bool:
        data = self.cleaned_data
        return not (data.get("name") or "").strip() and not (data.get("choices") or "").strip() and not data.get("required")

    def is_removed(self) -> bool:
        return bool(self.cleaned_data.get("DELETE"))


class BasePropertyFormSet(BaseFormSet):
    """Rows of PropertyForm; `extra` blank rows for typing without JavaScript (the page's script
    adds and removes rows in place)."""

    def __init__(self, *args: Any, extra: int = 3, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "properties")
        self.extra = extra
        super().__init__(*args, **kwargs)

    def add_fields(self, form: forms.Form, index: int | None) -> None:
        super().add_fields(form, index)
        form.fields["DELETE"].widget.attrs.update({"class": "form-check-input", "data-remove": ""})

    @classmethod
    def initial_for(cls, event_type: EventType) -> list[dict[str, Any]]:
        return [{"name": p["name"], "type": p["type"], "required": bool(p.get("required")),
                 "choices": ", ".join(p.get("choices") or [])} for p in event_type.properties]

    def schema(self) -> tuple[list[dict[str, Any]], list[int]]:
        """The schema the service takes, and for each of its entries the index of its row (so the
        service's "properties[i].name" can be shown at the row a person sees)."""
        schema: list[dict[str, Any]] = []
        rows: list[int] = []
        for i, form in enumerate(self.forms):
            if not form.has_changed() and i >= self.initial_form_count():
                continue
            if form.is_removed() or form.is_blank():
                continue
            data = form.cleaned_data
            entry: dict[str, Any] = {"name": data["name"].strip(), "type": data["type"], "required": data["required"]}
            if data["type"] == PropertyType.ENUM:
                entry["choices"] = data["choices"]
            schema.append(entry)
            rows.append(i)
        return schema, rows


PropertyFormSet = formset_factory(PropertyForm, formset=BasePropertyFormSet, extra=3, can_delete=True,
                                  max_num=MAX_PROPERTIES_IN_SCHEMA, validate_max=True)

FIELD_LABELS = {"name": "Name", "type": "Type", "choices": "Allowed values", "label": "Label"}


def add_type_errors(form: EventTypeForm, properties: BasePropertyFormSet, exc: EventTypeError, rows: list[int]) -> None:
    """The service's refusal where it belongs: "properties[2].name" on the name input of the
    third property sent (`rows` maps it to its row), "name" on the form's name, the rest above."""
    for key, reason in exc.errors.items():
        m = _ROW_ERROR.match(key)
        if m and int(m.group(1)) < len(rows):
            row = properties.forms[rows[int(m.group(1))]]
            field = m.group(2)
            if field in row.fields:
                row.add_error(field, error_text(FIELD_LABELS.get(field, field), reason))
            else:
                row.add_error(None, error_text("This property", reason))
            mark_invalid(row)
        elif key in form.fields:
            form.add_error(key, error_text(FIELD_LABELS.get(key, str(form.fields[key].label)), reason))
        else:
            form.add_error(None, error_text("Properties" if key.startswith("properties") else key.capitalize(), reason))
    mark_invalid(form)


class RetentionForm(StyledForm):
    retention_days = forms.IntegerField(
        label="Keep events for", required=False, min_value=MIN_RETENTION_DAYS, max_value=MAX_RETENTION_DAYS,
        widget=forms.NumberInput(attrs={"placeholder": "Forever", "list": "retention-presets", "step": 1}),
        help_text=f"In days, from {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS:,} (ten years). Leave it empty to keep "
                  "every event.",
    )
