from __future__ import annotations

from django.apps import AppConfig


class ContentConfig(AppConfig):
    name = "content"
    verbose_name = "Content"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.audit import register_verbs
        from accounts.demo import DEMO_HOOKS
        from cdp import confcache
        from content.demo import demo_content
        from content.models import Fragment

        # Compiled versions hold the fragments they include: a fragment change drops them in
        # every process (content.rendering.compiled).
        confcache.watch(Fragment)
        if demo_content not in DEMO_HOOKS:
            DEMO_HOOKS.append(demo_content)
        register_verbs(
            {
                "template.created": "created a template",
                "template.updated": "changed a template",
                "template.archived": "archived a template",
                "template.restored": "brought back an archived template",
                "template.deleted": "deleted a template",
                "template.duplicated": "duplicated a template",
                "template.version_saved": "saved a template version",
                "template.version_restored": "restored a template version",
                "fragment.created": "created a fragment",
                "fragment.updated": "changed a fragment",
                "fragment.deleted": "deleted a fragment",
            }
        )
