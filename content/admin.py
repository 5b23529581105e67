from __future__ import annotations

from django.contrib import admin

from content.models import Fragment, Template, TemplateVersion


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "kind", "updated_at", "archived_at")
    list_filter = ("kind",)
    search_fields = ("name",)
    raw_id_fields = ("account", "database", "created_by")


@admin.register(TemplateVersion)
class TemplateVersionAdmin(admin.ModelAdmin):
    list_display = ("template", "channel", "number", "is_current", "size", "created_at")
    list_filter = ("channel", "is_current")
    raw_id_fields = ("account", "template", "restored_from", "created_by")
    readonly_fields = ("data", "compiled", "links", "lint")


@admin.register(Fragment)
class FragmentAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "account", "updated_at")
    search_fields = ("key", "name")
    raw_id_fields = ("account", "created_by")
