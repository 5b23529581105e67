"""The mailing pages (signed-in team members): the list, the wizard, a mailing's page with its
live progress, the report and recipient log, the calendar and the sending policies.

Everyone in the account reads (analysts see reports); writing needs Perm.MAILINGS_EDIT; the
account's and resources' sending policies need Perm.CHANNELS_MANAGE (they govern every mailing
of a resource, like its channels). Another account's mailing is a 404.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from accounts.permissions import Perm
from mailings.models import Mailing, Run

STATE_ICONS = {
    "draft": "pencil", "scheduled": "clock", "sending": "send", "paused": "pause-circle", "done": "check-circle",
    "cancelled": "x-circle",
}
KIND_ICONS = {"broadcast": "megaphone", "regular": "arrow-repeat", "trigger": "lightning-charge"}


def can_edit(request: HttpRequest) -> bool:
    return request.membership.can(Perm.MAILINGS_EDIT)


def get_mailing(request: HttpRequest, pk: int, *, related: bool = True) -> Mailing:
    """The current account's mailing (Http404 for another account's or none), with the objects it
    names unless `related` is False: a page that shows none of them (the report) skips the six
    joins and their columns."""
    qs = Mailing.objects.for_account(request.account)
    if related:
        qs = qs.select_related("account", "resource", "template", "sender", "provider", "database")
    return get_object_or_404(qs, pk=pk)


def get_run(request: HttpRequest, mailing: Mailing, raw: str | int | None) -> Run | None:
    """The run `raw` (an id) of `mailing`, or None when `raw` is empty; Http404 when it names no run of it."""
    if raw in (None, ""):
        return None
    if not str(raw).isdigit():
        return None
    return get_object_or_404(Run.objects.for_account(request.account), mailing=mailing, pk=int(raw))


def latest_run(mailing: Mailing) -> Run | None:
    return Run.objects.filter(mailing=mailing).order_by("-scheduled_for", "-id").first()
