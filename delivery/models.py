"""Sending infrastructure per account: sending domains, their DKIM keys, senders, provider accounts.

- SendingDomain: a domain the account sends from. `domain` is stored lowercase in its ASCII
  (IDNA/punycode) form. The VERP Return-Path domain defaults to "bounces.<domain>" (a subdomain,
  so bounce handling can point its MX elsewhere without touching the domain's own mail, and it
  still aligns with the From domain under DMARC's relaxed SPF alignment). Status: pending (never
  verified), verified (the active DKIM key's TXT record matched at the last check), failing (was
  verified, the last check no longer matched).
- DkimKey: RSA-2048 keys per domain. Exactly one `active` key per domain signs; rotation makes a
  new active key with a new selector and marks the old one `retired` (still published, so mail
  in flight verifies) until it is removed (the row is deleted).
- Sender: a From address on one of the account's domains. Usable for sending only when its
  domain is verified (`Sender.is_usable`); see delivery.services.senders for the DEBUG exception.
- ProviderAccount: how a channel's messages leave (an SMTP relay, an SMS API...). `options` holds
  non-secret settings, `secrets` is encrypted at rest (cdp.secrets) and never shown again.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone as tz

from accounts.models import Account, TenantQuerySet
from cdp.secrets import EncryptedJSONField, EncryptedTextField
from resources.models import Channel


class SendingDomain(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        VERIFIED = "verified", "Verified"
        FAILING = "failing", "Failing"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="sending_domains")
    domain = models.CharField(max_length=253, help_text="Lowercase, ASCII (IDNA) form, e.g. shop.example.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    return_path_domain = models.CharField(
        max_length=253, blank=True, help_text="The VERP bounce domain; default bounces.<domain>."
    )
    checked_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # The last DNS check: {"checked_at", "records": [{name, type, expected, found, status, message}]}
    last_check = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["domain", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "domain"], name="sendingdomain_unique_domain")]

    def __str__(self) -> str:
        return self.domain

    def get_absolute_url(self) -> str:
        return reverse("delivery:domain_detail", args=[self.pk])

    @property
    def unicode_domain(self) -> str:
        """The domain as people write it (xn-- labels decoded)."""
        try:
            return self.domain.encode("ascii").decode("idna")
        except UnicodeError:
            return self.domain

    @property
    def is_verified(self) -> bool:
        return self.status == self.Status.VERIFIED

    @property
    def bounce_domain(self) -> str:
        return self.return_path_domain or self.domain

    def active_key(self) -> DkimKey | None:
        return self.dkim_keys.filter(status=DkimKey.Status.ACTIVE).first()


class DkimKey(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired (still published)"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="dkim_keys")
    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="dkim_keys")
    selector = models.CharField(max_length=63)
    algorithm = models.CharField(max_length=16, default="rsa-sha256", editable=False)
    key_size = models.PositiveIntegerField(default=2048, editable=False)
    private_key = EncryptedTextField(help_text="PKCS#8 PEM, encrypted at rest.")
    public_key = models.TextField(help_text="Base64 DER SubjectPublicKeyInfo: the p= tag.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    retired_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["domain_id", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="dkimkey_unique_selector"),
            models.UniqueConstraint(
                fields=["domain"], condition=Q(status="active"), name="dkimkey_one_active_per_domain"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.domain}"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.domain}"

    @property
    def txt_value(self) -> str:
        """The DNS TXT value to publish."""
        return f"v=DKIM1; k=rsa; p={self.public_key}"

    @property
    def txt_strings(self) -> list[str]:
        """The TXT value split into <=255-character strings (one DNS TXT record of several strings)."""
        value = self.txt_value
        return [value[i : i + 255] for i in range(0, len(value), 255)]


class Sender(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="senders")
    # RESTRICT: a domain with senders cannot be deleted on its own (the service says so), while
    # deleting the whole account (which cascades to both) still works.
    domain = models.ForeignKey(SendingDomain, on_delete=models.RESTRICT, related_name="senders")
    from_name = models.CharField(max_length=200, blank=True)
    local_part = models.CharField(max_length=64, help_text="The part before @, e.g. news.")
    reply_to = models.EmailField(blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-is_default", "from_name", "local_part", "id"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "local_part"], name="sender_unique_address"),
            models.UniqueConstraint(fields=["account"], condition=Q(is_default=True), name="sender_one_default"),
        ]

    def __str__(self) -> str:
        return f"{self.from_name} <{self.from_address}>" if self.from_name else self.from_address

    @property
    def from_address(self) -> str:
        return f"{self.local_part}@{self.domain.domain}"

    @property
    def is_usable(self) -> bool:
        """Mail may go out from this sender: its domain passed the DNS (DKIM) check."""
        return self.domain.status == SendingDomain.Status.VERIFIED


class ProviderAccount(models.Model):
    class Kind(models.TextChoices):
        SMTP = "smtp", "SMTP relay"
        HTTP_SMS = "http_sms", "HTTP SMS API"
        TWILIO = "twilio", "Twilio"
        WEBPUSH = "webpush", "Web push (VAPID)"
        FCM = "fcm", "Firebase Cloud Messaging"
        APNS = "apns", "Apple Push Notification service"
        TELEGRAM = "telegram", "Telegram bot"
        FILE = "file", "File (outbox)"
        CONSOLE = "console", "Console"
        LOCMEM = "locmem", "In memory (tests)"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="provider_accounts")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200)
    options = models.JSONField(default=dict, blank=True, help_text="Non-secret settings of the kind.")
    secrets = EncryptedJSONField(help_text="Passwords, tokens, private keys; encrypted, never shown again.")
    is_default = models.BooleanField(default=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["channel", "-is_default", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="provideraccount_unique_name"),
            models.UniqueConstraint(
                fields=["account", "channel"], condition=Q(is_default=True), name="provideraccount_one_default"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def secret_names(self) -> list[str]:
        """Which secrets are saved (the UI shows "saved" for these, never the values)."""
        return sorted(k for k, v in self.secrets.items() if v not in (None, ""))
