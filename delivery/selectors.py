"""Reads of the delivery app shared by views, the API, tasks and mailings."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Account
from delivery.dns import RecordCheck, expected_records
from delivery.models import DkimKey, ProviderAccount, Sender, SendingDomain


def sending_domain_list(account: Account) -> QuerySet[SendingDomain]:
    """The account's domains with their keys prefetched (active first), private keys deferred."""
    keys = DkimKey.objects.defer("private_key").order_by("status", "-created_at")
    return SendingDomain.objects.for_account(account).prefetch_related(Prefetch("dkim_keys", queryset=keys))


def sending_domain_get(account: Account, pk: int) -> SendingDomain:
    """The account's domain or Http404 (another account's id is a 404)."""
    return get_object_or_404(sending_domain_list(account), pk=pk)


def dkim_key_get(account: Account, pk: int) -> DkimKey:
    return get_object_or_404(DkimKey.objects.for_account(account).select_related("domain").defer("private_key"), pk=pk)


def dns_records(domain: SendingDomain) -> list[RecordCheck]:
    """The records to publish, merged with the last check's findings when there was one."""
    records = expected_records(domain)
    last = {(r["name"], r["type"], r["expected"]): r for r in (domain.last_check or {}).get("records", [])}
    for record in records:
        seen = last.get((record.name, record.type, record.expected))
        if seen:
            record.found, record.status, record.message = seen["found"], seen["status"], seen["message"]
    return records


def dkim_key_for_signing(domain: SendingDomain) -> DkimKey | None:
    """The active key, private key deferred: delivery.dkim.signer_for decrypts it only on a
    worker-cache miss."""
    return (
        DkimKey.objects.filter(domain=domain, status=DkimKey.Status.ACTIVE)
        .select_related("domain").defer("private_key").first()
    )


def sender_list(account: Account, *, usable_only: bool = False) -> QuerySet[Sender]:
    qs = Sender.objects.for_account(account).select_related("domain")
    if usable_only:
        qs = qs.filter(domain__status=SendingDomain.Status.VERIFIED)
    return qs


def sender_get(account: Account, pk: int) -> Sender:
    return get_object_or_404(sender_list(account), pk=pk)


def sender_default(account: Account) -> Sender | None:
    return sender_list(account).order_by("-is_default", "id").first()


def provider_account_list(account: Account, *, channel: str | None = None) -> QuerySet[ProviderAccount]:
    """Secrets are deferred: lists never decrypt them."""
    qs = ProviderAccount.objects.for_account(account).defer("secrets")
    if channel:
        qs = qs.filter(channel=channel)
    return qs


def provider_account_get(account: Account, pk: int) -> ProviderAccount:
    return get_object_or_404(ProviderAccount.objects.for_account(account), pk=pk)


def provider_account_default(account: Account, channel: str) -> ProviderAccount | None:
    return ProviderAccount.objects.for_account(account).filter(channel=channel, is_default=True, active=True).first()
