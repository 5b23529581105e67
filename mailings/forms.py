"""The mailing wizard's forms, one per step, and the sending-policy form.

Each step form reads the mailing's current values (`initial_for(mailing)`), validates only the
shape of what a person typed, and returns the part of the `values` dict that
`mailings.services.lifecycle.mailing_create/mailing_update` take (`values()`). The rules that
need the database (a sender on a verified domain, a template with a version on the channel, a
segment of the right database) are the services' job: their MailingError({field: message}) is
put back on the form by `add_service_errors`, next to the field it names.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, time
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import Account
from cdp.forms import StyledFormMixin
from content.models import Template, TemplateVersion
from delivery.models import ProviderAccount, Sender
from history.models import EventType
from mailings.models import FrequencyCap, Mailing
from mailings.windows import SendWindow
from resources.models import Channel, Resource
from segments.models import Segment

WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]
FILTER_OPS = [("eq", "is"), ("ne", "is not"), ("in", "is one of"), ("contains", "contains"), ("gt", ">"),
              ("gte", "≥"), ("lt", "<"), ("lte", "≤"), ("exists", "is set")]
# Filter rows shown: the ones in use and two empty ones (at least three, at most ten), so a
# trigger can carry as many filters as validation allows without JavaScript.
FILTER_ROWS_MIN, FILTER_ROWS_MAX = 3, 10
DELAY_UNITS = [("0", "no delay"), ("60", "minutes"), ("3600", "hours"), ("86400", "days")]

# Which wizard step a field of the services' errors (or of mailing_problems) belongs to.
FIELD_STEP: dict[str, str] = {
    "name": "basics", "description": "basics", "kind": "basics", "transactional": "basics",
    "channel": "channel", "resource": "channel", "sender": "channel", "provider": "channel",
    "audience": "audience", "include_segments": "audience", "exclude_segments": "audience", "categories": "audience",
    "template": "content",
    "schedule": "when", "trigger": "when", "send_window": "when", "speed_limit": "when",
    "cap": "policy", "track_opens": "policy", "track_clicks": "policy",
}


def add_service_errors(form: forms.Form, errors: dict[str, str]) -> None:
    """Put a MailingError's {field: message} on the form: on the field when the form has it,
    else (a field of another step, "__all__") above the form."""
    for field, message in errors.items():
        target = field if field in form.fields else None
        if target is None and field != "__all__":
            message = f"{field.replace('_', ' ').capitalize()}: {message}"
        form.add_error(target, message)


class _Step(StyledFormMixin, forms.Form):
    """A step: `initial_for(mailing)` fills it, `values()` is its share of the service's values."""

    def __init__(self, *args: Any, account: Account, mailing: Mailing | None = None, **kwargs: Any) -> None:
        self.account = account
        self.mailing = mailing
        if mailing is not None and not args and "initial" not in kwargs:
            kwargs["initial"] = self.initial_for(mailing)
        super().__init__(*args, **kwargs)
        for f in self.fields.values():
            # Radio and checkbox lists are rendered option by option (the mixin styles them as inputs).
            if isinstance(f.widget, forms.RadioSelect | forms.CheckboxSelectMultiple):
                f.widget.attrs["class"] = "form-check-input"

    def initial_for(self, mailing: Mailing) -> dict[str, Any]:
        return {}

    def values(self) -> dict[str, Any]:
        raise NotImplementedError  # every step defines its share


# --- 1. kind and name ---------------------------------------------------------------------------


class BasicsForm(_Step):
    kind = forms.ChoiceField(
        choices=Mailing.Kind.choices, widget=forms.RadioSelect, initial=Mailing.Kind.BROADCAST,
        help_text="Broadcast: once, now or at a time. Regular: on a schedule. Trigger: on an event or an API call.")
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    transactional = forms.BooleanField(
        required=False, label="Transactional",
        help_text="Receipts, confirmations, password resets: exempt from frequency caps and category opt-outs.")

    def initial_for(self, mailing: Mailing) -> dict[str, Any]:
        return {"kind": mailing.kind, "name": mailing.name, "description": mailing.description,
                "transactional": mailing.transactional}

    def values(self) -> dict[str, Any]:
        d = self.cleaned_data
        return {"kind": d["kind"], "name": d["name"].strip(), "description": d["description"],
                "transactional": d["transactional"]}


# --- 2. channel, resource, sender, provider ------------------------------------------------------


class ChannelForm(_Step):
    channel = forms.ChoiceField(choices=Channel.choices, initial=Channel.EMAIL)
    resource = forms.ModelChoiceField(queryset=Resource.objects.none(), empty_label="Choose a resource…",
                                      help_text="Its subscribers on the channel are the possible recipients.")
    sender = forms.ModelChoiceField(queryset=Sender.objects.none(), required=False,
                                    empty_label="The resource's or the account's default",
                                    help_text="E-mail only.")
    provider = forms.ModelChoiceField(queryset=ProviderAccount.objects.none(), required=False,
                                      empty_label="The channel's default provider")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        account = self.account
        self.fields["resource"].queryset = Resource.objects.for_account(account).order_by("name")
        self.fields["sender"].queryset = Sender.objects.for_account(account).select_related("domain").order_by(
            "domain__domain", "local_part")
        self.fields["provider"].queryset = ProviderAccount.objects.for_account(account).defer("secrets").order_by(
            "channel", "name")
        self.fields["provider"].label_from_instance = lambda p: f"{p.name} ({p.get_channel_display()})"

    def initial_for(self, mailing: Mailing) -> dict[str, Any]:
        return {"channel": mailing.channel, "resource": mailing.resource_id, "sender": mailing.sender_id,
                "provider": mailing.provider_id}

    def clean(self) -> dict[str, Any]:
        d = super().clean()
        resource, channel = d.get("resource"), d.get("channel")
        if resource is not None and channel and channel not in (resource.channels or []):
            self.add_error("channel", f"{resource.name} has no {dict(Channel.choices)[channel]} channel.")
        provider = d.get("provider")
        if provider is not None and channel and provider.channel != channel:
            self.add_error("provider", f"{provider.name} sends {provider.get_channel_display()}, not "
                                       f"{dict(Channel.choices)[channel]}.")
        if d.get("sender") is not None and channel and channel != Channel.EMAIL:
            self.add_error("sender", "A sender is for e-mail only.")
        return d

    def values(self) -> dict[str, Any]:
        d = self.cleaned_data
        return {"channel": d["channel"], "resource": d["resource"].pk,
                "sender": d["sender"].pk if d["sender"] else None,
                "provider": d["provider"].pk if d["provider"] else None}


class CreateForm(BasicsForm, ChannelForm):
    """The first save: steps 1 and 2 together (a mailing needs its resource to exist). The
    create page shows step 1, then step 2 with step 1's answers carried as hidden fields."""

    def initial_for(self, mailing: Mailing) -> dict[str, Any]:
        return {}

    def values(self) -> dict[str, Any]:
        return {**BasicsForm.values(self), **ChannelForm.values(self)}


# --- 3. audience ----------------------------------------------------------------------------------


class AudienceForm(_Step):
    audience = forms.ChoiceField(choices=Mailing.Audience.choices, widget=forms.RadioSelect)
    include_segments = forms.ModelMultipleChoiceField(
        queryset=Segment.objects.none(), required=False, label="Send to the members of",
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="Anyone in at least one of them (dynamic segments are counted again at the send).")
    exclude_segments = forms.ModelMultipleChoiceField(
        queryset=Segment.objects.none(), required=False, label="But not to the members of",
        widget=forms.SelectMultiple(attrs={"size": 6}))
    categories = forms.MultipleChoiceField(
        choices=(), required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Subscribers who opted out of any of these are skipped.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mailing = self.mailing
        segments = Segment.objects.for_account(self.account).order_by("name")
        if mailing is not None:
            segments = segments.filter(database_id=mailing.database_id)
        self.fields["include_segments"].queryset = segments
        self.fields["exclude_segments"].queryset = segments
        cats = (mailing.resource.categories or []) if mailing is not None else []
        self.fields["categories"].choices = [(c["key"], c.get("label") or c["key"]) for c in cats if "key" in c]

    def initial_for(self, mailing: Mailing) -> dict[str, Any]:
        return {"audience": mailing.audience,
                "include_segments": [s.pk for s in mailing.include_segments.all()],
                "exclude_segments": [s.pk for s in mailing.exclude_segments.all()],
                "categories": list(mailing.categories or [])}

    def clean(self) -> dict[str, Any]:
        d = super().clean()
        if d.get("audience") == Mailing.Audience.SEGMENTS and not d.get("include_segments"):
            self.add_error("include_segments", "Choose at least one segment, or send to every subscriber.")
        both = set(d.get("include_segments") or []) & set(d.get("exclude_segments") or [])
        if both:
            self.add_error("exclude_segments", f"{', '.join(s.name for s in both)}: both included and excluded.")
        return d

    def values(self) -> dict[str, Any]:
        d = self.cleaned_data
        segments = d["audience"] == Mailing.Audience.SEGMENTS
        return {"audience": d["audience"],
                "include_segments": [s.pk for s in d["include_segments"]] if segments else [],
                "exclude_segments": [s.pk for s in d["exclude_segments"]],
                "categories": list(d["categories"])}


# --- 4. content -----------------------------------------------------------------------------------


class ContentForm(_Step):
    template = forms.ModelChoiceField(queryset=Template.objects.none(), empty_label="Choose a template…",
                                      help_text="Only templates with a saved version on the mailing's channel.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        qs = Template.objects.for_account(self.account).filter(archived_at__isnull=True).order_by("name")
        if self.mailing is not None:
            with_version = TemplateVersion.objects.filter(channel=self.mailing.channel, is_current=True)
            qs = qs.filter(pk__in=with_version.values("template_id"))
        self.fields["template"].queryset = qs

    def initial_for(self, mailing: Mailing) -> dict[str, Any]:
        return {"template": mailing.template_id}

    def values(self) -> dict[str, Any]:
        return {"template": self.cleaned_data["template"].pk}


class TestSendForm(forms.Form):
    addresses = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "form-control", "placeholder": "me@example.com, boss@example.com"}),
        help_text="Up to 10, separated by commas or new lines. Personalised as the sample person.")

    MAX = 10

    def clean_addresses(self) -> list[str]:
        raw = self.cleaned_data["addresses"].replace(";", ",").replace("\n", ",")
        found = list(dict.fromkeys(a.strip() for a in raw.split(",") if a.strip()))
        if not found:
            raise ValidationError("Give at least one address.")
        if len(found) > self.MAX:
            raise ValidationError(f"At most {self.MAX} addresses at a time ({len(found)} given).")
        return found


# --- 5. when --------------------------------------------------------------------------------------


class WhenForm(_Step):
    # Broadcast
    mode = forms.ChoiceField(label="Send", widget=forms.RadioSelect, initial="now", required=False, choices=[
        ("now", "Now, at launch"), ("at", "At a time"), ("local", "At a local time in each recipient's timezone")])
    at = forms.DateTimeField(required=False, label="Date and time",
                             widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
                             input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])
    local_date = forms.DateField(required=False, label="Date", widget=forms.DateInput(attrs={"type": "date"}))
    local_time = forms.TimeField(required=False, label="Local time", widget=forms.TimeInput(attrs={"type": "time"},
                                                                                            format="%H:%M"))
    # Regular
    repeat = forms.ChoiceField(required=False, label="Repeat", initial="daily", choices=[
        ("daily", "Every day"), ("weekly", "Every week"), ("hours", "Every few hours"), ("cron", "Cron expression")])
    repeat_time = forms.TimeField(required=False, label="At", widget=forms.TimeInput(attrs={"type": "time"},
                                                                                     format="%H:%M"))
    repeat_days = forms.TypedMultipleChoiceField(required=False, label="On", coerce=int, choices=WEEKDAYS,
                                                 widget=forms.CheckboxSelectMultiple)
    every_hours = forms.IntegerField(required=False, min_value=1, max_value=24, label="Every N hours")
    cron = forms.CharField(required=False, max_length=100, label="Cron",
                           widget=forms.TextInput(attrs={"placeholder": "0 10 * * 1-5"}),
                           help_text="minute hour day month weekday, in the account's timezone.")
    # Trigger
    on = forms.ChoiceField(required=False, label="Send when", initial="event", choices=[
        ("event", "An event happens"), ("subscription", "Someone subscribes to the resource"),
        ("api", "Called through the API"), ("confirmation", "A subscription needs confirming (double opt-in)")])
    event = forms.ChoiceField(required=False, label="Event type", choices=())
    delay = forms.IntegerField(required=False, min_value=0, max_value=100_000, label="Delay", initial=0)
    delay_unit = forms.ChoiceField(required=False, choices=DELAY_UNITS[1:], initial="60", label="Unit")
    # Every kind
    window = forms.BooleanField(required=False, label="Only send within a window")
    window_days = forms.TypedMultipleChoiceField(required=False, coerce=int, choices=WEEKDAYS, label="Days",
                                                 widget=forms.CheckboxSelectMultiple, initial=[0, 1, 2, 3, 4])
    window_start = forms.TimeField(required=False, label="From", initial=time(9),
                                   widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    window_end = forms.TimeField(required=False, label="To", initial=time(18),
                                 widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    window_tz = forms.ChoiceField(required=False, label="In", initial="recipient", choices=[
        ("recipient", "each recipient's timezone"), ("account", "the account's timezone")])
    speed_limit = forms.IntegerField(required=False, min_value=1, max_value=10_000_000, label="Speed limit",
                                     help_text="At most this many messages a minute; empty: as fast as the provider allows.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        types = EventType.objects.visible_to(self.account).filter(enabled=True).order_by("name")
        self.fields["event"].choices = [("", "Choose an event type…")] + [
            (t.name, f"{t.label} ({t.name})" if t.label and t.label != t.name else t.name) for t in types]
        self.filter_count = self._filter_count()
        for n in range(self.filter_count):
            self.fields[f"f{n}_property"] = forms.CharField(required=False, max_length=100, label="Property",
                                                            widget=forms.TextInput(attrs={"class": "form-control",
                                                                                          "placeholder": "property"}))
            self.fields[f"f{n}_op"] = forms.ChoiceField(required=False, choices=FILTER_OPS, label="Operator",
                                                        widget=forms.Select(attrs={"class": "form-select"}))
            self.fields[f"f{n}_value"] = forms.CharField(required=False, max_length=500, label="Value",
                                                         widget=forms.TextInput(attrs={"class": "form-control",
                                                                                       "placeholder": "value"}))

    @property
    def kind(self) -> str:
        return self.mailing.kind if self.mailing is not None else Mailing.Kind.BROADCAST

    def _filter_count(self) -> int:
        """Rows for the filters in use (submitted, or saved on the mailing) and two more."""
        if self.is_bound:
            used = 1 + max((int(m.group(1)) for k, v in self.data.items()
                            if (m := re.fullmatch(r"f(\d+)_property", k)) and str(v).strip()), default=-1)
        else:
            used = len(((self.mailing.trigger or {}) if self.mailing is not None else {}).get("filters") or [])
        return min(FILTER_ROWS_MAX, max(FILTER_ROWS_MIN, used + 2))

    @property
    def filter_rows(self) -> list[tuple[forms.BoundField, forms.BoundField, forms.BoundField]]:
        return [(self[f"f{n}_property"], self[f"f{n}_op"], self[f"f{n}_value"]) for n in range(self.filter_count)]

    def initial_for(self, mailing: Mailing) -> dict[str, Any]:
        tz = mailing.account.tzinfo
        out: dict[str, Any] = {"speed_limit": mailing.speed_limit}
        s = mailing.schedule or {}
        if mailing.kind == Mailing.Kind.BROADCAST:
            out["mode"] = s.get("mode", "now")
            if s.get("at"):
                with contextlib.suppress(ValueError):
                    out["at"] = datetime.fromisoformat(s["at"]).astimezone(tz).replace(tzinfo=None)
            out["local_date"] = s.get("date")
            out["local_time"] = s.get("time")
        elif mailing.kind == Mailing.Kind.REGULAR:
            if "daily_at" in s:
                out.update(repeat="daily", repeat_time=s["daily_at"])
            elif "every_hours" in s:
                out.update(repeat="hours", every_hours=s["every_hours"])
            elif "cron" in s:
                weekly = _weekly_from_cron(s["cron"])
                if weekly:
                    out.update(repeat="weekly", repeat_time=weekly[0], repeat_days=weekly[1])
                else:
                    out.update(repeat="cron", cron=s["cron"])
        else:
            t = mailing.trigger or {}
            out["on"] = t.get("on", "event")
            out["event"] = t.get("event", "")
            seconds = int(t.get("delay_seconds") or 0)
            unit = next((u for u in (86400, 3600, 60) if seconds and seconds % u == 0), 60)
            out["delay"], out["delay_unit"] = seconds // unit, str(unit)
            for n, f in enumerate((t.get("filters") or [])[:FILTER_ROWS_MAX]):
                out[f"f{n}_property"], out[f"f{n}_op"] = f.get("property", ""), f.get("op", "eq")
                value = f.get("value")
                out[f"f{n}_value"] = (", ".join(_shown(v) for v in value) if isinstance(value, list)
                                      else "" if value is None else _shown(value))
        w = mailing.send_window
        if w:
            out.update(window=True, window_days=w.get("days", []), window_start=w.get("start"),
                       window_end=w.get("end"), window_tz=w.get("tz", "recipient"))
        return out

    def clean(self) -> dict[str, Any]:
        d = super().clean()
        need = self._need
        if self.kind == Mailing.Kind.BROADCAST:
            mode = d.get("mode") or "now"
            if mode == "at":
                need("at", "Give the date and time to send.")
            elif mode == "local":
                need("local_date", "Give the day.")
                need("local_time", "Give the local time.")
        elif self.kind == Mailing.Kind.REGULAR:
            repeat = d.get("repeat") or "daily"
            if repeat in ("daily", "weekly"):
                need("repeat_time", "Give the time of day.")
            if repeat == "weekly":
                need("repeat_days", "Tick at least one day.")
            elif repeat == "hours":
                need("every_hours", "Give how many hours apart.")
            elif repeat == "cron" and need("cron", "Give a cron expression."):
                from croniter import croniter

                if not croniter.is_valid(d["cron"].strip()) or len(d["cron"].split()) != 5:
                    self.add_error("cron", "Not a cron expression (five fields: minute hour day month weekday).")
        else:
            if (d.get("on") or "event") == "event":
                need("event", "Choose the event type.")
            for n in range(self.filter_count):
                prop, value = (d.get(f"f{n}_property") or "").strip(), (d.get(f"f{n}_value") or "").strip()
                if value and not prop:
                    self.add_error(f"f{n}_property", "Name the property this value is compared with.")
                elif prop and d.get(f"f{n}_op") == "in" and not _listed(value):
                    self.add_error(f"f{n}_value", "Give the values it may be, separated by commas.")
        if d.get("window"):
            need("window_days", "Tick at least one day.")
            need("window_start", "Give the time the window opens.")
            need("window_end", "Give the time it closes.")
        return d

    def _need(self, name: str, message: str) -> bool:
        if self.cleaned_data.get(name) in (None, "", []):
            if name not in self.errors:
                self.add_error(name, message)
            return False
        return True

    def values(self) -> dict[str, Any]:
        d = self.cleaned_data
        out: dict[str, Any] = {"speed_limit": d.get("speed_limit")}
        if self.kind == Mailing.Kind.BROADCAST:
            mode = d.get("mode") or "now"
            schedule: dict[str, Any] = {"mode": mode}
            if mode == "at":
                at: datetime = d["at"]
                if at.tzinfo is None:
                    at = at.replace(tzinfo=self.account.tzinfo)
                schedule["at"] = at.isoformat()
            elif mode == "local":
                schedule.update(date=d["local_date"].isoformat(), time=_hhmm(d["local_time"]))
            out["schedule"] = schedule
        elif self.kind == Mailing.Kind.REGULAR:
            repeat = d.get("repeat") or "daily"
            if repeat == "daily":
                out["schedule"] = {"daily_at": _hhmm(d["repeat_time"])}
            elif repeat == "weekly":
                t: time = d["repeat_time"]
                days = ",".join(str((x + 1) % 7) for x in sorted(d["repeat_days"]))  # cron: 0 = Sunday
                out["schedule"] = {"cron": f"{t.minute} {t.hour} * * {days}"}
            elif repeat == "hours":
                out["schedule"] = {"every_hours": d["every_hours"]}
            else:
                out["schedule"] = {"cron": " ".join(d["cron"].split())}
        else:
            on = d.get("on") or "event"
            trigger: dict[str, Any] = {"on": on}
            if on == "event":
                trigger["event"] = d["event"]
                trigger["filters"] = [
                    {"property": d[f"f{n}_property"].strip(), "op": d.get(f"f{n}_op") or "eq",
                     "value": _filter_value(d.get(f"f{n}_op") or "eq", d.get(f"f{n}_value") or "")}
                    for n in range(self.filter_count) if (d.get(f"f{n}_property") or "").strip()]
            if on in ("event", "subscription"):
                trigger["delay_seconds"] = int(d.get("delay") or 0) * int(d.get("delay_unit") or 60)
            out["trigger"] = trigger
        if d.get("window"):
            out["send_window"] = SendWindow(days=frozenset(d["window_days"]), start=d["window_start"],
                                            end=d["window_end"], tz_rule=d.get("window_tz") or "recipient").to_json()
        else:
            out["send_window"] = None
        return out


def _hhmm(t: time | str) -> str:
    return t if isinstance(t, str) else t.strftime("%H:%M")


def _filter_value(op: str, raw: str) -> Any:
    """What a filter row stores: a list for "is one of"; for "is set", true (false: "is not set"
    when typed so; an empty value would otherwise read as not set); else the typed value."""
    if op == "in":
        return [_typed(v) for v in _listed(raw)]
    if op == "exists":
        return _typed(raw) is not False
    return _typed(raw)


def _listed(raw: str) -> list[str]:
    """The values of an "is one of" filter: comma-separated, blanks dropped."""
    return [v.strip() for v in raw.split(",") if v.strip()]


def _shown(value: Any) -> str:
    """A stored filter value as the form shows it (true/false as typed)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _typed(raw: str) -> Any:
    """A filter value as typed: numbers and true/false compare as such, anything else as text."""
    raw = raw.strip()
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            continue
    return raw


def _weekly_from_cron(expr: str) -> tuple[str, list[int]] | None:
    """("HH:MM", [weekdays 0=Mon]) when `expr` is what the weekly choice writes, else None."""
    parts = expr.split()
    if len(parts) != 5 or parts[2:4] != ["*", "*"] or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    try:
        days = sorted((int(x) - 1) % 7 for x in parts[4].split(","))
    except ValueError:
        return None
    return f"{int(parts[1]):02d}:{int(parts[0]):02d}", days


def schedule_words(mailing: Mailing) -> str:
    """The schedule or trigger of a mailing in a sentence ("Every day at 10:00 (Europe/Berlin)")."""
    tzname = mailing.account.timezone
    s = mailing.schedule or {}
    if mailing.kind == Mailing.Kind.BROADCAST:
        mode = s.get("mode", "now")
        if mode == "at" and s.get("at"):
            try:
                when = datetime.fromisoformat(s["at"]).astimezone(mailing.account.tzinfo)
            except ValueError:
                return "At a time not understood"
            return f"At {when:%b %-d, %Y %H:%M} ({tzname})"
        if mode == "local":
            return f"On {s.get('date', '?')} at {s.get('time', '?')} in each recipient's timezone"
        return "Now, at launch"
    if mailing.kind == Mailing.Kind.REGULAR:
        if "daily_at" in s:
            return f"Every day at {s['daily_at']} ({tzname})"
        if "every_hours" in s:
            n = s["every_hours"]
            return "Every hour" if n == 1 else f"Every {n} hours"
        if "cron" in s:
            weekly = _weekly_from_cron(s["cron"])
            if weekly:
                names = ", ".join(dict(WEEKDAYS)[d] for d in weekly[1])
                return f"Every {names} at {weekly[0]} ({tzname})"
            return f"Cron {s['cron']} ({tzname})"
        return "No schedule yet"
    t = mailing.trigger or {}
    on = t.get("on")
    delay = int(t.get("delay_seconds") or 0)
    after = f", {_duration(delay)} later" if delay else ""
    if on == "event":
        n = len(t.get("filters") or [])
        where = f" (with {n} filter{'s' if n != 1 else ''})" if n else ""
        return f"On the event {t.get('event', '?')}{where}{after}"
    if on == "subscription":
        return f"When someone subscribes{after}"
    if on == "confirmation":
        return "When a subscription needs confirming (double opt-in)"
    if on == "api":
        return "When called through the API"
    return "No trigger yet"


def _duration(seconds: int) -> str:
    for unit, word in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % unit == 0:
            n = seconds // unit
            return f"{n} {word}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def window_words(raw: dict[str, Any] | None) -> str:
    if not raw:
        return "Any time"
    days = ", ".join(dict(WEEKDAYS).get(int(d), "?") for d in raw.get("days", []))
    where = "each recipient's time" if raw.get("tz", "recipient") == "recipient" else "the account's time"
    return f"{days}, {raw.get('start')} to {raw.get('end')} ({where})"


# --- 6. policy ------------------------------------------------------------------------------------


class PolicyForm(_Step):
    cap_mode = forms.ChoiceField(widget=forms.RadioSelect, initial="inherit", label="Frequency cap", choices=[
        ("inherit", "Use the resource's or the account's sending policy"),
        ("custom", "A cap for this mailing")])
    max_messages = forms.IntegerField(required=False, min_value=1, max_value=15, label="At most")
    days = forms.IntegerField(required=False, min_value=1, max_value=16, label="messages in (days)")
    scope = forms.ChoiceField(required=False, choices=FrequencyCap.Scope.choices, label="Counted")
    track_opens = forms.BooleanField(required=False, label="Track opens",
                                     help_text="Adds the open pixel to marketing e-mail.")
    track_clicks = forms.BooleanField(required=False, label="Track clicks",
                                      help_text="Links go through the click endpoint, counted per link.")

    def initial_for(self, mailing: Mailing) -> dict[str, Any]:
        cap = next(iter(mailing.caps.all()), None)
        out: dict[str, Any] = {"track_opens": mailing.track_opens, "track_clicks": mailing.track_clicks,
                               "cap_mode": "custom" if cap else "inherit"}
        if cap is not None:
            out.update(max_messages=cap.max_messages, days=cap.days, scope=cap.scope)
        return out

    def clean(self) -> dict[str, Any]:
        d = super().clean()
        if d.get("cap_mode") == "custom":
            for name, message in (("max_messages", "Give 1 to 15."), ("days", "Give 1 to 16 days.")):
                if d.get(name) is None and name not in self.errors:
                    self.add_error(name, message)
        return d

    def values(self) -> dict[str, Any]:
        d = self.cleaned_data
        cap = None
        if d["cap_mode"] == "custom":
            cap = {"max_messages": d["max_messages"], "days": d["days"], "scope": d.get("scope") or "profile"}
        return {"cap": cap, "track_opens": d["track_opens"], "track_clicks": d["track_clicks"]}


class CapForm(forms.Form):
    """A sending policy of the account (resource empty) or of one resource."""

    max_messages = forms.IntegerField(min_value=1, max_value=15, label="At most",
                                      widget=forms.NumberInput(attrs={"class": "form-control w-num", "min": 1, "max": 15}))
    days = forms.IntegerField(min_value=1, max_value=16, label="messages in (days)",
                              widget=forms.NumberInput(attrs={"class": "form-control w-num", "min": 1, "max": 16}))
    scope = forms.ChoiceField(choices=FrequencyCap.Scope.choices, label="Counted",
                              widget=forms.Select(attrs={"class": "form-select"}))


STEP_FORMS: dict[str, type[_Step]] = {
    "basics": BasicsForm, "channel": ChannelForm, "audience": AudienceForm, "content": ContentForm,
    "when": WhenForm, "policy": PolicyForm,
}

