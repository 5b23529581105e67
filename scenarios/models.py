"""Automation scenarios: flows of steps that profiles enter and move through.

- Scenario: the account's flow over one profile database: its state (draft -> active <-> paused
  -> stopped), re-entry mode, goal (an event that takes a profile out wherever it is), the
  webhook signing secret, and which version is live.
- ScenarioVersion: a graph of Steps and Transitions. Exactly one version is the draft being
  edited; publishing freezes it (profiles enter the live version; those already inside finish on
  the version they entered unless moved step by step with a mapping). A version is never edited
  once published.
- Step: one node: an entry (segment, new profile, event, subscription, API) or an action (send,
  wait, wait for event, condition, split, update field, change subscription, static segment,
  webhook, exit). `key` ("s7") is stable across versions: counters, mappings and path logs name it.
  `kind` and `config` follow `scenarios.graph.STEP_KINDS`. A send step owns a trigger mailing
  (`mailing`, made when the version is published) so the mailings ledger applies consent,
  suppression, caps, windows and tracking, and the mailing's report counts its messages.
- Transition: from a step's named exit ("next", "yes"/"no", "event"/"timeout", "a"/"b"/...) to
  a step of the same version. One per (step, exit).
- Participation: one profile's trip through one version: where it is, when it is due, what it
  waits for, how often it moved today (the loop guard), the retries of a failing step. `seq`
  counts its moves: the engine writes only when `seq` is still what it read (a step done twice
  by a redelivered task has no second effect) and keys side effects by (participation, seq).
- PathEntry: the path log, a row per step a participation visited (entered, left, the exit it
  took, what happened there).
- StepStat: per-step counters kept as deltas (entered, passed, exited, failed), like
  mailings.MailingStat, so the diagram's figures never count a million path rows per page view.

Participations and path rows refer to profiles by plain ids (no foreign-key checks on bulk
inserts; erasure is a registered handler).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone as tz

from accounts.models import Account, TenantQuerySet
from cdp.secrets import EncryptedTextField
from profiles.models import ProfileDatabase


class ScenarioQuerySet(TenantQuerySet):
    def live(self) -> ScenarioQuerySet:
        return self.filter(state__in=Scenario.LIVE_STATES)


class Scenario(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"  # nobody enters, nobody moves; resume carries on where they were
        STOPPED = "stopped", "Stopped"  # final: everyone inside exits (reason "stopped")

    class Reentry(models.TextChoices):
        NEVER = "never", "Never: once per profile"
        AFTER_EXIT = "after_exit", "After the previous trip ended"
        ALWAYS = "always", "Always (several trips at once)"

    LIVE_STATES = (State.ACTIVE, State.PAUSED)

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    database = models.ForeignKey(ProfileDatabase, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    reentry = models.CharField(max_length=16, choices=Reentry.choices, default=Reentry.NEVER)
    # The global exit: {"type": "order.placed", "filters": [{property, op, value}, ...]} or {} (none).
    goal = models.JSONField(default=dict, blank=True)
    # The loop guard: a participation may move this many steps a day (then it fails, "step limit").
    step_limit = models.PositiveIntegerField(default=100)
    # Signs webhook bodies (HMAC-SHA256, header X-CDP-Signature); shown once, rotatable.
    webhook_secret = EncryptedTextField(blank=True, default="")
    # An admin may allow webhooks to private and loopback addresses (an on-premises CRM).
    webhooks_private_ok = models.BooleanField(default=False)
    live_version = models.ForeignKey("ScenarioVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    # Watermarks of the polled entries: the last profile created / segment run seen.
    entry_marks = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=tz.now)
    updated_at = models.DateTimeField(default=tz.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = ScenarioQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "state"], name="scenario_account_state_idx")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("scenarios:detail", args=[self.pk])

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES


class ScenarioVersion(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"  # the live one, or an older one profiles may still be on
        RETIRED = "retired", "Retired"  # nobody is on it any more

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    scenario = models.ForeignKey(Scenario, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=tz.now)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["scenario", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["scenario", "number"], name="scenarioversion_number_uniq"),
            # One draft at a time.
            models.UniqueConstraint(fields=["scenario"], condition=Q(state="draft"), name="scenarioversion_one_draft"),
        ]

    def __str__(self) -> str:
        return f"{self.scenario_id} v{self.number}"


class Step(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ScenarioVersion, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=16)  # "s1", "s2", ...: stable across versions
    kind = models.CharField(max_length=32)  # scenarios.graph.STEP_KINDS
    title = models.CharField(max_length=200, blank=True)
    config = models.JSONField(default=dict, blank=True)
    # Where the diagram draws it: a grid cell (column, row); the editor moves steps by cells.
    col = models.PositiveSmallIntegerField(default=0)
    row = models.PositiveSmallIntegerField(default=0)
    # A send step's trigger mailing (made on publish; PROTECT: its ledger rows are the proof).
    mailing = models.ForeignKey("mailings.Mailing", null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["version", "row", "col", "id"]
        constraints = [models.UniqueConstraint(fields=["version", "key"], name="step_version_key_uniq")]

    def __str__(self) -> str:
        return f"{self.key} {self.kind}"

    @property
    def is_entry(self) -> bool:
        return self.kind.startswith("entry.")


class Transition(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ScenarioVersion, on_delete=models.CASCADE, related_name="transitions")
    source = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="outgoing")
    exit = models.CharField(max_length=32, default="next")
    target = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="incoming")

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["version", "source", "exit"]
        constraints = [models.UniqueConstraint(fields=["source", "exit"], name="transition_source_exit_uniq")]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.exit} -> {self.target_id}"


class Participation(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "Active"  # due to run its current step at next_run_at
        WAITING = "waiting", "Waiting"  # in a wait step: due at next_run_at, or released by an event
        COMPLETED = "completed", "Completed"  # reached an exit step (or a step with no way on)
        EXITED = "exited", "Exited"  # taken out: goal reached, scenario stopped, erased, moved out
        FAILED = "failed", "Failed"  # a step failed after its retries, or the step limit was hit

    OPEN_STATES = (State.ACTIVE, State.WAITING)
    CLOSED_STATES = (State.COMPLETED, State.EXITED, State.FAILED)

    id = models.BigAutoField(primary_key=True)
    account_id = models.BigIntegerField()
    scenario = models.ForeignKey(Scenario, on_delete=models.CASCADE, related_name="+", db_index=False)
    version = models.ForeignKey(ScenarioVersion, on_delete=models.PROTECT, related_name="+", db_index=False)
    profile_id = models.BigIntegerField()
    step = models.ForeignKey(Step, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    # Whether a second open trip of the same profile is refused (re-entry never / after exit).
    exclusive = models.BooleanField(default=True)
    # What made it enter: "segment:12", "new", "event:991", "subscription:55", "api:<key>".
    entry = models.CharField(max_length=200, blank=True)
    # Dedupes entries: the same event id, API Idempotency-Key or "once" key never enters twice.
    entry_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 (NULL: no key, outside the unique constraint)
    next_run_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    seq = models.PositiveIntegerField(default=0)  # moves so far: the idempotency key of side effects
    attempts = models.PositiveSmallIntegerField(default=0)  # failures of the current step
    # An event wait: {"type": "order.placed", "filters": [...], "until": iso}; the type name is
    # also in waiting_for so the release is one indexed UPDATE.
    waiting_for = models.CharField(max_length=100, blank=True)
    wait = models.JSONField(null=True, blank=True)
    # Entry data (API / event properties), the event that released a wait, the last send's ledger id.
    context = models.JSONField(default=dict, blank=True)
    day = models.DateField(null=True, blank=True)
    moves_today = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    exit_reason = models.CharField(max_length=32, blank=True)  # goal, stopped, erased, step_limit, ...
    entered_at = models.DateTimeField(default=tz.now)
    updated_at = models.DateTimeField(default=tz.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The engine's claim: due open participations.
            models.Index(fields=["next_run_at"], name="participation_due_idx",
                         condition=Q(state__in=["active", "waiting"])),
            # Event waits released by type and profile.
            models.Index(fields=["waiting_for", "profile_id"], name="participation_waitfor_idx",
                         condition=Q(state="waiting") & ~Q(waiting_for="")),
            # A profile's trips (goal exits, the profile card, erasure, re-entry checks).
            models.Index(fields=["profile_id", "scenario"], name="participation_profile_idx"),
            # Per-step "in it now" and the participants list.
            models.Index(fields=["scenario", "state", "step"], name="participation_step_idx"),
            models.Index(fields=["scenario", "id"], name="participation_scenario_idx"),
            models.Index(fields=["lease_until"], name="participation_lease_idx", condition=Q(lease_until__isnull=False)),
        ]
        constraints = [
            models.UniqueConstraint(fields=["scenario", "profile_id"], name="participation_one_open",
                                    condition=Q(state__in=["active", "waiting"], exclusive=True)),
            models.UniqueConstraint(fields=["scenario", "entry_key"], name="participation_entry_key_uniq",
                                    condition=Q(entry_key__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"#{self.profile_id} in {self.scenario_id} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES


class PathEntry(models.Model):
    id = models.BigAutoField(primary_key=True)
    participation = models.ForeignKey(Participation, on_delete=models.CASCADE, related_name="+", db_index=False)
    version_number = models.PositiveIntegerField()
    step_key = models.CharField(max_length=16)
    seq = models.PositiveIntegerField()  # the participation's seq when it entered the step
    entered_at = models.DateTimeField(default=tz.now)
    left_at = models.DateTimeField(null=True, blank=True)
    exit = models.CharField(max_length=32, blank=True)  # the exit taken ("" while there)
    # What happened: "sent: ledger #123", "skipped: unsubscribed", "condition: no", "retry 2: timeout".
    outcome = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["participation", "seq", "id"]
        constraints = [models.UniqueConstraint(fields=["participation", "seq"], name="pathentry_seq_uniq")]

    def __str__(self) -> str:
        return f"{self.participation_id}@{self.step_key}"


class StepStat(models.Model):
    """A delta of a per-step counter (metric: entered, passed, exited, failed); compacted by
    housekeeping into one row per (scenario, step_key, metric)."""

    id = models.BigAutoField(primary_key=True)
    account_id = models.BigIntegerField()
    scenario_id = models.BigIntegerField()
    step_key = models.CharField(max_length=16)
    metric = models.CharField(max_length=32)
    n = models.BigIntegerField()
    compacted = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["scenario_id", "step_key", "metric"], name="stepstat_step_idx")]

    def __str__(self) -> str:
        return f"{self.scenario_id}:{self.step_key}:{self.metric}={self.n}"
