"""Resources (where people receive messages), their subscriptions, the consent ledger and suppressions.

A Subscription is the one thing that decides whether a message may go to an address: a profile
on a resource, on a channel, at an address (normalised per channel), with a status. Statuses move
only through `resources.services` (which validates the transition and writes a ConsentRecord);
the ledger is append-only, but erasure blanks its personal data.
"""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone as tz

from accounts.models import Account, TenantQuerySet
from profiles.models import Profile, ProfileDatabase


class Channel(models.TextChoices):
    EMAIL = "email", "E-mail"
    SMS = "sms", "SMS"
    WEBPUSH = "webpush", "Web push"
    MOBILEPUSH = "mobilepush", "Mobile push"
    TELEGRAM = "telegram", "Telegram"


CHANNEL_ICONS = {
    Channel.EMAIL: "envelope",
    Channel.SMS: "chat-left-text",
    Channel.WEBPUSH: "window-stack",
    Channel.MOBILEPUSH: "phone-vibrate",
    Channel.TELEGRAM: "telegram",
}


class Status(models.TextChoices):
    SUBSCRIBED = "subscribed", "Subscribed"
    UNCONFIRMED = "unconfirmed", "Awaiting confirmation"
    SUSPENDED = "suspended", "Paused"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    # System states: set by bounces, complaints and admins; leaving them needs an explicit admin action.
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    BLOCKED = "blocked", "Blocked"


SYSTEM_STATUSES = frozenset({Status.BOUNCED, Status.COMPLAINED, Status.BLOCKED})

# Bootstrap theme colour of each status, wherever a status is shown (badges, counters).
STATUS_TONES = {
    Status.SUBSCRIBED: "success",
    Status.UNCONFIRMED: "warning",
    Status.SUSPENDED: "info",
    Status.UNSUBSCRIBED: "secondary",
    Status.BOUNCED: "danger",
    Status.COMPLAINED: "danger",
    Status.BLOCKED: "dark",
}


def new_public_key() -> str:
    return "pk_" + secrets.token_urlsafe(18)


class Resource(models.Model):
    """A site, app, brand or newsletter that people subscribe to, for one profile database."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="resources")
    database = models.ForeignKey(ProfileDatabase, on_delete=models.CASCADE, related_name="resources")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60)
    description = models.TextField(blank=True)
    channels = models.JSONField(default=list, help_text="Enabled channels, e.g. ['email', 'sms'].")
    categories = models.JSONField(
        default=list, blank=True, help_text='Subscription categories: [{"key": "news", "label": "News"}, ...].'
    )
    double_opt_in = models.JSONField(default=list, blank=True, help_text="Channels whose new subscriptions need confirming.")
    sender_defaults = models.JSONField(default=dict, blank=True, help_text="Per channel: default sender and provider.")
    # The subscriber's preference page
    preference_visible_fields = models.JSONField(default=list, blank=True)
    preference_editable_fields = models.JSONField(default=list, blank=True)
    language = models.CharField(
        max_length=8, blank=True, default="", help_text="Language of the public pages; empty: the visitor's browser (English or Russian)."
    )
    # The public subscribe endpoint
    public_key = models.CharField(max_length=64, unique=True, default=new_public_key)
    subscribe_enabled = models.BooleanField(default=True)
    subscribe_redirect_url = models.URLField(blank=True, max_length=500)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "slug"], name="resource_unique_slug")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("resources:detail", args=[self.slug])

    @property
    def category_keys(self) -> list[str]:
        return [c["key"] for c in self.categories]

    def category_label(self, key: str) -> str:
        return next((c.get("label") or key for c in self.categories if c["key"] == key), key)

    def needs_confirmation(self, channel: str) -> bool:
        return channel in self.double_opt_in


class SubscriptionQuerySet(TenantQuerySet):
    def sendable(self) -> SubscriptionQuerySet:
        """Subscriptions a message may go to right now (suppression is checked separately)."""
        return self.filter(status=Status.SUBSCRIBED)


class Subscription(models.Model):
    """A profile on a resource, on a channel, at an address. Change it through resources.services only."""

    Status = Status
    Channel = Channel

    # The composite indexes below cover lookups by resource and by profile; an account-wide scan is
    # rare (deleting an account) and not worth an index every insert pays for.
    # The references are not checked by the database row by row (deferred foreign-key checks cost
    # an import of a million subscriptions ~8 s at commit). Instead the writers hold the profile and
    # resource rows (FOR KEY SHARE: `services.hold_parents`; an import holds its database's write
    # lock, which erasure and merge take too), so an erasure or deletion waits for them and cannot
    # leave a subscription behind; deletes go through the ORM, which cascades.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="subscriptions", db_index=False,
                                 db_constraint=False)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="subscriptions", db_index=False,
                                db_constraint=False)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=2048)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBSCRIBED)
    reason = models.CharField(max_length=500, blank=True)
    suspended_until = models.DateTimeField(null=True, blank=True)
    opted_out = models.JSONField(default=list, blank=True, help_text="Category keys this subscriber opted out of.")
    priority = models.PositiveSmallIntegerField(default=1, help_text="1 is the primary address on its channel.")
    meta = models.JSONField(default=dict, blank=True, help_text="Channel details: push keys, platform, app, chat name.")
    source = models.CharField(max_length=64, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=tz.now)
    changed_at = models.DateTimeField(default=tz.now, help_text="When the status last changed.")
    updated_at = models.DateTimeField(default=tz.now)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        ordering = ["channel", "priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["resource", "channel", "address"], name="subscription_unique_address"),
            models.CheckConstraint(
                condition=Q(status="suspended") | Q(suspended_until__isnull=True), name="subscription_until_only_suspended"
            ),
        ]
        indexes = [
            # A profile's subscriptions (the card, merge, erasure): a handful of rows, so the profile
            # alone is key enough, and a narrow index costs a big import less.
            models.Index(fields=["profile"], name="subscription_profile_idx"),
            models.Index(fields=["suspended_until"], condition=Q(suspended_until__isnull=False), name="subscription_resume_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.address}"

    @property
    def is_system_status(self) -> bool:
        return self.status in SYSTEM_STATUSES

    def short_address(self) -> str:
        return self.address if len(self.address) <= 48 else self.address[:22] + "…" + self.address[-22:]


class SubscriptionCount(models.Model):
    """How many subscriptions a resource has per channel and status, kept as deltas.

    Every change writes a row (+1 for the new status, -1 for the old) in the transaction that
    makes it, so counting costs a few rows however many subscribers there are, a big import adds
    a handful of rows rather than an index entry per subscription, and concurrent writers never
    wait on a shared counter row. `selectors.resource_counts` sums them; the scheduler compacts
    each resource's deltas into one row per channel and status (`services.subscription_counts_compact`),
    and `subscription_counts_rebuild` recounts from the subscriptions themselves (a daily check).
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="counts", db_index=False)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    delta = models.BigIntegerField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["resource", "channel", "status"], name="subscriptioncount_idx")]

    def __str__(self) -> str:
        return f"{self.channel} {self.status} {self.delta:+d}"


class ConsentRecord(models.Model):
    """One change of a subscription's status or categories: the append-only consent ledger."""

    class Actor(models.TextChoices):
        USER = "user", "Team member"
        TOKEN = "token", "API token"
        SUBSCRIBER = "subscriber", "Subscriber"
        SYSTEM = "system", "System"

    class Action(models.TextChoices):
        CREATED = "created", "Subscribed"
        STATUS = "status", "Status changed"
        CATEGORIES = "categories", "Categories changed"
        MOVED = "moved", "Moved by a merge"
        DELETED = "deleted", "Deleted"

    # The ledger is append-only and written in bulk (an import adds a row per subscription): its
    # references are kept by Django (CASCADE / SET_NULL when a resource, subscription or profile is
    # deleted through the ORM, which is the only way they are) rather than checked by the database
    # row by row at commit, which cost an import a second per 400k rows per key.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    resource = models.ForeignKey(Resource, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    # The subscription's id at the time: kept when the subscription is deleted (its "deleted"
    # record names it), cleared with the personal data on erasure. Nothing reads the ledger by it.
    subscription = models.ForeignKey(Subscription, null=True, blank=True, on_delete=models.DO_NOTHING, related_name="+",
                                     db_index=False, db_constraint=False)
    # Set to NULL when the profile goes (the record stays, anonymised).
    profile = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False,
                                db_constraint=False)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=2048, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    old_status = models.CharField(max_length=16, blank=True)
    new_status = models.CharField(max_length=16, blank=True)
    old_categories = models.JSONField(null=True, blank=True)
    new_categories = models.JSONField(null=True, blank=True)
    actor_type = models.CharField(max_length=16, choices=Actor.choices)
    actor_label = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=64, help_text="ui, import:<job>, api, form, link, one-click, preferences, "
                              "confirmation, bounce, complaint, merge, schedule")
    reason = models.CharField(max_length=500, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=tz.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["profile", "-created_at"], name="consent_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.old_status or '—'} → {self.new_status or '—'}"


class Suppression(models.Model):
    """An address, a whole e-mail domain or a phone number no message may be planned for."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail address"
        DOMAIN = "domain", "E-mail domain"
        PHONE = "phone", "Phone number"

    class Reason(models.TextChoices):
        MANUAL = "manual", "Added by hand"
        BOUNCE = "bounce", "Hard bounce"
        COMPLAINT = "complaint", "Spam complaint"
        LEGAL = "legal", "Legal request"
        ROLE = "role", "Role or shared address"
        IMPORTED = "imported", "Imported list"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="suppressions")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.CharField(max_length=320)
    reason = models.CharField(max_length=16, choices=Reason.choices, default=Reason.MANUAL)
    note = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=64, blank=True, help_text="ui, api, import:<job>, bounce...")
    created_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=tz.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["account", "kind", "value"], name="suppression_unique_value")]

    def __str__(self) -> str:
        return self.value

    @property
    def channel(self) -> str:
        return Channel.SMS if self.kind == self.Kind.PHONE else Channel.EMAIL
