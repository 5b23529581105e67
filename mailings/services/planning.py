"""Planning a run: its ledger rows in ONE set-based INSERT .. SELECT, and the audience preview
(the same SELECT, counted, nothing written).

One row per subscription of the mailing's resource on its channel held by an audience profile
(the whole database's subscribers, or the profiles in the include segments and in none of the
exclude segments, dynamic segments evaluated at that moment). Whether a row may be sent is
decided in SQL, in this order (the first that applies is the row's skip reason):

  1. the subscription's status is not `subscribed` -> that status (unsubscribed, unconfirmed,
     suspended, bounced, complained, blocked); a confirmation trigger may go to `unconfirmed`;
  2. the address (e-mail address or domain, phone) is on the account's suppression list -> suppressed;
  3. the subscriber opted out of one of the mailing's categories -> opted_out;
  4. the recipient reached the frequency cap (policies.capped_sql) -> capped, with the rule as detail.

Audience profiles with no subscription on the channel get no row: counted once, in
`Run.exclusions["no_address"]`. Then `not_before` is set for local-time sending and send windows
with one UPDATE per distinct send instant (the distinct profile timezones are few; the rows are
never looped over in Python), the counters get their deltas, the run goes to `sending` and the
dispatcher is kicked after commit.

PostgreSQL and SQLite differ in two places only: the category overlap (jsonb_exists_any against
json_each) and the e-mail domain of an address (split_part against substr/instr).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from mailings import windows
from mailings.models import LedgerEntry, Mailing, Run
from mailings.services.policies import cap_for, capped_sql
from mailings.services.stats import StatKey, stats_add

log = logging.getLogger(__name__)


@dataclass
class AudiencePreview:
    """What planning the mailing now would do. `audience`: profiles in the audience; `sendable`:
    ledger rows that would be queued; `excluded`: rows that would be skipped, by reason;
    `no_address`: audience profiles with no subscription on the channel; `capped`: the
    `excluded["capped"]` figure; `outside_window`: sendable rows the send window would delay;
    `cap`: the cap's text when one applies; `error`: why nothing can be counted (a broken segment)."""

    audience: int = 0
    sendable: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    no_address: int = 0
    capped: int = 0
    outside_window: int = 0
    cap: str = ""
    error: str = ""

    @property
    def planned(self) -> int:
        return self.sendable + sum(self.excluded.values())


# --- the statement -------------------------------------------------------------------------------


def audience_sql(mailing: Mailing, *, now: datetime) -> tuple[str, list[Any]] | None:
    """SQL selecting the profile ids of a segments audience (None: the whole database). Raises
    segments' SegmentError / SegmentBroken when a segment cannot be used."""
    if mailing.audience != Mailing.Audience.SEGMENTS:
        return None
    from segments.selectors import audience, member_ids_sql

    include = list(mailing.include_segments.all())
    exclude = list(mailing.exclude_segments.all())
    return member_ids_sql(audience(database=mailing.database, include=include, exclude=exclude, now=now))


def suppressed_sql(channel: str, account_id: int, *, alias: str = "s") -> tuple[str, list[Any]]:
    """SQL that is true when one of the account's suppressions covers the subscription's (alias
    `alias`) address: the address itself or its e-mail domain, or the phone number; never for push
    and Telegram. With its params. The planner's skip reason and the claim-time re-check share it,
    so both apply the same rule."""
    s = alias
    supp = "SELECT z.value FROM resources_suppression z WHERE z.account_id = %s AND z.kind = %s"
    if channel == "email":
        domain = (f"lower(split_part({s}.address, '@', -1))" if connection.vendor == "postgresql"
                  else f"lower(substr({s}.address, instr({s}.address, '@') + 1))")
        return f"({s}.address IN ({supp}) OR {domain} IN ({supp}))", [account_id, "email", account_id, "domain"]
    if channel == "sms":
        return f"({s}.address IN ({supp}))", [account_id, "phone"]
    return "(1 = 0)", []


def skip_reason_sql(mailing: Mailing, *, run_id: int | None, now: datetime, alias: str = "s") -> tuple[str, list[Any], str]:
    """The CASE expression giving a subscription row's (alias `alias`) skip reason, NULL when it
    may be sent, with its params and the cap's text ("" without a cap). Shared with the trigger
    path, which plans rows one event at a time with the same rules."""
    s = alias
    whens: list[str] = []
    params: list[Any] = []
    if mailing.is_confirmation:
        whens.append(f"WHEN {s}.status NOT IN ('subscribed', 'unconfirmed') THEN {s}.status")
    else:
        whens.append(f"WHEN {s}.status <> 'subscribed' THEN {s}.status")
    if mailing.channel in ("email", "sms"):
        suppressed, supp_params = suppressed_sql(mailing.channel, mailing.account_id, alias=s)
        whens.append(f"WHEN {suppressed} THEN 'suppressed'")
        params += supp_params
    categories = [str(c) for c in (mailing.categories or [])]
    if categories:
        if connection.vendor == "postgresql":
            whens.append(f"WHEN jsonb_exists_any({s}.opted_out, %s::text[]) THEN 'opted_out'")
            params.append(categories)
        else:
            marks = ", ".join(["%s"] * len(categories))
            whens.append(f"WHEN EXISTS (SELECT 1 FROM json_each({s}.opted_out) j "  # noqa: S608 (placeholders)
                         f"WHERE j.value IN ({marks})) THEN 'opted_out'")
            params += categories
    cap_text = ""
    cap = cap_for(mailing)
    if cap is not None:
        cap_sql = capped_sql(cap, mailing=mailing, run_id=run_id, now=now, alias=s)
        whens.append(f"WHEN {cap_sql.sql} THEN 'capped'")
        params += cap_sql.params
        cap_text = cap_sql.text
    return "CASE " + " ".join(whens) + " END", params, cap_text


Members = tuple[str, list[Any]] | None


def _select(mailing: Mailing, members: Members, *, run_id: int | None, now: datetime) -> tuple[str, list[Any], str]:
    """SELECT id, profile_id, channel, address, reason of the plan's subscriptions (`members`:
    audience_sql's answer)."""
    reason, reason_params, cap_text = skip_reason_sql(mailing, run_id=run_id, now=now)
    sql = (f"SELECT s.id, s.profile_id, s.channel, s.address, {reason} AS reason "  # noqa: S608 (constants, %s)
           "FROM resources_subscription s WHERE s.account_id = %s AND s.resource_id = %s AND s.channel = %s")
    params = [*reason_params, mailing.account_id, mailing.resource_id, mailing.channel]
    if members is not None:
        sql += f" AND s.profile_id IN ({members[0]})"
        params += members[1]
    return sql, params, cap_text


def _no_address(mailing: Mailing, members: Members) -> tuple[int, int]:
    """(audience profiles, those with no subscription on the channel): one COUNT. The whole
    database's audience is the resource's subscribers (on any channel)."""
    on_channel = ("SELECT s2.profile_id FROM resources_subscription s2 "
                  "WHERE s2.account_id = %s AND s2.resource_id = %s AND s2.channel = %s")
    channel_params = [mailing.account_id, mailing.resource_id, mailing.channel]
    if members is None:
        sql = (f"SELECT COUNT(DISTINCT s.profile_id), COUNT(DISTINCT CASE WHEN s.profile_id NOT IN ({on_channel}) "  # noqa: S608
               "THEN s.profile_id END) FROM resources_subscription s WHERE s.account_id = %s AND s.resource_id = %s")
        params = [*channel_params, mailing.account_id, mailing.resource_id]
    else:
        sql = (f"SELECT COUNT(*), COUNT(CASE WHEN p.id NOT IN ({on_channel}) THEN 1 END) "  # noqa: S608
               f"FROM profiles_profile p WHERE p.id IN ({members[0]})")
        params = [*channel_params, *members[1]]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        audience, missing = cur.fetchone()
    return int(audience or 0), int(missing or 0)


# --- send instants: local time, send windows ------------------------------------------------------


def local_schedule(mailing: Mailing) -> tuple[date, time] | None:
    """(date, wall time) of a broadcast sent at a local time in each recipient's timezone."""
    schedule = mailing.schedule or {}
    if mailing.kind == Mailing.Kind.BROADCAST and schedule.get("mode") == "local":
        return date.fromisoformat(schedule["date"]), time.fromisoformat(schedule["time"])
    return None


def send_instants(mailing: Mailing, timezones: list[str], *, now: datetime,
                  use_window: bool = True) -> dict[str, datetime | None]:
    """For each distinct profile timezone value, when its rows may go: None for "now", else the
    UTC instant (the local send time, moved to the send window's next opening when outside it;
    `use_window=False`: the local send time alone)."""
    account_tz = mailing.account.timezone or "UTC"
    local = local_schedule(mailing)
    buckets = windows.local_send_buckets(local[0], local[1], timezones, account_tz) if local else {}
    window = windows.SendWindow.from_json(mailing.send_window) if mailing.send_window and use_window else None
    out: dict[str, datetime | None] = {}
    for value in timezones:
        base = buckets.get(value)
        when: datetime | None = base if base is not None and base > now else None
        if window is not None:
            start = when or now
            opens = window.next_allowed(start, window.zone_for(value, account_tz))
            if opens > start:
                when = opens
        out[value] = when
    return out


def _queued_timezones(run: Run) -> dict[str, int]:
    with connection.cursor() as cur:
        cur.execute("SELECT p.timezone, COUNT(*) FROM mailings_ledgerentry l JOIN profiles_profile p ON p.id = l.profile_id "
                    "WHERE l.run_id = %s AND l.status = 'queued' GROUP BY p.timezone", [run.pk])
        return {tz or "": n for tz, n in cur.fetchall()}


def _apply_instants(run: Run, mailing: Mailing, *, now: datetime) -> int:
    """Set not_before on the run's queued rows: one UPDATE per distinct instant. Returns the rows delayed."""
    if not (local_schedule(mailing) or mailing.send_window):
        return 0
    counts = _queued_timezones(run)
    groups: dict[datetime, list[str]] = defaultdict(list)
    for value, when in send_instants(mailing, list(counts), now=now).items():
        if when is not None:
            groups[when].append(value)
    delayed = 0
    for when, values in groups.items():
        marks = ", ".join(["%s"] * len(values))
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE mailings_ledgerentry SET not_before = %s WHERE run_id = %s AND status = 'queued' "  # noqa: S608
                f"AND profile_id IN (SELECT p.id FROM profiles_profile p WHERE p.database_id = %s AND p.timezone IN ({marks}))",
                [when, run.pk, mailing.database_id, *values])
            delayed += cur.rowcount
    return delayed


# --- run_plan -------------------------------------------------------------------------------------


_INSERT = """
INSERT INTO mailings_ledgerentry (account_id, mailing_id, run_id, subscription_id, profile_id, channel, address,
                                  status, reason, detail, attempts, message_id, created_at, updated_at)
SELECT %s, %s, %s, x.id, x.profile_id, x.channel, x.address,
       CASE WHEN x.reason IS NULL THEN 'queued' ELSE 'skipped' END, COALESCE(x.reason, ''),
       CASE WHEN x.reason = 'capped' THEN %s ELSE '' END, 0, '', %s, %s
FROM ({select}) x WHERE 1 = 1
ON CONFLICT DO NOTHING"""  # "WHERE": SQLite needs it to read ON CONFLICT as the upsert clause


def _fail(run: Run, mailing: Mailing, error: str, now: datetime) -> Run:
    """A run that cannot be planned (a segment broke after launch): failed, said on the mailing;
    a broadcast has nothing more to do, a regular mailing waits for its next slot."""
    run.state, run.error, run.finished_at = Run.State.FAILED, error[:2000], now
    run.save(update_fields=["state", "error", "finished_at"])
    mailing.last_error = f"Run {run.slot} could not be planned: {error}"[:2000]
    fields = ["last_error", "updated_at"]
    if mailing.kind == Mailing.Kind.BROADCAST and mailing.state == Mailing.State.SENDING:
        mailing.state, mailing.finished_at = Mailing.State.DONE, now
        fields += ["state", "finished_at"]
    mailing.save(update_fields=fields)
    return run


def run_plan(*, run_id: int, now: datetime | None = None) -> Run:
    """Plan the run: its ledger rows in one INSERT .. SELECT, no_address counted, not_before set
    (local time, send window), counters added, run (and a scheduled mailing) -> sending, the
    dispatcher kicked after commit. Idempotent: a run no longer `planning` is returned as it is
    (the run row is locked, so two tasks plan it once; the ledger's unique constraint and ON
    CONFLICT DO NOTHING make a repeated INSERT harmless anyway). A paused mailing's run is planned
    and left paused; a cancelled mailing's run is cancelled unplanned. Trigger runs are not
    planned (their rows come with events). A segment that broke since launch fails the run."""
    from segments.conditions import SegmentError

    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("mailing", "mailing__account").get(pk=run_id)
        mailing = run.mailing
        if run.state != Run.State.PLANNING:
            return run
        if mailing.kind == Mailing.Kind.TRIGGER:
            run.state = Run.State.SENDING
            run.save(update_fields=["state"])
            return run
        if mailing.state == Mailing.State.CANCELLED:
            run.state, run.finished_at = Run.State.CANCELLED, now
            run.save(update_fields=["state", "finished_at"])
            return run
        try:
            members = audience_sql(mailing, now=now)
            select, params, cap_text = _select(mailing, members, run_id=run.pk, now=now)
            audience, no_address = _no_address(mailing, members)
        except SegmentError as exc:
            return _fail(run, mailing, str(exc), now)
        with connection.cursor() as cur:
            cur.execute(_INSERT.format(select=select),
                        [run.account_id, mailing.pk, run.pk, cap_text, now, now, *params])
            cur.execute("SELECT status, reason, COUNT(*) FROM mailings_ledgerentry WHERE run_id = %s "
                        "GROUP BY status, reason", [run.pk])
            by_status = cur.fetchall()
        delayed = _apply_instants(run, mailing, now=now)
        planned = sum(n for _, _, n in by_status)
        deltas: Counter[StatKey] = Counter()
        key = (run.account_id, mailing.pk, run.pk)
        deltas[(*key, "planned", None)] += planned
        for status, reason, n in by_status:
            if status == LedgerEntry.Status.SKIPPED:
                deltas[(*key, "skipped", None)] += n
                deltas[(*key, f"skipped:{reason}", None)] += n
            elif status == LedgerEntry.Status.QUEUED:
                deltas[(*key, "queued", None)] += n
        stats_add(deltas, when=now)
        run.planned = planned
        run.exclusions = {**(run.exclusions or {}), "no_address": no_address}
        run.planned_at = now
        run.state = Run.State.PAUSED if mailing.state == Mailing.State.PAUSED else Run.State.SENDING
        run.save(update_fields=["planned", "exclusions", "planned_at", "state"])
        if mailing.state == Mailing.State.SCHEDULED:
            Mailing.objects.filter(pk=mailing.pk, state=Mailing.State.SCHEDULED).update(
                state=Mailing.State.SENDING, launched_at=mailing.launched_at or now, updated_at=now)
        log.info("mailings: planned run %s of mailing %s: %s rows (audience %s, no address %s, delayed %s)",
                 run.pk, mailing.pk, planned, audience, no_address, delayed)
        if run.state == Run.State.SENDING:
            transaction.on_commit(lambda: kick(run.pk))
    if planned >= ANALYZE_AFTER and connection.vendor == "postgresql":
        # A big plan changes the ledger's statistics at once, before autovacuum notices: the batches
        # that follow within a second should be planned on the new figures.
        with connection.cursor() as cur:
            cur.execute("ANALYZE mailings_ledgerentry")
    return run


ANALYZE_AFTER = 20_000  # ledger rows a plan must add to refresh the table's statistics


def kick(run_id: int) -> None:
    """Hand the run's due rows out now. A failure here loses nothing: the rows are in the
    database and the tick's dispatch_tick hands them out (so it is logged, not raised)."""
    try:
        from mailings.services.dispatch import run_kick

        run_kick(run_id=run_id)
    except Exception:  # the tick retries; the plan is committed
        log.warning("mailings: could not kick run %s; the tick will", run_id, exc_info=True)


# --- the preview ----------------------------------------------------------------------------------


def audience_preview(*, mailing: Mailing, now: datetime | None = None) -> AudiencePreview:
    """What planning `mailing` now would do, as counts, nothing written: the plan's own SELECT
    grouped by skip reason, the no_address COUNT, and the sendable rows per timezone against the
    send window. A broken segment gives a preview with `error` set."""
    from segments.conditions import SegmentError

    now = now or timezone.now()
    try:
        members = audience_sql(mailing, now=now)
        select, params, cap_text = _select(mailing, members, run_id=None, now=now)
        audience, no_address = _no_address(mailing, members)
    except SegmentError as exc:
        return AudiencePreview(error=str(exc))
    with connection.cursor() as cur:
        cur.execute(f"SELECT x.reason, COUNT(*) FROM ({select}) x GROUP BY x.reason", params)  # noqa: S608
        by_reason = {reason: int(n) for reason, n in cur.fetchall()}
    preview = AudiencePreview(audience=audience, no_address=no_address, cap=cap_text,
                              sendable=by_reason.pop(None, 0), excluded=dict(sorted(by_reason.items())))
    preview.capped = preview.excluded.get("capped", 0)
    if mailing.send_window and preview.sendable:
        with connection.cursor() as cur:
            cur.execute(f"SELECT p.timezone, COUNT(*) FROM ({select}) x JOIN profiles_profile p ON p.id = x.profile_id "  # noqa: S608
                        "WHERE x.reason IS NULL GROUP BY p.timezone", params)
            counts = {tz or "": int(n) for tz, n in cur.fetchall()}
        base = send_instants(mailing, list(counts), now=now, use_window=False)
        final = send_instants(mailing, list(counts), now=now)
        preview.outside_window = sum(n for value, n in counts.items() if final[value] != base[value])
    return preview

