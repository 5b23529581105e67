"""Forms of the profile card's Subscriptions tab and of the import's "subscribe" option.

They parse input only; resources.services decides what is valid (addresses, transitions,
categories) and its ResourceValidationError messages are put on the field they name.
"""

from __future__ import annotations

from typing import Any

from django import forms

from cdp.forms import StyledForm
from profiles.forms import mark_invalid
from profiles.models import Profile, ProfileDatabase
from resources.importing import IMPORT_CHANNELS, IMPORT_STATUSES
from resources.models import Channel, Resource, Status
from resources.services import TRANSITIONS, ResourceValidationError

NEW_STATUSES = [(Status.SUBSCRIBED, "Subscribed"), (Status.UNCONFIRMED, "Awaiting confirmation"),
                (Status.UNSUBSCRIBED, "Unsubscribed")]
MAX_PAUSE_DAYS = 365
# Service error keys -> the add form's field names.
ADD_FIELD_FOR = {"resource": "resource", "channel": "channel", "address": "address", "status": "status",
                 "opted_out": "opted_out"}


def status_targets(status: str) -> list[tuple[str, str, bool]]:
    """(status, label, needs_consent) a team member may move a subscription to from `status`.

    A pause has its own action (it needs an end). Leaving a system state (bounced, complained,
    blocked) for anything TRANSITIONS does not allow is an explicit, forced action: it needs the
    person's renewed consent and a reason."""
    allowed = TRANSITIONS.get(status, frozenset())
    out = []
    for value, label in Status.choices:
        if value in (status, Status.SUSPENDED):
            continue
        if value in allowed:
            out.append((value, label, False))
        elif status in {Status.BOUNCED, Status.COMPLAINED, Status.BLOCKED} and value in (Status.SUBSCRIBED, Status.UNCONFIRMED):
            out.append((value, label, True))
    return out


class SubscriptionAddForm(StyledForm):
    resource = forms.TypedChoiceField(coerce=int)
    channel = forms.ChoiceField()
    address = forms.CharField(max_length=2048, widget=forms.TextInput(attrs={"autocomplete": "off", "list": "subscription-addresses"}),
                              help_text="An e-mail address, a phone number (+country code), a push token or a Telegram chat id.")
    status = forms.ChoiceField(choices=NEW_STATUSES, initial=Status.SUBSCRIBED,
                               help_text="On a channel with double opt-in, “Subscribed” waits for the person's confirmation.")
    confirmed = forms.BooleanField(required=False, label="Already confirmed (double opt-in done elsewhere)")
    opted_out = forms.MultipleChoiceField(required=False, label="Opted out of", widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args: Any, resources: list[Resource], profile: Profile, **kwargs: Any) -> None:
        channels = [c for c in Channel.values if any(c in r.channels for r in resources)]
        initial = kwargs.setdefault("initial", {})
        if len(resources) == 1:
            initial.setdefault("resource", resources[0].pk)
        if Channel.EMAIL in channels and profile.email:
            initial.setdefault("channel", Channel.EMAIL)
            initial.setdefault("address", profile.email)
        elif Channel.SMS in channels and profile.phone:
            initial.setdefault("channel", Channel.SMS)
            initial.setdefault("address", profile.phone)
        super().__init__(*args, **kwargs)
        self.resources = {r.pk: r for r in resources}
        self.fields["resource"].choices = [(r.pk, r.name) for r in resources]
        self.fields["channel"].choices = [(c, Channel(c).label) for c in channels]
        hint = " or ".join(v for v in (profile.email, profile.phone) if v)
        if hint:
            self.fields["address"].widget.attrs["placeholder"] = hint
        categories: dict[str, str] = {}
        for r in resources:
            for c in r.categories:
                categories.setdefault(c["key"], c.get("label") or c["key"])
        self.fields["opted_out"].choices = list(categories.items())
        self.fields["opted_out"].widget.attrs["class"] = "form-check-input"
        self.has_categories = bool(categories)

    @property
    def chosen_resource(self) -> Resource:
        return self.resources[self.cleaned_data["resource"]]

    def add_service_errors(self, exc: ResourceValidationError) -> None:
        for key, message in exc.errors.items():
            name = ADD_FIELD_FOR.get(key)
            text = message[:1].upper() + message[1:]
            self.add_error(name if name in self.fields else None, text if text.endswith(".") else text + ".")
        mark_invalid(self)


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=Status.choices)
    consent = forms.BooleanField(required=False)
    reason = forms.CharField(required=False, max_length=500)

    def __init__(self, *args: Any, current: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current = current
        self.targets = {value: needs for value, _, needs in status_targets(current)}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        status = data.get("status")
        if status is None:
            return data
        if status not in self.targets:
            raise forms.ValidationError(f"A subscription cannot go from {Status(self.current).label.lower()} "
                                        f"to {Status(status).label.lower()} here.")
        data["force"] = self.targets[status]
        if data["force"]:
            if not data.get("consent"):
                raise forms.ValidationError("Tick “I have the person's renewed consent” to subscribe this address again.")
            if not data.get("reason", "").strip():
                raise forms.ValidationError("Say why the address may receive messages again (the reason is kept in the ledger).")
        return data


class PauseForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=MAX_PAUSE_DAYS)


class CategoriesForm(forms.Form):
    opted_out = forms.MultipleChoiceField(required=False)

    def __init__(self, *args: Any, resource: Resource, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["opted_out"].choices = [(c["key"], c.get("label") or c["key"]) for c in resource.categories]


# --- the import's "subscribe" option (an ImportHook's UI, registered in resources.apps) -------------


class ImportSubscribeForm(StyledForm):
    """Optional: empty resource means "do not subscribe". Field names are prefixed "subscribe-"."""

    resource = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Resource")
    channel = forms.ChoiceField(choices=[(Channel.EMAIL, "E-mail (the profile's e-mail)"), (Channel.SMS, "SMS (the profile's phone)")],
                                initial=Channel.EMAIL, required=False)
    status = forms.ChoiceField(choices=[(s, Status(s).label) for s in IMPORT_STATUSES], initial=Status.SUBSCRIBED, required=False,
                               help_text="An import never re-subscribes people who unsubscribed, bounced or complained.")

    def __init__(self, data: Any = None, *, database: ProfileDatabase, initial: dict[str, Any] | None = None) -> None:
        super().__init__(data, prefix="subscribe", initial=initial or {})
        self.fields["resource"].choices = [("", "Do not subscribe")] + [
            (r.pk, r.name) for r in Resource.objects.filter(database=database).order_by("name", "id")
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("resource"):
            for name in ("channel", "status"):
                if not data.get(name):
                    self.add_error(name, "Pick one to subscribe the imported profiles.")
        return data

    def options(self) -> dict[str, Any] | None:
        """The hook's options (Options.extra["subscribe"]), or None when no resource was chosen."""
        data = self.cleaned_data
        if not data.get("resource"):
            return None
        return {"resource": data["resource"], "channel": data["channel"], "status": data["status"]}


def import_subscribe_form(database: ProfileDatabase, data: Any = None, initial: dict[str, Any] | None = None) -> ImportSubscribeForm:
    return ImportSubscribeForm(data, database=database, initial=initial)


def import_subscribe_parse_cli(database: ProfileDatabase, text: str) -> dict[str, Any]:
    """RESOURCE_SLUG:CHANNEL:STATUS (status defaults to subscribed) -> the hook's options.
    Raises ValueError with a message for the command line."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) == 2:
        parts.append(Status.SUBSCRIBED)
    if len(parts) != 3 or not all(parts):
        raise ValueError("--subscribe takes RESOURCE_SLUG:CHANNEL:STATUS, e.g. shop-news:email:subscribed")
    slug, channel, status = parts
    resource = Resource.objects.filter(database=database, slug=slug).first()
    if resource is None:
        known = ", ".join(Resource.objects.filter(database=database).values_list("slug", flat=True)) or "none"
        raise ValueError(f"No resource {slug!r} in {database.name} (its resources: {known}).")
    if channel not in IMPORT_CHANNELS:
        raise ValueError(f"An import subscribes on {' or '.join(IMPORT_CHANNELS)}, not {channel!r}.")
    if status not in IMPORT_STATUSES:
        raise ValueError(f"The status is one of {', '.join(IMPORT_STATUSES)}, not {status!r}.")
    return {"resource": resource.pk, "channel": channel, "status": status}
