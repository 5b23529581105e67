"""Message templates: one Template, a version per channel per save, and reusable fragments.

- Template: what the marketer names ("Welcome"); its `kind` says whether it is marketing (an
  e-mail must carry an unsubscribe link) or transactional.
- TemplateVersion: every save of one channel of a template is a new row (numbered 1, 2, 3 per
  template x channel); `data` is what the person wrote (the parts of the channel), `compiled` is
  what the renderer compiles (CSS-inlined HTML with the preheader and link placeholders, the
  generated text...), `links` the catalogued links. A version is never updated after it is saved,
  except `is_current` (exactly one current version per template x channel).
- Fragment: a piece of HTML (and optional text) that templates include by key:
  `{% include "footer" %}`. Fragments are read when a version is compiled (per worker), never
  per message.

Write through content.services only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone as tz

from accounts.models import Account, TenantQuerySet
from profiles.models import ProfileDatabase
from resources.models import Channel


class TemplateQuerySet(TenantQuerySet):
    def active(self) -> TemplateQuerySet:
        return self.filter(archived_at__isnull=True)


class Template(models.Model):
    class Kind(models.TextChoices):
        MARKETING = "marketing", "Marketing"
        TRANSACTIONAL = "transactional", "Transactional"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    database = models.ForeignKey(
        ProfileDatabase, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The profile database whose fields the template uses (variable linting, preview profiles).",
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MARKETING)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=tz.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = TemplateQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="template_unique_name")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("content:template_detail", args=[self.pk])

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class TemplateVersion(models.Model):
    Channel = Channel

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    number = models.PositiveIntegerField()
    data = models.JSONField(default=dict, help_text="The parts as written, e.g. {'subject': ..., 'html': ...}.")
    compiled = models.JSONField(default=dict, help_text="The part sources the renderer compiles (content.rendering).")
    links = models.JSONField(default=list, blank=True, help_text='Catalogued links: [{"id", "url", "text"}].')
    lint = models.JSONField(default=list, blank=True, help_text="Lint messages at save (content.lint).")
    size = models.PositiveIntegerField(default=0, help_text="Bytes of the compiled HTML (e-mail).")
    is_current = models.BooleanField(default=False)
    note = models.CharField(max_length=500, blank=True)
    restored_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=tz.now, editable=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["template", "channel", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "channel", "number"], name="templateversion_unique_number"),
            models.UniqueConstraint(fields=["template", "channel"], condition=Q(is_current=True),
                                    name="templateversion_one_current"),
        ]

    def __str__(self) -> str:
        return f"{self.template} · {self.get_channel_display()} v{self.number}"

    def get_absolute_url(self) -> str:
        return self.template.get_absolute_url()

    @property
    def lint_errors(self) -> list[dict]:
        return [m for m in self.lint if m.get("level") == "error"]


class Fragment(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    key = models.SlugField(max_length=64, help_text='What templates name: {% include "footer" %}.')
    name = models.CharField(max_length=200)
    html = models.TextField(blank=True)
    text = models.TextField(blank=True, help_text="For text parts; empty: generated from the HTML.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=tz.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["key", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="fragment_unique_key")]

    def __str__(self) -> str:
        return self.name or self.key
