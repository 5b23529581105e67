"""What comes back after sending: tracking events, bounces, complaints and mailto unsubscribes.

Three ways in, one way to count:

- `on_tracking_events(events)`: the history handler ("mailings.feedback", registered in
  mailings/apps.py) for message.delivered/opened/clicked/unsubscribed/complained/soft_bounced/
  hard_bounced events. Events that carry a ledger id are counted against it; link and one-click
  unsubscribes (the consent ledger's events, which carry no ledger id) are attributed to the
  profile's latest message on that resource and channel.
- `inbound_apply(*, report, source)`: one classified message from the bounce domain
  (mailings.bounces): the history event, then the subscription and suppression changes.
  `bounces_process` does a whole Maildir or mbox.
- `sync_failures_apply(*, rows)`: the dispatch's synchronous permanent failures (5xx, a push
  token the provider says is gone), in bulk.

Counting (`apply_events`) stamps the ledger row's first delivery/open/click/bounce with a
conditional UPDATE (`... WHERE opened_at IS NULL RETURNING id`: only the first one counts as
unique) and adds the counter deltas (`mailings.services.stats`) in the same transaction. Each
event is acted on once: its id is claimed in `HandledEvent` (handler, event id unique) first, so
a redelivered drain, two concurrent drains, or the handler running after `inbound_apply` already
counted its own event change nothing (RELIABILITY F5/F9).

Opens and clicks: `opened`/`clicked` count every hit, `*_machine` the hits that look like a mail
privacy proxy or a link scanner (Event.machine), `*_unique` the messages with a first human hit,
and `link_clicked` (per link) human clicks. A human click on a message with no recorded open
counts the open too (images were off).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from history.catalogue import type_id
from mailings.bounces.report import InboundReport
from mailings.models import HandledEvent, LedgerEntry, Mailing
from mailings.services.stats import StatKey, hour, stats_add

log = logging.getLogger(__name__)

HANDLER = "mailings.feedback"

DELIVERED, OPENED, CLICKED = "message.delivered", "message.opened", "message.clicked"
UNSUBSCRIBED, COMPLAINED = "message.unsubscribed", "message.complained"
SOFT, HARD = "message.soft_bounced", "message.hard_bounced"
TYPES = (DELIVERED, OPENED, CLICKED, UNSUBSCRIBED, COMPLAINED, SOFT, HARD)
NAMES: dict[int, str] = {type_id(name): name for name in TYPES}

# Consent-ledger events (history.services.lifecycle.consent_events: source "consent:<via>") that
# a person caused from a message: attributed to their latest message. The others (an import, an
# admin, the API, and this module's own bounce/complaint/mailto changes, whose events carry the
# ledger id already) are not a mailing's doing.
ATTRIBUTED_SOURCES = frozenset({"consent:link", "consent:one-click", "consent:preferences"})
ATTRIBUTION_DAYS = 30

_REF = re.compile(r"^L(\d{1,18})$")
_CHUNK = 500  # ids per statement: well under SQLite's parameter limit


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


# --- counting ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ev:
    """A stored history event, as counting needs it."""

    id: int
    type: str
    account_id: int
    ledger_id: int
    occurred_at: datetime
    link_id: int | None = None
    machine: bool = False


def on_tracking_events(events: Sequence[Any]) -> None:
    """The history handler. Idempotent: each event id is acted on once (HandledEvent), however
    often and however concurrently the drain delivers it. Events of other types, and events with
    no ledger row to count against, are ignored."""
    evs: list[Ev] = []
    loose: list[Any] = []
    for e in events:
        name = NAMES.get(e.type_id)
        if name is None:
            continue
        if e.ledger_id:
            evs.append(Ev(e.id, name, e.account_id, e.ledger_id, e.occurred_at, e.link_id, bool(e.machine)))
        elif name in (UNSUBSCRIBED, COMPLAINED) and e.source in ATTRIBUTED_SOURCES and e.resource_id:
            loose.append(e)
    if loose:
        evs.extend(_attribute(loose))
    if evs:
        with transaction.atomic():
            apply_events(evs)


def _attribute(events: list[Any]) -> list[Ev]:
    """Unsubscribes from a link or the preference page name no message: count each against the
    profile's latest message sent on that resource and channel before it (within ATTRIBUTION_DAYS).
    One query for the whole batch."""
    earliest = min(e.occurred_at for e in events) - timedelta(days=ATTRIBUTION_DAYS)
    rows = (LedgerEntry.objects.filter(profile_id__in={e.profile_id for e in events}, status=LedgerEntry.Status.SENT,
                                       sent_at__gte=earliest)
            .values_list("id", "account_id", "profile_id", "channel", "mailing_id", "sent_at").order_by("sent_at"))
    rows = list(rows)
    resources = dict(Mailing.objects.filter(pk__in={r[4] for r in rows}).values_list("id", "resource_id"))
    out = []
    for e in events:
        best = None
        for lid, account_id, profile_id, channel, mailing_id, sent_at in rows:
            if (profile_id == e.profile_id and account_id == e.account_id and resources.get(mailing_id) == e.resource_id
                    and (not e.channel or channel == e.channel) and sent_at <= e.occurred_at):
                best = lid  # rows are in sending order: the last match is the latest message
        if best is not None:
            out.append(Ev(e.id, NAMES[e.type_id], e.account_id, best, e.occurred_at))
    return out


def apply_events(evs: Iterable[Ev]) -> Counter[StatKey]:
    """Count events against their ledger rows (call inside a transaction): claim the event ids,
    stamp first deliveries/opens/clicks/hard bounces, add the counters. Returns the deltas added.
    Events already claimed, of another account than their ledger row, or whose row is gone are
    skipped."""
    evs = list({e.id: e for e in evs}.values())
    fresh = _claim([e.id for e in evs])
    evs = [e for e in evs if e.id in fresh]
    if not evs:
        return Counter()
    ledger = _ledger_keys({e.ledger_id for e in evs})
    evs = [e for e in evs if e.ledger_id in ledger and ledger[e.ledger_id][0] == e.account_id]
    deltas: dict[datetime, Counter[StatKey]] = defaultdict(Counter)

    def add(e: Ev, metric: str, link_id: int | None = None) -> None:
        account_id, mailing_id, run_id = ledger[e.ledger_id]
        deltas[hour(e.occurred_at)][(account_id, mailing_id, run_id, metric, link_id)] += 1

    by_type: dict[str, list[Ev]] = defaultdict(list)
    for e in sorted(evs, key=lambda e: (e.occurred_at, e.id)):
        by_type[e.type].append(e)
    human_opens = [e for e in by_type[OPENED] if not e.machine]
    human_clicks = [e for e in by_type[CLICKED] if not e.machine]
    for e in by_type[OPENED]:
        add(e, "opened")
        if e.machine:
            add(e, "opened_machine")
    for e in by_type[CLICKED]:
        add(e, "clicked")
        if e.machine:
            add(e, "clicked_machine")
        elif e.link_id:
            add(e, "link_clicked", e.link_id)
    for e in by_type[UNSUBSCRIBED]:
        add(e, "unsubscribed")
    for e in by_type[COMPLAINED]:
        add(e, "complained")
    for e in by_type[SOFT]:
        add(e, "bounced_soft")
    # Unique figures: the events whose stamp was the first (a row's earliest event wins).
    for column, group, metrics in (
        ("delivered_at", by_type[DELIVERED], ("delivered",)),
        ("opened_at", human_opens, ("opened_unique",)),
        ("clicked_at", human_clicks, ("clicked_unique",)),
        # A click with no open recorded: the images were off, the message was opened.
        ("opened_at", human_clicks, ("opened_unique", "opened")),
        ("bounced_at", by_type[HARD], ("bounced_hard",)),
    ):
        first = {}
        for e in group:
            first.setdefault(e.ledger_id, e)
        for lid in _stamp(column, {lid: e.occurred_at for lid, e in first.items()}):
            for metric in metrics:
                add(first[lid], metric)
    total: Counter[StatKey] = Counter()
    for bucket, counter in deltas.items():
        stats_add(counter, when=bucket)
        total.update(counter)
    return total


def _returning() -> bool:
    return connection.vendor == "postgresql" or connection.features.can_return_rows_from_bulk_insert


def _claim(event_ids: list[int]) -> set[int]:
    """Insert (HANDLER, id) for each event; the ids this call inserted (the others were handled
    before, or are being handled by a concurrent transaction, which this one waits for)."""
    table = HandledEvent._meta.db_table
    fresh: set[int] = set()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    for start in range(0, len(event_ids), _CHUNK):
        chunk = event_ids[start:start + _CHUNK]
        if not _returning():  # an old SQLite: one writer (IMMEDIATE transactions), so check, then insert
            known = set(HandledEvent.objects.filter(handler=HANDLER, event_id__in=chunk).values_list("event_id", flat=True))
            new = [i for i in chunk if i not in known]
            HandledEvent.objects.bulk_create([HandledEvent(handler=HANDLER, event_id=i) for i in new])
            fresh.update(new)
            continue
        values = ", ".join(["(%s, %s, %s)"] * len(chunk))
        params: list[Any] = []
        for i in chunk:
            params += [HANDLER, i, now]
        with connection.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (handler, event_id, created_at) VALUES {values} "  # noqa: S608 (constants)
                        "ON CONFLICT (handler, event_id) DO NOTHING RETURNING event_id", params)
            fresh.update(r[0] for r in cur.fetchall())
    return fresh


def _ledger_keys(ids: Iterable[int]) -> dict[int, tuple[int, int, int]]:
    """{ledger id: (account id, mailing id, run id)}: the counters' keys come from the ledger, not
    from what an event claims."""
    out: dict[int, tuple[int, int, int]] = {}
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        rows = LedgerEntry.objects.filter(pk__in=ids[start:start + _CHUNK]).values_list("id", "account_id", "mailing_id",
                                                                                         "run_id")
        out.update({i: (a, m, r) for i, a, m, r in rows})
    return out


def _stamp(column: str, when: dict[int, datetime]) -> list[int]:
    """Set `column` to each row's time where it is still empty; the ids that were set (one
    statement per chunk: a conditional UPDATE, so concurrent stamps of one row count once)."""
    assert column in ("delivered_at", "opened_at", "clicked_at", "bounced_at"), column
    table = LedgerEntry._meta.db_table
    done: list[int] = []
    ids = list(when)
    adapt = connection.ops.adapt_datetimefield_value
    returning = _returning()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        if not returning:  # an old SQLite: one writer (IMMEDIATE transactions), so find the empty ones first
            chunk = list(LedgerEntry.objects.filter(pk__in=chunk, **{f"{column}__isnull": True}).values_list("id", flat=True))
            if not chunk:
                continue
        cases = " ".join(["WHEN %s THEN %s"] * len(chunk))
        params: list[Any] = []
        for lid in chunk:
            params += [lid, adapt(when[lid])]
        marks = ", ".join(["%s"] * len(chunk))
        with connection.cursor() as cur:
            cur.execute(f"UPDATE {table} SET {column} = CASE id {cases} END "  # noqa: S608 (constants)
                        f"WHERE id IN ({marks}) AND {column} IS NULL" + (" RETURNING id" if returning else ""),
                        [*params, *chunk])
            done += [r[0] for r in cur.fetchall()] if returning else chunk
    return done


# --- writing feedback events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """A ledger row as feedback needs it."""

    id: int
    account_id: int
    mailing_id: int
    run_id: int
    profile_id: int
    subscription_id: int
    channel: str
    address: str
    resource_id: int


def ledger_rows(ids: Iterable[int]) -> dict[int, Row]:
    """The ledger rows (with their mailing's resource) by id: one query per chunk."""
    out: dict[int, Row] = {}
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        rows = LedgerEntry.objects.filter(pk__in=ids[start:start + _CHUNK]).values_list(
            "id", "account_id", "mailing_id", "run_id", "profile_id", "subscription_id", "channel", "address")
        rows = list(rows)
        resources = dict(Mailing.objects.filter(pk__in={r[2] for r in rows}).values_list("id", "resource_id"))
        out.update({r[0]: Row(*r, resources.get(r[2], 0)) for r in rows})
    return out


def write_events(account_id: int, items: list[tuple[Row, str, str, dict[str, Any]]], *, source: str) -> list[tuple[Row, str, int | None, str]]:
    """Store feedback events (type, idempotency key, properties per ledger row) through
    history.services.events_ingest and count them (apply_events) in the caller's transaction.
    Returns (row, type, event id, status) per item: status "stored", "duplicate" (an event with
    that key exists: counted before, not again), "error:profile" (the profile is gone) or
    "error:<field>" (refused: logged)."""
    from accounts.models import Account
    from history.services.ingest import EventIn, events_ingest

    account = Account.objects.get(pk=account_id)
    now = timezone.now()
    results = events_ingest(account=account, source=source[:32], now=now, events=[
        EventIn(type=name, profile_id=row.profile_id, occurred_at=now, properties=props, key=key, channel=row.channel,
                resource_id=row.resource_id or None, mailing_id=row.mailing_id, run_id=row.run_id, ledger_id=row.id,
                source=source[:32])
        for row, name, key, props in items
    ])
    out = []
    evs = []
    for (row, name, _, _), result in zip(items, results, strict=True):
        if result.status == "error" and result.field not in ("profile", ""):
            log.error("feedback: %s for ledger row %s not recorded: %s %s", name, row.id, result.field, result.error)
        out.append((row, name, result.id, result.status if result.status != "error" else f"error:{result.field}"))
        if result.id is not None:
            evs.append(Ev(result.id, name, row.account_id, row.id, now))
    apply_events(evs)
    return out


# --- subscription statuses and suppressions, in bulk ---------------------------------------------------


def set_statuses(rows: Sequence[Row], status: str, *, via: str, reason: str = "", until: datetime | None = None) -> list[int]:
    """Move the rows' subscriptions to `status` where the transition is allowed and the
    subscription still has the row's address (an address changed since is not the one that
    bounced): resources' bulk writer, so the consent ledger, its counters and history events
    follow. One lock query and one UPDATE however many rows. Returns the subscription ids
    changed. Call inside a transaction."""
    from accounts.access import Actor
    from resources.models import Subscription
    from resources.services import Via, subscriptions_set_status_bulk

    wanted = {r.subscription_id: r for r in rows if r.address}
    if not wanted:
        return []
    subs = list(Subscription.objects.select_for_update().filter(pk__in=list(wanted)).order_by("pk"))
    same = [s for s in subs if s.address.lower() == wanted[s.pk].address.lower()]
    return subscriptions_set_status_bulk(subscriptions=same, status=status, actor=Actor.system(), via=Via(source=via),
                                         reason=reason, until=until)


def suppress(account_id: int, addresses: Iterable[str], *, reason: str, note: str = "") -> int:
    """Suppress the e-mail addresses (reason bounce or complaint) in bulk. Returns how many were added."""
    from accounts.access import Actor
    from resources.models import Suppression
    from resources.services import suppressions_add_bulk

    values = {a.strip().lower() for a in addresses if a and "@" in a}
    if not values:
        return 0
    return suppressions_add_bulk(account_id=account_id, kind=Suppression.Kind.EMAIL, values=values, actor=Actor.system(),
                                 reason=reason, note=note, source=reason)


def _soft_bounced_profiles(rows: Sequence[Row]) -> set[int]:
    """The rows' profiles with MAILINGS_SOFT_BOUNCE_LIMIT or more soft bounces on the e-mail
    channel in the last MAILINGS_SOFT_BOUNCE_DAYS days (their events, this one included)."""
    from django.db.models import Count

    from history.models import Event

    limit = _setting("MAILINGS_SOFT_BOUNCE_LIMIT", 3)
    since = timezone.now() - timedelta(days=_setting("MAILINGS_SOFT_BOUNCE_DAYS", 7))
    by_account: dict[int, set[int]] = defaultdict(set)
    for r in rows:
        by_account[r.account_id].add(r.profile_id)
    found: set[int] = set()
    for account_id, profiles in by_account.items():
        found.update(
            Event.objects.filter(account_id=account_id, profile_id__in=profiles, type_id=type_id(SOFT), channel="email",
                                 occurred_at__gte=since)
            .values("profile_id").annotate(n=Count("id")).filter(n__gte=limit).values_list("profile_id", flat=True))
    return found


def _suspend_soft_bounced(rows: Sequence[Row]) -> list[int]:
    over = _soft_bounced_profiles(rows)
    if not over:
        return []
    from resources.models import Status

    days = _setting("MAILINGS_SOFT_BOUNCE_DAYS", 7)
    pause = _setting("MAILINGS_SOFT_BOUNCE_PAUSE_DAYS", 14)
    return set_statuses([r for r in rows if r.profile_id in over], Status.SUSPENDED, via="bounce",
                        reason=f"{_setting('MAILINGS_SOFT_BOUNCE_LIMIT', 3)} soft bounces within {days} days",
                        until=timezone.now() + timedelta(days=pause))


# --- inbound mail --------------------------------------------------------------------------------------


def _key(row: Row, kind: str, report: InboundReport) -> str:
    """The event's idempotency key. One hard bounce, one complaint and one mailto unsubscribe per
    ledger row (a second report of the same is a duplicate, whichever message it came in); a soft
    bounce per inbound message."""
    if kind == "soft_bounce":
        digest = report.fingerprint or hashlib.sha256(
            f"{report.status}|{report.diagnostic}|{report.arrival_date}|{report.message_id}".encode()).hexdigest()
        return f"ledger:{row.id}:soft_bounced:{digest[:32]}"
    return {"hard_bounce": f"ledger:{row.id}:hard_bounced", "complaint": f"ledger:{row.id}:complained",
            "unsubscribe": f"ledger:{row.id}:unsubscribed:mailto"}[kind]


_EVENT = {"hard_bounce": HARD, "soft_bounce": SOFT, "complaint": COMPLAINED, "unsubscribe": UNSUBSCRIBED}


def inbound_apply(*, report: InboundReport, source: str) -> str:
    """Apply one inbound report to its ledger row, once; returns what it did:

    "hard_bounce applied" (history event message.hard_bounced; the row's bounced_at and the
    bounced_hard counter; the subscription bounced; the address suppressed), "soft_bounce
    applied" (message.soft_bounced, bounced_soft; "soft_bounce applied, subscription suspended"
    when it is the profile's MAILINGS_SOFT_BOUNCE_LIMIT-th within MAILINGS_SOFT_BOUNCE_DAYS),
    "complaint applied" (message.complained, complained; subscription complained; address
    suppressed), "unsubscribe applied" (mail to the List-Unsubscribe address: unsubscribed via
    "mailto"), "duplicate" (this report, or another of the same kind for the row, was applied
    before: nothing changes), "ignored: <kind>" (auto-replies, delay notices, unknown mail),
    "unknown ref" (no ledger row), "unverified ref" (a complaint found by its unsigned Message-ID
    whose recipient is not the row's address), "address erased", "profile gone".
    `source` says where it came from ("maildir", "mbox", "smtp"...) and is stored on the event.
    Safe to call concurrently with the same report: the event's idempotency key decides.
    """
    if report.kind not in _EVENT:
        return f"ignored: {report.kind}"
    match = _REF.match(report.ref or "")
    if not match:
        return "unknown ref"
    row = ledger_rows([int(match.group(1))]).get(int(match.group(1)))
    if row is None:
        return "unknown ref"
    if report.ref_source not in ("verp", "unsubscribe") and (
            not report.recipient or report.recipient.strip().lower() != row.address.lower()):
        return "unverified ref"  # anyone can write a Message-ID: act only when the recipient matches
    if not row.address:
        return "address erased"
    kind = report.kind
    props = {k: v for k, v in {"reason": report.reason, "code": report.status, "diagnostic": report.diagnostic,
                               "recipient": report.recipient, "reporting_mta": report.reporting_mta,
                               "remote_mta": report.remote_mta, "via": source[:64],
                               "arrived": report.arrival_date.isoformat() if report.arrival_date else ""}.items() if v}
    with transaction.atomic():
        (_, _, _, status), = write_events(row.account_id, [(row, _EVENT[kind], _key(row, kind, report), props)],
                                          source=f"bounce:{source}")
        if status == "duplicate":
            return "duplicate"
        if status == "error:profile":
            return "profile gone"
        if status != "stored":
            return f"not recorded ({status})"
        return _inbound_state(row, kind, report)


def _inbound_state(row: Row, kind: str, report: InboundReport) -> str:
    from resources.models import Status, Suppression

    why = report.reason or report.diagnostic or kind.replace("_", " ")
    if kind == "hard_bounce":
        set_statuses([row], Status.BOUNCED, via="bounce", reason=f"hard bounce: {why}")
        if row.channel == "email":
            suppress(row.account_id, [row.address], reason=Suppression.Reason.BOUNCE, note=report.diagnostic or why)
    elif kind == "complaint":
        set_statuses([row], Status.COMPLAINED, via="complaint", reason=f"spam complaint ({report.diagnostic or 'abuse'})")
        if row.channel == "email":
            suppress(row.account_id, [row.address], reason=Suppression.Reason.COMPLAINT, note=report.reporting_mta)
    elif kind == "unsubscribe":
        set_statuses([row], Status.UNSUBSCRIBED, via="mailto", reason="unsubscribed by e-mail (List-Unsubscribe)")
    elif _suspend_soft_bounced([row]):
        return "soft_bounce applied, subscription suspended"
    return f"{kind} applied"


def inbound_apply_raw(*, raw: bytes, source: str) -> str:
    """`inbound_apply` for one raw message (the SMTP listener): parsed by mailings.bounces."""
    from mailings.bounces import parse_message

    report = parse_message(raw) or InboundReport(kind="unknown", reason="not an e-mail message")
    return inbound_apply(report=report, source=source)


def bounces_process(*, path: str, fmt: str = "auto", delete: bool = False) -> dict[str, int]:
    """Apply every message of a Maildir or an mbox file (fmt "maildir", "mbox" or "auto").

    Maildir: the messages in new/, and those in cur/ without the Seen flag, are applied and moved
    to cur/ with the Seen flag, so the next run skips them; one that fails stays for the next run.
    mbox: every message is applied each run (repeats are "duplicate"); `delete` removes the handled
    ones. Returns counts: seen, failed, moved/deleted, and one per outcome of inbound_apply.
    Raises FileNotFoundError for a path that is neither.
    """
    from mailings.bounces import is_maildir, process_mailbox

    if fmt == "auto":
        fmt = "maildir" if is_maildir(path) else "mbox"
    if fmt == "maildir":
        return _process_maildir(path)
    counts: Counter[str] = Counter()

    def handle(report: InboundReport) -> None:
        counts[inbound_apply(report=report, source="mbox")] += 1

    result = process_mailbox(path, handle, delete=delete)
    return {"seen": result.seen, "failed": result.failed, "deleted": result.deleted, **counts}


def _process_maildir(path: str) -> dict[str, int]:
    import os
    from dataclasses import replace

    from mailings.bounces import is_maildir, parse_message
    from mailings.bounces.readers import MAX_MESSAGE_BYTES

    if not is_maildir(path):
        raise FileNotFoundError(f"Not a Maildir (no cur/ and new/): {path}")
    counts: Counter[str] = Counter({"seen": 0, "failed": 0, "moved": 0})
    todo: list[tuple[str, str, str]] = []  # (subdir, file name, flags)
    for sub in ("new", "cur"):
        with os.scandir(os.path.join(path, sub)) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                base, _, flags = entry.name.partition(":2,")
                if sub == "cur" and "S" in flags:
                    continue  # applied before (or read by a person: a bounce is not read by people)
                todo.append((sub, entry.name, flags))
    # Maildir names start with the delivery time: roughly oldest first.
    for sub, name, flags in sorted(todo, key=lambda t: t[1]):
        source = os.path.join(path, sub, name)
        counts["seen"] += 1
        try:
            with open(source, "rb") as handle:
                raw = handle.read(MAX_MESSAGE_BYTES)
        except FileNotFoundError:
            continue  # taken by another reader meanwhile
        try:
            report = parse_message(raw) or InboundReport(kind="unknown", reason="not an e-mail message")
            counts[inbound_apply(report=replace(report, source_id=name), source="maildir")] += 1
        except Exception:  # one bad message must not stop the rest; it stays for the next run
            log.exception("bounces: applying Maildir message %s failed; kept for the next run", name)
            counts["failed"] += 1
            continue
        base = name.partition(":2,")[0]
        try:
            os.rename(source, os.path.join(path, "cur", f"{base}:2,{''.join(sorted(set(flags) | {'S'}))}"))
            counts["moved"] += 1
        except OSError:
            log.warning("bounces: could not mark %s as seen (applying it again is a no-op)", name)
    return dict(counts)


# --- the dispatch's synchronous failures -------------------------------------------------------------


def sync_failures_apply(*, rows: Sequence[tuple[int, Any, str, bool, bool]]) -> dict[str, int]:
    """The dispatch's permanent failures of a batch: (ledger id, code, message, permanent,
    deactivate) each. Call after (or in) the transaction that marked the rows failed.

    E-mail: a permanent failure that RFC 3463 says is about the address (5.1.1, "user unknown";
    mailings.bounces.classify) is a hard bounce: event message.hard_bounced, bounced_at and
    bounced_hard, subscription bounced, address suppressed. A permanent failure about the message
    or the sender (5.7.1 spam block, 5.2.2 mailbox full) is recorded as message.soft_bounced: the
    address is fine. Other channels: `deactivate` (a push token, phone number or chat the provider
    says is gone) is a hard bounce of the subscription (status bounced: nothing is sent there
    until the device subscribes again); no suppression (a number can be given to someone else).
    A few queries per call, whatever the number of rows; idempotent (the events' keys).
    Returns {"hard": n, "soft": n, "deactivated": n, "ignored": n}.
    """
    from mailings.bounces.classify import classify, normalize_status, status_in

    found = ledger_rows(r[0] for r in rows)
    hard: list[tuple[Row, dict[str, Any]]] = []
    soft: list[tuple[Row, dict[str, Any]]] = []
    dead: list[tuple[Row, dict[str, Any]]] = []
    ignored = 0
    for ledger_id, code, message, permanent, deactivate in rows:
        row = found.get(ledger_id)
        if row is None or not row.address:
            ignored += 1
            continue
        text = f"{code} {message}".strip() if code and str(code) not in (message or "") else (message or "")
        if row.channel == "email" and permanent:
            status = normalize_status(str(code or "")) or status_in(message or "")
            kind, status, reason = classify(status, text, trusted=True)
            props = {"reason": reason, "code": status, "diagnostic": text[:500], "via": "smtp"}
            (hard if kind == "hard_bounce" else soft).append((row, props))
        elif deactivate:
            dead.append((row, {"reason": "the address no longer exists", "code": str(code or ""),
                               "diagnostic": (message or "")[:500], "via": "provider"}))
        else:
            ignored += 1
    by_account: dict[int, list[tuple[Row, str, str, dict[str, Any]]]] = defaultdict(list)
    for row, props in hard + dead:
        by_account[row.account_id].append((row, HARD, f"ledger:{row.id}:hard_bounced", props))
    for row, props in soft:
        by_account[row.account_id].append((row, SOFT, f"ledger:{row.id}:soft_bounced:sync", props))
    if not by_account:
        return {"hard": 0, "soft": 0, "deactivated": 0, "ignored": ignored}
    from resources.models import Status, Suppression

    with transaction.atomic():
        for account_id, items in by_account.items():
            write_events(account_id, items, source="dispatch")
        if hard:
            set_statuses([r for r, _ in hard], Status.BOUNCED, via="bounce", reason="hard bounce when sending")
            for account_id in {r.account_id for r, _ in hard}:
                suppress(account_id, [r.address for r, _ in hard if r.account_id == account_id],
                         reason=Suppression.Reason.BOUNCE, note="rejected when sending")
        if dead:
            set_statuses([r for r, _ in dead], Status.BOUNCED, via="provider",
                         reason="the provider says this address no longer exists")
        if soft:
            _suspend_soft_bounced([r for r, _ in soft])
    return {"hard": len(hard), "soft": len(soft), "deactivated": len(dead), "ignored": ignored}
