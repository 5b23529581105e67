"""The sending pages: domains.py (sending domains, DNS records, DKIM), senders.py, providers.py
(provider accounts with forms built from the kinds' option specs) and outbox.py (what the file
backend wrote). Every page looks objects up through `.for_account(request.account)`, so another
account's id is a 404."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from delivery.models import ProviderAccount, Sender, SendingDomain


def get_domain(request: HttpRequest, pk: int) -> SendingDomain:
    return get_object_or_404(SendingDomain.objects.for_account(request.account), pk=pk)


def get_sender(request: HttpRequest, pk: int) -> Sender:
    return get_object_or_404(Sender.objects.for_account(request.account).select_related("domain"), pk=pk)


def get_provider(request: HttpRequest, pk: int) -> ProviderAccount:
    return get_object_or_404(ProviderAccount.objects.for_account(request.account), pk=pk)


def error_text(exc: ValidationError) -> str:
    """A service's refusal in one line, for a message or a form error."""
    return " ".join(exc.messages)
