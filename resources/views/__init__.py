"""Resource pages (admin), the profile card's subscriptions tab, suppressions, and the public pages."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from resources.models import Resource


def get_resource(request: HttpRequest, slug: str) -> Resource:
    """The current account's resource by slug, or 404."""
    return get_object_or_404(Resource.objects.for_account(request.account).select_related("database"), slug=slug)
