"""Sending policies: the account's frequency cap and each resource's (a mailing's own cap is set in
its wizard). The narrowest one that exists applies to a send; transactional mailings are exempt.

Everyone in the account reads them; changing them needs Perm.CHANNELS_MANAGE, the permission that
configures resources and their channels (a policy governs every mailing of a resource, whoever
wrote the mailing).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from mailings.forms import CapForm
from mailings.models import FrequencyCap
from mailings.services import lifecycle
from mailings.services.errors import MailingError
from resources.models import Resource


def _can_manage(request: HttpRequest) -> bool:
    return request.membership.can(Perm.CHANNELS_MANAGE)


def _rows(request: HttpRequest, bound: tuple[int | None, CapForm] | None = None) -> dict[str, Any]:
    """The account row and a row per resource, each with its cap (or None) and a form."""
    caps = {c.resource_id: c for c in FrequencyCap.objects.for_account(request.account).filter(mailing__isnull=True)}

    def form_for(resource_id: int | None) -> CapForm:
        if bound is not None and bound[0] == resource_id:
            return bound[1]
        cap = caps.get(resource_id)
        initial = {"max_messages": cap.max_messages if cap else 3,
                   "days": cap.days if cap else 7, "scope": cap.scope if cap else FrequencyCap.Scope.PROFILE}
        return CapForm(initial=initial, prefix=f"r{resource_id or 0}")

    resources = list(Resource.objects.for_account(request.account).order_by("name"))
    return {
        "account_cap": caps.get(None),
        "account_form": form_for(None),
        "resources": [{"resource": r, "cap": caps.get(r.pk), "form": form_for(r.pk)} for r in resources],
    }


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def policy_list(request: HttpRequest) -> HttpResponse:
    """GET: the policies. POST (one row's form, prefixed r<resource id or 0>): set that cap."""
    bound = None
    if request.method == "POST":
        if not _can_manage(request):
            raise PermissionDenied
        prefix = request.POST.get("prefix", "r0")
        raw = prefix[1:] if prefix.startswith("r") else ""
        resource = None
        if raw.isdigit() and int(raw):
            resource = get_object_or_404(Resource.objects.for_account(request.account), pk=int(raw))
        form = CapForm(request.POST, prefix=prefix)
        if form.is_valid():
            d = form.cleaned_data
            try:
                lifecycle.cap_set(account=request.account, actor=Actor.from_request(request), resource=resource,
                                  max_messages=d["max_messages"], days=d["days"], scope=d["scope"])
            except MailingError as exc:
                for field, message in exc.errors.items():
                    form.add_error(field if field in form.fields else None, message)
            else:
                where = resource.name if resource else request.account.name
                messages.success(request, f"The sending policy of {where} is saved.")
                return redirect("mailings:policies")
        bound = (resource.pk if resource else None, form)
    context = {**_rows(request, bound), "can_manage": _can_manage(request), "section": "policies"}
    return render(request, "mailings/policy_list.html", context, status=400 if bound else 200)


@require_POST
@account_required(Perm.CHANNELS_MANAGE)
def policy_clear(request: HttpRequest) -> HttpResponse:
    """Remove the account's cap (resource empty) or a resource's (resource=<id>)."""
    raw = request.POST.get("resource", "")
    resource = None
    if raw.isdigit():
        resource = get_object_or_404(Resource.objects.for_account(request.account), pk=int(raw))
    try:
        lifecycle.cap_clear(account=request.account, actor=Actor.from_request(request), resource=resource)
    except MailingError as exc:
        messages.error(request, exc.text)
    else:
        where = resource.name if resource else request.account.name
        messages.success(request, f"{where} has no sending policy of its own now.")
    return redirect("mailings:policies")
