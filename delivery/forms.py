"""Forms of the sending pages: a domain to add, a sender, and provider accounts whose fields are
built from the kind's option spec (delivery.backends.KINDS).

Forms only parse and validate input; the services (delivery.services) write. A provider's
secrets are password inputs that never render a value: an empty secret on an edit keeps the
saved one, so a secret once saved is never sent to a browser again.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import Account
from cdp.forms import StyledForm
from delivery.backends import FieldSpec, KindSpec
from delivery.models import ProviderAccount, Sender, SendingDomain
from delivery.services import normalize_domain


def domain_input(value: str) -> str:
    """What people paste -> a domain name to validate: "https://Shop.Example/path" -> "Shop.Example"."""
    raw = re.sub(r"^[a-z][a-z0-9+.-]*://", "", (value or "").strip(), flags=re.I)
    return raw.split("/", 1)[0].strip()


class DomainForm(StyledForm):
    """A domain to add. The name is checked and normalized by the service's rules (IDNA); that
    it is not added yet is the service's check too (it holds under concurrent adds)."""

    domain = forms.CharField(
        max_length=300, label="Domain",
        help_text="The domain in your From addresses, e.g. shop.example or news.shop.example. "
                  "Internationalised names are fine.",
        widget=forms.TextInput(attrs={"placeholder": "shop.example", "autocomplete": "off", "spellcheck": "false",
                                      "autofocus": True}),
    )

    def clean_domain(self) -> str:
        try:
            return normalize_domain(domain_input(self.cleaned_data["domain"]))
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from exc


class SenderForm(StyledForm):
    """A sender: From name, the address's local part (a whole address on the chosen domain is
    accepted too) and domain, Reply-To, default. The services check the address; the domain
    of an existing sender is fixed (a sender on another domain is a new sender)."""

    from_name = forms.CharField(max_length=200, required=False, label="From name",
                                help_text="What inboxes show, e.g. Northwind. Leave empty for the address only.",
                                widget=forms.TextInput(attrs={"placeholder": "Northwind"}))
    local_part = forms.CharField(max_length=254, label="Address",
                                 widget=forms.TextInput(attrs={"placeholder": "news", "autocomplete": "off",
                                                               "spellcheck": "false"}))
    domain = forms.ModelChoiceField(queryset=SendingDomain.objects.none(), label="Domain", empty_label=None,
                                    widget=forms.Select(attrs={"aria-label": "Domain"}))
    reply_to = forms.EmailField(required=False, label="Reply-To",
                                help_text="Where replies go when it is not the From address (optional).")
    is_default = forms.BooleanField(required=False, label="Default sender",
                                    help_text="Used when a mailing or test send does not pick one.")

    def __init__(self, *args: Any, account: Account, instance: Sender | None = None, **kwargs: Any) -> None:
        if instance is not None:
            kwargs["initial"] = {"from_name": instance.from_name, "local_part": instance.local_part,
                                 "domain": instance.domain_id, "reply_to": instance.reply_to,
                                 "is_default": instance.is_default}
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.fields["domain"].queryset = SendingDomain.objects.for_account(account).order_by("domain")
        self.fields["domain"].label_from_instance = lambda d: (
            f"{d.unicode_domain}" + ("" if d.is_verified else " (not verified)"))
        if instance is not None:
            self.fields["domain"].disabled = True
            self.fields["domain"].help_text = "A sender's domain is fixed: add a new sender for another domain."

    def address_arguments(self) -> dict[str, str]:
        """local_part=..., or from_address=... when a whole address was typed (the service
        checks it is on the chosen domain)."""
        value = self.cleaned_data["local_part"].strip()
        return {"from_address": value} if "@" in value else {"local_part": value}


# --- provider accounts ------------------------------------------------------------------------------


class ChannelKindForm(StyledForm):
    """Step one of a new provider account: the channel, then one of the channel's kinds."""

    channel = forms.ChoiceField(label="Channel")
    kind = forms.ChoiceField(label="Provider", required=False)

    def __init__(self, *args: Any, channels: list[tuple[str, str]], kinds: list[tuple[str, str]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["channel"].choices = channels
        self.fields["kind"].choices = [("", "Choose…"), *kinds]
        # With JavaScript a choice reloads the step at once; without, the "Choose" button does.
        for field in self.fields.values():
            field.widget.attrs["data-autosubmit"] = ""


SECRET_SAVED_HELP = "Saved - leave blank to keep it."  # noqa: S105 - a label, not a password


class SecretTextarea(forms.Textarea):
    """A textarea for a multi-line secret (a PEM key, a JSON service account) that, like
    PasswordInput(render_value=False), never renders a value: not the saved one, and not the
    one just typed when the form comes back with an error."""

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        return super().get_context(name, None, attrs)


def _field_for(spec: FieldSpec, *, saved: bool) -> forms.Field:
    """A form field for one FieldSpec. Values stay raw strings here: KindSpec.clean types them,
    so the form and the API share one set of rules."""
    help_text = spec.help
    if spec.secret:
        help_text = f"{SECRET_SAVED_HELP} {help_text}".strip() if saved else help_text
        attrs = {"autocomplete": "new-password", "spellcheck": "false"}
        if spec.type in ("text", "json"):
            # A PEM key or a JSON service account: a textarea that starts empty every time.
            field: forms.Field = forms.CharField(widget=SecretTextarea(attrs={**attrs, "rows": 4, "class": "font-monospace"}))
        else:
            field = forms.CharField(widget=forms.PasswordInput(attrs=attrs, render_value=False))
        field.required = spec.required and not saved
    elif spec.type == "bool":
        field = forms.BooleanField()
        field.required = False
    elif spec.type == "choice":
        field = forms.ChoiceField(choices=[("", "—"), *spec.choices] if not spec.required else list(spec.choices))
        field.required = spec.required
    elif spec.type in ("text", "json"):
        field = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "class": "font-monospace"}))
        field.required = spec.required
    else:
        input_type = {"int": "number", "float": "number", "url": "url", "email": "email"}.get(spec.type, "text")
        attrs = {"spellcheck": "false"}
        if spec.type == "float":
            attrs["step"] = "any"
        if spec.min_value is not None:
            attrs["min"] = f"{spec.min_value:g}"
        if spec.max_value is not None:
            attrs["max"] = f"{spec.max_value:g}"
        field = forms.CharField(widget=forms.TextInput(attrs={**attrs, "type": input_type}))
        field.required = spec.required
    field.label = spec.label
    field.help_text = help_text
    return field


def _initial_value(spec: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    if spec.type == "json" and not isinstance(value, str):
        return json.dumps(value, indent=2)
    return value


class ProviderForm(StyledForm):
    """A provider account of one kind: name, switches, and the kind's own settings.

    The kind's fields are prefixed "opt_" so a setting named like a fixed field ("name") cannot
    collide. `cleaned_data["data"]` is the kind's raw values (field name -> value) for the
    services, which split them with KindSpec.clean as this form's validation did; secrets left
    blank keep the saved ones (`instance.secrets`). Secret inputs never carry a value.
    """

    name = forms.CharField(max_length=200, label="Name", help_text="How this provider is called in this account, "
                                                                   "e.g. Mailgun EU relay.")
    is_default = forms.BooleanField(required=False, label="Default for its channel",
                                    help_text="Messages of the channel go through it unless something else is chosen.")
    active = forms.BooleanField(required=False, initial=True, label="Active",
                                help_text="Switched off, nothing is sent through it.")

    def __init__(self, *args: Any, account: Account, spec: KindSpec, channel: str,
                 instance: ProviderAccount | None = None, **kwargs: Any) -> None:
        self.spec = spec
        self.account = account
        self.channel = channel
        self.instance = instance
        saved = set(instance.secret_names) if instance is not None else set()
        initial = dict(kwargs.pop("initial", None) or {})
        if instance is not None:
            initial.update({"name": instance.name, "is_default": instance.is_default, "active": instance.active})
            for s in spec.option_fields:
                initial[f"opt_{s.name}"] = _initial_value(s, (instance.options or {}).get(s.name, s.default))
        else:
            initial.setdefault("name", spec.label)
            for s in spec.option_fields:
                if s.default is not None:
                    initial.setdefault(f"opt_{s.name}", _initial_value(s, s.default))
        super().__init__(*args, initial=initial, **kwargs)
        for s in spec.fields:
            self.fields[f"opt_{s.name}"] = _field_for(s, saved=s.name in saved)
        # For the template: which inputs are secrets, and which of those have a saved value.
        self.secret_field_names = {f"opt_{s.name}" for s in spec.secret_fields}
        self.saved_field_names = {f"opt_{name}" for name in saved}
        # Re-style: the kind's fields were added after StyledFormMixin ran.
        for name, field in self.fields.items():
            if name.startswith("opt_"):
                css = ("form-check-input" if isinstance(field.widget, forms.CheckboxInput)
                       else "form-select" if isinstance(field.widget, forms.Select) else "form-control")
                if css not in field.widget.attrs.get("class", ""):
                    field.widget.attrs["class"] = (field.widget.attrs.get("class", "") + " " + css).strip()

    def kind_fields(self) -> list[forms.BoundField]:
        return [self[f"opt_{s.name}"] for s in self.spec.fields]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = ProviderAccount.objects.for_account(self.account).filter(name=name)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"Another provider account is already called {name}.")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        raw = {s.name: data.get(f"opt_{s.name}", "") for s in self.spec.fields}
        existing = dict(self.instance.secrets or {}) if self.instance is not None else {}
        data["data"] = raw
        try:
            self.spec.clean(raw, existing_secrets=existing)
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                key = f"opt_{name}" if f"opt_{name}" in self.fields else None
                for message in messages:
                    if key is not None and key not in self.errors:
                        self.add_error(key, message)
                    elif key is None:
                        self.add_error(None, message)
        return data
