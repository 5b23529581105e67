"""The scenario editor's forms: the scenario's settings, and one step form per kind with real selects
(templates, resources, senders, providers, segments, fields and event types of the account and the
scenario's database) plus a "goes to" select per exit.

Forms only parse and shape: `StepForm.config()` returns the step's config as documented in
`scenarios.graph`, `StepForm.targets()` {exit: target step key or ""}; the services validate the
whole graph (`version_validate`) and say what is wrong where.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django import forms

from accounts.models import Account
from cdp.forms import StyledForm, StyledFormMixin
from content.models import Template
from delivery.models import ProviderAccount, Sender
from history.models import EventType
from profiles.models import Field, ProfileDatabase
from resources.models import Channel, Resource
from scenarios.graph import SPLIT_EXITS, STEP_KINDS, exits_of
from scenarios.models import Scenario, Step
from segments.models import Segment

FILTER_OPS = [("eq", "is"), ("ne", "is not"), ("contains", "contains"), ("gt", ">"), ("gte", "≥"), ("lt", "<"),
              ("lte", "≤"), ("exists", "is set")]
FILTER_ROWS = 3
UNITS = [("60", "minutes"), ("3600", "hours"), ("86400", "days")]
WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]
UPDATE_ROWS = 3
SUB_STATUSES = [("subscribed", "Subscribe"), ("unsubscribed", "Unsubscribe"), ("suspended", "Suspend (pause)")]
CONDITION_TESTS = [("message", "What this trip's message did"), ("segment", "In a segment"),
                   ("field", "A profile field"), ("subscription", "Has a subscription"),
                   ("event", "Did an event (history)"), ("tree", "Advanced: a condition tree (JSON)")]
FIELD_OPS = [("eq", "is"), ("ne", "is not"), ("contains", "contains"), ("gt", ">"), ("gte", "≥"), ("lt", "<"),
             ("lte", "≤"), ("set", "is set"), ("empty", "is empty")]
MESSAGE_WHATS = [("opened", "was opened"), ("clicked", "was clicked"), ("delivered", "was delivered"),
                 ("sent", "was sent")]


def typed(raw: str) -> Any:
    """A value as typed: numbers and true/false as such, anything else as text."""
    raw = raw.strip()
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            continue
    return raw


def _amount_unit(seconds: int | None) -> tuple[int, str]:
    s = int(seconds or 0)
    unit = next((u for u in (86400, 3600, 60) if s and s % u == 0), 60)
    return s // unit, str(unit)


def event_type_choices(account: Account) -> list[tuple[str, str]]:
    types = EventType.objects.visible_to(account).filter(enabled=True).order_by("name")
    return [("", "Choose an event type…")] + [
        (t.name, f"{t.label} ({t.name})" if t.label and t.label != t.name else t.name) for t in types]


def add_service_errors(form: forms.Form, errors: dict[str, str]) -> None:
    """Put a service's {field: message} on the form's fields (unknown fields: the form's top)."""
    for name, message in (errors or {}).items():
        form.add_error(name if name in form.fields else None, message)


def style_widget(widget: forms.Widget) -> None:
    """The Bootstrap class of a widget added after the form's __init__ (as StyledFormMixin does)."""
    if isinstance(widget, forms.RadioSelect | forms.CheckboxSelectMultiple):
        return
    if isinstance(widget, forms.CheckboxInput):
        css = "form-check-input"
    elif isinstance(widget, forms.Select | forms.SelectMultiple):
        css = "form-select"
    else:
        css = "form-control"
    if css not in widget.attrs.get("class", "").split():
        widget.attrs["class"] = (widget.attrs.get("class", "") + " " + css).strip()


class _FiltersMixin:
    """Three rows of property filters (property, operator, value) named `<prefix><n>_…`."""

    def add_filter_fields(self, prefix: str = "f") -> None:
        fields = self.fields  # type: ignore[attr-defined]
        for n in range(FILTER_ROWS):
            fields[f"{prefix}{n}_property"] = forms.CharField(
                required=False, max_length=100, label="Property",
                widget=forms.TextInput(attrs={"class": "form-control form-control-sm", "placeholder": "property"}))
            fields[f"{prefix}{n}_op"] = forms.ChoiceField(
                required=False, choices=FILTER_OPS, label="Operator",
                widget=forms.Select(attrs={"class": "form-select form-select-sm"}))
            fields[f"{prefix}{n}_value"] = forms.CharField(
                required=False, max_length=500, label="Value",
                widget=forms.TextInput(attrs={"class": "form-control form-control-sm", "placeholder": "value"}))

    def filter_rows(self, prefix: str = "f") -> list[tuple[Any, Any, Any]]:
        return [(self[f"{prefix}{n}_property"], self[f"{prefix}{n}_op"], self[f"{prefix}{n}_value"])  # type: ignore[index]
                for n in range(FILTER_ROWS)]

    @property
    def filter_rows_f(self) -> list[tuple[Any, Any, Any]]:
        return self.filter_rows("f")

    @property
    def filter_rows_g(self) -> list[tuple[Any, Any, Any]]:
        return self.filter_rows("g")

    def filters_initial(self, filters: Any, prefix: str = "f") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n, f in enumerate((filters or [])[:FILTER_ROWS]):
            if isinstance(f, dict):
                out[f"{prefix}{n}_property"] = f.get("property", "")
                out[f"{prefix}{n}_op"] = f.get("op", "eq")
                out[f"{prefix}{n}_value"] = "" if f.get("value") is None else str(f.get("value"))
        return out

    def filters_value(self, prefix: str = "f") -> list[dict[str, Any]]:
        d = self.cleaned_data  # type: ignore[attr-defined]
        out = []
        for n in range(FILTER_ROWS):
            prop = (d.get(f"{prefix}{n}_property") or "").strip()
            if not prop:
                continue
            op = d.get(f"{prefix}{n}_op") or "eq"
            f: dict[str, Any] = {"property": prop, "op": op}
            if op != "exists":
                f["value"] = typed(d.get(f"{prefix}{n}_value") or "")
            out.append(f)
        return out


# --- the scenario ------------------------------------------------------------------------------------


class ScenarioForm(_FiltersMixin, StyledForm):
    """New scenario / its settings: name, database (only when new), re-entry, the goal."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    database = forms.ModelChoiceField(queryset=ProfileDatabase.objects.none(), empty_label="Choose a database…",
                                      help_text="Its profiles enter; its fields and segments are what steps use.")
    reentry = forms.ChoiceField(choices=Scenario.Reentry.choices, initial=Scenario.Reentry.NEVER, label="Re-entry",
                                widget=forms.RadioSelect(attrs={"class": "form-check-input"}))
    goal_type = forms.ChoiceField(required=False, label="Goal event",
                                  help_text="Optional: when a profile does this, it leaves the scenario wherever it is.")

    def __init__(self, *args: Any, account: Account, scenario: Scenario | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        self.scenario = scenario
        self.fields["database"].queryset = ProfileDatabase.objects.for_account(account).order_by("name")
        self.fields["goal_type"].choices = [("", "No goal"), *event_type_choices(account)[1:]]
        self.add_filter_fields("g")
        if scenario is not None:
            # The database cannot change once steps refer to its fields and segments.
            del self.fields["database"]
            if not self.is_bound:
                goal = scenario.goal or {}
                self.initial.update({"name": scenario.name, "description": scenario.description,
                                     "reentry": scenario.reentry, "goal_type": goal.get("type", ""),
                                     **self.filters_initial(goal.get("filters"), "g")})

    def goal(self) -> dict[str, Any]:
        t = self.cleaned_data.get("goal_type") or ""
        return {"type": t, "filters": self.filters_value("g")} if t else {}


class ImportForm(StyledForm):
    file = forms.FileField(label="Scenario JSON", help_text="An export of a scenario (this or another account).")
    database = forms.ModelChoiceField(queryset=ProfileDatabase.objects.none(), empty_label="Choose a database…")

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["database"].queryset = ProfileDatabase.objects.for_account(account).order_by("name")

    def clean_file(self) -> dict[str, Any]:
        f = self.cleaned_data["file"]
        if f.size > 2_000_000:
            raise forms.ValidationError("The file is larger than 2 MB; a scenario export is much smaller.")
        try:
            data = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise forms.ValidationError(f"This is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise forms.ValidationError("The JSON must be an object (an export of one scenario).")
        return data


# --- steps -------------------------------------------------------------------------------------------


class StepForm(_FiltersMixin, StyledFormMixin, forms.Form):
    """The form of one step kind. `steps`: the version's steps (for the exit selects and the
    condition's "message of step" select); `step`: the step edited, or None for a new one."""

    title = forms.CharField(max_length=200, required=False, help_text="Shown on the diagram; empty: the kind's name.")

    def __init__(self, *args: Any, kind: str, account: Account, scenario: Scenario, steps: list[Step],
                 step: Step | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.spec = STEP_KINDS[kind]
        self.account = account
        self.scenario = scenario
        self.step = step
        self.steps = steps
        config = dict(step.config or {}) if step is not None else {}
        getattr(self, f"_fields_{kind.replace('.', '_')}", lambda c: None)(config)
        # A "goes to" select per exit (a split's exits come with its branch rows).
        # Nothing leads into an entry step (profiles enter there).
        others = [(s.key, f"{s.key} · {s.title or STEP_KINDS.get(s.kind, self.spec).label}")
                  for s in steps if (step is None or s.key != step.key) and not s.kind.startswith("entry.")]
        self.target_choices = [("", "Nowhere yet"), *others]
        if kind != "split":
            for ex in self.spec.exits:
                self.fields[f"exit_{ex}"] = forms.ChoiceField(
                    required=False, choices=self.target_choices,
                    label="Then go to" if ex == "next" else f"Exit “{ex}” goes to",
                    widget=forms.Select(attrs={"class": "form-select"}))
        if step is not None and not self.is_bound:
            self.initial["title"] = step.title
            for t in getattr(step, "outgoing_list", []):
                self.initial[f"exit_{t.exit}"] = t.target_key
        for f in self.fields.values():
            style_widget(f.widget)

    # Each kind: add its fields and their initial values from the config.

    def _fields_entry_segment(self, c: dict[str, Any]) -> None:
        self.fields["segment"] = forms.ChoiceField(label="Segment", choices=self._segments(), required=True)
        self.fields["members_at_start"] = forms.BooleanField(
            required=False, label="Also everyone in the segment when the scenario is activated")
        self.initial.update(segment=c.get("segment_id") or "", members_at_start=c.get("members_at_start", False))

    def _fields_entry_event(self, c: dict[str, Any]) -> None:
        self.fields["type"] = forms.ChoiceField(label="Event type", choices=event_type_choices(self.account))
        self.add_filter_fields()
        self.initial.update(type=c.get("type", ""), **self.filters_initial(c.get("filters")))

    def _fields_entry_subscription(self, c: dict[str, Any]) -> None:
        self._resource_channel(c)

    def _fields_send(self, c: dict[str, Any]) -> None:
        self._resource_channel(c)
        self.fields["template"] = forms.ChoiceField(label="Template", choices=[("", "Choose a template…")] + [
            (str(t.pk), t.name) for t in Template.objects.for_account(self.account).filter(archived_at__isnull=True)
            .order_by("name")])
        self.fields["sender"] = forms.ChoiceField(required=False, label="Sender", help_text="E-mail only.", choices=[
            ("", "The resource's or the account's default")] + [
            (str(s.pk), str(s)) for s in Sender.objects.for_account(self.account).select_related("domain")
            .order_by("domain__domain", "local_part")])
        self.fields["provider"] = forms.ChoiceField(required=False, label="Provider", choices=[
            ("", "The channel's default provider")] + [
            (str(p.pk), f"{p.name} ({p.get_channel_display()})")
            for p in ProviderAccount.objects.for_account(self.account).defer("secrets").order_by("channel", "name")])
        self.fields["transactional"] = forms.BooleanField(
            required=False, label="Transactional (ignores marketing caps; still needs a subscription)")
        self.fields["track_opens"] = forms.BooleanField(required=False, label="Track opens", initial=True)
        self.fields["track_clicks"] = forms.BooleanField(required=False, label="Track clicks", initial=True)
        self.initial.update(template=c.get("template_id") or "", sender=c.get("sender_id") or "",
                            provider=c.get("provider_id") or "", transactional=c.get("transactional", False),
                            track_opens=c.get("track_opens", True), track_clicks=c.get("track_clicks", True))

    def _fields_wait(self, c: dict[str, Any]) -> None:
        self.fields["mode"] = forms.ChoiceField(label="Wait", initial="duration", widget=forms.RadioSelect, choices=[
            ("duration", "For a while"), ("until", "Until a date and time"),
            ("field", "Until a date in the profile"), ("time_of_day", "Until a local time of day")])
        self.fields["mode"].widget.attrs["class"] = "form-check-input"
        self.fields["amount"] = forms.IntegerField(required=False, min_value=0, max_value=100_000, label="For")
        self.fields["unit"] = forms.ChoiceField(required=False, choices=UNITS, initial="86400", label="Unit")
        self.fields["at"] = forms.DateTimeField(
            required=False, label="Date and time (the account's timezone)",
            widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
            input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"])
        date_fields = Field.objects.filter(database=self.scenario.database, type__in=("date", "datetime")).order_by(
            "position", "id")
        self.fields["field"] = forms.ChoiceField(required=False, label="Profile field", choices=[
            ("", "Choose a date field…")] + [(f.name, f"{f.label} ({f.name})") for f in date_fields])
        self.fields["offset"] = forms.IntegerField(required=False, min_value=-100_000, max_value=100_000,
                                                   label="Offset", help_text="Negative: before the date.")
        self.fields["offset_unit"] = forms.ChoiceField(required=False, choices=UNITS, initial="86400", label="Unit")
        self.fields["time"] = forms.TimeField(required=False, label="Local time",
                                              widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
        self.fields["weekdays"] = forms.TypedMultipleChoiceField(
            required=False, coerce=int, choices=WEEKDAYS, label="On",
            widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
            help_text="None ticked: any day.")
        mode = c.get("mode", "duration")
        amount, unit = _amount_unit(c.get("seconds") if mode == "duration" else 86400)
        off, off_unit = _amount_unit(abs(int(c.get("offset_seconds") or 0)))
        at = None
        if c.get("at"):
            try:
                at = datetime.fromisoformat(str(c["at"])).astimezone(self.account.tzinfo).replace(tzinfo=None)
            except ValueError:
                at = None
        self.initial.update(mode=mode, amount=amount, unit=unit, at=at, field=c.get("field", ""),
                            offset=off if int(c.get("offset_seconds") or 0) >= 0 else -off, offset_unit=off_unit,
                            time=c.get("time"), weekdays=c.get("weekdays") or [])

    def _fields_wait_event(self, c: dict[str, Any]) -> None:
        self.fields["type"] = forms.ChoiceField(label="Event type", choices=event_type_choices(self.account))
        self.add_filter_fields()
        self.fields["amount"] = forms.IntegerField(min_value=0, max_value=100_000, label="Or at most", initial=7)
        self.fields["unit"] = forms.ChoiceField(choices=UNITS, initial="86400", label="Unit")
        amount, unit = _amount_unit(c.get("timeout_seconds") if c else 7 * 86400)
        self.initial.update(type=c.get("type", ""), amount=amount, unit=unit, **self.filters_initial(c.get("filters")))

    def _fields_condition(self, c: dict[str, Any]) -> None:
        sends = [(s.key, f"{s.key} · {s.title or 'Send message'}") for s in self.steps if s.kind == "send"]
        self.fields["test"] = forms.ChoiceField(label="Test", choices=CONDITION_TESTS, initial="message")
        self.fields["message_step"] = forms.ChoiceField(required=False, label="The message of",
                                                        choices=[("", "Choose a send step…"), *sends])
        self.fields["what"] = forms.ChoiceField(required=False, choices=MESSAGE_WHATS, label="It")
        self.fields["segment"] = forms.ChoiceField(required=False, label="Segment", choices=self._segments())
        fields = Field.objects.filter(database=self.scenario.database).order_by("position", "id")
        self.fields["field"] = forms.ChoiceField(required=False, label="Field", choices=[("", "Choose a field…")] + [
            (f.name, f"{f.label} ({f.name})") for f in fields])
        self.fields["operator"] = forms.ChoiceField(required=False, choices=FIELD_OPS, label="Operator")
        self.fields["value"] = forms.CharField(required=False, max_length=500, label="Value")
        self.fields["resource"] = forms.ChoiceField(required=False, label="Resource", choices=self._resources())
        self.fields["channel"] = forms.ChoiceField(required=False, choices=Channel.choices, label="Channel")
        self.fields["event"] = forms.ChoiceField(required=False, label="Event type",
                                                 choices=event_type_choices(self.account))
        self.fields["last_days"] = forms.IntegerField(required=False, min_value=1, max_value=3650,
                                                      label="In the last N days", help_text="Empty: ever.")
        self.fields["negate"] = forms.BooleanField(required=False, label="Negate (yes when it does not match)")
        self.fields["tree"] = forms.CharField(required=False, label="Condition tree (JSON)",
                                              widget=forms.Textarea(attrs={"rows": 4, "class": "font-monospace"}),
                                              help_text="The segments condition format (see the API docs).")
        init: dict[str, Any] = {}
        if c.get("test") == "message":
            init.update(test="message", message_step=c.get("step", ""), what=c.get("what", "opened"))
        elif c.get("test") == "segments":
            tree = c.get("conditions") or {}
            items = tree.get("items") or []
            node = items[0] if len(items) == 1 and isinstance(items[0], dict) else None
            t = node.get("type") if node else None
            if t == "segment":
                init.update(test="segment", segment=node.get("segment", ""), negate=node.get("negate", False))
            elif t == "field" and node.get("operator") in dict(FIELD_OPS):
                init.update(test="field", field=node.get("field", ""), operator=node.get("operator"),
                            value="" if node.get("value") is None else str(node.get("value")))
            elif t == "subscription":
                init.update(test="subscription", resource=node.get("resource", ""), channel=node.get("channel"),
                            negate=node.get("negate", False))
            elif t == "event":
                count = node.get("count") or {}
                init.update(test="event", event=node.get("event", ""), negate=count.get("op") == "not_exists",
                            last_days=(node.get("window") or {}).get("last_days"))
            else:
                init.update(test="tree")
            init["tree"] = json.dumps(tree, indent=1)
        self.initial.update(init)

    def _fields_split(self, c: dict[str, Any]) -> None:
        branches = [b for b in (c.get("branches") or []) if isinstance(b, dict)]
        if not branches and not c:
            branches = [{"exit": "a", "label": "A", "weight": 50}, {"exit": "b", "label": "B", "weight": 50}]
        by_exit = {b.get("exit"): b for b in branches}
        targets = {t.exit: t.target_key for t in getattr(self.step, "outgoing_list", [])} if self.step else {}
        for ex in SPLIT_EXITS:
            b = by_exit.get(ex) or {}
            self.fields[f"{ex}_label"] = forms.CharField(required=False, max_length=40, label=f"Branch {ex.upper()}",
                                                         widget=forms.TextInput(attrs={"placeholder": ex.upper()}))
            self.fields[f"{ex}_weight"] = forms.IntegerField(required=False, min_value=0, max_value=100, label="%")
            self.initial.update({f"{ex}_label": b.get("label", ""), f"{ex}_weight": b.get("weight")})
            self.initial[f"exit_{ex}"] = targets.get(ex, "")

    def _fields_update(self, c: dict[str, Any]) -> None:
        fields = Field.objects.filter(database=self.scenario.database, read_only=False).order_by("position", "id")
        choices = [("", "Choose a field…")] + [(f.name, f"{f.label} ({f.name})") for f in fields]
        values = list((c.get("values") or {}).items())
        for n in range(UPDATE_ROWS):
            self.fields[f"u{n}_field"] = forms.ChoiceField(required=n == 0, choices=choices, label="Field")
            self.fields[f"u{n}_value"] = forms.CharField(required=False, max_length=1000, label="Value")
            if n < len(values):
                self.initial.update({f"u{n}_field": values[n][0], f"u{n}_value": "" if values[n][1] is None
                                     else str(values[n][1])})

    def _fields_subscription(self, c: dict[str, Any]) -> None:
        self._resource_channel(c)
        self.fields["status"] = forms.ChoiceField(choices=SUB_STATUSES, label="Change to")
        self.initial.update(status=c.get("status", "subscribed"))

    def _fields_segment(self, c: dict[str, Any]) -> None:
        self.fields["segment"] = forms.ChoiceField(label="Static segment", choices=self._segments(static=True))
        self.fields["action"] = forms.ChoiceField(choices=[("add", "Add the profile"), ("remove", "Remove the profile")],
                                                  label="Action", initial="add",
                                                  widget=forms.RadioSelect(attrs={"class": "form-check-input"}))
        self.initial.update(segment=c.get("segment_id") or "", action=c.get("action", "add"))

    def _fields_webhook(self, c: dict[str, Any]) -> None:
        self.fields["url"] = forms.URLField(label="URL", max_length=2000, assume_scheme="https",
                                           help_text="Gets a signed JSON POST (X-CDP-Signature). Private and "
                                                     "loopback addresses are refused unless an admin allows them.")
        self.fields["timeout_seconds"] = forms.IntegerField(min_value=1, max_value=30, initial=10, label="Timeout (s)")
        self.fields["retries"] = forms.IntegerField(min_value=0, max_value=5, initial=3, label="Retries")
        self.initial.update(url=c.get("url", ""), timeout_seconds=c.get("timeout_seconds", 10),
                            retries=c.get("retries", 3))

    # Shared pieces.

    def _segments(self, *, static: bool = False) -> list[tuple[str, str]]:
        qs = Segment.objects.for_account(self.account).filter(database=self.scenario.database).order_by("name")
        if static:
            qs = qs.filter(kind=Segment.Kind.STATIC)
        return [("", "Choose a segment…")] + [(str(s.pk), f"{s.name} ({s.get_kind_display().lower()})") for s in qs]

    def _resources(self) -> list[tuple[str, str]]:
        qs = Resource.objects.for_account(self.account).filter(database=self.scenario.database).order_by("name")
        return [("", "Choose a resource…")] + [(str(r.pk), r.name) for r in qs]

    def _resource_channel(self, c: dict[str, Any]) -> None:
        self.fields["channel"] = forms.ChoiceField(choices=Channel.choices, initial=Channel.EMAIL, label="Channel")
        self.fields["resource"] = forms.ChoiceField(label="Resource", choices=self._resources())
        self.initial.update(channel=c.get("channel", Channel.EMAIL), resource=c.get("resource_id") or "")

    # Reading the answers.

    def clean(self) -> dict[str, Any]:
        d = super().clean()
        kind = self.kind
        if kind == "wait":
            mode = d.get("mode")
            need = {"duration": "amount", "until": "at", "field": "field", "time_of_day": "time"}.get(mode or "")
            if need and d.get(need) in (None, ""):
                self.add_error(need, "Needed for this kind of wait.")
        elif kind == "condition":
            need = {"message": "message_step", "segment": "segment", "field": "field", "subscription": "resource",
                    "event": "event", "tree": "tree"}.get(d.get("test") or "")
            if need and not d.get(need):
                self.add_error(need, "Needed for this test.")
            if d.get("test") == "tree" and d.get("tree"):
                try:
                    tree = json.loads(d["tree"])
                except json.JSONDecodeError as exc:
                    self.add_error("tree", f"Not JSON: {exc}")
                else:
                    if not isinstance(tree, dict):
                        self.add_error("tree", "The tree is a JSON object (a group).")
        elif kind == "split":
            used = [ex for ex in SPLIT_EXITS if d.get(f"{ex}_weight") not in (None, "")]
            if not 2 <= len(used) <= 5:
                self.add_error(None, "A split has 2 to 5 branches: give a weight to each branch you want.")
            elif sum(int(d[f"{ex}_weight"]) for ex in used) != 100:
                self.add_error(None, f"The weights add up to {sum(int(d[f'{ex}_weight']) for ex in used)}%, not 100%.")
        return d

    def config(self) -> dict[str, Any]:
        """The step's config, shaped as `scenarios.graph` documents it."""
        d = self.cleaned_data
        k = self.kind
        if k == "entry.segment":
            return {"segment_id": _int(d.get("segment")), "members_at_start": bool(d.get("members_at_start"))}
        if k == "entry.event":
            return {"type": d.get("type", ""), "filters": self.filters_value()}
        if k in ("entry.subscription",):
            return {"resource_id": _int(d.get("resource")), "channel": d.get("channel")}
        if k == "send":
            return {"channel": d.get("channel"), "resource_id": _int(d.get("resource")),
                    "template_id": _int(d.get("template")), "sender_id": _int(d.get("sender")),
                    "provider_id": _int(d.get("provider")), "transactional": bool(d.get("transactional")),
                    "track_opens": bool(d.get("track_opens")), "track_clicks": bool(d.get("track_clicks"))}
        if k == "wait":
            mode = d.get("mode") or "duration"
            if mode == "duration":
                return {"mode": mode, "seconds": int(d.get("amount") or 0) * int(d.get("unit") or 60)}
            if mode == "until":
                at = d["at"]
                if at.tzinfo is None:
                    at = at.replace(tzinfo=self.account.tzinfo)
                return {"mode": mode, "at": at.isoformat()}
            if mode == "field":
                return {"mode": mode, "field": d.get("field"),
                        "offset_seconds": int(d.get("offset") or 0) * int(d.get("offset_unit") or 86400)}
            return {"mode": mode, "time": d["time"].strftime("%H:%M"), "weekdays": sorted(d.get("weekdays") or [])}
        if k == "wait_event":
            return {"type": d.get("type", ""), "filters": self.filters_value(),
                    "timeout_seconds": int(d.get("amount") or 0) * int(d.get("unit") or 86400)}
        if k == "condition":
            return self._condition_config()
        if k == "split":
            return {"branches": [{"exit": ex, "label": (d.get(f"{ex}_label") or ex.upper()).strip(),
                                  "weight": int(d[f"{ex}_weight"])}
                                 for ex in SPLIT_EXITS if d.get(f"{ex}_weight") not in (None, "")]}
        if k == "update":
            return {"values": {d[f"u{n}_field"]: typed(d.get(f"u{n}_value") or "") if d.get(f"u{n}_value") else None
                               for n in range(UPDATE_ROWS) if d.get(f"u{n}_field")}}
        if k == "subscription":
            return {"resource_id": _int(d.get("resource")), "channel": d.get("channel"), "status": d.get("status")}
        if k == "segment":
            return {"segment_id": _int(d.get("segment")), "action": d.get("action") or "add"}
        if k == "webhook":
            return {"url": d.get("url"), "timeout_seconds": d.get("timeout_seconds") or 10,
                    "retries": d.get("retries") if d.get("retries") is not None else 3}
        return {}

    def _condition_config(self) -> dict[str, Any]:
        d = self.cleaned_data
        test = d.get("test")
        if test == "message":
            return {"test": "message", "step": d.get("message_step"), "what": d.get("what") or "opened"}
        node: dict[str, Any]
        if test == "segment":
            node = {"type": "segment", "segment": _int(d.get("segment")), "negate": bool(d.get("negate"))}
        elif test == "field":
            op = d.get("operator") or "eq"
            node = {"type": "field", "field": d.get("field"), "operator": op}
            if op not in ("set", "empty"):
                node["value"] = typed(d.get("value") or "")
        elif test == "subscription":
            node = {"type": "subscription", "resource": _int(d.get("resource")), "channel": d.get("channel") or "email",
                    "statuses": ["subscribed"], "category": None, "negate": bool(d.get("negate"))}
        elif test == "event":
            node = {"type": "event", "event": d.get("event"),
                    "count": {"op": "not_exists" if d.get("negate") else "exists", "n": 1},
                    "window": {"last_days": d["last_days"]} if d.get("last_days") else None, "where": {}}
        else:
            return {"test": "segments", "conditions": json.loads(d.get("tree") or "{}")}
        return {"test": "segments", "conditions": {"type": "group", "op": "and", "negate": False, "items": [node]}}

    def exits(self) -> tuple[str, ...]:
        """The exits of the step as the form's answers make it (a split's: its weighted branches)."""
        if self.kind == "split":
            return exits_of("split", self.config())
        return self.spec.exits

    def targets(self) -> dict[str, str]:
        """{exit: target step key, or "" for none} for every exit of the answered step."""
        return {ex: self.cleaned_data.get(f"exit_{ex}") or "" for ex in self.exits()}

    @property
    def main_fields(self) -> list[Any]:
        """The kind's own fields, in order (not the title, filter, branch, update-row or exit fields)."""
        grouped = re.compile(r"^(title|exit_\w+|[fg]\d_\w+|[a-e]_(label|weight)|u\d_\w+)$")
        return [self[name] for name in self.fields if not grouped.match(name)]

    @property
    def has_filters(self) -> bool:
        return "f0_property" in self.fields

    @property
    def exit_fields(self) -> list[Any]:
        return [self[name] for name in self.fields if name.startswith("exit_")] if self.kind != "split" else []

    def split_rows(self) -> list[tuple[Any, Any, Any]]:
        return [(self[f"{ex}_label"], self[f"{ex}_weight"], self[f"exit_{ex}"]) for ex in SPLIT_EXITS]

    def update_rows(self) -> list[tuple[Any, Any]]:
        return [(self[f"u{n}_field"], self[f"u{n}_value"]) for n in range(UPDATE_ROWS)]


def split_target_fields(form: StepForm) -> None:
    """A split's per-branch "goes to" selects (added after __init__ knows the target choices)."""
    for ex in SPLIT_EXITS:
        form.fields[f"exit_{ex}"] = forms.ChoiceField(required=False, choices=form.target_choices, label="goes to",
                                                      widget=forms.Select(attrs={"class": "form-select form-select-sm"}))


def make_step_form(data: Any, *, kind: str, account: Account, scenario: Scenario, steps: list[Step],
                   step: Step | None = None) -> StepForm:
    form = StepForm(data, kind=kind, account=account, scenario=scenario, steps=steps, step=step)
    if kind == "split":
        split_target_fields(form)
    return form


class MoveForm(forms.Form):
    direction = forms.ChoiceField(choices=[("left", "left"), ("right", "right"), ("up", "up"), ("down", "down")])


def _int(raw: Any) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None
