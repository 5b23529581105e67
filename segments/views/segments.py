"""The list of a database's segments, and the page of one segment: its conditions in words, size
over time, members (paginated, exportable), runs with who entered and left, recalculation as a
Job, static members added from a CSV or pasted values, and delete / duplicate.

Nothing here counts a segment on each request: the page shows the stored size of the last run;
the members table pages by keyset (its bounded count reads at most 1,001 rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.models import Job
from accounts.permissions import Perm
from cdp.forms import ConfirmNameForm
from cdp.tables import Column, EmptyState, Filter, Table
from profiles.models import Profile, ProfileDatabase
from segments import selectors, services
from segments.conditions import SegmentError
from segments.forms import MembersAddForm
from segments.models import Segment, SegmentMovement, SegmentRun
from segments.views import get_segment
from segments.views.builder import Catalogue
from segments.views.words import tree_lines

CHART_RUNS = 90
RUNS_SHOWN = 20
MOVEMENTS_SHOWN = 200

KIND_ICONS = {"static": "pin-angle", "dynamic": "lightning-charge", "updatable": "arrow-repeat"}
KIND_HELP = {
    "static": "A fixed list: filled once from its conditions, a CSV, by hand or through the API.",
    "dynamic": "Evaluated whenever it is used, so it always reflects current data.",
    "updatable": "Recalculated on its schedule; members are kept between updates.",
}


def _can_edit(request: HttpRequest) -> bool:
    return request.membership.can(Perm.SEGMENTS_EDIT)


def duration(ms: int | None) -> str:
    """1234 -> "1.2 s", 85 -> "85 ms", 125000 -> "2 min 5 s"."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000} min {ms % 60_000 // 1000} s"


def schedule_text(schedule: dict[str, Any] | None, tzname: str) -> str:
    if not schedule:
        return ""
    if "every_hours" in schedule:
        n = schedule["every_hours"]
        return "Every hour" if n == 1 else f"Every {n} hours"
    if "daily_at" in schedule:
        return f"Every day at {schedule['daily_at']} ({tzname})"
    if "cron" in schedule:
        return f"Cron {schedule['cron']} ({tzname})"
    return ""


# --- the list --------------------------------------------------------------------------------------


@dataclass
class SegmentTable(Table):
    """The shared Table, keeping the chosen database in its sort and page links."""

    database_slug: str = ""

    def _url(self, **changes: str) -> str:
        url = super()._url(**changes)
        if not self.database_slug:
            return url
        return url + ("&" if "?" in url else "?") + urlencode({"db": self.database_slug})


def _pick_database(request: HttpRequest, databases: list[ProfileDatabase]) -> ProfileDatabase | None:
    slug = request.GET.get("db", "")
    if slug:
        found = next((d for d in databases if d.slug == slug), None)
        if found is None:
            get_object_or_404(ProfileDatabase.objects.for_account(request.account), slug=slug)
        return found
    return databases[0] if databases else None


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def segment_list(request: HttpRequest) -> HttpResponse:
    databases = list(ProfileDatabase.objects.for_account(request.account).order_by("name", "id"))
    database = _pick_database(request, databases)
    can_edit = _can_edit(request)
    if database is None:
        return render(request, "segments/segment_list.html", {"databases": [], "section": "segments", "can_edit": can_edit})
    new_url = reverse("segments:create") + f"?db={database.slug}"
    table = SegmentTable(
        request,
        Segment.objects.for_account(request.account).filter(database=database).select_related("database"),
        id="segments",
        columns=[Column("Segment", sort="name"), Column("Kind"), Column("Size", classes="text-end"),
                 Column("Last computed"), Column("State"), Column("Changed", sort="updated_at")],
        search_fields=["name", "description"],
        search_placeholder="Search segments",
        filters=[Filter("kind", "All kinds", Segment.Kind.choices), Filter("state", "All states", Segment.State.choices)],
        default_sort="name",
        row_template="segments/_segment_row.html",
        empty=EmptyState(
            f"No segments in {database.name} yet",
            "A segment groups profiles by what they are and what they did: “Berlin VIPs who opened an e-mail this "
            "month”. Mailings and scenarios send to segments.",
            icon="diagram-3", action_url=new_url if can_edit else "", action_label="New segment",
        ),
        database_slug=database.slug if len(databases) > 1 else "",
    )
    for row in table.rows:
        row.took = duration(row.compute_ms)
    if table.is_filtered:
        table.empty = EmptyState("No segments match", "Try another word, or clear the search.", icon="search")
    context = {"table": table, "database": database, "databases": databases, "can_edit": can_edit, "new_url": new_url,
               "kind_icons": KIND_ICONS, "section": "segments"}
    if table.is_partial_request:
        return render(request, "segments/_segment_table.html", context)
    return render(request, "segments/segment_list.html", context)


# --- one segment ------------------------------------------------------------------------------------


def _chart(request: HttpRequest, segment: Segment) -> dict[str, Any] | None:
    runs = list(SegmentRun.objects.for_account(request.account).filter(segment=segment, finished_at__isnull=False,
                                                                         size__isnull=False)
                .order_by("-started_at", "-id").values("started_at", "size")[:CHART_RUNS])
    if not runs:
        return None
    runs.reverse()
    tz = request.account.tzinfo
    return {
        "labels": [r["started_at"].astimezone(tz).strftime("%b %-d %H:%M") for r in runs],
        "values": [r["size"] for r in runs],
    }


def _members_table(request: HttpRequest, segment: Segment, can_remove: bool) -> tuple[Table | None, str]:
    """The members table, or (None, why) when the segment cannot be evaluated."""
    try:
        qs: QuerySet[Profile] = selectors.segment_members_query(segment)
    except SegmentError as exc:
        return None, exc.message or str(exc)
    static = segment.kind == Segment.Kind.STATIC
    columns = [Column("Profile"), Column("E-mail"), Column("Phone")]
    if can_remove:
        columns.append(Column("", classes="text-end"))
    empty = EmptyState("No members", "Nobody matches the conditions right now." if segment.conditions else
                       "Add members below: paste match keys or upload a CSV." if static else "Nobody is in it yet.",
                       icon="people")
    if segment.kind == Segment.Kind.UPDATABLE and segment.last_computed_at is None:
        empty = EmptyState("Not calculated yet", "Recalculate it to fill its members, or wait for its schedule.",
                           icon="hourglass")
    table = Table(request, qs.select_related("database"), id="members", columns=columns, search_fields=["email"],
                  search_placeholder="Search e-mail addresses", default_sort="-id", per_page=25,
                  row_template="segments/_member_row.html", empty=empty)
    return table, ""


def _active_job(request: HttpRequest, segment: Segment) -> Job | None:
    """A recalculation or export of this segment the page should follow: ?job=<id>, or the
    running job of its latest unfinished run."""
    raw = request.GET.get("job", "")
    jobs = Job.objects.for_account(request.account)
    if raw.isdigit():
        job = jobs.filter(pk=int(raw)).first()
        if job is not None and (job.params or {}).get("segment_id") in (segment.pk, str(segment.pk)):
            return job
    run = (SegmentRun.objects.for_account(request.account).filter(segment=segment, finished_at__isnull=True,
                                                                   job__isnull=False)
           .select_related("job").order_by("-started_at").first())
    if run is not None and run.job is not None and not run.job.is_finished:
        return run.job
    return None


def _static_keys(database: ProfileDatabase) -> list[tuple[str, str]]:
    labels = {"email": "E-mail address", "phone": "Phone number"}
    keys = list(dict.fromkeys([*database.match_keys, "email", "phone"]))
    fields = {f.name: f.label for f in database.fields.filter(name__in=keys)}
    return [(k, labels.get(k) or fields.get(k, k)) for k in keys] + [("id", "Profile id")]


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def segment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_segment(request, pk)
    can_edit = _can_edit(request)
    static = segment.kind == Segment.Kind.STATIC
    table, members_problem = _members_table(request, segment, can_remove=can_edit and static)
    if table is not None and table.is_partial_request:
        return render(request, "components/table.html", {"table": table, "segment": segment,
                                                         "can_remove": can_edit and static})
    cat = Catalogue.load(request, segment.database, segment)
    runs = list(SegmentRun.objects.for_account(request.account).filter(segment=segment)
                .select_related("job").order_by("-started_at", "-id")[:RUNS_SHOWN])
    for r in runs:
        r.took = duration(r.duration_ms)
    last = next((r for r in runs if r.finished_at is not None), None)
    context = {
        "segment": segment,
        "database": segment.database,
        "words": tree_lines(segment.conditions, cat),
        "chart": _chart(request, segment),
        "runs": runs,
        "last_run": last,
        "duration": duration(segment.compute_ms if segment.compute_ms is not None else (last.duration_ms if last else None)),
        "schedule": schedule_text(segment.schedule, request.account.timezone),
        "table": table,
        "members_problem": members_problem,
        "job": _active_job(request, segment),
        "can_edit": can_edit,
        "can_export": request.membership.can(Perm.DATA_EDIT),
        "add_form": MembersAddForm(keys=_static_keys(segment.database)) if static and can_edit else None,
        "kind_icon": KIND_ICONS.get(segment.kind, "diagram-3"),
        "kind_help": KIND_HELP.get(segment.kind, ""),
        "can_remove": can_edit and static,
        "problem": _problem_text(segment),
        "section": "segments",
    }
    return render(request, "segments/segment_detail.html", context)


def _problem_text(segment: Segment) -> str:
    """The recorded problem without the condition path it starts with (the page shows the path apart)."""
    problem = segment.problem or ""
    if segment.problem_path and problem.startswith(segment.problem_path + ": "):
        problem = problem[len(segment.problem_path) + 2:]
    return problem


def _start_job(request: HttpRequest, pk: int, start: Any, what: str, **partial: Any) -> HttpResponse:
    """Start a segment's background job (`start(segment=, actor=)`), then show its progress: the
    job partial for htmx, else the segment page following it."""
    segment = get_segment(request, pk)
    try:
        job = start(segment=segment, actor=Actor.from_request(request))
    except SegmentError as exc:
        messages.error(request, f"{segment.name} cannot be {what}: {exc.message or exc}")
        return redirect(segment)
    if request.htmx:
        return render(request, "segments/_job.html", {"job": job, "segment": segment, **partial})
    return redirect(f"{segment.get_absolute_url()}?job={job.pk}")


@require_POST
@account_required(Perm.SEGMENTS_EDIT)
def segment_recalculate(request: HttpRequest, pk: int) -> HttpResponse:
    return _start_job(request, pk, services.segment_recalculate_job, "recalculated")


@require_POST
@account_required(Perm.DATA_EDIT)
def segment_export(request: HttpRequest, pk: int) -> HttpResponse:
    return _start_job(request, pk, services.segment_export_job, "exported", download_label="Download CSV")


@require_http_methods(["GET", "POST"])
@account_required(Perm.SEGMENTS_EDIT)
def segment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_segment(request, pk)
    form = ConfirmNameForm(request.POST or None, expected=segment.name, what="segment")
    if request.method == "POST" and form.is_valid():
        database, name = segment.database, segment.name
        try:
            services.segment_delete(segment=segment, actor=Actor.from_request(request))
        except SegmentError as exc:
            form.add_error(None, exc.message or str(exc))
        else:
            messages.success(request, f"{name} is deleted.")
            return redirect(reverse("segments:list") + f"?db={database.slug}")
    used_by = [s for s in Segment.objects.for_account(request.account).filter(database=segment.database)
               .exclude(pk=segment.pk).only("id", "name", "conditions") if _uses(s.conditions, segment.pk)]
    context = {"segment": segment, "database": segment.database, "form": form, "used_by": used_by,
               "section": "segments"}
    return render(request, "segments/segment_delete.html", context, status=400 if form.is_bound else 200)


def _uses(tree: Any, segment_id: int) -> bool:
    if not isinstance(tree, dict):
        return False
    if tree.get("type") == "segment":
        return tree.get("segment") == segment_id
    return any(_uses(i, segment_id) for i in tree.get("items") or []) if tree.get("type") == "group" else False


@require_POST
@account_required(Perm.SEGMENTS_EDIT)
def segment_duplicate(request: HttpRequest, pk: int) -> HttpResponse:
    """A copy with the same conditions and schedule, opened in the builder (a static copy takes
    its own snapshot of the conditions, not the original's hand-added members)."""
    segment = get_segment(request, pk)
    taken = set(Segment.objects.for_account(request.account).filter(database=segment.database)
                .values_list("name", flat=True))
    name = f"{segment.name} (copy)"
    n = 2
    while name in taken:
        name = f"{segment.name} (copy {n})"
        n += 1
    try:
        copy = services.segment_create(database=segment.database, name=name[:200], description=segment.description,
                                       kind=segment.kind, conditions=segment.conditions, schedule=segment.schedule,
                                       actor=Actor.from_request(request))
    except SegmentError as exc:
        messages.error(request, f"{segment.name} cannot be copied: {exc.message or exc}")
        return redirect(segment)
    messages.success(request, f"{copy.name} is a copy of {segment.name}: rename it and change what you need.")
    return redirect("segments:edit", copy.pk)


# --- static members -------------------------------------------------------------------------------


@require_POST
@account_required(Perm.SEGMENTS_EDIT)
def members_add(request: HttpRequest, pk: int) -> HttpResponse:
    """Add (or, with action=remove, remove) members of a static segment by a match key, from pasted
    values or a CSV file; unknown values are listed back."""
    segment = get_segment(request, pk)
    if segment.kind != Segment.Kind.STATIC:
        messages.error(request, "Only static segments take members by hand; the others follow their conditions.")
        return redirect(segment)
    form = MembersAddForm(request.POST, request.FILES, keys=_static_keys(segment.database))
    if not form.is_valid():
        for errors in form.errors.values():
            for e in errors:
                messages.error(request, e)
        return redirect(f"{segment.get_absolute_url()}#add-members")
    remove = request.POST.get("action") == "remove"
    change = services.segment_members_remove_by_key if remove else services.segment_members_add_by_key
    values = form.cleaned_data["parsed"]
    try:
        result = change(segment=segment, key=form.cleaned_data["key"], values=values, actor=Actor.from_request(request))
    except SegmentError as exc:
        messages.error(request, exc.message or str(exc))
        return redirect(f"{segment.get_absolute_url()}#add-members")
    n = result.changed
    text = f"{n:,} member{'' if n == 1 else 's'} {'removed' if remove else 'added'}."
    found = len(values) - len(result.unknown)
    if not remove and found > n:
        text += f" {found - n:,} {'was' if found - n == 1 else 'were'} in it already."
    if result.unknown:
        shown = list(result.unknown.items())[:10]
        text += f" {len(result.unknown):,} not found: " + "; ".join(f"{v} ({why})" for v, why in shown)
        text += " …" if len(result.unknown) > 10 else ""
        messages.warning(request, text)
    else:
        messages.success(request, text)
    return redirect(f"{segment.get_absolute_url()}#members")


@require_POST
@account_required(Perm.SEGMENTS_EDIT)
def members_remove(request: HttpRequest, pk: int) -> HttpResponse:
    """Remove members of a static segment by profile id (the members table's buttons)."""
    segment = get_segment(request, pk)
    if segment.kind != Segment.Kind.STATIC:
        messages.error(request, "Only static segments take members by hand; the others follow their conditions.")
        return redirect(segment)
    ids = [int(v) for v in request.POST.getlist("profile")[:1000] if v.isdigit()]
    if ids:
        try:
            n = services.segment_members_remove(segment=segment, profile_ids=ids, actor=Actor.from_request(request)).changed
        except SegmentError as exc:
            messages.error(request, exc.message or str(exc))
            return redirect(segment)
        messages.success(request, f"{n:,} member{'' if n == 1 else 's'} removed.")
    return redirect(request.POST.get("next") if _safe_next(request) else f"{segment.get_absolute_url()}#members")


def _safe_next(request: HttpRequest) -> bool:
    nxt = request.POST.get("next", "")
    return nxt.startswith("/") and not nxt.startswith("//")


# --- runs -------------------------------------------------------------------------------------------


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def run_detail(request: HttpRequest, pk: int, run: int) -> HttpResponse:
    """Who entered and who left an updatable segment at one update (the first MOVEMENTS_SHOWN of each)."""
    segment = get_segment(request, pk)
    the_run = get_object_or_404(SegmentRun.objects.for_account(request.account), segment=segment, pk=run)
    moves = SegmentMovement.objects.filter(run=the_run)
    entered_ids = list(moves.filter(entered=True).order_by("profile_id").values_list("profile_id", flat=True)[:MOVEMENTS_SHOWN])
    left_ids = list(moves.filter(entered=False).order_by("profile_id").values_list("profile_id", flat=True)[:MOVEMENTS_SHOWN])
    profiles = {p.pk: p for p in Profile.objects.for_account(request.account).filter(
        database=segment.database, pk__in=[*entered_ids, *left_ids])}
    context = {
        "segment": segment,
        "database": segment.database,
        "run": the_run,
        "duration": duration(the_run.duration_ms),
        "entered": [(i, profiles.get(i)) for i in entered_ids],
        "left": [(i, profiles.get(i)) for i in left_ids],
        "more_entered": max(0, the_run.entered - len(entered_ids)),
        "more_left": max(0, the_run.left - len(left_ids)),
        "section": "segments",
    }
    template = "segments/run_detail.html"
    if request.htmx:
        template += "#movements"
    return render(request, template, context)
