"""Sending domains: the list, adding one, and a domain's page with the DNS records to publish
(copy buttons; the values are selectable text without JavaScript), "Verify DNS" with a result
per record, DKIM keys (generate, rotate, remove a retired one) and deleting the domain.

Admins and owners only (Perm.CHANNELS_MANAGE). Deleting a domain is refused while senders use it:
mail "from" an address whose domain vanished would fail DMARC, so the page lists those senders
and asks to move or delete them first.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.forms import ConfirmNameForm
from delivery import services
from delivery.forms import DomainForm
from delivery.models import DkimKey, SendingDomain
from delivery.views import error_text, get_domain
from delivery.views.records import domain_records

STATUS_HELP = {
    "pending": "Not verified yet: publish the records below, then verify.",
    "verified": "The DKIM record matches: mail from this domain is signed and verifiable.",
    "failing": "It was verified, but the last check did not find the DKIM record any more.",
}


@require_GET
@account_required(Perm.CHANNELS_MANAGE)
def domain_list(request: HttpRequest) -> HttpResponse:
    domains = list(
        SendingDomain.objects.for_account(request.account)
        .annotate(sender_count=Count("senders", distinct=True))
        .prefetch_related(Prefetch("dkim_keys", queryset=DkimKey.objects.order_by("status", "-created_at")))
        .order_by("domain", "id")
    )
    return render(request, "delivery/domain_list.html", {"domains": domains, "section": "domains"})


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def domain_create(request: HttpRequest) -> HttpResponse:
    form = DomainForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            domain = services.sending_domain_create(
                account=request.account, domain=form.cleaned_data["domain"], actor=Actor.from_request(request)
            )
        except ValidationError as exc:
            form.add_error("domain" if not hasattr(exc, "error_dict") or "domain" in exc.error_dict else None,
                           error_text(exc))
        else:
            messages.success(request, f"{domain.unicode_domain} is added with a DKIM key. Publish its DNS records, "
                                      "then verify.")
            return redirect(domain.get_absolute_url())
    return render(request, "delivery/domain_create.html", {"form": form, "section": "domains"},
                  status=400 if form.is_bound else 200)


def _detail_context(request: HttpRequest, domain: SendingDomain) -> dict[str, Any]:
    keys = list(DkimKey.objects.for_account(request.account).filter(domain=domain).order_by("status", "-created_at"))
    senders = list(domain.senders.order_by("local_part"))
    return {
        "domain": domain,
        "keys": keys,
        "active_key": next((k for k in keys if k.status == DkimKey.Status.ACTIVE), None),
        "records": domain_records(domain),
        "senders": senders,
        "status_help": STATUS_HELP.get(domain.status, ""),
        "section": "domains",
    }


@require_GET
@account_required(Perm.CHANNELS_MANAGE)
def domain_detail(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_domain(request, pk)
    return render(request, "delivery/domain_detail.html", _detail_context(request, domain))


@require_POST
@account_required(Perm.CHANNELS_MANAGE)
def domain_verify(request: HttpRequest, pk: int) -> HttpResponse:
    """Looks the records up now (short DNS timeouts; offline is "could not check", not an
    error) and shows the result per record. htmx swaps the records card only."""
    domain = get_domain(request, pk)
    services.sending_domain_verify(domain=domain, actor=Actor.from_request(request))
    domain.refresh_from_db()
    if not request.htmx:
        if domain.is_verified:
            messages.success(request, f"{domain.unicode_domain} is verified.")
        else:
            messages.warning(request, f"{domain.unicode_domain} is not verified yet: see each record's result.")
        return redirect(domain.get_absolute_url())
    return render(request, "delivery/_verify_result.html", _detail_context(request, domain))


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def domain_delete(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_domain(request, pk)
    form = ConfirmNameForm(request.POST or None, expected=domain.unicode_domain, what="domain")
    senders = list(domain.senders.order_by("local_part"))
    if request.method == "POST" and not senders and form.is_valid():
        try:
            services.sending_domain_delete(domain=domain, actor=Actor.from_request(request))
        except ValidationError as exc:
            form.add_error(None, error_text(exc))
        else:
            messages.success(request, f"{domain.unicode_domain} is deleted, with its DKIM keys.")
            return redirect("delivery:domain_list")
    context = {"domain": domain, "form": form, "senders": senders, "section": "domains"}
    status = 400 if form.is_bound or (request.method == "POST" and senders) else 200
    return render(request, "delivery/domain_delete.html", context, status=status)


@require_POST
@account_required(Perm.CHANNELS_MANAGE)
def dkim_generate(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_domain(request, pk)
    try:
        key = services.dkim_key_generate(domain=domain, actor=Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"A DKIM key is generated (selector {key.selector}). Publish its TXT record.")
    return redirect(reverse("delivery:domain_detail", args=[domain.pk]) + "#dkim")


@require_POST
@account_required(Perm.CHANNELS_MANAGE)
def dkim_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_domain(request, pk)
    try:
        key = services.dkim_key_rotate(domain=domain, actor=Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"New DKIM key {key.selector} signs from now on. Publish its TXT record; keep the "
                                  "retired one published until mail sent with it has arrived, then remove it.")
    return redirect(reverse("delivery:domain_detail", args=[domain.pk]) + "#dkim")


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def dkim_remove(request: HttpRequest, pk: int, key: int) -> HttpResponse:
    """Removes a retired key (GET: the confirmation page). The active key is never removed here:
    rotate first, so the domain always has a signing key."""
    domain = get_domain(request, pk)
    dkim_key = get_object_or_404(DkimKey.objects.for_account(request.account).filter(domain=domain), pk=key)
    problem = ""
    if dkim_key.status == DkimKey.Status.ACTIVE:
        problem = "This key signs the domain's mail. Rotate to a new key first; then the old one can be removed."
    if request.method == "POST" and not problem:
        try:
            services.dkim_key_remove(key=dkim_key, actor=Actor.from_request(request))
        except ValidationError as exc:
            problem = error_text(exc)
        else:
            messages.success(request, f"DKIM key {dkim_key.selector} is removed. You can delete its TXT record "
                                      f"{dkim_key.record_name} from DNS.")
            return redirect(reverse("delivery:domain_detail", args=[domain.pk]) + "#dkim")
    context = {"domain": domain, "key": dkim_key, "problem": problem, "section": "domains"}
    return render(request, "delivery/dkim_remove.html", context, status=400 if request.method == "POST" else 200)
