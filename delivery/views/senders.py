"""Senders: the From addresses mail goes out as. Admins and owners only (Perm.CHANNELS_MANAGE).

A sender's address is a local part on one of the account's sending domains; one sender may be
the default. A sender on a domain that is not verified is listed with a warning: it is saved,
but mail from it is not sent until the domain's DKIM record is found.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from delivery import services
from delivery.forms import SenderForm
from delivery.models import Sender, SendingDomain
from delivery.views import error_text, get_sender


def _add_errors(form: SenderForm, exc: ValidationError) -> None:
    """A service's ValidationError onto the form: field errors where the field exists."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            name = "local_part" if name == "from_address" else name
            for error in errors:
                form.add_error(name if name in form.fields else None, error)
    else:
        form.add_error(None, exc)


@require_GET
@account_required(Perm.CHANNELS_MANAGE)
def sender_list(request: HttpRequest) -> HttpResponse:
    senders = list(Sender.objects.for_account(request.account).select_related("domain"))
    has_domains = bool(senders) or SendingDomain.objects.for_account(request.account).exists()
    return render(request, "delivery/sender_list.html",
                  {"senders": senders, "has_domains": has_domains, "section": "senders"})


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def sender_create(request: HttpRequest) -> HttpResponse:
    initial = {}
    if (request.GET.get("domain") or "").isdigit():
        initial["domain"] = int(request.GET["domain"])
    form = SenderForm(request.POST or None, account=request.account, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            sender = services.sender_create(
                account=request.account, domain=data["domain"], from_name=data["from_name"],
                reply_to=data["reply_to"], is_default=data["is_default"], actor=Actor.from_request(request),
                **form.address_arguments(),
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"{sender} is added." + (
                "" if sender.is_usable else f" It sends once {sender.domain.unicode_domain} is verified."))
            return redirect("delivery:sender_list")
    has_domains = SendingDomain.objects.for_account(request.account).exists()
    return render(request, "delivery/sender_form.html",
                  {"form": form, "sender": None, "has_domains": has_domains, "section": "senders"},
                  status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def sender_edit(request: HttpRequest, pk: int) -> HttpResponse:
    sender = get_sender(request, pk)
    form = SenderForm(request.POST or None, account=request.account, instance=sender)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            address = form.address_arguments()
            if "from_address" in address:  # the domain is fixed: keep only the part before @
                local, _, host = address["from_address"].rpartition("@")
                if host.lower() not in (sender.domain.domain, sender.domain.unicode_domain.lower()):
                    raise ValidationError({"local_part": f"The address must be on {sender.domain.unicode_domain}."})
                address = {"local_part": local}
            sender = services.sender_update(
                sender=sender, from_name=data["from_name"], reply_to=data["reply_to"],
                is_default=data["is_default"], actor=Actor.from_request(request), **address,
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"{sender} is saved.")
            return redirect("delivery:sender_list")
    return render(request, "delivery/sender_form.html",
                  {"form": form, "sender": sender, "has_domains": True, "section": "senders"},
                  status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def sender_delete(request: HttpRequest, pk: int) -> HttpResponse:
    sender = get_sender(request, pk)
    problem = ""
    if request.method == "POST":
        label = str(sender)
        try:
            services.sender_delete(sender=sender, actor=Actor.from_request(request))
        except ValidationError as exc:
            problem = error_text(exc)
        else:
            messages.success(request, f"{label} is deleted.")
            return redirect("delivery:sender_list")
    return render(request, "delivery/sender_delete.html",
                  {"sender": sender, "problem": problem, "section": "senders"},
                  status=400 if request.method == "POST" else 200)
