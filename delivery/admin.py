"""Django admin: read-mostly views for operators. Secrets are never shown (excluded)."""

from __future__ import annotations

from django.contrib import admin

from delivery.models import DkimKey, ProviderAccount, Sender, SendingDomain


@admin.register(SendingDomain)
class SendingDomainAdmin(admin.ModelAdmin):
    list_display = ("domain", "account", "status", "checked_at", "verified_at")
    list_filter = ("status",)
    search_fields = ("domain",)
    readonly_fields = ("last_check", "checked_at", "verified_at", "created_at")


@admin.register(DkimKey)
class DkimKeyAdmin(admin.ModelAdmin):
    list_display = ("selector", "domain", "account", "status", "created_at", "retired_at")
    list_filter = ("status",)
    exclude = ("private_key",)
    readonly_fields = ("public_key", "algorithm", "key_size", "created_at")


@admin.register(Sender)
class SenderAdmin(admin.ModelAdmin):
    list_display = ("__str__", "account", "is_default")


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "channel", "kind", "is_default", "active")
    list_filter = ("channel", "kind", "active")
    exclude = ("secrets",)
