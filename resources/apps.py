from __future__ import annotations

from django.apps import AppConfig


class ResourcesConfig(AppConfig):
    name = "resources"
    verbose_name = "Resources and subscriptions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.audit import register_verbs
        from accounts.demo import DEMO_HOOKS
        from profiles.importing.hooks import IMPORT_HOOKS, ImportHook
        from profiles.services import ERASURE_HANDLERS, MERGE_HANDLERS
        from profiles.views.profiles import CardTab, add_card_tab
        from resources import forms_card, importing, services
        from resources.demo import demo_resources
        from resources.views.card import subscriptions_tab_context

        if services.subscriptions_merge not in MERGE_HANDLERS:
            MERGE_HANDLERS.append(services.subscriptions_merge)
        if services.subscriptions_erase not in ERASURE_HANDLERS:
            ERASURE_HANDLERS.append(services.subscriptions_erase)
        IMPORT_HOOKS["subscribe"] = ImportHook(
            check=importing.check_subscribe, run=importing.subscribe_imported, label="Subscribe the imported profiles",
            form=forms_card.import_subscribe_form, template="resources/_card_import_subscribe.html",
            result_template="resources/_card_import_result.html", parse_cli=forms_card.import_subscribe_parse_cli,
            cli_help="RESOURCE_SLUG:CHANNEL:STATUS: subscribe every imported profile (channel email or sms; status "
                     "subscribed, unconfirmed or unsubscribed)",
        )
        add_card_tab(CardTab("subscriptions", "Subscriptions", "resources/_card_subscriptions.html", subscriptions_tab_context),
                     after="data")
        if demo_resources not in DEMO_HOOKS:
            DEMO_HOOKS.append(demo_resources)
        register_verbs(
            {
                "resource.created": "created a resource",
                "resource.updated": "changed a resource",
                "resource.deleted": "deleted a resource",
                "resource.key_rotated": "rotated a resource's subscribe key",
                "suppression.added": "suppressed an address",
                "suppression.removed": "removed a suppression",
                "suppressions.imported": "imported a suppression list",
                "consent.exported": "exported a profile's consent ledger",
            }
        )
