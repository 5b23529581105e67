from __future__ import annotations

from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Profiles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.audit import register_verbs
        from accounts.demo import DEMO_HOOKS
        from cdp import confcache
        from profiles.demo import demo_profiles
        from profiles.models import ProfileDatabase

        confcache.watch(ProfileDatabase)  # the event API keeps databases by slug per process
        if demo_profiles not in DEMO_HOOKS:
            DEMO_HOOKS.append(demo_profiles)

        register_verbs(
            {
                "database.created": "created a profile database",
                "database.updated": "changed a profile database",
                "database.deleted": "deleted a profile database",
                "field.added": "added a field",
                "field.updated": "changed a field",
                "field.removed": "removed a field",
                "fields.reordered": "reordered fields",
                "profile.created": "created a profile",
                "profile.updated": "edited a profile",
                "profile.merged": "merged two profiles",
                "profile.erased": "erased a profile (data-protection request)",
                "profiles.imported": "imported profiles",
                "profiles.exported": "exported profiles",
            }
        )
