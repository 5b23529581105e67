from __future__ import annotations

from django.apps import AppConfig


def _tracking_events(events: list) -> None:
    from mailings.services.feedback import on_tracking_events

    on_tracking_events(events)


def _trigger_events(events: list) -> None:
    from mailings.services.triggers import on_events

    on_events(events)


def _trigger_interest() -> frozenset[str]:
    from mailings.services.triggers import interesting_types

    return interesting_types()


def _confirmation(subscription: object) -> None:
    from mailings.services.triggers import on_confirmation

    on_confirmation(subscription)


class MailingsConfig(AppConfig):
    name = "mailings"
    verbose_name = "Mailings"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register with the lower apps' registries (ARCHITECTURE.md: lower apps never import
        upward): history's event handlers (tracking feedback, trigger mailings) and resources'
        double opt-in confirmation handlers."""
        from history.handlers import EventHandler, register_handler
        from resources.services import CONFIRMATION_HANDLERS

        register_handler(EventHandler(
            "mailings.feedback", _tracking_events,
            types={"message.delivered", "message.opened", "message.clicked", "message.unsubscribed",
                   "message.complained", "message.soft_bounced", "message.hard_bounced"},
        ))
        # The types live trigger mailings listen to (a cached set; a batch of other types costs no dispatch).
        register_handler(EventHandler("mailings.triggers", _trigger_events, interest=_trigger_interest))
        if _confirmation not in CONFIRMATION_HANDLERS:
            CONFIRMATION_HANDLERS.append(_confirmation)
