from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class HistoryConfig(AppConfig):
    name = "history"
    verbose_name = "Action history"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.audit import register_verbs
        from accounts.demo import DEMO_HOOKS
        from cdp import confcache
        from history import services
        from history.demo import demo_history
        from history.models import EventType, HistorySettings
        from history.views.timeline import TAB, timeline_tab_context
        from profiles.services import ERASURE_HANDLERS, MERGE_HANDLERS
        from profiles.views.profiles import CardTab, add_card_tab
        from resources.services import CONSENT_HANDLERS

        # Ingestion keeps each account's event types and retention per process (TypeBook).
        confcache.watch(EventType, HistorySettings)
        post_migrate.connect(_sync_after_migrate, sender=self, dispatch_uid="history.sync_system_types")
        if services.events_merge not in MERGE_HANDLERS:
            MERGE_HANDLERS.append(services.events_merge)
        if services.events_erase not in ERASURE_HANDLERS:
            ERASURE_HANDLERS.append(services.events_erase)
        if services.consent_events not in CONSENT_HANDLERS:
            CONSENT_HANDLERS.append(services.consent_events)
        # Key "events": the card's own "history" tab is the profile's data changes.
        add_card_tab(CardTab(TAB, "Events", "history/_card_timeline.html", timeline_tab_context), after="subscriptions")
        if demo_history not in DEMO_HOOKS:
            DEMO_HOOKS.append(demo_history)
        register_verbs(
            {
                "event_type.created": "created an event type",
                "event_type.updated": "changed an event type",
                "event_type.deleted": "deleted an event type",
                "history.retention_changed": "changed how long events are kept",
                "history.events_imported": "imported events",
            }
        )


def _sync_after_migrate(using: str = "default", **kwargs: object) -> None:
    from history.services.types import sync_system_types

    sync_system_types()
