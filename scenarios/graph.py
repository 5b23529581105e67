"""The step kinds: what each is called, which exits it has and what its `config` holds.

This module is the contract between the editor (forms, validation, diagram), the engine (the
handlers in `scenarios.engine.steps`), the API and the JSON export. Config shapes:

Entries (a version may have several; each has the one exit "next"):
  entry.segment       {"segment_id": int, "members_at_start": bool}
                      profiles entering an updatable segment (its recalculations' movements);
                      with members_at_start, also everyone in the segment when the scenario is
                      activated (the only way a static or dynamic segment can be an entry)
  entry.database      {}  a profile created in the scenario's database (UI, API, import)
  entry.event         {"type": "cart_abandoned", "filters": [{"property", "op", "value"}]}
  entry.subscription  {"resource_id": int, "channel": "email"}  a subscription that becomes
                      sendable (new, confirmed, or back from unsubscribed)
  entry.api           {}  POST /api/v1/scenarios/{id}/enter

Actions:
  send          {"channel", "resource_id", "template_id", "sender_id", "provider_id",
                 "transactional": bool, "track_opens": bool, "track_clicks": bool}  -> next
                (a skip by consent, suppression or cap still goes on: the path log says why)
  wait          {"mode": "duration", "seconds": int}
                {"mode": "until", "at": ISO instant}
                {"mode": "field", "field": name, "offset_seconds": int}  (a date/datetime field)
                {"mode": "time_of_day", "time": "HH:MM", "weekdays": [0..6] | []}
                (the profile's timezone, else the account's)                       -> next
  wait_event    {"type": "order.placed", "filters": [...], "timeout_seconds": int} -> event | timeout
  condition     {"test": "segments", "conditions": <segments condition tree>}
                (profile fields, subscriptions, history events, segment membership: the
                segments compiler over the scenario's database)
                {"test": "message", "step": "s2", "what": "sent|delivered|opened|clicked"}
                (this trip's message from that send step)                          -> yes | no
  split         {"branches": [{"exit": "a", "label": "A", "weight": 50}, ...]} (2-5) -> the exits
  update        {"values": {"field name": value, ...}}                             -> next
  subscription  {"resource_id", "channel", "status": "subscribed|unsubscribed|suspended"} -> next
  segment       {"segment_id": int, "action": "add|remove"} (a static segment)      -> next
  webhook       {"url", "timeout_seconds": 1-30, "retries": 0-5}                   -> next
                (HTTP POST, JSON body, X-CDP-Signature: sha256=HMAC(secret, body))
  exit          {}  the trip completes here
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepKind:
    kind: str
    label: str
    icon: str  # a bootstrap-icons name, as the other apps use
    exits: tuple[str, ...]  # fixed exits; a split's come from its config
    group: str  # "entry" | "message" | "timing" | "logic" | "data" | "end"
    description: str

    @property
    def is_entry(self) -> bool:
        return self.group == "entry"


_KINDS = [
    StepKind("entry.segment", "Enters a segment", "people", ("next",), "entry",
             "Profiles entering an updatable segment; optionally everyone in it at activation."),
    StepKind("entry.database", "New profile", "person-plus", ("next",), "entry",
             "A profile created in the database (UI, API or import)."),
    StepKind("entry.event", "Event", "lightning", ("next",), "entry",
             "An event of a type, with property filters."),
    StepKind("entry.subscription", "Subscribes", "envelope-plus", ("next",), "entry",
             "A subscription to a resource on a channel becomes sendable."),
    StepKind("entry.api", "API call", "code-slash", ("next",), "entry",
             "POST /api/v1/scenarios/{id}/enter with a profile match key."),
    StepKind("send", "Send message", "send", ("next",), "message",
             "A template over a channel, through the send ledger (consent, caps, windows, tracking)."),
    StepKind("wait", "Wait", "hourglass-split", ("next",), "timing",
             "A duration, until a date or a profile's date field, or until a local time of day."),
    StepKind("wait_event", "Wait for event", "hourglass-bottom", ("event", "timeout"), "timing",
             "Until an event happens (exit “event”) or the timeout passes (exit “timeout”)."),
    StepKind("condition", "Condition", "signpost-split", ("yes", "no"), "logic",
             "Profile data, segment, subscription or history, or what this trip's message did."),
    StepKind("split", "Random split", "shuffle", (), "logic",
             "Sends profiles down 2-5 branches by weight (A/B tests)."),
    StepKind("update", "Update profile", "pencil-square", ("next",), "data",
             "Sets profile fields."),
    StepKind("subscription", "Change subscription", "toggles", ("next",), "data",
             "Subscribes, unsubscribes or suspends on a resource and channel."),
    StepKind("segment", "Static segment", "collection", ("next",), "data",
             "Adds the profile to (or removes it from) a static segment."),
    StepKind("webhook", "Webhook", "box-arrow-up-right", ("next",), "data",
             "A signed HTTP POST to your system, with timeout and retries."),
    StepKind("exit", "Exit", "door-open", (), "end", "The trip ends here."),
]

STEP_KINDS: dict[str, StepKind] = {k.kind: k for k in _KINDS}
ENTRY_KINDS = frozenset(k.kind for k in _KINDS if k.is_entry)
# Steps that hold a profile until later (a graph cycle must pass through one of these).
WAIT_KINDS = frozenset({"wait", "wait_event"})
SPLIT_EXITS = ("a", "b", "c", "d", "e")


def exits_of(kind: str, config: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The exits a step of this kind and config has (a split: its branches' names)."""
    if kind == "split":
        branches = (config or {}).get("branches") or []
        return tuple(str(b.get("exit")) for b in branches if isinstance(b, Mapping) and b.get("exit"))
    spec = STEP_KINDS.get(kind)
    return spec.exits if spec else ()


def exit_label(kind: str, config: Mapping[str, Any] | None, exit_: str) -> str:
    """How the diagram labels an exit ("yes", "timeout", a split branch's label and weight)."""
    if kind == "split":
        for b in (config or {}).get("branches") or []:
            if isinstance(b, Mapping) and b.get("exit") == exit_:
                label = str(b.get("label") or exit_.upper())
                return f"{label} · {b.get('weight', 0)}%"
    return "" if exit_ == "next" else exit_
