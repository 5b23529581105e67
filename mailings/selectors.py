"""Reads of mailings shared by the pages, the API, the commands and the exports.

Figures come from the counters (`MailingStat` deltas, a few rows per metric and hour): a report
or a progress bar sums them and never counts the ledger or the history on a page view. The
recipient log reads the ledger by keyset (id), a page at a time; explanations of one profile read
that profile's rows, events and consent records through its indexes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import DateTimeField, IntegerField, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.formats import date_format

from accounts.models import Account
from mailings.models import LedgerEntry, Mailing, MailingStat, Run

Status = LedgerEntry.Status
Reason = LedgerEntry.Reason

TERMINAL_METRICS = ("sent", "failed", "skipped", "ambiguous")


# --- the list ---------------------------------------------------------------------------------------


def mailing_list(*, account: Account, state: str | None = None, kind: str | None = None, q: str = "") -> QuerySet[Mailing]:
    """The account's mailings, newest first, filtered by state, kind and a name search."""
    qs = Mailing.objects.for_account(account).select_related("resource", "template")
    if state:
        qs = qs.filter(state=state)
    if kind:
        qs = qs.filter(kind=kind)
    if q.strip():
        qs = qs.filter(name__icontains=q.strip()[:100])
    return qs


def list_figures(mailing_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Key figures of a page of mailings (one query): {mailing id: {planned, sent, opened_unique,
    clicked_unique, open_rate, click_rate}}; rates in percent or None."""
    ids = list(mailing_ids)
    sums: dict[int, dict[str, int]] = {i: defaultdict(int) for i in ids}
    rows = (MailingStat.objects.filter(mailing_id__in=ids, metric__in=("planned", "sent", "opened_unique", "clicked_unique",
                                                                       "bounced_hard", "delivered"))
            .values_list("mailing_id", "metric").annotate(n=Sum("delta")).order_by())
    for mid, metric, n in rows:
        sums[mid][metric] = int(n or 0)
    out = {}
    for mid, s in sums.items():
        base = _received(s)
        out[mid] = {"planned": s["planned"], "sent": s["sent"], "opened_unique": s["opened_unique"],
                    "clicked_unique": s["clicked_unique"], "open_rate": _pct(s["opened_unique"], base),
                    "click_rate": _pct(s["clicked_unique"], base)}
    return out


# --- the report -------------------------------------------------------------------------------------


@dataclass
class LinkRow:
    link_id: int
    url: str
    clicks: int


@dataclass
class ReasonRow:
    reason: str
    label: str
    count: int


@dataclass
class Report:
    """A mailing's (or one run's) figures. `figures`: every counter by metric name (0 when none);
    `rates`: percentages (None when there is nothing to divide by); `skipped`/`failed`: counts
    by reason with their labels, largest first; `links`: human clicks per link, most clicked first;
    `series`: per hour (UTC) sent, opened and clicked, for the chart (opens and clicks by people:
    machine ones are left out, as they are of the rates)."""

    mailing_id: int
    run_id: int | None
    figures: dict[str, int]
    rates: dict[str, float | None]
    skipped: list[ReasonRow] = field(default_factory=list)
    failed: list[ReasonRow] = field(default_factory=list)
    links: list[LinkRow] = field(default_factory=list)
    series: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for point in data["series"]:
            point["hour"] = point["hour"].isoformat()
        return data


FIGURES = ("planned", "queued", "sent", "failed", "skipped", "ambiguous", "delivered", "received", "no_address",
           "opened", "opened_unique", "opened_machine", "opened_human", "clicked", "clicked_unique", "clicked_machine",
           "clicked_human", "unsubscribed", "complained", "bounced_hard", "bounced_soft", "failed_hard", "failed_soft")


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole > 0 else None


def _received(s: dict[str, int]) -> int:
    """Messages that reached a mailbox: the delivery reports when the provider sends them, else
    those sent less those that hard-bounced afterwards (SMTP relays report failures, not deliveries)."""
    return s["delivered"] if s["delivered"] > 0 else max(s["sent"] - s["bounced_hard"], 0)


def _label(reason: str) -> str:
    try:
        return str(Reason(reason).label)
    except ValueError:
        return reason.replace("_", " ").capitalize()


SERIES_METRICS = ("sent", "opened", "clicked", "opened_machine", "clicked_machine")


def _report_sums(stats: QuerySet[MailingStat]) -> tuple[dict[str, int], list[tuple[int, int]], list[tuple[datetime, str, int]]]:
    """The three sums a report shows, in one statement (three grouped SELECTs under UNION ALL,
    each over the counters' mailing index): per metric (link clicks aside), per link of
    `link_clicked`, and per hour of the chart's metrics. Rows tell themselves apart: a link row
    has a link, a chart row an hour (never NULL in the table), a metric row neither."""
    no_link, no_hour = Cast(Value(None), IntegerField()), Cast(Value(None), DateTimeField())
    per_metric = (stats.exclude(metric="link_clicked").annotate(link=no_link, hour=no_hour)
                  .values_list("metric", "link", "hour").annotate(n=Sum("delta")).order_by())
    per_link = (stats.filter(metric="link_clicked", link_id__isnull=False).annotate(hour=no_hour)
                .values_list("metric", "link_id", "hour").annotate(n=Sum("delta")).order_by())
    per_hour = (stats.filter(metric__in=SERIES_METRICS).annotate(link=no_link)
                .values_list("metric", "link", "bucket").annotate(n=Sum("delta")).order_by())
    sums: dict[str, int] = defaultdict(int)
    clicks: list[tuple[int, int]] = []
    series: list[tuple[datetime, str, int]] = []
    for metric, link_id, bucket, n in per_metric.union(per_link, per_hour, all=True):
        if bucket is not None:
            series.append((bucket, metric, int(n or 0)))
        elif link_id is not None:
            clicks.append((link_id, int(n or 0)))
        else:
            sums[metric] = int(n or 0)
    return sums, clicks, series


def mailing_report(*, mailing: Mailing, run: Run | None = None) -> Report:
    """The report of a mailing, or of one of its runs: one statement of sums over the counters
    (`_report_sums`), one for the runs' exclusions and one for the clicked links' URLs."""
    from history.models import Link

    stats = MailingStat.objects.filter(mailing_id=mailing.pk)
    runs = Run.objects.filter(mailing=mailing)
    if run is not None:
        stats, runs = stats.filter(run_id=run.pk), runs.filter(pk=run.pk)
    s, clicks, series = _report_sums(stats)
    s["no_address"] = sum(int((e or {}).get("no_address", 0)) for e in runs.values_list("exclusions", flat=True))
    terminal = sum(s[m] for m in TERMINAL_METRICS)
    s["queued"] = max(s["planned"] - terminal, 0)
    s["received"] = _received(s)
    s["opened_human"] = s["opened"] - s["opened_machine"]
    s["clicked_human"] = s["clicked"] - s["clicked_machine"]
    s["failed_hard"] = s["failed:hard_bounce"]
    s["failed_soft"] = s["failed:soft_bounce"]
    figures = {name: s[name] for name in FIGURES}
    skipped = sorted((ReasonRow(m.split(":", 1)[1], _label(m.split(":", 1)[1]), n)
                      for m, n in s.items() if m.startswith("skipped:") and n), key=lambda r: (-r.count, r.reason))
    failed = sorted((ReasonRow(m.split(":", 1)[1], _label(m.split(":", 1)[1]), n)
                     for m, n in s.items() if m.startswith("failed:") and n), key=lambda r: (-r.count, r.reason))
    received = s["received"]
    rates = {
        "delivery": _pct(received, s["sent"]),
        "open": _pct(s["opened_unique"], received),
        "click": _pct(s["clicked_unique"], received),
        "click_to_open": _pct(s["clicked_unique"], s["opened_unique"]),
        "unsubscribe": _pct(s["unsubscribed"], received),
        "complaint": _pct(s["complained"], received),
        "bounce": _pct(s["bounced_hard"] + s["bounced_soft"], s["sent"]),
        "hard_bounce": _pct(s["bounced_hard"], s["sent"]),
    }
    clicks = [(lid, n) for lid, n in clicks if n]
    urls = dict(Link.objects.filter(account_id=mailing.account_id, pk__in=[c[0] for c in clicks])
                .values_list("id", "url")) if clicks else {}
    links = sorted((LinkRow(lid, urls.get(lid, ""), n) for lid, n in clicks), key=lambda r: (-r.clicks, r.link_id))
    points: dict[datetime, dict[str, Any]] = {}
    for bucket, metric, n in series:
        point = points.setdefault(bucket, {"hour": bucket, "sent": 0, "opened": 0, "clicked": 0})
        if metric.endswith("_machine"):  # the chart shows people, like the rates
            metric, n = metric.removesuffix("_machine"), -n
        point[metric] += n
    return Report(mailing_id=mailing.pk, run_id=run.pk if run else None, figures=figures, rates=rates, skipped=skipped,
                  failed=failed, links=links, series=[points[b] for b in sorted(points)])


def run_progress(*, run: Run, now: datetime | None = None) -> dict[str, Any]:
    """A run's progress from its counters (one query): planned, sent, failed, skipped, ambiguous,
    done (their sum), queued (the rest), percent, per_minute (messages handled a minute since
    planning, None before), state and finished."""
    now = now or timezone.now()
    s: dict[str, int] = defaultdict(int)
    for metric, n in (MailingStat.objects.filter(run_id=run.pk, metric__in=("planned", *TERMINAL_METRICS))
                      .values_list("metric").annotate(n=Sum("delta")).order_by()):
        s[metric] = int(n or 0)
    planned = max(s["planned"], run.planned)
    done = sum(s[m] for m in TERMINAL_METRICS)
    started = run.planned_at or run.created_at
    minutes = ((run.finished_at or now) - started).total_seconds() / 60 if started else 0
    handled = s["sent"] + s["failed"] + s["ambiguous"]
    return {
        "run_id": run.pk, "state": run.state, "finished": run.state in Run.FINISHED_STATES, "planned": planned,
        "sent": s["sent"], "failed": s["failed"], "skipped": s["skipped"], "ambiguous": s["ambiguous"], "done": done,
        "queued": max(planned - done, 0), "percent": round(100.0 * done / planned, 1) if planned else (
            100.0 if run.state in Run.FINISHED_STATES else 0.0),
        "per_minute": round(handled / minutes, 1) if minutes > 0.05 and handled else None,
    }


# --- the recipient log ----------------------------------------------------------------------------------


@dataclass
class LogPage:
    """A page of the recipient log: `rows` (LedgerEntry objects, `explanation` set on each) and
    `next_after`, the cursor of the next page (None on the last)."""

    rows: list[LedgerEntry]
    next_after: int | None


def recipient_log_query(*, mailing: Mailing, run: Run | None = None, status: str | None = None,
                        reason: str | None = None, q: str = "") -> QuerySet[LedgerEntry]:
    """The mailing's ledger rows with the log's filters, by id. `q`: an address (exact when it
    holds "@" or starts with "+", else a prefix), or a profile id (#123 or digits)."""
    run_ids = [run.pk] if run is not None else list(Run.objects.filter(mailing=mailing).values_list("pk", flat=True))
    qs = LedgerEntry.objects.filter(run_id__in=run_ids, account_id=mailing.account_id)
    if status:
        qs = qs.filter(status=status)
    if reason:
        qs = qs.filter(reason=reason)
    text = q.strip()[:320]
    if text:
        digits = text.lstrip("#")
        if digits.isdigit() and not text.startswith("+"):
            qs = qs.filter(profile_id=int(digits))
        elif "@" in text or text.startswith("+"):
            qs = qs.filter(address=text.lower() if "@" in text else text)
        else:
            qs = qs.filter(address__startswith=text.lower())
    return qs.order_by("id")


def recipient_log(*, mailing: Mailing, run: Run | None = None, status: str | None = None, reason: str | None = None,
                  q: str = "", after: int = 0, limit: int = 50) -> LogPage:
    """One page of the recipient log (keyset: rows with id > `after`), each row explained."""
    limit = max(1, min(int(limit), 500))
    qs = recipient_log_query(mailing=mailing, run=run, status=status, reason=reason, q=q)
    rows = list(qs.filter(id__gt=max(int(after), 0))[:limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    explain_rows(rows, tz=_account_tz(mailing))
    return LogPage(rows=rows, next_after=rows[-1].pk if more and rows else None)


def _account_tz(mailing: Mailing) -> str:
    return mailing.account.timezone or "UTC"  # cached on the mailing after the first read


def _when(value: datetime | None, *, date_only: bool = False) -> str:
    if value is None:
        return ""
    local = timezone.localtime(value)
    if date_only:
        return date_format(local, "j M")
    if local.date() == timezone.localtime().date():
        return date_format(local, "H:i")
    return date_format(local, "j M H:i")


_VIA = {
    "link": "from a message's link", "one-click": "with the one-click unsubscribe button", "preferences":
    "on the preference page", "api": "through the API", "ui": "by a team member", "form": "on a form",
    "bounce": "after a hard bounce", "complaint": "after a spam complaint", "mailto": "by e-mail (List-Unsubscribe)",
    "provider": "the provider said the address is gone", "schedule": "by the scheduler",
}


def _via(source: str) -> str:
    if source.startswith("import"):
        return "by an import"
    return _VIA.get(source, f"via {source}" if source else "")


_STATUS_REASONS = {Reason.UNSUBSCRIBED: "unsubscribed", Reason.BOUNCED: "bounced", Reason.COMPLAINED: "complained",
                   Reason.SUSPENDED: "suspended", Reason.BLOCKED: "blocked", Reason.UNCONFIRMED: "unconfirmed"}


def explain_rows(rows: Sequence[LedgerEntry], *, tz: str | None = None, clicked_urls: dict[int, str] | None = None) -> None:
    """Set `row.explanation` on each row: one sentence saying what happened to it and why
    ("Skipped: unsubscribed on 3 Nov (from a message's link)", "Capped: at most 3 in 7 days per
    recipient (account policy)", "Sent 12:03, opened 12:10, clicked 'https://…'"), times in `tz`
    (the account's timezone; default the active one). One query for the consent records behind
    skips by subscription status."""
    from resources.models import ConsentRecord

    status_rows = [r for r in rows if r.status == Status.SKIPPED and r.reason in _STATUS_REASONS]
    changes: dict[int, list[ConsentRecord]] = defaultdict(list)
    if status_rows:
        # By profile first: the consent ledger's index (its subscription column has none).
        for rec in (ConsentRecord.objects.filter(account_id=status_rows[0].account_id,
                                                 profile_id__in={r.profile_id for r in status_rows},
                                                 subscription_id__in={r.subscription_id for r in status_rows},
                                                 action=ConsentRecord.Action.STATUS)
                    .only("subscription_id", "new_status", "source", "created_at").order_by("created_at", "id")):
            changes[rec.subscription_id].append(rec)
    with timezone.override(tz or timezone.get_current_timezone()):
        for r in rows:
            r.explanation = _sentence(r, changes.get(r.subscription_id, []), (clicked_urls or {}).get(r.pk, ""))


def _sentence(r: LedgerEntry, changes: list[Any], clicked_url: str) -> str:
    if r.status == Status.SKIPPED:
        if r.reason == Reason.CAPPED:
            return f"Capped: {r.detail}" if r.detail else "Capped: the frequency cap was reached"
        text = f"Skipped: {_label(r.reason).lower()}" if r.reason else "Skipped"
        status = _STATUS_REASONS.get(r.reason)
        if status:
            before = [c for c in changes if c.new_status == status and c.created_at <= (r.updated_at or timezone.now())]
            if before:
                last = before[-1]
                how = _via(last.source)
                text = f"Skipped: {status} on {_when(last.created_at, date_only=True)}" + (f" ({how})" if how else "")
        return text + (f" — {r.detail}" if r.detail and r.reason != Reason.CAPPED else "")
    if r.status == Status.FAILED:
        return f"Failed: {_label(r.reason).lower() if r.reason else 'not sent'}" + (f" — {r.detail}" if r.detail else "")
    if r.status == Status.AMBIGUOUS:
        return "Unknown: the connection was lost after the message was handed over; not sent again"
    if r.status in (Status.QUEUED, Status.SENDING):
        if r.not_before and r.not_before > timezone.now():
            return f"Waiting: goes out after {_when(r.not_before)}"
        return "Sending now" if r.status == Status.SENDING else "Queued"
    parts = [f"Sent {_when(r.sent_at)}" if r.sent_at else "Sent"]
    if r.delivered_at:
        parts.append(f"delivered {_when(r.delivered_at)}")
    if r.opened_at:
        parts.append(f"opened {_when(r.opened_at)}")
    if r.clicked_at:
        parts.append(f"clicked '{clicked_url}'" if clicked_url else f"clicked {_when(r.clicked_at)}")
    if r.bounced_at:
        parts.append(f"bounced {_when(r.bounced_at)}")
    return ", ".join(parts)


@dataclass
class Explanation:
    """One line of "why did (or didn't) this person get it": a ledger row (`entry`, None when
    the profile has none) and the sentence."""

    sentence: str
    entry: LedgerEntry | None = None
    run: Run | None = None


def recipient_explain(*, mailing: Mailing, profile_id: int) -> list[Explanation]:
    """Why the profile did or did not get this mailing: a line per ledger row of it in the mailing
    (newest run first), or, with none, the reason it has none (unknown profile, the mailing has
    not run, not in the audience, no subscription on the channel, joined after planning)."""
    from history.catalogue import type_id
    from history.models import Event, Link
    from profiles.models import Profile
    from resources.models import Subscription

    runs = {r.pk: r for r in Run.objects.filter(mailing=mailing)}
    rows = list(LedgerEntry.objects.filter(profile_id=profile_id, account_id=mailing.account_id, run_id__in=list(runs))
                .order_by("-run_id", "id"))
    if rows:
        clicks = (Event.objects.filter(account_id=mailing.account_id, profile_id=profile_id, type_id=type_id("message.clicked"),
                                       ledger_id__in=[r.pk for r in rows], link__isnull=False, machine=False)
                  .order_by("occurred_at").values_list("ledger_id", "link_id"))
        first: dict[int, int] = {}
        for lid, link_id in clicks:
            first.setdefault(lid, link_id)
        urls = dict(Link.objects.filter(pk__in=set(first.values())).values_list("id", "url"))
        explain_rows(rows, tz=_account_tz(mailing), clicked_urls={lid: urls.get(link, "") for lid, link in first.items()})
        return [Explanation(r.explanation, r, runs.get(r.run_id)) for r in rows]
    profile = Profile.objects.filter(pk=profile_id, account_id=mailing.account_id, database_id=mailing.database_id).first()
    if profile is None:
        return [Explanation("No such profile in this mailing's database (it may have been erased).")]
    if not runs:
        return [Explanation("The mailing has not been sent yet: nobody has a message from it.")]
    if not _in_audience(mailing, profile_id):
        return [Explanation("Not in the audience: the profile is not in the mailing's segments (or is in an excluded one).")]
    subs = Subscription.objects.filter(profile_id=profile_id, resource_id=mailing.resource_id, channel=mailing.channel)
    if not subs.exists():
        return [Explanation(f"No address on the channel: no {mailing.get_channel_display()} subscription to "
                            f"{mailing.resource.name}.")]
    return [Explanation("In the audience now, but not when the mailing was planned (subscribed or joined the audience "
                        "later).")]


def _in_audience(mailing: Mailing, profile_id: int) -> bool:
    from segments.selectors import audience

    if mailing.audience != Mailing.Audience.SEGMENTS:
        return True
    try:
        qs = audience(database=mailing.database, include=list(mailing.include_segments.all()),
                      exclude=list(mailing.exclude_segments.all()))
    except Exception:  # a broken or deleted segment: say what is known, not a server error
        return False
    return qs.filter(pk=profile_id).exists()


# --- the calendar -----------------------------------------------------------------------------------------


@dataclass
class CalendarEntry:
    """A mailing on the calendar: `kind` "scheduled" (a broadcast's time, a regular mailing's
    coming slot) or "run" (a run that started: `run` set, with its state)."""

    when: datetime
    mailing: Mailing
    kind: str
    run: Run | None = None

    @property
    def label(self) -> str:
        return self.mailing.name


MAX_SLOTS = 200  # per regular mailing and range: an hourly schedule over a month stays readable


def mailing_calendar(*, account: Account, start: datetime, end: datetime) -> list[CalendarEntry]:
    """Scheduled and sent mailings in [start, end), by time: runs that started in the range
    (broadcast and regular mailings; trigger mailings send all day and are left out), scheduled
    broadcasts at their time, and the coming slots of scheduled regular mailings."""
    from mailings.windows import regular_slots

    entries: list[CalendarEntry] = []
    runs = (Run.objects.for_account(account).filter(scheduled_for__gte=start, scheduled_for__lt=end)
            .exclude(mailing__kind=Mailing.Kind.TRIGGER).select_related("mailing"))
    entries += [CalendarEntry(r.scheduled_for, r.mailing, "run", r) for r in runs]
    scheduled = Mailing.objects.for_account(account).filter(state=Mailing.State.SCHEDULED).filter(
        Q(kind=Mailing.Kind.REGULAR) | Q(kind=Mailing.Kind.BROADCAST, next_run_at__gte=start, next_run_at__lt=end))
    now = timezone.now()
    for m in scheduled:
        if m.kind == Mailing.Kind.BROADCAST:
            entries.append(CalendarEntry(m.next_run_at, m, "scheduled"))
            continue
        after = max(start, now) - timedelta(microseconds=1)
        try:
            slots = regular_slots(m.schedule or {}, account.tzinfo, after, end - timedelta(microseconds=1))
            for i, (_, instant) in enumerate(slots):
                if i >= MAX_SLOTS:
                    break
                entries.append(CalendarEntry(instant, m, "scheduled"))
        except (ValueError, KeyError, TypeError):  # a schedule the wizard would refuse: nothing to show
            continue
    entries.sort(key=lambda e: (e.when, e.mailing.pk))
    return entries
