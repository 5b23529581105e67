"""The ops app: connects the Celery hooks in every process that sets Django up (web, workers,
beat, management commands)."""

from __future__ import annotations

from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "cdp.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from cdp.ops import signals

        signals.connect()
