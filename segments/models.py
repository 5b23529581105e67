"""Segments: named sets of profiles of one database, defined by a condition tree (see
`segments.conditions` for the tree's format) or filled by hand.

- static: a fixed list of members (filled from the conditions once, "snapshot now", or by hand,
  a CSV of match keys, an import or the API);
- dynamic: nothing stored; evaluated by the compiler whenever it is used (a send, a count);
- updatable: evaluated on a schedule (`schedule`, in the account's timezone; the tick claims due
  segments by `next_run_at`), members kept until the next update, with who entered and left.

Members of static and updatable segments live in one table, `SegmentMember`, refreshed
set-based (`segments.services.segment_recalculate`). Every recalculation writes a `SegmentRun`
(the size-over-time chart); an updatable segment's runs carry `SegmentMovement` rows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone as tz

from accounts.models import Account, Job, TenantQuerySet
from profiles.models import Profile, ProfileDatabase


class SegmentQuerySet(TenantQuerySet):
    def in_database(self, database: ProfileDatabase) -> SegmentQuerySet:
        return self.filter(database=database)


class Segment(models.Model):
    class Kind(models.TextChoices):
        STATIC = "static", "Static"
        DYNAMIC = "dynamic", "Dynamic"
        UPDATABLE = "updatable", "Updatable"

    class State(models.TextChoices):
        OK = "ok", "Ready"
        COMPUTING = "computing", "Computing"
        # A field, event type, resource or segment its conditions name is gone (or changed type):
        # never silently empty, never used as an audience until fixed.
        BROKEN = "broken", "Broken"
        FAILED = "failed", "Last update failed"

    STORED_KINDS = (Kind.STATIC, Kind.UPDATABLE)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    database = models.ForeignKey(ProfileDatabase, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DYNAMIC)
    conditions = models.JSONField(null=True, blank=True, help_text="The condition tree (segments.conditions).")
    schedule = models.JSONField(
        null=True, blank=True,
        help_text='Updatable only: {"every_hours": N} | {"daily_at": "HH:MM"} | {"cron": "m h dom mon dow"}, '
                  "in the account's timezone.",
    )
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_computed_at = models.DateTimeField(null=True, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    compute_ms = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OK)
    problem = models.TextField(blank=True, help_text="Why the segment is broken or its last update failed.")
    problem_path = models.CharField(max_length=300, blank=True, help_text='The condition at fault, e.g. "items[2].field".')
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=tz.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SegmentQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["database", "slug"], name="segment_unique_slug")]
        indexes = [
            models.Index(fields=["account", "database", "name"], name="segment_account_db_idx"),
            # The tick: due updatable segments.
            models.Index(fields=["next_run_at"], condition=Q(next_run_at__isnull=False), name="segment_next_run_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("segments:detail", args=[self.pk])

    @property
    def is_stored(self) -> bool:
        """Static and updatable segments keep their members in SegmentMember."""
        return self.kind in self.STORED_KINDS

    @property
    def is_broken(self) -> bool:
        return self.state == self.State.BROKEN


class SegmentMember(models.Model):
    """A profile in a static or updatable segment. No foreign-key checks in the database (a refresh
    that inserts a million rows would pay a deferred check for each at commit): the segment's rows
    go with it (`segment_delete`, and Django's cascade), erasure and merge are registered
    handlers, and reads join the profiles, so a member whose profile is gone is never seen."""

    pk = models.CompositePrimaryKey("segment_id", "profile_id")
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    profile = models.ForeignKey(Profile, on_delete=models.DO_NOTHING, related_name="+", db_index=False,
                                db_constraint=False)
    added_at = models.DateTimeField(default=tz.now)

    class Meta:
        indexes = [
            # "The segments this profile belongs to" (the profile card, erasure, merge).
            models.Index(fields=["profile"], name="segmentmember_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.profile_id} in {self.segment_id}"


class SegmentRun(models.Model):
    """One recalculation of a segment: its size then, who entered and left, how long it took."""

    class Trigger(models.TextChoices):
        MANUAL = "manual", "By hand"
        SCHEDULE = "schedule", "Schedule"
        API = "api", "API"
        CREATE = "create", "Created"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(default=tz.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    entered = models.BigIntegerField(default=0)
    left = models.BigIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["segment", "-started_at"], name="segmentrun_segment_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id} at {self.started_at:%Y-%m-%d %H:%M}"


class SegmentMovement(models.Model):
    """A profile that entered (or left) an updatable segment at a run (no foreign-key checks, like
    SegmentMember). Erasure leaves these rows: a bare profile id that no longer names anyone."""

    pk = models.CompositePrimaryKey("run_id", "profile_id")
    run = models.ForeignKey(SegmentRun, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    profile = models.ForeignKey(Profile, on_delete=models.DO_NOTHING, related_name="+", db_index=False,
                                db_constraint=False)
    entered = models.BooleanField()

    def __str__(self) -> str:
        return f"#{self.profile_id} {'entered' if self.entered else 'left'}"
