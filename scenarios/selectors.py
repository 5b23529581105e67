"""Reads of scenarios shared by the pages, the API, the report command and the exports.

Figures never count path rows: per-step counters come from the `StepStat` deltas (summed by
`step_counts`), "in it now" from the open participations grouped by step (an index-only read of
`participation_step_idx`, bounded by how many profiles are inside, not by history), the messages'
figures from each send step's mailing counters (`mailings.selectors.mailing_report`). Lists are
keyset-paginated by id, newest first.

Every function takes an object the caller already fetched through `.for_account(...)` (or an
account), so a scenario of another account never reaches here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, F, Q, QuerySet

from accounts.models import Account
from profiles.models import Profile
from scenarios.engine.stats import step_counts
from scenarios.graph import STEP_KINDS, exits_of
from scenarios.models import Participation, PathEntry, Scenario, ScenarioVersion, Step, Transition

PState = Participation.State
OPEN = tuple(str(s) for s in Participation.OPEN_STATES)
STEP_METRICS = ("entered", "passed", "exited", "failed")
# What a send step shows of its mailing's report (mailings.selectors.FIGURES names).
MESSAGE_FIGURES = ("planned", "queued", "sent", "failed", "skipped", "delivered", "opened_unique", "clicked_unique",
                   "unsubscribed", "bounced_hard")
MAX_LIMIT = 500


# --- the list ---------------------------------------------------------------------------------------


def scenario_list(*, account: Account, q: str | None = None, state: str | None = None) -> QuerySet[Scenario]:
    """The account's scenarios, newest first, filtered by state and a name search; page it in the
    caller and get the figures of the page with `list_figures`. The list page and the API's list:
    neither shows the webhook secret, so it is not decrypted per row (a key problem then breaks
    the webhook steps, which say so, not the lists)."""
    qs = Scenario.objects.for_account(account).select_related("database", "live_version").defer("webhook_secret")
    if state:
        qs = qs.filter(state=state)
    text = (q or "").strip()[:100]
    if text:
        qs = qs.filter(name__icontains=text)
    return qs


def list_figures(scenario_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Key figures of a page of scenarios in two queries: {scenario id: {"in_now", "active",
    "waiting", "completed", "exited", "failed", "entries": [entry kinds of the live (else draft)
    version]}}. The participation counts read `participation_step_idx` (scenario, state)."""
    ids = list(scenario_ids)
    out: dict[int, dict[str, Any]] = {
        i: {"in_now": 0, "active": 0, "waiting": 0, "completed": 0, "exited": 0, "failed": 0, "entries": []} for i in ids}
    if not ids:
        return out
    for sid, state, n in (Participation.objects.filter(scenario_id__in=ids).values_list("scenario_id", "state")
                          .annotate(n=Count("id")).order_by()):
        out[sid][state] = n
    for figures in out.values():
        figures["in_now"] = figures["active"] + figures["waiting"]
    # The entry kinds of the version a list row describes: the live one, else the draft.
    shown = Q(version__state=ScenarioVersion.State.DRAFT, version__scenario__live_version__isnull=True) | Q(
        version__scenario__live_version=F("version"))
    kinds = (Step.objects.filter(shown, version__scenario_id__in=ids, kind__startswith="entry.")
             .values_list("version__scenario_id", "kind").distinct().order_by())
    for sid, kind in kinds:
        label = STEP_KINDS[kind].label if kind in STEP_KINDS else kind
        if label not in out[sid]["entries"]:
            out[sid]["entries"].append(label)
    return out


# --- the report -------------------------------------------------------------------------------------


@dataclass
class StepRow:
    """One step of the report. `in_now`: open participations at this step key (any version), split
    into `active`/`waiting`; `in_now_by_version`: {version number: n}; `entered`/`passed`/`exited`/
    `failed`: the counters (every version: keys are stable); `messages`: for a send step, its
    mailing's figures (MESSAGE_FIGURES, summed over the mailings its versions used) and `skipped`
    {reason label: n}; `mailing_ids`: those mailings (the live one first)."""

    key: str
    kind: str
    title: str
    label: str
    col: int
    row: int
    exits: dict[str, str | None]  # exit -> target step key (None: not connected)
    in_now: int = 0
    active: int = 0
    waiting: int = 0
    in_now_by_version: dict[int, int] = field(default_factory=dict)
    entered: int = 0
    passed: int = 0
    exited: int = 0
    failed: int = 0
    in_version: bool = True  # False: a step of an older version only (still has people or figures)
    mailing_ids: list[int] = field(default_factory=list)
    messages: dict[str, int] | None = None
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class ScenarioReport:
    """A scenario's figures for one version's diagram (`version`: the live one, else the draft).
    `steps`: the version's steps in diagram order, then steps of older versions that still have
    people or counters; `totals`: participations by state ("entered" is all of them, "in_now"
    active + waiting), `exited_by_reason` {reason: n}, `failed_by_reason` {reason or "error": n};
    `versions`: [{id, number, state, in_now}] newest first."""

    scenario_id: int
    name: str
    state: str
    version_id: int | None
    version_number: int | None
    steps: list[StepRow]
    totals: dict[str, int]
    exited_by_reason: dict[str, int]
    failed_by_reason: dict[str, int]
    versions: list[dict[str, Any]]

    def step(self, key: str) -> StepRow | None:
        return next((s for s in self.steps if s.key == key), None)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for row in data["steps"]:
            row["in_now_by_version"] = {str(k): v for k, v in row["in_now_by_version"].items()}
        return data


def report_version(scenario: Scenario, version: ScenarioVersion | None = None) -> ScenarioVersion | None:
    """The version a report or diagram shows by default: `version`, else the live one, else the
    draft, else the newest."""
    if version is not None:
        return version
    if scenario.live_version_id:
        return ScenarioVersion.objects.filter(pk=scenario.live_version_id).first()
    return (ScenarioVersion.objects.filter(scenario=scenario, state=ScenarioVersion.State.DRAFT).first()
            or ScenarioVersion.objects.filter(scenario=scenario).order_by("-number").first())


def scenario_report(scenario: Scenario, *, version: ScenarioVersion | None = None,
                    with_messages: bool = True) -> ScenarioReport:
    """Per-step figures (in it now, entered, passed, exited, failed, and each send step's message
    figures) and totals. Queries: the versions, their steps, their transitions, open participations
    by (version, step, state), participations by state (and by reason when some exited or
    failed), the counters
    (`scenarios.engine.stats.step_counts`), and one
    `mailing_report` per mailing of a send step (`with_messages=False` skips those)."""
    from mailings.models import Mailing
    from mailings.selectors import mailing_report

    shown = report_version(scenario, version)
    versions = list(ScenarioVersion.objects.filter(scenario=scenario).order_by("-number"))
    number_of = {v.pk: v.number for v in versions}
    steps = list(Step.objects.filter(version__scenario=scenario).order_by("row", "col", "id"))
    step_by_id = {s.pk: s for s in steps}
    edges: dict[int, dict[str, int]] = defaultdict(dict)
    if shown is not None:
        for source_id, exit_, target_id in Transition.objects.filter(version=shown).values_list(
                "source_id", "exit", "target_id"):
            edges[source_id][exit_] = target_id

    rows: dict[str, StepRow] = {}
    for s in steps:
        if shown is not None and s.version_id == shown.pk:
            spec = STEP_KINDS.get(s.kind)
            rows[s.key] = StepRow(
                key=s.key, kind=s.kind, title=s.title or (spec.label if spec else s.kind),
                label=spec.label if spec else s.kind, col=s.col, row=s.row,
                exits={e: (step_by_id[edges[s.pk][e]].key if e in edges[s.pk] else None) for e in exits_of(s.kind, s.config)})
    older: dict[str, Step] = {}
    for s in sorted(steps, key=lambda s: -number_of.get(s.version_id, 0)):
        if s.key not in rows and s.key not in older:
            older[s.key] = s

    def row_for(key: str) -> StepRow | None:
        if key in rows:
            return rows[key]
        s = older.get(key)
        if s is None:
            return None
        spec = STEP_KINDS.get(s.kind)
        rows[key] = StepRow(key=key, kind=s.kind, title=s.title or (spec.label if spec else s.kind),
                            label=spec.label if spec else s.kind, col=s.col, row=s.row, exits={}, in_version=False)
        return rows[key]

    for version_id, step_id, state, n in (Participation.objects.filter(scenario=scenario, state__in=OPEN)
                                          .values_list("version_id", "step_id", "state").annotate(n=Count("id"))
                                          .order_by()):
        s = step_by_id.get(step_id)
        r = row_for(s.key) if s is not None else None
        if r is None:
            continue
        r.in_now += n
        setattr(r, state, getattr(r, state) + n)
        number = number_of.get(version_id, 0)
        r.in_now_by_version[number] = r.in_now_by_version.get(number, 0) + n
    for key, metrics in step_counts(scenario).items():
        r = row_for(key)
        if r is not None:
            for metric in STEP_METRICS:
                setattr(r, metric, getattr(r, metric) + int(metrics.get(metric, 0)))

    if with_messages:
        mailings_by_key: dict[str, list[int]] = defaultdict(list)
        for s in sorted(steps, key=lambda s: (s.version_id != (shown.pk if shown else None), -number_of.get(s.version_id, 0))):
            if s.kind == "send" and s.mailing_id and s.mailing_id not in mailings_by_key[s.key]:
                mailings_by_key[s.key].append(s.mailing_id)
        mailing_objs = Mailing.objects.in_bulk([m for ms in mailings_by_key.values() for m in ms])
        for key, mailing_ids in mailings_by_key.items():
            r = row_for(key)
            if r is None:
                continue
            r.mailing_ids = mailing_ids
            r.messages = dict.fromkeys(MESSAGE_FIGURES, 0)
            for mid in mailing_ids:
                if mid not in mailing_objs:
                    continue
                rep = mailing_report(mailing=mailing_objs[mid])
                for name in MESSAGE_FIGURES:
                    r.messages[name] += rep.figures.get(name, 0)
                for reason in rep.skipped:
                    r.skipped[reason.label] = r.skipped.get(reason.label, 0) + reason.count

    totals = {"entered": 0, "in_now": 0, "active": 0, "waiting": 0, "completed": 0, "exited": 0, "failed": 0}
    exited_by: dict[str, int] = defaultdict(int)
    failed_by: dict[str, int] = defaultdict(int)
    # By state: an index-only count of `participation_step_idx` (scenario, state, step); the
    # reasons read only the exited and failed rows.
    for state, n in (Participation.objects.filter(scenario=scenario).values_list("state").annotate(n=Count("id"))
                     .order_by()):
        totals["entered"] += n
        totals[state] = totals.get(state, 0) + n
    if totals[PState.EXITED] or totals[PState.FAILED]:
        for state, reason, n in (Participation.objects.filter(scenario=scenario, state__in=(PState.EXITED, PState.FAILED))
                                 .values_list("state", "exit_reason").annotate(n=Count("id")).order_by()):
            if state == PState.EXITED:
                exited_by[reason or "other"] += n
            else:
                failed_by[reason or "error"] += n
    totals["in_now"] = totals["active"] + totals["waiting"]
    in_now_by_version: dict[int, int] = defaultdict(int)
    for r in rows.values():
        for number, n in r.in_now_by_version.items():
            in_now_by_version[number] += n

    ordered = sorted(rows.values(), key=lambda r: (not r.in_version, r.row, r.col, _key_number(r.key)))
    ordered = [r for r in ordered if r.in_version or r.in_now or r.entered or r.passed or r.exited or r.failed]
    return ScenarioReport(
        scenario_id=scenario.pk, name=scenario.name, state=scenario.state,
        version_id=shown.pk if shown else None, version_number=shown.number if shown else None, steps=ordered,
        totals=totals, exited_by_reason=dict(sorted(exited_by.items(), key=lambda kv: (-kv[1], kv[0]))),
        failed_by_reason=dict(sorted(failed_by.items(), key=lambda kv: (-kv[1], kv[0]))),
        versions=[{"id": v.pk, "number": v.number, "state": v.state, "in_now": in_now_by_version.get(v.number, 0),
                   "published_at": v.published_at} for v in versions],
    )


def _key_number(key: str) -> int:
    digits = key.lstrip("s")
    return int(digits) if digits.isdigit() else 0


# --- participants -----------------------------------------------------------------------------------


@dataclass
class ParticipantRow:
    """A participation in a list: where it is, with its profile's label (name, e-mail or phone)."""

    id: int
    profile_id: int
    profile: str
    state: str
    step_key: str
    step_title: str
    version_number: int
    entry: str
    entered_at: datetime
    next_run_at: datetime | None
    finished_at: datetime | None
    exit_reason: str
    error: str
    waiting_for: str


@dataclass
class ParticipantPage:
    """A page of participants, newest first; `next_cursor`: the id to pass as `cursor` for the next
    page (None on the last)."""

    rows: list[ParticipantRow]
    next_cursor: int | None


def participants_query(scenario: Scenario, *, state: str | None = None, step_key: str | None = None,
                       profile_id: int | None = None) -> QuerySet[Participation]:
    """The scenario's participations with the list's filters (the API pages this with its cursor
    helper). `step_key` names the step in any version (keys are stable)."""
    qs = Participation.objects.filter(scenario=scenario, account_id=scenario.account_id)
    if state == "open":
        qs = qs.filter(state__in=OPEN)
    elif state:
        qs = qs.filter(state=state)
    if step_key:
        qs = qs.filter(step_id__in=list(Step.objects.filter(version__scenario=scenario, key=step_key)
                                        .values_list("pk", flat=True)))
    if profile_id is not None:
        qs = qs.filter(profile_id=profile_id)
    return qs.order_by("-id")


def participants_page(scenario: Scenario, *, state: str | None = None, step_key: str | None = None,
                      cursor: int | str | None = None, limit: int = 50, profile_id: int | None = None) -> ParticipantPage:
    """One page (keyset: ids below `cursor`) of the scenario's participants with their profiles'
    labels and steps' titles: three queries whatever the page size. A cursor that is not a number
    is ignored (the first page)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    qs = participants_query(scenario, state=state, step_key=step_key, profile_id=profile_id)
    before = _int_or_none(cursor)
    if before is not None:
        qs = qs.filter(id__lt=before)
    found = list(qs[:limit + 1])
    more = len(found) > limit
    found = found[:limit]
    rows = participant_rows(found)
    return ParticipantPage(rows=rows, next_cursor=found[-1].pk if more and found else None)


def participant_rows(participations: Sequence[Participation]) -> list[ParticipantRow]:
    """ParticipantRows for participations (two queries: their steps with versions, their profiles)."""
    step_ids = {p.step_id for p in participations if p.step_id}
    steps = {s.pk: s for s in Step.objects.filter(pk__in=step_ids).select_related("version")}
    labels = profile_labels({p.profile_id for p in participations})
    out = []
    for p in participations:
        s = steps.get(p.step_id)
        out.append(ParticipantRow(
            id=p.pk, profile_id=p.profile_id, profile=labels.get(p.profile_id, f"Profile #{p.profile_id}"),
            state=p.state, step_key=s.key if s else "", step_title=_title(s) if s else "",
            version_number=s.version.number if s else 0, entry=p.entry, entered_at=p.entered_at,
            next_run_at=p.next_run_at if p.is_open else None, finished_at=p.finished_at, exit_reason=p.exit_reason,
            error=p.error, waiting_for=p.waiting_for))
    return out


def profile_labels(profile_ids: Iterable[int]) -> dict[int, str]:
    """{profile id: name, else e-mail, else phone} for a page of profiles (one query); erased or
    missing profiles are absent."""
    ids = [i for i in profile_ids if i]
    out = {}
    for pid, first, last, email, phone in Profile.objects.filter(pk__in=ids).values_list(
            "pk", "first_name", "last_name", "email", "phone"):
        out[pid] = f"{first} {last}".strip() or email or phone or f"Profile #{pid}"
    return out


def _title(step: Step) -> str:
    spec = STEP_KINDS.get(step.kind)
    return step.title or (spec.label if spec else step.kind)


def _int_or_none(value: int | str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- one participation --------------------------------------------------------------------------------


def participation_get(scenario: Scenario, participation_id: int | str) -> Participation | None:
    """The scenario's participation with this id (None: none, or another scenario's), its step and
    version loaded."""
    pk = _int_or_none(participation_id)
    if pk is None:
        return None
    return (Participation.objects.filter(pk=pk, scenario=scenario, account_id=scenario.account_id)
            .select_related("step", "version").first())


@dataclass
class PathRow:
    """One step a participation visited: the step's key, kind and title in the version it was on
    then, when it came and left, the exit it took and what happened there."""

    seq: int
    version_number: int
    step_key: str
    kind: str
    title: str
    entered_at: datetime
    left_at: datetime | None
    exit: str
    outcome: str
    current: bool


def participation_path(participation: Participation) -> list[PathRow]:
    """The path log of a participation in order (two queries: its path rows, and the titles of the
    steps of the versions they name)."""
    entries = list(PathEntry.objects.filter(participation_id=participation.pk).order_by("seq", "id"))
    numbers = {e.version_number for e in entries}
    steps = {(number, key): (kind, title) for number, key, kind, title in Step.objects.filter(
        version__scenario_id=participation.scenario_id, version__number__in=numbers).values_list(
        "version__number", "key", "kind", "title")}
    out = []
    for e in entries:
        kind, title = steps.get((e.version_number, e.step_key), ("", ""))
        spec = STEP_KINDS.get(kind)
        out.append(PathRow(seq=e.seq, version_number=e.version_number, step_key=e.step_key, kind=kind,
                           title=title or (spec.label if spec else e.step_key), entered_at=e.entered_at,
                           left_at=e.left_at, exit=e.exit, outcome=e.outcome,
                           current=participation.is_open and e.left_at is None and e.seq == participation.seq))
    return out


@dataclass
class ProfileTrip:
    """A profile's trip through a scenario, for the profile card."""

    id: int
    scenario_id: int
    scenario_name: str
    scenario_state: str
    state: str
    step_key: str
    step_title: str
    entered_at: datetime
    finished_at: datetime | None
    exit_reason: str


def profile_participations(profile: Profile, *, limit: int = 100) -> list[ProfileTrip]:
    """The profile's trips (newest first, at most `limit`) through its account's scenarios: two
    queries (the trips with their scenarios, their steps)."""
    trips = list(Participation.objects.filter(profile_id=profile.pk, account_id=profile.account_id)
                 .select_related("scenario").order_by("-id")[:max(1, min(limit, MAX_LIMIT))])
    steps = {s.pk: s for s in Step.objects.filter(pk__in={t.step_id for t in trips if t.step_id})}
    out = []
    for t in trips:
        s = steps.get(t.step_id)
        out.append(ProfileTrip(id=t.pk, scenario_id=t.scenario_id, scenario_name=t.scenario.name,
                               scenario_state=t.scenario.state, state=t.state, step_key=s.key if s else "",
                               step_title=_title(s) if s else "", entered_at=t.entered_at, finished_at=t.finished_at,
                               exit_reason=t.exit_reason))
    return out
