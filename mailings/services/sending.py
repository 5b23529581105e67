"""One dispatch batch's rows, from claimed ledger ids to messages and back to ledger outcomes.

`mailings.services.dispatch.batch_send` drives it: claim (there), `load_rows` (ONE query: the
rows, their subscriptions, profiles and the suppression check), `decide_skips` (consent at claim
time, in Python over what that query returned), `Builder.build` per message (render with the
run's frozen, per-worker compiled version; tracking links; List-Unsubscribe; compose + DKIM), and
`outcomes_write` (ONE UPDATE for every row of a chunk, the message.sent events and the counter
deltas, in one short transaction).

Nothing here holds a transaction open while a message is on the wire: the dispatch stamps a
chunk's `wire_at` in its own statement, sends, then writes the outcomes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any

from django.db import connection, transaction

from delivery.backends.base import OutboundMessage
from mailings.models import LedgerEntry, Mailing, Run
from mailings.services.planning import suppressed_sql
from mailings.services.stats import StatKey, stats_add

Status = LedgerEntry.Status
Reason = LedgerEntry.Reason

# Subscription statuses that stop a send, as the ledger's skip reasons (same words).
STATUS_REASONS = {s: s for s in ("unsubscribed", "unconfirmed", "suspended", "bounced", "complained", "blocked")}


def id_filter(column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
    """`column` is one of `ids`: one array parameter on PostgreSQL, a placeholder list on SQLite
    (batches are at most a few thousand ids: far below SQLite's parameter limit)."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(ids)]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# --- loading ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """A claimed ledger row and what the load query found of its subscription and profile."""

    id: int
    attempts: int
    address: str
    data: Any
    message_id: str
    subscription_id: int | None
    sub_status: str
    opted_out: list[str]
    meta: dict[str, Any]
    profile: dict[str, Any] | None  # None: erased
    suppressed: bool

    @property
    def ref(self) -> str:
        return f"L{self.id}"


def load_rows(*, account_id: int, channel: str, ids: Sequence[int]) -> list[Row]:
    """The claimed rows (status sending) with their subscription, profile and whether an account
    suppression (address, e-mail domain, phone) covers the address: ONE query."""
    if not ids:
        return []
    where, params = id_filter("l.id", ids)
    suppressed, supp_params = suppressed_sql(channel, account_id, alias="s")
    sql = (
        "SELECT l.id, l.attempts, l.address, l.data, l.message_id, s.id, s.address, s.status, s.opted_out, s.meta, "  # noqa: S608 (constants and placeholders only)
        "p.id, p.email, p.phone, p.first_name, p.last_name, p.birthday, p.gender, p.timezone, p.data, "
        f"{suppressed} "
        "FROM mailings_ledgerentry l "
        "LEFT JOIN resources_subscription s ON s.id = l.subscription_id "
        "LEFT JOIN profiles_profile p ON p.id = l.profile_id "
        f"WHERE {where} AND l.status = 'sending' ORDER BY l.id"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [*supp_params, *params])
        fetched = cur.fetchall()
    rows: list[Row] = []
    for (lid, attempts, laddr, ldata, mid, sid, saddr, sstatus, opted, meta,
         pid, email, phone, first, last, birthday, gender, tzname, pdata, supp) in fetched:
        if isinstance(birthday, str):
            birthday = date.fromisoformat(birthday)
        profile = None if pid is None else {
            "id": pid, "email": email, "phone": phone, "first_name": first, "last_name": last,
            "birthday": birthday, "gender": gender, "timezone": tzname, "data": _json(pdata) or {},
        }
        rows.append(Row(id=lid, attempts=attempts, address=saddr or laddr, data=_json(ldata), message_id=mid or "",
                        subscription_id=sid, sub_status=sstatus or "", opted_out=list(_json(opted) or []),
                        meta=dict(_json(meta) or {}), profile=profile, suppressed=bool(supp)))
    return rows


def skip_reason(row: Row, mailing: Mailing) -> str:
    """Why this row may not be sent now ("" when it may): consent as it stands at claim time."""
    if row.profile is None:
        return Reason.ERASED
    if row.subscription_id is None:
        return Reason.GONE
    if row.sub_status != "subscribed" and not (row.sub_status == "unconfirmed" and mailing.is_confirmation):
        return STATUS_REASONS.get(row.sub_status, Reason.BLOCKED)
    if row.suppressed:
        return Reason.SUPPRESSED
    if mailing.categories and set(row.opted_out) & set(mailing.categories):
        return Reason.OPTED_OUT
    return ""


# --- outcomes -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What became of one claimed row. status queued: back to the queue (`not_before`), `undo`
    the claim's attempt when it was a throttle deferral, not a try."""

    id: int
    status: str
    reason: str = ""
    detail: str = ""
    message_id: str = ""
    not_before: datetime | None = None
    undo: int = 0
    profile_id: int = 0
    subject: str = ""
    # For FEEDBACK's sync_failures_apply: (ledger_id, code, message, permanent, deactivate).
    failure: tuple[int, int, str, bool, bool] | None = None


@dataclass
class Written:
    """What `outcomes_write` changed: the outcomes of the rows it updated (rows another writer had
    already taken, e.g. the sweeper, are left out)."""

    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


_V_COLS = "v(id, status, reason, detail, message_id, sent_at, not_before, undo)"


def outcomes_write(*, run: Run, mailing: Mailing, outcomes: Sequence[Outcome], now: datetime,
                   template_name: str = "", leases: Sequence[datetime] = ()) -> Written:
    """Write the outcomes of claimed rows in ONE UPDATE (only rows still `sending` under one of
    the batch's `leases`, when given: a terminal status never changes, and a row another worker
    claimed meanwhile is not ours), then the message.sent events and the counter deltas of exactly the
    rows it changed, in one transaction. Returns what it changed."""
    if not outcomes:
        return Written()
    pg = connection.vendor == "postgresql"
    adapt = connection.ops.adapt_datetimefield_value
    sent_at = adapt(now)
    rows = [(o.id, o.status, o.reason, o.detail[:1000], o.message_id[:255], sent_at if o.status == Status.SENT else None,
             adapt(o.not_before) if o.not_before else None, o.undo) for o in outcomes]
    if pg:
        # One array per column (unnest): eight parameters whatever the chunk size, so neither psycopg
        # nor PostgreSQL parses hundreds of placeholders.
        source = ("SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], "
                  "%s::timestamptz[], %s::timestamptz[], %s::int[])")
        params: list[Any] = [list(col) for col in zip(*rows, strict=True)]
    else:
        source = "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
        params = [value for row in rows for value in row]
    t = "mailings_ledgerentry"
    # The ids again as a plain filter: the planner then reads them by primary key instead of
    # joining the VALUES list against a scan of the ledger.
    only, only_params = id_filter(f"{t}.id", [o.id for o in outcomes])
    mine, mine_params = id_filter(f"{t}.lease_until", [adapt(x) for x in leases]) if leases else ("1 = 1", [])
    sql = (
        f"WITH {_V_COLS} AS ({source}) "  # noqa: S608 (placeholders only)
        f"UPDATE {t} SET status = v.status, reason = v.reason, detail = v.detail, "
        f"message_id = CASE WHEN v.message_id = '' THEN {t}.message_id ELSE v.message_id END, "
        f"sent_at = v.sent_at, not_before = v.not_before, attempts = {t}.attempts - v.undo, lease_until = NULL, "
        f"wire_at = CASE WHEN v.status = 'queued' THEN NULL ELSE {t}.wire_at END, updated_at = %s "
        f"FROM v WHERE {t}.id = v.id AND {only} AND {t}.status = 'sending' AND {mine} RETURNING {t}.id"
    )
    by_id = {o.id: o for o in outcomes}
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(sql, [*params, sent_at, *only_params, *mine_params])
            changed = [by_id[r[0]] for r in cur.fetchall()]
        written = Written(sorted(changed, key=lambda o: o.id))
        _events_and_stats(run=run, mailing=mailing, written=written, now=now, template_name=template_name)
    return written


def _events_and_stats(*, run: Run, mailing: Mailing, written: Written, now: datetime, template_name: str) -> None:
    from history.services.platform import PlatformEvent, platform_events_add

    key: Callable[[str], StatKey] = lambda metric: (run.account_id, mailing.pk, run.pk, metric, None)  # noqa: E731
    deltas: Counter[StatKey] = Counter()
    sent: list[PlatformEvent] = []
    for o in written.outcomes:
        if o.status == Status.QUEUED:
            continue  # still to do: no figure changes
        deltas[key(o.status)] += 1
        if o.reason and o.status in (Status.FAILED, Status.SKIPPED):
            deltas[key(f"{o.status}:{o.reason}")] += 1
        if o.status == Status.SENT:
            sent.append(PlatformEvent(
                profile_id=o.profile_id, key=f"ledger:{o.id}:sent", occurred_at=now, channel=mailing.channel,
                resource_id=mailing.resource_id, mailing_id=mailing.pk, run_id=run.pk, ledger_id=o.id,
                properties={"template": template_name[:200], "subject": o.subject[:500]},
            ))
    if sent:
        platform_events_add(account_id=run.account_id, type_name="message.sent", events=sent)
    if deltas:
        stats_add(deltas, when=now)


# --- building -----------------------------------------------------------------------------------


def message_id_of(raw: bytes) -> str:
    """The Message-ID header value of a built e-mail (searched in the header only)."""
    end = raw.find(b"\r\n\r\n")
    head = raw[: end if end >= 0 else len(raw)]
    at = head.find(b"\r\nMessage-ID: ")
    if at < 0:
        return ""
    start = at + len(b"\r\nMessage-ID: ")
    stop = head.find(b"\r\n", start)
    return head[start: stop if stop >= 0 else len(head)].decode("ascii", "replace").strip()


def _open_pixel(html: str, url: str) -> str:
    """The open pixel before the closing body tag (appended when there is none)."""
    tag = f'<img src="{url}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
    at = html.rfind("</body>")
    if at < 0:
        at = html.lower().rfind("</body>")
    return html[:at] + tag + html[at:] if at >= 0 else html + tag


class BuildFailed(Exception):
    """A message that cannot be built: `reason` (render_error | invalid) and the message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Builder:
    """Per-batch message building: the compiled version (cached per worker by content.rendering),
    the DKIM signer (cached per worker by delivery.dkim), the link makers, the plain account and
    resource dicts. `build(row)` -> OutboundMessage; raises BuildFailed."""

    def __init__(self, *, run: Run, mailing: Mailing, sender: Any = None, signer: Any = None) -> None:
        from content.rendering import account_dict, compiled, resource_dict
        from history.tracking import ClickLinks
        from resources.tokens import LinkMaker

        self.run, self.mailing, self.sender, self.signer = run, mailing, sender, signer
        self.channel = mailing.channel
        self.cv = compiled(run.version) if run.version_id else None
        self.clicks = ClickLinks() if (mailing.track_clicks or mailing.track_opens) else None
        self.links = LinkMaker()
        self.account = account_dict(mailing.account)
        self.resource = resource_dict(mailing.resource)
        self.category_keys = [c.get("key") for c in (mailing.resource.categories or []) if isinstance(c, dict)]
        self.confirmation = mailing.is_confirmation
        self.marketing = not mailing.transactional
        self.sent_at = int(time.time())
        self.render_s = 0.0
        self.compose_s = 0.0

    def _claims(self, row: Row) -> Any:
        from history.tracking import Claims

        return Claims(account_id=self.run.account_id, profile_id=row.profile["id"] if row.profile else 0,
                      ledger_id=row.id, mailing_id=self.mailing.pk, run_id=self.run.pk,
                      resource_id=self.mailing.resource_id, channel=self.channel, sent_at=self.sent_at)

    def context(self, row: Row) -> tuple[dict[str, Any], str]:
        """(render context, RFC 8058 one-click URL) of one row, as bench/render/paths.py builds it,
        plus the trigger's data and, for a confirmation mailing, `links.confirm`."""
        from content.rendering import build_context, profile_dict

        assert row.profile is not None and row.subscription_id is not None
        sid, pid = row.subscription_id, row.profile["id"]
        unsub, one_click, prefs = self.links.footer(sid, pid)
        links = {"unsubscribe": unsub, "preferences": prefs}
        if self.confirmation:
            from resources.tokens import confirmation_url

            links["confirm"] = confirmation_url(SimpleNamespace(pk=sid, profile_id=pid))  # type: ignore[arg-type]
        opted_out = row.opted_out
        ctx = build_context(
            account=self.account, profile=profile_dict(row.profile), resource=self.resource,
            subscription={"id": sid, "channel": self.channel, "address": row.address, "status": row.sub_status,
                          "categories": [k for k in self.category_keys if k and k not in opted_out],
                          "opted_out": opted_out},
            links=links, data=row.data if isinstance(row.data, dict) else {},
        )
        return ctx, one_click

    def build(self, row: Row) -> tuple[OutboundMessage, str]:
        """(the message, its subject or title for the history). Raises BuildFailed."""
        from content.rendering import RenderError
        from delivery.compose import compose_email, compose_other
        from delivery.mime import AddressError

        if self.cv is None:
            raise BuildFailed(Reason.RENDER_ERROR, "The run has no template version for this channel.")
        clock = time.perf_counter
        t0 = clock()
        ctx, one_click = self.context(row)
        claims = self._claims(row) if self.clicks is not None else None
        link = self.clicks.for_message(claims) if (claims is not None and self.mailing.track_clicks) else None
        try:
            rendered = self.cv.render(ctx, link=link)
        except RenderError as exc:
            raise BuildFailed(Reason.RENDER_ERROR, str(exc)) from None
        t1 = clock()
        self.render_s += t1 - t0
        parts = rendered.parts
        try:
            if self.channel == "email":
                if self.mailing.track_opens and self.marketing and claims is not None and parts.get("html"):
                    parts["html"] = _open_pixel(parts["html"], self.clicks.open_url(claims))  # type: ignore[union-attr]
                unsub_url = one_click if self.marketing else None
                # A row with a Message-ID is a transactional resend after a lost connection: the same
                # Message-ID as the first time, so a mail client shows one message if both arrive.
                message = compose_email(rendered=rendered, sender=self.sender, to=row.address, ref=row.ref,
                                        unsubscribe_url=unsub_url, signer=self.signer, message_id=row.message_id or None)
                subject = str(parts.get("subject") or "")
            else:
                message = compose_other(self.channel, rendered, to=row.address, ref=row.ref, meta=row.meta)
                subject = str(parts.get("title") or parts.get("text") or "")[:200]
        except (AddressError, ValueError) as exc:
            raise BuildFailed(Reason.INVALID, str(exc) or type(exc).__name__) from None
        self.compose_s += clock() - t1
        return message, subject
