"""Segment pages, split by area: segments.py (the list, the page of one segment, its members, runs,
recalculation, export, delete, duplicate), edit.py (the builder: create and edit, live count),
explain.py (why a profile is or is not in a segment), card.py (the profile card's "Segments" tab).

Every view looks segments up through `.for_account(request.account)`: another account's segment
is a 404. Reading is for everyone in the account; building and changing is SEGMENTS_EDIT.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from segments.models import Segment


def get_segment(request: HttpRequest, pk: int) -> Segment:
    """The current account's segment, or 404 (another account's is a 404 too)."""
    return get_object_or_404(
        Segment.objects.for_account(request.account).select_related("database", "account"), pk=pk
    )
