from __future__ import annotations

from django.apps import AppConfig


class ScenariosConfig(AppConfig):
    name = "scenarios"
    verbose_name = "Scenarios"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register with the lower apps' registries (ARCHITECTURE.md: lower apps never import
        upward): history's event handlers (entries, event waits, goals), profiles' erasure and
        merge handlers, segments' users."""
