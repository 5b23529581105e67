from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.models import Account, ApiToken
        from cdp import confcache

        # The API keeps tokens (and their account) per process: a change drops them everywhere.
        confcache.watch(Account, ApiToken)
