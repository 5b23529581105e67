"""Mailings: what is sent to whom, when, and the send ledger that proves it.

- Mailing: a template sent over one channel, from a resource's subscriptions, to an audience (the
  whole database or segments to include / exclude, subscription categories), once (broadcast),
  on a schedule (regular) or in response to an event or API call (trigger).
- Run: one send of a mailing. Unique per (mailing, slot): two schedulers ticking the same slot
  make one run. A broadcast has one run ("once"); a regular mailing one per schedule slot; a
  trigger mailing one per UTC day, its ledger rows added as events arrive.
- LedgerEntry: one row per (run, subscription), created before any send (the planner's one
  INSERT .. SELECT), moving queued -> sending -> sent | failed | skipped | ambiguous. The
  database, not the broker, decides what was sent (ARCHITECTURE.md, "Send ledger").
- MailingStat: counters kept as deltas (+n rows written by the planner, the dispatch batches,
  the tracking and bounce handlers), so a report sums a few rows per metric and hour instead of
  counting millions of ledger rows and events on every page view.
- FrequencyCap: a sending policy, at account, resource or mailing level (the narrowest wins).

Ledger rows refer to subscriptions and profiles by plain ids, not foreign keys: a 100k-row
insert should not pay a check per row, and a deleted subscription must not delete the proof of
what was sent to it (erasure blanks the address instead, `services.ledger_erase`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone as tz

from accounts.models import Account, TenantQuerySet
from content.models import Template, TemplateVersion
from delivery.models import ProviderAccount, Sender
from profiles.models import ProfileDatabase
from resources.models import Channel, Resource
from segments.models import Segment


class MailingQuerySet(TenantQuerySet):
    def live(self) -> MailingQuerySet:
        return self.filter(state__in=Mailing.LIVE_STATES)


class Mailing(models.Model):
    Channel = Channel

    class Kind(models.TextChoices):
        BROADCAST = "broadcast", "Broadcast"
        REGULAR = "regular", "Regular"
        TRIGGER = "trigger", "Trigger"

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        # A broadcast waiting for its time; a regular mailing between slots; a trigger mailing listening.
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    LIVE_STATES = (State.SCHEDULED, State.SENDING, State.PAUSED)
    EDITABLE_STATES = (State.DRAFT, State.SCHEDULED, State.PAUSED)
    FINISHED_STATES = (State.DONE, State.CANCELLED)

    class Audience(models.TextChoices):
        DATABASE = "database", "Every subscriber of the resource"
        SEGMENTS = "segments", "Segments"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    database = models.ForeignKey(ProfileDatabase, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.BROADCAST)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    transactional = models.BooleanField(
        default=False, help_text="Receipts, confirmations, password resets: exempt from frequency caps; may go to "
                                 "unconfirmed addresses when it is a confirmation; resent once (same Message-ID) when in doubt.")
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)
    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="+")
    # RESTRICT/PROTECT: a sender, provider or template in use by a mailing cannot be deleted.
    sender = models.ForeignKey(Sender, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                               help_text="E-mail only; empty: the resource's or the account's default sender.")
    provider = models.ForeignKey(ProviderAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                 help_text="Empty: the channel's default provider.")
    template = models.ForeignKey(Template, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Audience
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.DATABASE)
    include_segments = models.ManyToManyField(Segment, blank=True, related_name="+")
    exclude_segments = models.ManyToManyField(Segment, blank=True, related_name="+")
    categories = models.JSONField(
        default=list, blank=True, help_text="Subscription categories this mailing belongs to: subscribers who opted out of "
                                            "any of them are skipped.")
    # When
    schedule = models.JSONField(
        default=dict, blank=True,
        help_text='Broadcast: {"mode": "now"} | {"mode": "at", "at": ISO datetime} | {"mode": "local", "date": '
                  '"YYYY-MM-DD", "time": "HH:MM"} (each recipient\'s timezone). Regular: the shapes of '
                  "mailings.windows.regular_slots, in the account's timezone.",
    )
    trigger = models.JSONField(
        default=dict, blank=True,
        help_text='Trigger: {"on": "event", "event": "<type name>", "filters": [{"property", "op", "value"}], '
                  '"delay_seconds": N} | {"on": "subscription", "delay_seconds": N} | {"on": "confirmation"} | {"on": "api"}.',
    )
    next_run_at = models.DateTimeField(null=True, blank=True, help_text="When the tick starts the next run (scheduled only).")
    speed_limit = models.PositiveIntegerField(null=True, blank=True, help_text="At most this many messages a minute.")
    send_window = models.JSONField(null=True, blank=True, help_text="mailings.windows.SendWindow.to_json(); empty: any time.")
    track_opens = models.BooleanField(default=True)
    track_clicks = models.BooleanField(default=True)
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=tz.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = MailingQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "state", "-created_at"], name="mailing_account_state_idx"),
            models.Index(fields=["next_run_at"], condition=Q(next_run_at__isnull=False), name="mailing_due_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("mailings:detail", args=[self.pk])

    @property
    def is_editable(self) -> bool:
        return self.state in self.EDITABLE_STATES

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES

    @property
    def is_confirmation(self) -> bool:
        """A double opt-in confirmation: the one mailing that may go to unconfirmed subscriptions."""
        return self.kind == self.Kind.TRIGGER and (self.trigger or {}).get("on") == "confirmation"


class Run(models.Model):
    class State(models.TextChoices):
        PLANNING = "planning", "Planning"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    FINISHED_STATES = (State.DONE, State.CANCELLED, State.FAILED)

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="runs")
    slot = models.CharField(max_length=64, help_text='"once", the UTC instant of a regular slot, or "day:YYYY-MM-DD" of a trigger.')
    state = models.CharField(max_length=16, choices=State.choices, default=State.PLANNING)
    # The template version frozen for this run: editing the template mid-run changes nothing sent.
    version = models.ForeignKey(TemplateVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    scheduled_for = models.DateTimeField(default=tz.now)
    planned = models.PositiveIntegerField(default=0, help_text="Ledger rows (every one ends sent, failed, skipped or ambiguous).")
    exclusions = models.JSONField(default=dict, blank=True, help_text="Audience members with no ledger row, by reason (no address...).")
    created_at = models.DateTimeField(default=tz.now, editable=False)
    planned_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        constraints = [models.UniqueConstraint(fields=["mailing", "slot"], name="run_unique_slot")]
        indexes = [models.Index(fields=["state"], condition=Q(state__in=["planning", "sending"]), name="run_active_idx")]

    def __str__(self) -> str:
        return f"{self.mailing} · {self.slot}"


class LedgerEntry(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        AMBIGUOUS = "ambiguous", "Unknown (connection lost)"

    TERMINAL = (Status.SENT, Status.FAILED, Status.SKIPPED, Status.AMBIGUOUS)

    class Reason(models.TextChoices):
        # skipped
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        UNCONFIRMED = "unconfirmed", "Subscription not confirmed"
        SUSPENDED = "suspended", "Subscription paused"
        BOUNCED = "bounced", "Address bounced"
        COMPLAINED = "complained", "Complained about spam"
        BLOCKED = "blocked", "Blocked"
        SUPPRESSED = "suppressed", "On a suppression list"
        OPTED_OUT = "opted_out", "Opted out of the mailing's category"
        CAPPED = "capped", "Frequency cap reached"
        ERASED = "erased", "Profile erased"
        GONE = "gone", "Subscription deleted"
        NO_SENDER = "no_sender", "No usable sender"
        CANCELLED = "cancelled", "Mailing cancelled"
        EXPIRED = "expired", "Send window passed"
        DUPLICATE = "duplicate", "Already sent for this event"
        # failed
        HARD_BOUNCE = "hard_bounce", "Rejected (hard bounce)"
        SOFT_BOUNCE = "soft_bounce", "Rejected (soft bounce, retries used up)"
        RENDER_ERROR = "render_error", "Template error"
        INVALID = "invalid", "Invalid address or message"
        ATTEMPTS = "attempts", "Too many attempts"
        PROVIDER = "provider", "Provider error"
        # ambiguous
        CONNECTION_LOST = "connection_lost", "Connection lost after the message was handed over"

    id = models.BigAutoField(primary_key=True)
    account_id = models.BigIntegerField()
    mailing_id = models.BigIntegerField()
    # No index of its own: every index below that starts with the run serves its lookups and the
    # cascade. A plain (run) index was the smallest of them, so a planner whose statistics had not
    # yet seen a run (a trigger day run growing between two ANALYZEs) estimated one row and chose
    # it, reading every row of the run to find a batch's few (measured: 100k rows read for each
    # 500-row claim of a 100k-trip scenario); without it, the narrowest is the queued rows' index.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="entries", db_index=False)
    subscription_id = models.BigIntegerField()
    profile_id = models.BigIntegerField()
    channel = models.CharField(max_length=16, choices=Channel.choices)
    address = models.CharField(max_length=2048, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=32, blank=True, choices=Reason.choices)
    detail = models.CharField(max_length=1000, blank=True, help_text="The server's answer, the cap that applied, the error.")
    attempts = models.PositiveSmallIntegerField(default=0)
    not_before = models.DateTimeField(null=True, blank=True, help_text="Local-time sending, send windows, delays, back-off.")
    # A queued row: the dispatch task it was handed to must claim it before this (else the sweeper
    # hands it out again). A sending row: the claim's lease.
    lease_until = models.DateTimeField(null=True, blank=True)
    wire_at = models.DateTimeField(null=True, blank=True, help_text="When its chunk started going over the wire (claim).")
    message_id = models.CharField(max_length=255, blank=True)
    trigger_key = models.CharField(max_length=160, null=True, blank=True)  # noqa: DJ001
    data = models.JSONField(null=True, blank=True, help_text="Template data of a trigger (an order, a cart).")
    created_at = models.DateTimeField(default=tz.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=tz.now)
    # First open / click / delivery / bounce: unique counting by a conditional UPDATE.
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "subscription_id"], condition=Q(trigger_key__isnull=True),
                                    name="ledger_unique_run_subscription"),
            models.UniqueConstraint(fields=["mailing_id", "trigger_key"], condition=Q(trigger_key__isnull=False),
                                    name="ledger_unique_trigger_key"),
        ]
        indexes = [
            # The dispatcher: a run's due queued rows, by id.
            models.Index(fields=["run", "id"], condition=Q(status="queued"), name="ledger_queued_idx"),
            # The sweeper: expired hand-outs and claims. Only rows with a lease are in it: a predicate on
            # status (queued/sending) would let the planner pick it for the hot statements that name
            # a batch's ids and a status, and scan every in-flight row of every run (a BitmapAnd over
            # a million entries, measured) instead of reading the ids from the primary key.
            models.Index(fields=["lease_until"], condition=Q(lease_until__isnull=False), name="ledger_lease_idx"),
            # The recipient log and caps: a profile's messages over time.
            models.Index(fields=["profile_id", "sent_at"], name="ledger_profile_sent_idx"),
            # The recipient log of a run: by status (skips by reason), keyset by id.
            models.Index(fields=["run", "status", "id"], name="ledger_run_status_idx"),
            # The recipient log's address search within a run (exact or prefix).
            models.Index(fields=["run", "address"], name="ledger_run_address_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.status}"

    @property
    def ref(self) -> str:
        """The reference carried in the Message-ID and VERP address (delivery.mime)."""
        return f"L{self.pk}"


class MailingStat(models.Model):
    """A delta of one counter of a mailing (and run), in an hour bucket: +n sent, +1 unique open,
    +1 click on a link... Summed by `selectors.mailing_report`; compacted by the tick."""

    id = models.BigAutoField(primary_key=True)
    account_id = models.BigIntegerField()
    mailing_id = models.BigIntegerField()
    run_id = models.BigIntegerField(null=True, blank=True)
    metric = models.CharField(max_length=48)
    link_id = models.BigIntegerField(null=True, blank=True)
    bucket = models.DateTimeField(help_text="The hour it happened in (UTC).")
    delta = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["mailing_id", "run_id", "metric"], name="mailingstat_idx")]

    def __str__(self) -> str:
        return f"{self.metric} {self.delta:+d}"


class FrequencyCap(models.Model):
    """At most `max_messages` in `days` days to one recipient (by `scope`). Set on the account
    (resource and mailing empty), a resource or a mailing; the narrowest one that exists applies.
    Transactional mailings are exempt."""

    class Scope(models.TextChoices):
        PROFILE = "profile", "per recipient"
        PROFILE_RESOURCE = "profile_resource", "per recipient and resource"
        PROFILE_CHANNEL = "profile_channel", "per recipient and channel"
        ADDRESS = "address", "per contact address"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    resource = models.ForeignKey(Resource, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    mailing = models.ForeignKey(Mailing, null=True, blank=True, on_delete=models.CASCADE, related_name="caps")
    max_messages = models.PositiveSmallIntegerField(help_text="1-15")
    days = models.PositiveSmallIntegerField(help_text="1-16")
    scope = models.CharField(max_length=20, choices=Scope.choices, default=Scope.PROFILE)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(max_messages__gte=1, max_messages__lte=15), name="cap_messages_range"),
            models.CheckConstraint(condition=Q(days__gte=1, days__lte=16), name="cap_days_range"),
            models.CheckConstraint(condition=Q(resource__isnull=True) | Q(mailing__isnull=True), name="cap_one_level"),
            models.UniqueConstraint(fields=["account"], condition=Q(resource__isnull=True, mailing__isnull=True),
                                    name="cap_one_account_level"),
            models.UniqueConstraint(fields=["resource"], condition=Q(resource__isnull=False), name="cap_one_per_resource"),
            models.UniqueConstraint(fields=["mailing"], condition=Q(mailing__isnull=False), name="cap_one_per_mailing"),
        ]

    def __str__(self) -> str:
        return f"at most {self.max_messages} in {self.days} days {self.get_scope_display()}"

    @property
    def level(self) -> str:
        return "mailing" if self.mailing_id else "resource" if self.resource_id else "account"


class HandledEvent(models.Model):
    """A history event a mailings handler has acted on: the handler inserts (handler, event id)
    with ON CONFLICT DO NOTHING in the transaction that applies the event, and acts only on the
    rows it inserted, so an event the history drain delivers twice (a redelivered task, two
    drains) changes counters and states once. Pruned after MAILINGS_HANDLED_EVENT_DAYS."""

    id = models.BigAutoField(primary_key=True)
    handler = models.CharField(max_length=32)
    event_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=tz.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["handler", "event_id"], name="handledevent_unique")]
        indexes = [models.Index(fields=["created_at"], name="handledevent_created_idx")]

    def __str__(self) -> str:
        return f"{self.handler} {self.event_id}"
