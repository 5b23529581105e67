from __future__ import annotations

from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.audit import register_verbs
        from accounts.demo import DEMO_HOOKS
        from delivery.demo import demo_delivery

        if demo_delivery not in DEMO_HOOKS:
            DEMO_HOOKS.append(demo_delivery)
        register_verbs(
            {
                "sending_domain.created": "added a sending domain",
                "sending_domain.checked": "checked a sending domain's DNS",
                "sending_domain.deleted": "deleted a sending domain",
                "dkim_key.generated": "generated a DKIM key",
                "dkim_key.rotated": "rotated a DKIM key",
                "dkim_key.removed": "removed a DKIM key",
                "sender.created": "added a sender",
                "sender.updated": "changed a sender",
                "sender.deleted": "deleted a sender",
                "provider_account.created": "added a provider account",
                "provider_account.updated": "changed a provider account",
                "provider_account.deleted": "deleted a provider account",
                "template.test_sent": "sent a test message",
            }
        )
