"""The action history: event types, events, tracked links and the account's retention setting.

Event is the biggest table of the platform (designed for 100M+ rows on PostgreSQL; see
docs/history.md for the measurements behind its layout). It is written only through
`history.services.events_ingest` (set-based, deduplicated by idempotency key) and read through
`history.selectors`. Its references to mailings, runs and ledger rows are plain integers: the
apps that own those rows sit above this one and are free to evolve, and a 100M-row table does
not pay a foreign-key check per insert. Profiles are the exception that matters: merge moves
and erasure removes a profile's events (registered handlers), and inserts join the profile so
an event never outlives or precedes its profile's erasure.
"""

from __future__ import annotations

import re

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone as tz

from accounts.models import Account, TenantQuerySet
from history.catalogue import BY_ID
from profiles.models import Profile, ProfileDatabase

CUSTOM_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")


class PropertyType(models.TextChoices):
    STRING = "string", "String"
    INTEGER = "integer", "Integer"
    DECIMAL = "decimal", "Decimal"
    BOOLEAN = "boolean", "Yes / no"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    ENUM = "enum", "One of a list"
    LIST = "list", "List of strings"
    JSON = "json", "JSON"


class EventTypeQuerySet(models.QuerySet["EventType"]):
    def visible_to(self, account: Account) -> EventTypeQuerySet:
        """The system catalogue and the account's own types."""
        return self.filter(Q(account__isnull=True) | Q(account=account))

    def for_account(self, account: Account) -> EventTypeQuerySet:
        return self.filter(account=account)


class EventType(models.Model):
    """A kind of event: a system type (account NULL, from `history.catalogue`) or an account's own
    custom type with a property schema. Strict types reject events whose properties do not match
    the schema; loose types store them marked untyped (segments ignore their typed properties)."""

    id = models.AutoField(primary_key=True)  # 4 bytes in every event row and index
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.CASCADE, related_name="event_types")
    name = models.CharField(
        max_length=64,
        validators=[RegexValidator(CUSTOM_NAME_RE, "Use 2-63 lowercase letters, digits and underscores, starting with a letter.")],
    )
    label = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    # [{"name": "sku", "type": "string", "required": true, "choices": [...]}, ...]
    properties = models.JSONField(default=list, blank=True)
    strict = models.BooleanField(
        default=True, help_text="Reject events whose properties do not match. Off: store them, marked untyped."
    )
    enabled = models.BooleanField(default=True, help_text="Disabled types are refused by the API (existing events stay).")
    created_at = models.DateTimeField(default=tz.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EventTypeQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="eventtype_unique_name"),
            models.UniqueConstraint(fields=["name"], condition=Q(account__isnull=True), name="eventtype_unique_system_name"),
        ]

    def __str__(self) -> str:
        return self.label or self.name

    def get_absolute_url(self) -> str:
        return reverse("history:type_detail", args=[self.name])

    @property
    def is_system(self) -> bool:
        return self.account_id is None

    @property
    def icon(self) -> str:
        st = BY_ID.get(self.pk)
        return st.icon if st else "lightning"

    @property
    def group(self) -> str:
        st = BY_ID.get(self.pk)
        return st.group if st else "custom"

    @property
    def public(self) -> bool:
        """Integrations may send it (the API, the JavaScript snippet)."""
        st = BY_ID.get(self.pk)
        return st.public if st else True


class Link(models.Model):
    """A URL a message links to, stored once per account: click tracking redirects by its id (never
    to a URL taken from the request), reports group clicks by it."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=2048)
    url_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "url_hash"], name="link_unique_url")]

    def __str__(self) -> str:
        return self.url


class EventQuerySet(TenantQuerySet):
    def of_profile(self, profile: Profile) -> EventQuerySet:
        return self.filter(profile_id=profile.pk)


class Event(models.Model):
    """One thing that happened to or was done by a profile.

    occurred_at is when it happened (the sender's clock, checked), received_at when it was stored.
    idempotency_key is the sender's event id (or a platform key such as "consent:<id>"): unique per
    account, so a retried batch or a replayed webhook is stored once.
    """

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    database = models.ForeignKey(ProfileDatabase, on_delete=models.DO_NOTHING, related_name="+", db_index=False,
                                 db_constraint=False)
    profile = models.ForeignKey(Profile, on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False)
    type = models.ForeignKey(EventType, on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=tz.now)
    channel = models.CharField(max_length=16, blank=True, default="")
    resource_id = models.BigIntegerField(null=True, blank=True)
    mailing_id = models.BigIntegerField(null=True, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    ledger_id = models.BigIntegerField(null=True, blank=True)
    link = models.ForeignKey(Link, null=True, blank=True, on_delete=models.DO_NOTHING, related_name="+", db_index=False,
                             db_constraint=False)
    properties = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=32, blank=True, default="")
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    # Likely not a person: a mail privacy proxy or link scanner (HEAD, within a second of sending, known agents).
    machine = models.BooleanField(default=False)
    # Stored from a loose type although its properties did not match the type's schema.
    untyped = models.BooleanField(default=False)

    objects = EventQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"], condition=Q(idempotency_key__isnull=False), name="event_unique_key"
            ),
        ]
        indexes = [
            # The timeline (newest first, keyset on (occurred_at, id)) and "what did this profile do".
            models.Index(fields=["profile", "-occurred_at", "-id"], name="event_profile_time_idx"),
            # Segments and triggers: this profile's events of a type over time.
            models.Index(fields=["profile", "type", "occurred_at"], name="event_profile_type_idx"),
            # Reports: a mailing's events by type.
            models.Index(fields=["mailing_id", "type"], condition=Q(mailing_id__isnull=False), name="event_mailing_type_idx"),
            # The explorer: the account's latest events, all or of a type.
            models.Index(fields=["account", "-id"], name="event_account_id_idx"),
            models.Index(fields=["account", "type", "-id"], name="event_account_type_idx"),
            # Segments: "events of type X in this window" as a set of profile ids, read from the
            # index alone on PostgreSQL (INCLUDE; SQLite gets the plain index). Migration 0004.
            models.Index(fields=["account", "type", "occurred_at"], include=["profile"], name="event_account_type_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type_id} #{self.pk}"


class EventDispatch(models.Model):
    """The outbox between stored events and the registered handlers (`history.handlers`).

    The statement that stores a batch adds one row here, in the same transaction, listing the
    stored events some handler wants; the trigger worker drains the rows (many batches at a
    time), calls the handlers and deletes them. So a stored event reaches its handlers even when
    Redis was down at commit (the sweep drains what no task was queued for), and a failing
    handler is retried from here with backoff (`handlers` names the ones still owed, `due_at`
    when to try again). Rows live for a moment: no account, no page shows them one by one."""

    id = models.BigAutoField(primary_key=True)
    event_ids = models.JSONField(help_text="The stored events' ids, ascending.")
    handlers = models.JSONField(null=True, blank=True, help_text="Only these handlers (a retry); empty: all interested.")
    attempts = models.PositiveIntegerField(default=0)
    due_at = models.DateTimeField(default=tz.now)
    created_at = models.DateTimeField(default=tz.now)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["due_at", "id"], name="eventdispatch_due_idx")]

    def __str__(self) -> str:
        return f"dispatch #{self.pk} ({len(self.event_ids or [])} events)"


class HistorySettings(models.Model):
    """The account's history settings: how long events are kept."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="history_settings")
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delete events older than this many days. Empty: keep them all."
    )
    last_cleanup_at = models.DateTimeField(null=True, blank=True)
    last_cleanup_deleted = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"History settings of {self.account_id}"
