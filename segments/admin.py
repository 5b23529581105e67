from __future__ import annotations

from django.contrib import admin

from segments.models import Segment, SegmentRun


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "database", "kind", "state", "size", "last_computed_at", "next_run_at"]
    list_filter = ["kind", "state"]
    search_fields = ["name", "slug"]
    raw_id_fields = ["account", "database", "created_by"]
    readonly_fields = ["size", "last_computed_at", "compute_ms", "created_at", "updated_at"]


@admin.register(SegmentRun)
class SegmentRunAdmin(admin.ModelAdmin):
    list_display = ["segment", "trigger", "started_at", "size", "entered", "left", "duration_ms"]
    list_filter = ["trigger"]
    raw_id_fields = ["account", "segment", "job"]
