"""Profile databases, their typed fields, and profiles.

Storage (ARCHITECTURE.md "fast by design"): the system fields that everything filters on are
real columns (email and phone normalised and uniquely indexed per database); custom fields
live in one JSON column `data`, keyed by field name. A field marked "indexed" gets a partial
expression index on PostgreSQL (see `profiles.schema`), and a custom match key a partial
unique one.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone as tz

from accounts.models import Account, TenantQuerySet
from profiles.fieldtypes import FieldType

# System fields: columns on Profile, present in every database, in this order.
SYSTEM_FIELDS: list[dict[str, Any]] = [
    {"name": "email", "label": "E-mail", "type": FieldType.EMAIL, "unique": True},
    {"name": "phone", "label": "Phone", "type": FieldType.PHONE, "unique": True},
    {"name": "first_name", "label": "First name", "type": FieldType.STRING},
    {"name": "last_name", "label": "Last name", "type": FieldType.STRING},
    {"name": "birthday", "label": "Birthday", "type": FieldType.DATE},
    {"name": "gender", "label": "Gender", "type": FieldType.ENUM, "choices": ["female", "male", "other"]},
    {"name": "timezone", "label": "Timezone", "type": FieldType.STRING},
    {"name": "created_at", "label": "Created", "type": FieldType.DATETIME, "read_only": True},
    {"name": "updated_at", "label": "Updated", "type": FieldType.DATETIME, "read_only": True},
]
SYSTEM_FIELD_NAMES = frozenset(f["name"] for f in SYSTEM_FIELDS)
# System fields a profile's data can set (columns), in the order forms show them.
WRITABLE_SYSTEM_FIELDS = ("email", "phone", "first_name", "last_name", "birthday", "gender", "timezone")
RESERVED_NAMES = SYSTEM_FIELD_NAMES | {"id", "pk", "data", "database", "account", "profile", "match", "merge"}


def new_salt() -> str:
    return secrets.token_hex(16)


class ProfileDatabase(models.Model):
    """A set of profiles with one schema: the account's customers of a shop, an app's users..."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="profile_databases")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60)
    description = models.TextField(blank=True)
    match_keys = models.JSONField(
        default=list, help_text="Field names that identify a profile, first is the default (e.g. ['email'])."
    )
    erasure_salt = models.CharField(max_length=64, default=new_salt, editable=False)
    created_at = models.DateTimeField(default=tz.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "slug"], name="profiledatabase_unique_slug")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("profiles:profile_list", args=[self.slug])

    @property
    def default_match_key(self) -> str:
        return self.match_keys[0] if self.match_keys else "email"


class FieldQuerySet(models.QuerySet["Field"]):
    def custom(self) -> FieldQuerySet:
        return self.filter(is_system=False)


class Field(models.Model):
    """One attribute of the profiles of a database. System fields are rows too (is_system)."""

    Type = FieldType

    database = models.ForeignKey(ProfileDatabase, on_delete=models.CASCADE, related_name="fields")
    name = models.SlugField(max_length=64, allow_unicode=False, help_text="The key in imports, the API and templates.")
    label = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=FieldType.choices, default=FieldType.STRING)
    required = models.BooleanField(default=False)
    unique = models.BooleanField(default=False)
    default = models.JSONField(null=True, blank=True)
    choices = models.JSONField(default=list, blank=True)
    indexed = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)
    is_system = models.BooleanField(default=False)
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=tz.now, editable=False)

    objects = FieldQuerySet.as_manager()

    class Meta:
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["database", "name"], name="field_unique_name")]

    def __str__(self) -> str:
        return self.label

    @property
    def is_column(self) -> bool:
        return self.is_system


class ProfileQuerySet(TenantQuerySet):
    def in_database(self, database: ProfileDatabase) -> ProfileQuerySet:
        return self.filter(database=database)


class Profile(models.Model):
    """One customer. System fields are columns; custom fields are keys of `data`."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    database = models.ForeignKey(ProfileDatabase, on_delete=models.CASCADE, related_name="profiles")
    # NULL, not "", means "none": the unique indexes on (database, email|phone) skip NULLs.
    email = models.CharField(max_length=254, null=True, blank=True)  # noqa: DJ001
    phone = models.CharField(max_length=20, null=True, blank=True)  # noqa: DJ001
    first_name = models.CharField(max_length=1000, blank=True, default="")
    last_name = models.CharField(max_length=1000, blank=True, default="")
    birthday = models.DateField(null=True, blank=True)
    gender = models.CharField(max_length=16, blank=True, default="")
    timezone = models.CharField(max_length=64, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=tz.now)
    updated_at = models.DateTimeField(default=tz.now)

    objects = ProfileQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["database", "email"], condition=Q(email__isnull=False), name="profile_unique_email"
            ),
            models.UniqueConstraint(
                fields=["database", "phone"], condition=Q(phone__isnull=False), name="profile_unique_phone"
            ),
        ]
        indexes = [
            # The list: newest first, keyset on id.
            models.Index(fields=["database", "-id"], name="profile_db_id_idx"),
            # Prefix search on e-mail and names (LIKE 'abc%') on PostgreSQL.
            models.Index(
                fields=["database", "email"], name="profile_db_email_like_idx", opclasses=["int8_ops", "varchar_pattern_ops"]
            ),
            models.Index(fields=["database", "phone"], name="profile_db_phone_idx"),
            models.Index(fields=["database", "updated_at"], name="profile_db_updated_idx"),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.email or self.phone or f"Profile #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("profiles:profile_detail", args=[self.database.slug, self.pk])

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def value(self, name: str) -> Any:
        if name in SYSTEM_FIELD_NAMES:
            v = getattr(self, name)
            return v if v != "" else None
        return self.data.get(name)


class ProfileChange(models.Model):
    """What changed on a profile, by whom, from where: the card's change history."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="changes")
    changes = models.JSONField(help_text='{"field": [old, new], ...}')
    source = models.CharField(max_length=64, default="ui", help_text="ui, api, import:<job id>, merge...")
    actor_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=tz.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["profile", "-created_at"], name="profilechange_profile_idx")]

    def __str__(self) -> str:
        return f"{', '.join(self.changes)} by {self.actor_label or self.source}"


class ErasedIdentity(models.Model):
    """A salted hash of an erased person's match key, so imports can skip them (no personal data)."""

    database = models.ForeignKey(ProfileDatabase, on_delete=models.CASCADE, related_name="erased")
    key_hash = models.CharField(max_length=64)
    erased_at = models.DateTimeField(default=tz.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["database", "key_hash"], name="erased_unique_hash")]

    def __str__(self) -> str:
        return self.key_hash[:12]


class ProfileImport(models.Model):
    """An uploaded CSV/XLSX file on its way into a database: sniffed, mapped, then run as a Job."""

    class State(models.TextChoices):
        UPLOADED = "uploaded", "Waiting for mapping"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"

    class Mode(models.TextChoices):
        UPSERT = "upsert", "Add new and update existing"
        INSERT = "insert", "Add new only"
        UPDATE = "update", "Update existing only"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    database = models.ForeignKey(ProfileDatabase, on_delete=models.CASCADE, related_name="imports")
    job = models.OneToOneField("accounts.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="profile_import")
    file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255)
    size = models.BigIntegerField(default=0)
    format = models.CharField(max_length=8, default="csv")  # csv | xlsx
    encoding = models.CharField(max_length=32, blank=True)
    delimiter = models.CharField(max_length=4, blank=True)
    headers = models.JSONField(default=list, blank=True)
    sample = models.JSONField(default=list, blank=True, help_text="The first rows, for the mapping screen.")
    mapping = models.JSONField(default=dict, blank=True, help_text='{"<column index>": "<field name>"}')
    match_key = models.CharField(max_length=64, blank=True)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.UPSERT)
    clear_empty = models.BooleanField(default=False, help_text="Empty cells clear the stored value.")
    skip_erased = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.UPLOADED)
    rows = models.BigIntegerField(default=0)
    created = models.BigIntegerField(default=0)
    updated = models.BigIntegerField(default=0)
    unchanged = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    skipped = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0, help_text="Rows whose match key repeats in the file (last wins).")
    extra = models.JSONField(default=dict, blank=True, help_text="Options for other apps' import hooks (e.g. subscribe).")
    extra_results = models.JSONField(default=dict, blank=True, help_text="What those hooks reported.")
    error = models.TextField(blank=True)
    error_report = models.FileField(upload_to="imports/%Y/%m/", blank=True)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=tz.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.original_name

    def get_absolute_url(self) -> str:
        return reverse("profiles:import_detail", args=[self.database.slug, self.pk])
