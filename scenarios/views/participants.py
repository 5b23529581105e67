"""Who is in a scenario: the participants (filters by state and step, keyset pages by id), one
participation's path drawn as a timeline, a profile's trips through the account's scenarios, and
the report (per-step counters with the messages' figures and report links)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from accounts.access import account_required
from accounts.permissions import Perm
from profiles.models import Profile
from scenarios import selectors
from scenarios.models import Step
from scenarios.views import SECTION, STATE_ICONS, can_edit, get_scenario

PAGE = 50
STATE_FILTERS = [("", "All"), ("open", "Inside now"), ("active", "Active"), ("waiting", "Waiting"),
                 ("completed", "Completed"), ("exited", "Exited"), ("failed", "Failed")]


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def participant_list(request: HttpRequest, pk: int) -> HttpResponse:
    scenario = get_scenario(request, pk)
    state = request.GET.get("state", "")
    if state not in dict(STATE_FILTERS):
        state = ""
    steps = list(Step.objects.filter(version__scenario=scenario).values_list("key", "title").distinct()
                 .order_by("key"))
    step_titles: dict[str, str] = {}
    for key, title in steps:
        step_titles.setdefault(key, title or key)
    step_key = request.GET.get("step", "")
    if step_key not in step_titles:
        step_key = ""
    page = selectors.participants_page(scenario, state=state or None, step_key=step_key or None,
                                       cursor=request.GET.get("cursor"), limit=PAGE)
    context = {"scenario": scenario, "page": page, "state": state, "step": step_key,
               "states": STATE_FILTERS, "steps": sorted(step_titles.items(), key=lambda kv: _num(kv[0])),
               "section": SECTION, "state_icons": STATE_ICONS, "can_edit": can_edit(request),
               "first_page": not request.GET.get("cursor")}
    template = "scenarios/participant_list.html"
    if request.htmx and request.headers.get("HX-Target") == "participants":
        template += "#rows"
    return render(request, template, context)


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def participation_detail(request: HttpRequest, pk: int, participation_id: int) -> HttpResponse:
    scenario = get_scenario(request, pk)
    participation = selectors.participation_get(scenario, participation_id)
    if participation is None:
        raise Http404("No such participation.")
    path = selectors.participation_path(participation)
    label = selectors.profile_labels([participation.profile_id]).get(participation.profile_id,
                                                                     f"Profile #{participation.profile_id}")
    return render(request, "scenarios/participation_detail.html", {
        "scenario": scenario, "p": participation, "path": path, "profile_label": label, "section": SECTION,
        "state_icons": STATE_ICONS})


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def profile_trips(request: HttpRequest, profile_id: int) -> HttpResponse:
    """Which scenarios a profile is in, or was."""
    profile = get_object_or_404(Profile.objects.filter(account=request.account).select_related("database"),
                                pk=profile_id)
    trips = selectors.profile_participations(profile)
    label = selectors.profile_labels([profile.pk]).get(profile.pk, f"Profile #{profile.pk}")
    return render(request, "scenarios/profile_trips.html", {"profile": profile, "trips": trips, "label": label,
                                                             "section": SECTION})


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def scenario_report(request: HttpRequest, pk: int) -> HttpResponse:
    scenario = get_scenario(request, pk)
    report = selectors.scenario_report(scenario)
    return render(request, "scenarios/scenario_report.html", {
        "scenario": scenario, "report": report, "section": SECTION, "state_icons": STATE_ICONS})


def _num(key: str) -> int:
    digits = "".join(c for c in key if c.isdigit())
    return int(digits) if digits else 0

