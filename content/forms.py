"""Forms of the template pages: a template's settings, one form per channel's version (whose
cleaned data is the version's `data` JSON, as content.services.template_version_save takes it),
fragments, and "send a test".

The channel forms only shape the input; what a version must contain (required parts, sizes, Jinja
syntax) is content.services' rule and comes back from there as errors keyed by part.
"""

from __future__ import annotations

from typing import Any

from django import forms

from cdp.forms import StyledForm
from content.models import Template
from profiles.models import ProfileDatabase
from resources.models import Channel

KIND_CHOICES = Template.Kind.choices
PARSE_MODES = [("", "Plain text"), ("HTML", "HTML"), ("MarkdownV2", "MarkdownV2")]
MAX_BUTTON_ROWS = 10
MAX_BUTTONS_PER_ROW = 8

_MONO = {"class": "font-monospace code-area", "spellcheck": "false", "autocomplete": "off"}


class TemplateForm(StyledForm):
    """A template's name, kind, profile database and description (new template and its settings)."""

    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial="marketing", widget=forms.RadioSelect,
                             help_text="Marketing messages must carry an unsubscribe link; transactional ones "
                                       "(receipts, password resets) need not.")
    database = forms.ModelChoiceField(queryset=ProfileDatabase.objects.none(), required=False,
                                      empty_label="No database",
                                      help_text="Its fields are the variables the editor offers and checks, and "
                                                "its profiles are the ones you can preview as.")
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, account: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["database"].queryset = ProfileDatabase.objects.for_account(account).order_by("name", "id")
        self.fields["kind"].widget.attrs["class"] = "form-check-input"

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()


# --- one form per channel: cleaned_data -> the version's data ---------------------------------------


class ChannelForm(StyledForm):
    """Base of the per-channel forms. `data_dict()` is the version's data (empty parts left out)."""

    channel: str = ""

    def data_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.cleaned_data.items() if v not in ("", None, [])}


class EmailForm(ChannelForm):
    channel = Channel.EMAIL
    subject = forms.CharField(required=False, max_length=2000, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    preheader = forms.CharField(required=False, max_length=2000,
                                widget=forms.TextInput(attrs={"autocomplete": "off"}),
                                help_text="The line inboxes show after the subject.")
    html = forms.CharField(required=False, label="HTML", widget=forms.Textarea(attrs={"rows": 16, **_MONO}))
    text = forms.CharField(required=False, label="Text version",
                           widget=forms.Textarea(attrs={"rows": 6, **_MONO}),
                           help_text="Optional: generated from the HTML when empty.")


class SmsForm(ChannelForm):
    channel = Channel.SMS
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6, "data-sms-text": "1", **_MONO}))


class PushForm(ChannelForm):
    """Web push and mobile push share their parts."""

    title = forms.CharField(required=False, max_length=500)
    body = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    icon = forms.CharField(required=False, max_length=2000, label="Icon URL")
    image = forms.CharField(required=False, max_length=2000, label="Image URL")
    url = forms.CharField(required=False, max_length=2000, label="Link",
                          help_text="Where a tap on the notification leads.")


class WebPushForm(PushForm):
    channel = Channel.WEBPUSH


class MobilePushForm(PushForm):
    channel = Channel.MOBILEPUSH


class TelegramForm(ChannelForm):
    channel = Channel.TELEGRAM
    text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8, **_MONO}))
    parse_mode = forms.ChoiceField(required=False, choices=PARSE_MODES, label="Formatting")
    buttons = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, **_MONO}),
        help_text="One row of buttons per line; in a row, buttons as <code>Label | https://link</code> "
                  "separated by <code>;</code>.")

    def clean_buttons(self) -> list[list[dict[str, str]]]:
        return parse_buttons(self.cleaned_data.get("buttons") or "")

    @staticmethod
    def initial_from(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "buttons": format_buttons(data.get("buttons") or [])}


def parse_buttons(raw: str) -> list[list[dict[str, str]]]:
    """ "Shop | https://a; Help | https://b" per line -> [[{"text", "url"}, ...], ...].

    Raises forms.ValidationError naming the line that does not fit.
    """
    rows: list[list[dict[str, str]]] = []
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        row = []
        for cell in line.split(";"):
            if not cell.strip():
                continue
            label, sep, url = cell.partition("|")
            if not sep or not label.strip() or not url.strip():
                raise forms.ValidationError(f"Line {n}: write each button as “Label | https://link”.")
            row.append({"text": label.strip(), "url": url.strip()})
        if len(row) > MAX_BUTTONS_PER_ROW:
            raise forms.ValidationError(f"Line {n}: at most {MAX_BUTTONS_PER_ROW} buttons in a row.")
        rows.append(row)
    if len(rows) > MAX_BUTTON_ROWS:
        raise forms.ValidationError(f"At most {MAX_BUTTON_ROWS} rows of buttons.")
    return rows


def format_buttons(rows: Any) -> str:
    """The inverse of parse_buttons, for showing a saved version's buttons in the textarea."""
    if not isinstance(rows, list):
        return ""
    lines = []
    for row in rows:
        cells = row if isinstance(row, list) else [row]
        lines.append("; ".join(f"{b.get('text', '')} | {b.get('url', '')}" for b in cells if isinstance(b, dict)))
    return "\n".join(lines)


CHANNEL_FORMS: dict[str, type[ChannelForm]] = {
    Channel.EMAIL: EmailForm,
    Channel.SMS: SmsForm,
    Channel.WEBPUSH: WebPushForm,
    Channel.MOBILEPUSH: MobilePushForm,
    Channel.TELEGRAM: TelegramForm,
}


def channel_form(channel: str, data: Any = None, *, version_data: dict[str, Any] | None = None) -> ChannelForm:
    """The form of `channel`, bound to posted `data` or showing a saved version's data."""
    cls = CHANNEL_FORMS[channel]
    initial = dict(version_data or {})
    if cls is TelegramForm:
        initial = TelegramForm.initial_from(initial)
    return cls(data, initial=initial, prefix=channel)


class FragmentForm(StyledForm):
    key = forms.SlugField(max_length=64, help_text="What templates include: <code>{% include \"footer\" %}</code>.")
    name = forms.CharField(max_length=200)
    html = forms.CharField(required=False, label="HTML", widget=forms.Textarea(attrs={"rows": 14, **_MONO}))
    text = forms.CharField(required=False, label="Text version", widget=forms.Textarea(attrs={"rows": 5, **_MONO}),
                           help_text="Optional: what text parts and SMS include.")


class TestSendForm(StyledForm):
    channel = forms.ChoiceField(choices=Channel.choices)
    address = forms.CharField(max_length=500, help_text="An e-mail address, phone number, chat id or push endpoint.")
    profile = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
