from __future__ import annotations

from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"
    verbose_name = "Segments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts.audit import register_verbs
        from accounts.demo import DEMO_HOOKS
        from profiles.services import ERASURE_HANDLERS, MERGE_HANDLERS
        from segments.services import members_erase, members_merge
        from segments.views.card import register as register_card_tab

        if members_merge not in MERGE_HANDLERS:
            MERGE_HANDLERS.append(members_merge)
        if members_erase not in ERASURE_HANDLERS:
            ERASURE_HANDLERS.append(members_erase)
        register_card_tab()  # the profile card's "Segments" tab
        from profiles.importing.hooks import IMPORT_HOOKS, ImportHook
        from segments import importing

        IMPORT_HOOKS["segment"] = ImportHook(
            check=importing.check_segment, run=importing.add_imported, label=importing.LABEL,
            form=importing.import_segment_form, template="segments/_import_segment.html",
            result_template="segments/_import_segment_result.html", parse_cli=importing.import_segment_parse_cli,
            cli_help="SEGMENT_SLUG: add every imported profile to this static segment",
        )
        from segments.demo import demo_segments

        if demo_segments not in DEMO_HOOKS:
            DEMO_HOOKS.append(demo_segments)
        register_verbs(
            {
                "segment.created": "created a segment",
                "segment.updated": "changed a segment",
                "segment.deleted": "deleted a segment",
                "segment.recalculated": "recalculated a segment",
                "segment.members_added": "added profiles to a segment",
                "segment.members_removed": "removed profiles from a segment",
                "segment.exported": "exported a segment's members",
            }
        )
