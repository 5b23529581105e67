from __future__ import annotations

from typing import Any

from django.apps import AppConfig

# Step kinds whose config names a segment by id ("segment_id"); a condition names segments
# inside its condition tree.
SEGMENT_KINDS = ("entry.segment", "segment")


def _events(events: list[Any]) -> None:
    from scenarios.handlers import on_events

    on_events(events)


def _interest() -> frozenset[str]:
    from scenarios.handlers import interesting_types

    return interesting_types()


def _erase(profile: Any) -> None:
    from scenarios.engine import participations_erase

    participations_erase(profile)


def _merge(target: Any, source: Any) -> None:
    from scenarios.engine import participations_merge

    participations_merge(target, source)


def _segment_users(segment: Any) -> list[str]:
    """The live scenarios (active or paused) whose published versions name the segment in an
    entry, condition or segment step: deleting it would break them."""
    from scenarios.models import Scenario, ScenarioVersion, Step
    from segments.conditions import segment_refs

    steps = (Step.objects.filter(account_id=segment.account_id, kind__in=(*SEGMENT_KINDS, "condition"),
                                 version__state=ScenarioVersion.State.PUBLISHED,
                                 version__scenario__state__in=Scenario.LIVE_STATES)
             .values_list("kind", "config", "version__scenario__name"))
    names: set[str] = set()
    for kind, config, name in steps:
        config = config if isinstance(config, dict) else {}
        if kind in SEGMENT_KINDS:
            used = config.get("segment_id") == segment.pk
        else:
            used = any(ref == segment.pk for _, ref in segment_refs(config.get("conditions")))
        if used:
            names.add(name)
    return [f"scenario “{n}”" for n in sorted(names)[:6]]


def _demo(account: Any, owner: Any) -> str:
    from scenarios.demo import seed_demo

    return seed_demo(account, owner)


class ScenariosConfig(AppConfig):
    name = "scenarios"
    verbose_name = "Scenarios"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register with the lower apps' registries (ARCHITECTURE.md: lower apps never import
        upward): history's event handler (entries, event waits, goals; its types are the ones
        live scenarios name, a cached set), profiles' erasure and merge handlers, segments'
        users, the audit verbs and the demo data (scenarios come after mailings: their demo
        scenario sends the demo mailings' template)."""
        from accounts.audit import register_verbs
        from accounts.demo import DEMO_HOOKS
        from history.handlers import EventHandler, register_handler
        from profiles.services import ERASURE_HANDLERS, MERGE_HANDLERS
        from scenarios.handlers import HANDLER_NAME
        from scenarios.services import AUDIT_VERBS
        from segments.services import SEGMENT_USERS

        register_handler(EventHandler(HANDLER_NAME, _events, interest=_interest))
        for registry, hook in ((ERASURE_HANDLERS, _erase), (MERGE_HANDLERS, _merge), (SEGMENT_USERS, _segment_users),
                               (DEMO_HOOKS, _demo)):
            if hook not in registry:
                registry.append(hook)
        register_verbs(AUDIT_VERBS)
