"""Housekeeping of the engine (beat, every 10 minutes)."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from scenarios.models import Participation, Scenario, ScenarioVersion


def versions_retire() -> int:
    """Mark RETIRED the published versions that are not live and nobody is on any more (no open
    participation): the editor's version switcher shows them as history. Returns how many."""
    from scenarios.services import step_mailings_release

    open_on = Participation.objects.filter(version_id=OuterRef("pk"), state__in=Participation.OPEN_STATES)
    live_ids = Scenario.objects.exclude(live_version__isnull=True).values("live_version_id")
    retiring = (ScenarioVersion.objects.filter(state=ScenarioVersion.State.PUBLISHED)
                .exclude(Q(pk__in=live_ids) | Q(Exists(open_on))))
    scenario_ids = set(retiring.values_list("scenario_id", flat=True))
    retired = retiring.update(state=ScenarioVersion.State.RETIRED)
    # The send steps' mailings only retired versions used stop listening (done once drained).
    for scenario in Scenario.objects.filter(pk__in=scenario_ids):
        step_mailings_release(scenario=scenario)
    return retired
