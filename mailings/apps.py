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


def _segment_users(segment: object) -> list[str]:
    """The unfinished mailings whose audience names the segment (deleting it would change it)."""
    from django.db.models import Q

    from mailings.models import Mailing

    qs = (Mailing.objects.filter(Q(include_segments=segment) | Q(exclude_segments=segment))
          .exclude(state__in=Mailing.FINISHED_STATES).distinct().order_by("name"))
    return [f"mailing “{m.name}”" for m in qs[:6]]


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
        from accounts.audit import register_verbs
        from accounts.demo import DEMO_HOOKS
        from history.handlers import EventHandler, register_handler
        from mailings.demo import seed_demo
        from mailings.services.ledger import ledger_erase, ledger_merge
        from profiles.services import ERASURE_HANDLERS, MERGE_HANDLERS
        from resources.services import CONFIRMATION_HANDLERS
        from segments.services import SEGMENT_USERS

        register_handler(EventHandler(
            "mailings.feedback", _tracking_events,
            types={"message.delivered", "message.opened", "message.clicked", "message.unsubscribed",
                   "message.complained", "message.soft_bounced", "message.hard_bounced"},
        ))
        # The types live trigger mailings listen to (a cached set; a batch of other types costs no dispatch).
        register_handler(EventHandler("mailings.triggers", _trigger_events, interest=_trigger_interest))
        if _confirmation not in CONFIRMATION_HANDLERS:
            CONFIRMATION_HANDLERS.append(_confirmation)
        if _segment_users not in SEGMENT_USERS:
            SEGMENT_USERS.append(_segment_users)
        if seed_demo not in DEMO_HOOKS:  # mailings is last in INSTALLED_APPS: its data comes after theirs
            DEMO_HOOKS.append(seed_demo)
        if ledger_merge not in MERGE_HANDLERS:
            MERGE_HANDLERS.append(ledger_merge)
        if ledger_erase not in ERASURE_HANDLERS:
            ERASURE_HANDLERS.append(ledger_erase)
        from mailings.services.lifecycle import AUDIT_VERBS

        register_verbs(AUDIT_VERBS)
