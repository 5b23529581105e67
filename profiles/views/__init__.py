"""Profile views, split by area: databases.py (databases and schema), profiles.py (list, card,
export, merge, erase), imports.py (upload, mapping, progress, result)."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from profiles.models import ProfileDatabase


def get_database(request: HttpRequest, slug: str) -> ProfileDatabase:
    """The current account's database with this slug, or 404 (another account's is a 404 too)."""
    return get_object_or_404(ProfileDatabase.objects.for_account(request.account).select_related("account"), slug=slug)
