"""API: mailings (issue 8, items 9 and 11).

`{mailing_id}` is resolved through the token's account while the path is validated: another
account's mailing is a 404 whatever was sent. Every token reads (list, detail, preview, report,
recipients); creating, changing, launching, pausing, resuming, cancelling and firing triggers
need the mailings permission (marketers and up); a trigger that upserts profile fields first
also needs the data permission.

A refused write is a 422 whose details name each field (`loc: ["schedule"]`, `["cap",
"max_messages"]`); a refused transition (launching a running mailing, changing a finished one)
is a 409 `conflict`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Header, Query, Router, Status

from accounts.access import Actor
from accounts.permissions import Perm
from cdp.api.auth import require
from cdp.api.errors import ERRORS, ApiError
from cdp.api.pagination import CursorPage, paginate
from cdp.api.types import id_ref
from mailings import selectors
from mailings.api.schemas import (
    MAX_BULK,
    LedgerStatus,
    MailingFilter,
    MailingIn,
    MailingOut,
    MailingPatch,
    PreviewOut,
    RecipientOut,
    ReportOut,
    TriggerBulkIn,
    TriggerBulkOut,
    TriggerIn,
    TriggerOut,
)
from mailings.models import Mailing, Run
from mailings.services import lifecycle, triggers
from mailings.services.errors import MailingError
from profiles.models import Profile, ProfileDatabase

router = Router()

MAILINGS = ["mailings"]
TRIGGERS = ["mailings: triggers"]


def _mailings(account: Any) -> QuerySet[Mailing]:
    return (Mailing.objects.for_account(account).select_related("database", "resource", "account")
            .prefetch_related("include_segments", "exclude_segments", "caps"))


MailingRef = id_ref(Mailing, what="mailing", example=12, queryset=_mailings)


def _trigger_mailings(account: Any) -> QuerySet[Mailing]:
    """What firing a trigger reads: the mailing with its database (and the database's account: the
    profile lookup converts e-mails and phones with the account's region), resource and account in
    one query. No segments or caps: a trigger has no audience, and the cap is read at fire time."""
    return Mailing.objects.for_account(account).select_related("database__account", "resource", "account")


TriggerMailingRef = id_ref(Mailing, what="mailing", example=12, queryset=_trigger_mailings)


# --- errors ---------------------------------------------------------------------------------------


def _loc(field: str) -> list[str | int]:
    if field == "__all__":
        return []
    return [int(p) if p.isdigit() else p for p in re.split(r"\.", field) if p]


def _refused(exc: MailingError, what: str) -> ApiError:
    """A transition refused for the mailing's state is a 409; values that do not fit are a 422."""
    details = [{"loc": _loc(k), "message": v, "type": "conflict" if k == "__all__" else "invalid_value"}
               for k, v in exc.errors.items()]
    summary = "; ".join(v if k == "__all__" else f"{k}: {v}" for k, v in exc.errors.items())
    if set(exc.errors) == {"__all__"}:
        return ApiError(409, f"{what}: {summary.rstrip('.')}.", code="conflict", details=details)
    return ApiError(422, f"{what}: {summary.rstrip('.')}.", details=details)


# --- output ---------------------------------------------------------------------------------------


def _mailing_out(m: Mailing, figures: dict[str, Any], *, problems: bool = False) -> dict[str, Any]:
    cap = next(iter(m.caps.all()), None)
    return {
        "id": m.pk, "name": m.name, "description": m.description, "kind": m.kind, "state": m.state,
        "transactional": m.transactional, "channel": m.channel, "database": m.database.slug,
        "resource": m.resource_id, "sender": m.sender_id, "provider": m.provider_id, "template": m.template_id,
        "audience": m.audience, "include_segments": sorted(s.pk for s in m.include_segments.all()),
        "exclude_segments": sorted(s.pk for s in m.exclude_segments.all()), "categories": list(m.categories or []),
        "schedule": m.schedule or {}, "trigger": m.trigger or {}, "speed_limit": m.speed_limit,
        "send_window": m.send_window, "track_opens": m.track_opens, "track_clicks": m.track_clicks,
        "cap": {"max_messages": cap.max_messages, "days": cap.days, "scope": cap.scope} if cap else None,
        "next_run_at": m.next_run_at, "last_error": m.last_error,
        "figures": figures.get(m.pk) or {"planned": 0, "sent": 0, "opened_unique": 0, "clicked_unique": 0,
                                         "open_rate": None, "click_rate": None},
        "problems": lifecycle.mailing_problems(m) if problems and m.state == Mailing.State.DRAFT else {},
        "created_at": m.created_at, "updated_at": m.updated_at, "launched_at": m.launched_at,
        "finished_at": m.finished_at,
    }


def _one(m: Mailing) -> dict[str, Any]:
    fresh = _mailings(m.account).get(pk=m.pk)
    return _mailing_out(fresh, selectors.list_figures([fresh.pk]), problems=True)


def _values(payload: MailingIn | MailingPatch) -> dict[str, Any]:
    """The keys the client sent, as the lifecycle services take them."""
    return {k: getattr(payload, k) for k in payload.model_fields_set}


# --- list, create, read, change ---------------------------------------------------------------------


@router.get("/mailings", tags=MAILINGS, response={200: CursorPage[MailingOut], **ERRORS},
            summary="List mailings, newest first")
def mailing_list_api(request: HttpRequest, filters: Query[MailingFilter], cursor: str | None = None,
                     limit: int | None = None) -> dict:
    """Each with its key figures (planned, sent, unique opens and clicks, rates), from the counters."""
    require(request, Perm.ACCOUNT_VIEW)
    qs = selectors.mailing_list(account=request.auth.account, state=filters.state, kind=filters.kind, q=filters.q)
    qs = qs.select_related("database").prefetch_related("include_segments", "exclude_segments", "caps")
    page = paginate(qs, cursor=cursor, limit=limit)
    figures = selectors.list_figures([m.pk for m in page["items"]])
    page["items"] = [_mailing_out(m, figures) for m in page["items"]]
    return page


@router.post("/mailings", tags=MAILINGS, response={201: MailingOut, **ERRORS}, summary="Create a draft mailing")
def mailing_create_api(request: HttpRequest, payload: MailingIn) -> Status:
    """Values that can never be right (another account's resource, template or segments, a channel
    the resource lacks, a bad schedule or trigger) are a 422 naming the field. What only stops a
    launch (a template without a version for the channel, an unverified sender) is listed in
    `problems`."""
    require(request, Perm.MAILINGS_EDIT)
    try:
        m = lifecycle.mailing_create(account=request.auth.account, actor=Actor.from_request(request),
                                     values=_values(payload))
    except MailingError as exc:
        raise _refused(exc, "The mailing was not created") from exc
    return Status(201, _one(m))


@router.get("/mailings/{int:mailing_id}", tags=MAILINGS, response={200: MailingOut, **ERRORS}, summary="A mailing")
def mailing_get_api(request: HttpRequest, mailing_id: MailingRef) -> dict:
    require(request, Perm.ACCOUNT_VIEW)
    return _mailing_out(mailing_id, selectors.list_figures([mailing_id.pk]), problems=True)


@router.patch("/mailings/{int:mailing_id}", tags=MAILINGS, response={200: MailingOut, **ERRORS},
              summary="Change a mailing")
def mailing_update_api(request: HttpRequest, mailing_id: MailingRef, payload: MailingPatch) -> dict:
    """Only the keys sent change. Draft, scheduled and paused mailings only (409 otherwise); kind,
    channel, resource and the transactional flag only while a draft."""
    require(request, Perm.MAILINGS_EDIT)
    try:
        m = lifecycle.mailing_update(mailing=mailing_id, actor=Actor.from_request(request), values=_values(payload))
    except MailingError as exc:
        raise _refused(exc, "The mailing was not changed") from exc
    return _one(m)


# --- transitions ------------------------------------------------------------------------------------


def _transition(request: HttpRequest, mailing: Mailing, action: Any, what: str) -> dict:
    require(request, Perm.MAILINGS_EDIT)
    try:
        m = action(mailing=mailing, actor=Actor.from_request(request))
    except MailingError as exc:
        raise _refused(exc, what) from exc
    return _one(m)


@router.post("/mailings/{int:mailing_id}/launch", tags=MAILINGS, response={200: MailingOut, **ERRORS},
             summary="Launch a draft")
def mailing_launch_api(request: HttpRequest, mailing_id: MailingRef) -> dict:
    """A broadcast "now" starts sending at once; "at" and "local" broadcasts and regular mailings
    become scheduled; a trigger mailing starts listening (state `sending`). What stops the launch
    is a 422 listing every problem by field; a mailing that is not a draft is a 409."""
    return _transition(request, mailing_id, lifecycle.mailing_launch, "The mailing was not launched")


@router.post("/mailings/{int:mailing_id}/pause", tags=MAILINGS, response={200: MailingOut, **ERRORS},
             summary="Pause a scheduled or sending mailing")
def mailing_pause_api(request: HttpRequest, mailing_id: MailingRef) -> dict:
    """Nothing more is claimed (messages already on their way finish); a paused trigger mailing
    ignores the events meanwhile."""
    return _transition(request, mailing_id, lifecycle.mailing_pause, "The mailing was not paused")


@router.post("/mailings/{int:mailing_id}/resume", tags=MAILINGS, response={200: MailingOut, **ERRORS},
             summary="Resume a paused mailing")
def mailing_resume_api(request: HttpRequest, mailing_id: MailingRef) -> dict:
    """Sending goes on where it stopped; nobody gets a message twice."""
    return _transition(request, mailing_id, lifecycle.mailing_resume, "The mailing was not resumed")


@router.post("/mailings/{int:mailing_id}/cancel", tags=MAILINGS, response={200: MailingOut, **ERRORS},
             summary="Cancel a mailing")
def mailing_cancel_api(request: HttpRequest, mailing_id: MailingRef) -> dict:
    """Messages not yet sent are skipped (reason `cancelled`); the mailing is finished."""
    return _transition(request, mailing_id, lifecycle.mailing_cancel, "The mailing was not cancelled")


# --- preview, report, recipients ---------------------------------------------------------------------


@router.get("/mailings/{int:mailing_id}/preview", tags=MAILINGS, response={200: PreviewOut, **ERRORS},
            summary="Who would get the mailing now")
def mailing_preview_api(request: HttpRequest, mailing_id: MailingRef) -> dict:
    """The planner's own statement as counts, nothing written: the audience, the messages that would
    be queued, and those that would be skipped by reason (unsubscribed, suppressed, capped...)."""
    require(request, Perm.ACCOUNT_VIEW)
    from mailings.services.planning import audience_preview

    p = audience_preview(mailing=mailing_id)
    return {"audience": p.audience, "sendable": p.sendable, "excluded": p.excluded, "no_address": p.no_address,
            "capped": p.capped, "outside_window": p.outside_window, "cap": p.cap, "error": p.error}


def _run_of(mailing: Mailing, run: int | None) -> Run | None:
    if run is None:
        return None
    found = Run.objects.filter(mailing=mailing, pk=run).first() if 0 < run < 2**63 else None
    if found is None:
        raise ApiError(404, f"The mailing has no run {run}.",
                       details=[{"loc": ["query", "run"], "message": "not a run of this mailing", "type": "not_found"}])
    return found


@router.get("/mailings/{int:mailing_id}/report", tags=MAILINGS, response={200: ReportOut, **ERRORS},
            summary="A mailing's report")
def mailing_report_api(request: HttpRequest, mailing_id: MailingRef, run: int | None = None) -> dict:
    """Figures, rates, skips and failures by reason, clicks per link and an hourly series, summed from
    the counters; `?run=ID` for one run of a regular or trigger mailing."""
    require(request, Perm.REPORTS_VIEW)
    return selectors.mailing_report(mailing=mailing_id, run=_run_of(mailing_id, run)).as_dict()


@router.get("/mailings/{int:mailing_id}/recipients", tags=MAILINGS, response={200: CursorPage[RecipientOut], **ERRORS},
            summary="The recipient log: a mailing's ledger rows, newest first")
def mailing_recipients_api(request: HttpRequest, mailing_id: MailingRef, run: int | None = None,
                           status: LedgerStatus | None = None, reason: str | None = None, q: str = "",
                           cursor: str | None = None, limit: int | None = None) -> dict:
    """One row per message: its status, why it was skipped or failed, and when it was sent,
    delivered, opened and clicked. Filters: `run`, `status`, `reason` (unsubscribed, capped,
    hard_bounce...) and `q` (an address, an address prefix, or a profile id as #123)."""
    require(request, Perm.ACCOUNT_VIEW)
    qs = selectors.recipient_log_query(mailing=mailing_id, run=_run_of(mailing_id, run), status=status,
                                       reason=reason or None, q=q)
    return paginate(qs, cursor=cursor, limit=limit)


# --- triggers -----------------------------------------------------------------------------------------


def _ref_error(index: int | None, loc: list[str | int], message: str, kind: str = "invalid_value") -> dict[str, Any]:
    prefix: list[str | int] = ["items", index] if index is not None else []
    return {"loc": [*prefix, *loc], "message": message, "type": kind}


def _resolve(request: HttpRequest, database: ProfileDatabase,
             items: list[tuple[Any, dict[str, Any] | None]], *, bulk: bool) -> tuple[dict[int, Profile], dict[int, dict]]:
    """The profile each item names: ({index: Profile}, {index: error detail}). Items with `fields`
    are upserted by their match key first (one service call each, as the profiles batch API does);
    the others are looked up set-based, one query per match key used."""
    from profiles.services import profile_upsert, profiles_by_key

    found: dict[int, int] = {}
    upserted: dict[int, Profile] = {}
    errors: dict[int, dict[str, Any]] = {}
    allowed = set(database.match_keys) | {"id", "email", "phone"}
    by_key: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    actor = Actor.from_request(request)
    for i, (ref, fields) in enumerate(items):
        index = i if bulk else None
        if not isinstance(ref, dict) or len(ref) != 1:
            errors[i] = _ref_error(index, ["profile"], 'name the profile by one match key, e.g. {"email": '
                                                       '"ann@example.com"} or {"id": 42}')
            continue
        (key, raw), = ref.items()
        if key not in allowed:
            errors[i] = _ref_error(index, ["profile", key], f"not a match key of {database.slug!r} (use one of "
                                                            f"{', '.join(sorted(allowed))})")
            continue
        if isinstance(raw, dict | list | bool) or raw is None:
            errors[i] = _ref_error(index, ["profile", key], "expected a text or number value")
            continue
        if fields:
            if key == "id" or key not in database.match_keys:
                errors[i] = _ref_error(index, ["profile", key], "to upsert fields, name the profile by a match key "
                                                                f"({', '.join(database.match_keys)})")
                continue
            result = profile_upsert(database=database, values={**fields, key: raw}, match=key, actor=actor, source="api")
            if result.profile is None:
                name, message = next(iter(result.errors.items()), ("profile", result.skipped or "not stored"))
                errors[i] = _ref_error(index, ["fields", name] if name != key else ["profile", key], message,
                                       "erased" if result.skipped else "invalid_value")
                continue
            found[i] = result.profile.pk
            upserted[i] = result.profile
            continue
        by_key[key].append((i, raw))
    for key, pairs in by_key.items():
        lookup, norm = profiles_by_key(database=database, key=key, raw_values=[raw for _, raw in pairs])
        for i, raw in pairs:
            value = norm.get(raw)
            if value is not None and value in lookup.ids:
                found[i] = lookup.ids[value]
            else:
                message = lookup.errors.get(raw) or lookup.errors.get(value) or f"no profile with this {key}"
                errors[i] = _ref_error(i if bulk else None, ["profile", key], message, "not_found")
    # The lookup read the ids in this database: the firing needs no more of a profile than its id,
    # database and account, so no second query loads them.
    return {i: upserted.get(i) or Profile(id=pid, account_id=database.account_id, database_id=database.pk)
            for i, pid in found.items()}, errors


def _check_fields_permission(request: HttpRequest, any_fields: bool) -> None:
    if any_fields:
        require(request, Perm.DATA_EDIT)


def _firable(mailing: Mailing) -> None:
    try:
        triggers.trigger_firable(mailing)
    except MailingError as exc:
        raise ApiError(409, f"The mailing cannot be fired: {exc.errors.get('mailing', str(exc))}.", code="conflict",
                       details=[{"loc": [], "message": str(exc), "type": "conflict"}]) from exc


@router.post("/mailings/{int:mailing_id}/trigger", tags=TRIGGERS, response={202: TriggerOut, **ERRORS},
             summary="Send a trigger mailing to one profile")
def mailing_trigger_api(request: HttpRequest, mailing_id: TriggerMailingRef, payload: TriggerIn,
                        idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> Status:
    """The profile is named by a match key (upserted first with `fields`), `data` goes to the
    template. The answer is the ledger row: `queued` (it goes out within seconds) or `skipped`
    with the reason (unsubscribed, suppressed, capped...). With an `Idempotency-Key` header the
    call happens once: the same key again answers the same ledger row, also after the API's
    replay window. 409 when the mailing is not a listening trigger mailing; 422 when the profile
    is unknown or has no subscription on the mailing's resource and channel."""
    require(request, Perm.MAILINGS_EDIT)
    _check_fields_permission(request, bool(payload.fields))
    _firable(mailing_id)
    found, errors = _resolve(request, mailing_id.database, [(payload.profile, payload.fields)], bulk=False)
    if 0 in errors:
        raise ApiError(422, f"The trigger was not fired: {errors[0]['message']}.", details=[errors[0]])
    try:
        entry = triggers.trigger_fire(mailing=mailing_id, profile=found[0], data=payload.data, key=idempotency_key,
                                      actor=Actor.from_request(request))
    except MailingError as exc:
        raise _refused(exc, "The trigger was not fired") from exc
    return Status(202, {"ledger_id": entry.pk, "status": entry.status, "reason": entry.reason, "run_id": entry.run_id,
                        "profile_id": entry.profile_id})


@router.post("/mailings/{int:mailing_id}/trigger/bulk", tags=TRIGGERS, response={200: TriggerBulkOut, **ERRORS},
             summary=f"Send a trigger mailing to up to {MAX_BULK:,} profiles")
def mailing_trigger_bulk_api(request: HttpRequest, mailing_id: TriggerMailingRef, payload: TriggerBulkIn) -> dict:
    """Each item is fired on its own: a bad item (an unknown profile, data that is not an object, no
    subscription on the channel, a repeated key) fails alone with `errors` naming it (`loc:
    ["items", index, ...]`) and the others are kept. An item's `key` makes it once, like the
    Idempotency-Key of the single call."""
    require(request, Perm.MAILINGS_EDIT)
    if len(payload.items) > MAX_BULK:
        raise ApiError(422, f"A request holds at most {MAX_BULK:,} items; this one has {len(payload.items):,}.",
                       details=[{"loc": ["items"], "message": f"at most {MAX_BULK} items", "type": "too_long"}])
    _check_fields_permission(request, any(item.fields for item in payload.items))
    _firable(mailing_id)
    found, errors = _resolve(request, mailing_id.database, [(item.profile, item.fields) for item in payload.items],
                             bulk=True)
    todo = [i for i in range(len(payload.items)) if i in found]
    bulk = [triggers.BulkItem(found[i], payload.items[i].data, payload.items[i].key) for i in todo]
    try:
        fired = triggers.triggers_fire_bulk(mailing=mailing_id, items=bulk, actor=Actor.from_request(request))
    except MailingError as exc:
        raise _refused(exc, "The triggers were not fired") from exc
    results: list[dict[str, Any]] = [{"index": i, "ledger_id": None, "status": "error", "reason": "",
                                      "errors": [errors[i]] if i in errors else []} for i in range(len(payload.items))]
    for i, r in zip(todo, fired, strict=True):
        if r.entry is not None:
            results[i].update(ledger_id=r.entry.pk, status=r.entry.status, reason=r.entry.reason)
        else:
            results[i]["errors"] = [_ref_error(i, [k], v) for k, v in (r.errors or {}).items()]
    counts = {"queued": 0, "skipped": 0, "error": 0}
    for r in results:
        key = r["status"] if r["status"] in counts else ("queued" if r["status"] in ("sending", "sent") else "error")
        counts[key] += 1
    return {**counts, "results": results}
