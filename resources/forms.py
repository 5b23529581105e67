"""Forms of the resource and suppression pages. They parse input only: `resources.services`
decides what is valid, and its ResourceValidationError is shown on the field it names."""

from __future__ import annotations

from typing import Any

from django import forms

from cdp.forms import StyledForm
from profiles.forms import mark_invalid
from profiles.models import Field, ProfileDatabase
from resources.models import Channel, Resource, Suppression
from resources.services import ResourceError, ResourceValidationError

LANGUAGE_CHOICES = [("", "The visitor's browser (English or Russian)"), ("en", "English"), ("ru", "Russian")]


class CheckboxSelectMultiple(forms.CheckboxSelectMultiple):
    """Rendered by resources/resource_checkboxes.html as inline Bootstrap checkboxes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attrs["class"] = "form-check-input"


def _channel_field(label: str, help_text: str, required: bool = False) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(label=label, choices=Channel.choices, widget=CheckboxSelectMultiple, required=required,
                                     help_text=help_text)


def categories_text(resource: Resource) -> str:
    return "\n".join(f"{c['key']}:{c['label']}" for c in resource.categories)


def add_service_errors(form: forms.Form, exc: ResourceError) -> None:
    """A service's refusal on the inputs it names (the rest above the form)."""
    if isinstance(exc, ResourceValidationError):
        for name, reason in exc.errors.items():
            field = form.fields.get(name)
            if field is not None:
                form.add_error(name, _sentence(str(field.label or name), reason))
            else:
                form.add_error(None, _sentence(name.replace("_", " ").capitalize(), reason))
    else:
        form.add_error(None, str(exc))
    mark_invalid(form)


def _sentence(label: str, reason: str) -> str:
    """ "is required" -> "Name is required."; other reasons as they are (they may start with a value)."""
    text = f"{label} {reason}" if reason.startswith(("is ", "must ")) else reason
    return text if text.endswith((".", "!", "?")) else text + "."


class ResourceForm(StyledForm):
    """Create (with `databases`) or settings (with `fields` of the resource's database)."""

    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"autofocus": True}))
    database = forms.ModelChoiceField(
        queryset=ProfileDatabase.objects.none(), empty_label=None,
        help_text="Subscribers are profiles of this database. It cannot be changed later.",
    )
    slug = forms.CharField(max_length=60, help_text="In URLs and the API: letters, digits and -.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    channels = _channel_field("Channels", "Where this resource sends messages.", required=True)
    categories = forms.CharField(
        label="Subscription categories", required=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "font-monospace", "placeholder": "news:News\noffers:Offers"}),
        help_text="One per line, as <code>key:Label</code>. Subscribers can opt out of each on the preference page.",
    )
    double_opt_in = _channel_field(
        "Double opt-in", "New subscriptions on these channels wait until the subscriber confirms with a link.")
    preference_visible_fields = forms.MultipleChoiceField(
        label="Fields shown on the preference page", required=False, widget=CheckboxSelectMultiple,
        help_text="The subscriber sees these fields of their profile.")
    preference_editable_fields = forms.MultipleChoiceField(
        label="Fields the subscriber may edit", required=False, widget=CheckboxSelectMultiple,
        help_text="An editable field is shown too.")
    language = forms.ChoiceField(label="Language of the public pages", choices=LANGUAGE_CHOICES, required=False)
    subscribe_enabled = forms.BooleanField(
        label="Accept sign-ups from the public subscribe form", required=False,
        help_text="Turn off to make the embedded forms answer “closed”.")
    subscribe_redirect_url = forms.URLField(
        label="After signing up, go to", required=False, max_length=500, assume_scheme="https",
        help_text="An address on your site (https://…). Empty: a thank-you page of ours.")

    CREATE_FIELDS = ("name", "database", "channels", "categories", "double_opt_in", "description")

    def __init__(self, *args: Any, databases: Any = None, fields: list[Field] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if databases is not None:
            self.fields["database"].queryset = databases
            for name in list(self.fields):
                if name not in self.CREATE_FIELDS:
                    del self.fields[name]
            self.order_fields(self.CREATE_FIELDS)
        else:
            del self.fields["database"]
            choices = [(f.name, f.label) for f in fields or []]
            self.fields["preference_visible_fields"].choices = choices
            self.fields["preference_editable_fields"].choices = [
                (n, label) for n, label in choices if n not in ("created_at", "updated_at")]
        for f in self.fields.values():
            if isinstance(f.widget, CheckboxSelectMultiple):
                f.widget.attrs["class"] = "form-check-input"  # not the text inputs' form-control

    @classmethod
    def initial_for(cls, resource: Resource) -> dict[str, Any]:
        return {
            "name": resource.name, "slug": resource.slug, "description": resource.description,
            "channels": resource.channels, "categories": categories_text(resource), "double_opt_in": resource.double_opt_in,
            "preference_visible_fields": resource.preference_visible_fields,
            "preference_editable_fields": resource.preference_editable_fields, "language": resource.language,
            "subscribe_enabled": resource.subscribe_enabled, "subscribe_redirect_url": resource.subscribe_redirect_url,
        }

    def clean_categories(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["categories"].splitlines() if line.strip()]

    def values(self) -> dict[str, Any]:
        """What the service takes (everything but the database)."""
        return {k: v for k, v in self.cleaned_data.items() if k != "database"}


class SuppressionAddForm(StyledForm):
    kind = forms.ChoiceField(choices=Suppression.Kind.choices)
    value = forms.CharField(max_length=320, widget=forms.TextInput(attrs={"placeholder": "name@example.com, example.com or +4915…"}))
    reason = forms.ChoiceField(choices=Suppression.Reason.choices, initial=Suppression.Reason.MANUAL)
    note = forms.CharField(required=False, max_length=500)


class SuppressionImportForm(StyledForm):
    file = forms.FileField(
        label="CSV file", widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv,text/plain"}),
        help_text="Columns: value, and optionally kind (email, domain, phone), reason and note. A header row is optional.",
    )
