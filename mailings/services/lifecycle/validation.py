"""Validating a mailing: `clean_values` (what create and update refuse: objects of another account,
a channel the resource lacks, malformed schedules, triggers, windows and caps) and
`mailing_problems` (what stops a launch: no template version for the channel, lint errors, no
usable sender or provider, a broken segment, a time in the past). The split lets the wizard
save a draft step by step, and the launch list every problem at once."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from croniter import croniter
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Account
from mailings import windows
from mailings.models import Mailing
from mailings.services.errors import MailingError
from mailings.services.policies import cap_clean
from resources.models import Channel

MAX_DELAY_SECONDS = 30 * 24 * 3600
MAX_SPEED_LIMIT = 1_000_000  # messages a minute
MAX_EVERY_HOURS = 24 * 31
MAX_ID = 2**63 - 1
# Comparisons a trigger's property filter may use (mailings.services.triggers applies them).
TRIGGER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "in", "exists")
TRIGGER_ON = ("event", "subscription", "confirmation", "api", "scenario")
# Any timezone reaches a wall time no earlier than UTC+14 does (Pacific/Kiritimati).
EARLIEST_OFFSET = timedelta(hours=14)


def _bool(errors: dict[str, str], name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "on", "1", 1):
        return True
    if value in ("false", "off", "0", 0, "", None):
        return False
    errors[name] = "must be true or false"
    return False


def _account_row(model: Any, account: Account, value: Any, field: str, what: str, errors: dict[str, str]) -> Any:
    """The account's `model` row that `value` (an id, a row or empty) names; None when empty or
    when it names none (then errors[field] says so)."""
    pk = _id_of(value)
    if pk is None:
        return None
    row = model.objects.for_account(account).filter(pk=pk).first()
    if row is None:
        errors[field] = f"choose one of this account's {what}"
    return row


def _id_of(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if hasattr(value, "pk"):
        return int(value.pk)
    try:
        n = int(value)
    except (TypeError, ValueError):
        return -1  # matches no row: reported as "no such ..."
    # Ids are positive 64-bit integers: anything else matches no row (a huge number must not reach
    # the database, where it overflows the parameter instead of finding nothing).
    return n if 1 <= n <= MAX_ID else -1


def clean_schedule(kind: str, raw: Any, account_tz: str) -> dict[str, Any]:
    """The normalised schedule of a `kind` mailing; ValueError saying what is wrong.
    Broadcast: {"mode": "now"} | {"mode": "at", "at": ISO datetime (naive: the account's time)}
    | {"mode": "local", "date": "YYYY-MM-DD", "time": "HH:MM"}. Regular: {"daily_at": "HH:MM"} |
    {"cron": "m h dom mon dow"} | {"every_hours": N}. Trigger: {} (the trigger says when)."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError("must be an object")
    if kind == Mailing.Kind.TRIGGER:
        return {}
    if kind == Mailing.Kind.BROADCAST:
        mode = raw.get("mode", "now")
        if mode == "now":
            return {"mode": "now"}
        if mode == "at":
            try:
                at = datetime.fromisoformat(str(raw.get("at", "")))
            except ValueError:
                raise ValueError('"at" must be a date and time such as 2025-06-01T10:00') from None
            if at.tzinfo is None:
                at = at.replace(tzinfo=windows.zone(account_tz) or UTC)
            return {"mode": "at", "at": at.astimezone(UTC).isoformat()}
        if mode == "local":
            try:
                day = date.fromisoformat(str(raw.get("date", "")))
                at_time = time.fromisoformat(str(raw.get("time", "")))
            except ValueError:
                raise ValueError('local sending needs "date" (YYYY-MM-DD) and "time" (HH:MM)') from None
            return {"mode": "local", "date": day.isoformat(), "time": at_time.strftime("%H:%M")}
        raise ValueError('"mode" must be now, at or local')
    if len(raw) != 1:
        raise ValueError('a regular mailing needs {"daily_at": "HH:MM"}, {"cron": "..."} or {"every_hours": N}')
    (key, value), = raw.items()
    if key == "daily_at":
        try:
            return {"daily_at": time.fromisoformat(str(value)).strftime("%H:%M")}
        except ValueError:
            raise ValueError("daily_at must be a time of day as HH:MM") from None
    if key == "cron":
        expr = " ".join(str(value).split())
        if len(expr.split(" ")) != 5 or not croniter.is_valid(expr):
            raise ValueError("cron must be five fields: minute hour day month weekday")
        return {"cron": expr}
    if key == "every_hours":
        if isinstance(value, bool) or not str(value).strip().isdigit() or not 1 <= int(value) <= MAX_EVERY_HOURS:
            raise ValueError(f"every_hours must be a whole number from 1 to {MAX_EVERY_HOURS}")
        return {"every_hours": int(value)}
    raise ValueError(f"unknown schedule {key!r}")


def clean_trigger(kind: str, raw: Any, account: Account) -> dict[str, Any]:
    """The normalised trigger of a trigger mailing ({} for other kinds); ValueError."""
    if kind != Mailing.Kind.TRIGGER:
        return {}
    from history.models import EventType

    raw = raw or {}
    if not isinstance(raw, dict) or raw.get("on") not in TRIGGER_ON:
        raise ValueError('"on" must be one of ' + ", ".join(t for t in TRIGGER_ON if t != "scenario"))
    out: dict[str, Any] = {"on": raw["on"]}
    if raw["on"] == "scenario":  # a scenario's send step (scenarios.services.publishing makes it)
        step, scenario_id = raw.get("step"), raw.get("scenario_id")
        if not isinstance(step, str) or not step or isinstance(scenario_id, bool) or not isinstance(scenario_id, int):
            raise ValueError('a scenario trigger names its "scenario_id" and "step"')
        return {"on": "scenario", "kind": "scenario", "scenario_id": scenario_id, "step": step}
    if raw["on"] == "event":
        name = str(raw.get("event") or "")
        if not EventType.objects.visible_to(account).filter(name=name, enabled=True).exists():
            raise ValueError(f"no enabled event type {name!r}" if name else 'name the event type ("event")')
        out["event"] = name
        filters = raw.get("filters") or []
        if not isinstance(filters, list):
            raise ValueError("filters must be a list")
        clean = []
        for i, f in enumerate(filters):
            if not isinstance(f, dict) or not str(f.get("property") or "").strip() or f.get("op") not in TRIGGER_OPS:
                raise ValueError(f"filter {i + 1} needs a property and an op ({', '.join(TRIGGER_OPS)})")
            clean.append({"property": str(f["property"]).strip(), "op": f["op"], "value": f.get("value")})
        out["filters"] = clean
    if raw["on"] in ("event", "subscription"):
        delay = raw.get("delay_seconds", 0) or 0
        if isinstance(delay, bool) or not str(delay).isdigit() or int(delay) > MAX_DELAY_SECONDS:
            raise ValueError(f"delay_seconds must be a whole number from 0 to {MAX_DELAY_SECONDS}")
        out["delay_seconds"] = int(delay)
    return out


def clean_values(account: Account, values: dict[str, Any], *, mailing: Mailing | None) -> dict[str, Any]:
    """The model values for `values` (only the keys given; a new mailing needs name and
    resource), objects fetched within `account`. Raises MailingError per field."""
    from content.models import Template
    from delivery.models import ProviderAccount, Sender
    from resources.models import Resource
    from segments.models import Segment

    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    known = {"name", "description", "kind", "transactional", "channel", "resource", "sender", "provider", "template",
             "audience", "include_segments", "exclude_segments", "categories", "schedule", "trigger", "speed_limit",
             "send_window", "track_opens", "track_clicks", "cap"}
    for key in set(values) - known:
        errors[key] = "unknown field"
    if mailing is not None and (mailing.trigger or {}).get("on") == "scenario":
        # What a scenario's send step sends is the step's config: changed there, then published.
        for key in set(values) & known - {"name", "description"}:
            errors[key] = f"set by step {mailing.trigger.get('step')} of its scenario: change the step there"
    if "name" in values or mailing is None:
        name = str(values.get("name") or "").strip()
        if not name:
            errors["name"] = "give the mailing a name"
        elif len(name) > 200:
            errors["name"] = "at most 200 characters"
        out["name"] = name
    if "description" in values:
        out["description"] = str(values["description"] or "")
    kind = values.get("kind", mailing.kind if mailing else Mailing.Kind.BROADCAST)
    if kind not in Mailing.Kind.values:
        errors["kind"] = "one of " + ", ".join(Mailing.Kind.values)
    elif "kind" in values or mailing is None:
        out["kind"] = kind
    channel = values.get("channel", mailing.channel if mailing else Channel.EMAIL)
    if channel not in Channel.values:
        errors["channel"] = "one of " + ", ".join(Channel.values)
    elif "channel" in values or mailing is None:
        out["channel"] = channel
    for flag in ("transactional", "track_opens", "track_clicks"):
        if flag in values:
            out[flag] = _bool(errors, flag, values[flag])

    resource = mailing.resource if mailing else None
    if "resource" in values or mailing is None:
        resource = Resource.objects.for_account(account).filter(pk=_id_of(values.get("resource"))).first()
        if resource is None:
            errors["resource"] = "choose one of this account's resources"
        out["resource"] = resource
    if resource is not None and channel in Channel.values and channel not in resource.channels:
        errors["channel"] = f"{resource.name} has no {Channel(channel).label} channel"

    for field, model, what in (("sender", Sender, "senders"), ("provider", ProviderAccount, "provider accounts"),
                               ("template", Template, "templates")):
        if field in values:
            out[field] = _account_row(model, account, values[field], field, what, errors)
    if out.get("sender") is not None and channel != Channel.EMAIL:
        errors["sender"] = "only e-mail has a sender"
    provider = out.get("provider")
    if provider is not None and provider.channel != channel:
        errors["provider"] = f"{provider.name} sends {provider.get_channel_display()}, not {channel}"

    if "audience" in values:
        if values["audience"] not in Mailing.Audience.values:
            errors["audience"] = "database or segments"
        out["audience"] = values["audience"]
    for key in ("include_segments", "exclude_segments"):
        if key in values:
            ids = [_id_of(v) for v in (values[key] or [])]
            found = list(Segment.objects.for_account(account).filter(pk__in=[i for i in ids if i is not None]))
            if len(found) != len(set(ids)):
                errors[key] = "choose segments of this account"
            elif resource is not None and any(s.database_id != resource.database_id for s in found):
                errors[key] = f"choose segments of {resource.database.name}, the resource's database"
            out[key] = found
    if "categories" in values:
        cats = values["categories"] or []
        if not isinstance(cats, list | tuple) or not all(isinstance(c, str) for c in cats):
            errors["categories"] = "a list of category keys"
        elif resource is not None and (unknown := sorted(set(cats) - set(resource.category_keys))):
            errors["categories"] = f"{resource.name} has no categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}"
        else:
            out["categories"] = sorted(set(cats))
    if "schedule" in values or "kind" in values or mailing is None:
        raw = values.get("schedule", mailing.schedule if mailing else {})
        try:
            out["schedule"] = clean_schedule(kind, raw, account.timezone)
        except ValueError as exc:
            errors["schedule"] = str(exc)
    if "trigger" in values or "kind" in values or mailing is None:
        try:
            out["trigger"] = clean_trigger(kind, values.get("trigger", mailing.trigger if mailing else {}), account)
        except ValueError as exc:
            errors["trigger"] = str(exc)
        else:
            was = (mailing.trigger or {}).get("on") if mailing is not None else None
            if (out["trigger"].get("on") == "scenario") != (was == "scenario"):
                errors["trigger"] = ("a scenario's send step makes and keeps its own mailing" if was != "scenario"
                                     else "this mailing belongs to a scenario's send step")
    if "speed_limit" in values:
        limit = values["speed_limit"]
        if limit in (None, "", 0):
            out["speed_limit"] = None
        elif isinstance(limit, bool) or not str(limit).isdigit() or not 1 <= int(limit) <= MAX_SPEED_LIMIT:
            errors["speed_limit"] = f"messages a minute, 1 to {MAX_SPEED_LIMIT:,}, or empty for no limit"
        else:
            out["speed_limit"] = int(limit)
    if "send_window" in values:
        out["send_window"] = None
        if values["send_window"]:
            try:
                out["send_window"] = windows.SendWindow.from_json(values["send_window"]).to_json()
            except (ValueError, TypeError) as exc:
                errors["send_window"] = str(exc)
    if "cap" in values:
        cap = values["cap"]
        out["cap"] = None
        if cap:
            try:
                n, d, scope = cap_clean(max_messages=cap.get("max_messages"), days=cap.get("days"),
                                        scope=cap.get("scope", "profile"))
                out["cap"] = {"max_messages": n, "days": d, "scope": scope}
            except MailingError as exc:
                errors.update({f"cap.{k}": v for k, v in exc.errors.items()})
            except AttributeError:
                errors["cap"] = "an object: {max_messages, days, scope}"
    if errors:
        raise MailingError(errors)
    return out


def schedule_at(mailing: Mailing, now: datetime) -> datetime | None:
    """When a launched mailing's next run starts: a broadcast's time (local: the earliest any
    timezone reaches it), a regular mailing's next slot after `now`; None for "now" and triggers."""
    schedule = mailing.schedule or {}
    if mailing.kind == Mailing.Kind.BROADCAST:
        if schedule.get("mode") == "at":
            return datetime.fromisoformat(schedule["at"])
        if schedule.get("mode") == "local":
            wall = datetime.combine(date.fromisoformat(schedule["date"]), time.fromisoformat(schedule["time"]), UTC)
            return wall - EARLIEST_OFFSET
        return None
    if mailing.kind == Mailing.Kind.REGULAR and schedule:
        tz = mailing.account.timezone or "UTC"
        slot = next(windows.regular_slots(schedule, tz, now, now + timedelta(days=400)), None)
        return slot[1] if slot else None
    return None


def _template_problems(mailing: Mailing) -> dict[str, str]:
    from content.models import TemplateVersion

    if mailing.template_id is None:
        return {"template": "choose a template"}
    template = mailing.template
    if template.is_archived:
        return {"template": f"“{template.name}” is archived"}
    version = TemplateVersion.objects.filter(template=template, channel=mailing.channel, is_current=True).first()
    if version is None:
        return {"template": f"“{template.name}” has no {mailing.get_channel_display()} version yet"}
    if version.lint_errors:
        first = version.lint_errors[0].get("message", "")
        return {"template": f"the {mailing.get_channel_display()} version has {len(version.lint_errors)} "
                            f"error(s) to fix: {first}"}
    return {}


def _delivery_problems(mailing: Mailing) -> dict[str, str]:
    from delivery.backends import DeliveryError, get_backend
    from delivery.services.senders import sender_for_sending

    try:
        backend = get_backend(mailing.channel, provider=mailing.provider, account=mailing.account)
    except DeliveryError as exc:
        return {"provider": str(exc)}
    if mailing.channel != Channel.EMAIL:
        return {}
    try:
        sender_for_sending(account=mailing.account, sender=mailing.sender, local_backend=getattr(backend, "local", False))
    except ValidationError as exc:
        return {"sender": " ".join(exc.messages)}
    return {}


def _audience_problems(mailing: Mailing) -> dict[str, str]:
    if mailing.audience != Mailing.Audience.SEGMENTS:
        return {}
    include = list(mailing.include_segments.all())
    if not include:
        return {"include_segments": "choose at least one segment"}
    broken = [s.name for s in (*include, *mailing.exclude_segments.all())
              if s.is_broken or s.database_id != mailing.database_id]
    if broken:
        return {"include_segments": f"fix the segment(s) {', '.join(broken)} first: they cannot be evaluated"}
    return {}


def mailing_problems(mailing: Mailing, *, now: datetime | None = None, launching: bool = True) -> dict[str, str]:
    """What stops `mailing` from launching (or, `launching=False`, resuming), per field; empty
    when it can go. Checks the resource's channel, the template's current version for the channel
    and its lint errors, the sender (`sender_for_sending`: a verified domain unless the backend
    is local) and provider, the audience's segments, the schedule (a time in the past, a regular
    schedule with no next slot) and the trigger."""
    now = now or timezone.now()
    problems: dict[str, str] = {}
    if mailing.channel not in mailing.resource.channels:
        problems["channel"] = f"{mailing.resource.name} has no {mailing.get_channel_display()} channel"
    problems.update(_template_problems(mailing))
    problems.update(_delivery_problems(mailing))
    problems.update(_audience_problems(mailing))
    try:
        clean_schedule(mailing.kind, mailing.schedule, mailing.account.timezone)
    except ValueError as exc:
        problems["schedule"] = str(exc)
    else:
        mode = (mailing.schedule or {}).get("mode")
        if launching and mailing.kind == Mailing.Kind.BROADCAST and mode in ("at", "local"):
            if mode == "at" and datetime.fromisoformat(mailing.schedule["at"]) < now - timedelta(minutes=1):
                problems["schedule"] = "this time has passed: choose a later one, or send now"
            if mode == "local":
                last = (datetime.combine(date.fromisoformat(mailing.schedule["date"]),
                                         time.fromisoformat(mailing.schedule["time"]), UTC) + timedelta(hours=12))
                if last < now:
                    problems["schedule"] = "every timezone has passed this time: choose a later date"
        if mailing.kind == Mailing.Kind.REGULAR and schedule_at(mailing, now) is None:
            problems["schedule"] = "this schedule has no run in the next 400 days"
    if mailing.kind == Mailing.Kind.TRIGGER:
        try:
            clean_trigger(mailing.kind, mailing.trigger, mailing.account)
        except ValueError as exc:
            problems["trigger"] = str(exc)
    return problems
