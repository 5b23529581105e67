"""Templates: create, change, archive, delete, duplicate."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError, RestrictedError
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from cdp.protect import used_by
from content.models import Template
from content.services.errors import ContentError
from profiles.models import ProfileDatabase

MAX_TEMPLATES_PER_ACCOUNT = 10_000
UPDATABLE = ("name", "description", "kind", "database")


def _clean_name(name: Any) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise ContentError({"name": "a name is required"})
    if len(name) > 200:
        raise ContentError({"name": "at most 200 characters"})
    return name


def _clean_kind(kind: Any) -> str:
    if kind not in Template.Kind.values:
        raise ContentError({"kind": f"must be one of {', '.join(Template.Kind.values)}"})
    return str(kind)


def _clean_database(account: Account, database: Any) -> ProfileDatabase | None:
    if database is None or database == "":
        return None
    if isinstance(database, ProfileDatabase):
        if database.account_id != account.pk:
            raise ContentError({"database": "no such profile database"})
        return database
    db = ProfileDatabase.objects.for_account(account).filter(pk=database).first() if str(database).isdigit() else None
    if db is None:
        raise ContentError({"database": "no such profile database"})
    return db


def _name_taken(account: Account, name: str, exclude: int | None = None) -> bool:
    qs = Template.objects.for_account(account).filter(name=name)
    if exclude is not None:
        qs = qs.exclude(pk=exclude)
    return qs.exists()


@transaction.atomic
def template_create(*, account: Account, name: str, kind: str, actor: Actor, database: Any = None,
                    description: str = "") -> Template:
    """A new template with no versions yet (save one per channel with template_version_save).
    `database`: a ProfileDatabase of the account, its id, or None. Raises ContentError."""
    name = _clean_name(name)
    kind = _clean_kind(kind)
    db = _clean_database(account, database)
    if _name_taken(account, name):
        raise ContentError({"name": f"another template is called “{name}”"})
    if Template.objects.for_account(account).count() >= MAX_TEMPLATES_PER_ACCOUNT:
        raise ContentError({"name": f"an account has at most {MAX_TEMPLATES_PER_ACCOUNT:,} templates"})
    try:
        with transaction.atomic():
            template = Template.objects.create(account=account, name=name, kind=kind, database=db,
                                               description=str(description or "").strip()[:5000],
                                               created_by=actor.user)
    except IntegrityError:
        raise ContentError({"name": f"another template is called “{name}”"}) from None
    audit_log(account=account, actor=actor, verb="template.created", target=template, data={"kind": kind})
    return template


@transaction.atomic
def template_update(*, template: Template, actor: Actor, **fields: Any) -> Template:
    """Change name, description, kind and/or database. Raises ContentError (unknown field too)."""
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise ContentError({sorted(unknown)[0]: "cannot be changed"})
    template = Template.objects.select_for_update().get(pk=template.pk)
    changed: list[str] = []
    if "name" in fields:
        name = _clean_name(fields["name"])
        if name != template.name:
            if _name_taken(template.account, name, exclude=template.pk):
                raise ContentError({"name": f"another template is called “{name}”"})
            template.name = name
            changed.append("name")
    if "description" in fields:
        description = str(fields["description"] or "").strip()[:5000]
        if description != template.description:
            template.description = description
            changed.append("description")
    if "kind" in fields:
        kind = _clean_kind(fields["kind"])
        if kind != template.kind:
            template.kind = kind
            changed.append("kind")
    if "database" in fields:
        db = _clean_database(template.account, fields["database"])
        if (db.pk if db else None) != template.database_id:
            template.database = db
            changed.append("database")
    if changed:
        template.save(update_fields=[*changed, "updated_at"])
        audit_log(account=template.account, actor=actor, verb="template.updated", target=template,
                  data={"fields": changed})
    return template


@transaction.atomic
def template_archive(*, template: Template, actor: Actor, archived: bool = True) -> Template:
    """Archive (hidden from lists, kept for the mailings that used it) or bring back. Idempotent."""
    template = Template.objects.select_for_update().get(pk=template.pk)
    if archived == template.is_archived:
        return template
    template.archived_at = timezone.now() if archived else None
    template.save(update_fields=["archived_at", "updated_at"])
    audit_log(account=template.account, actor=actor, verb="template.archived" if archived else "template.restored",
              target=template)
    return template


def template_delete(*, template: Template, actor: Actor) -> None:
    """Delete the template and all its versions. Raises ContentError while a mailing uses it
    (archive it instead)."""
    try:
        with transaction.atomic():
            audit_log(account=template.account, actor=actor, verb="template.deleted", target=template,
                      target_label=template.name)
            template.delete()
    except (ProtectedError, RestrictedError) as exc:
        raise ContentError({"template": f"“{template.name}” is {used_by(exc)}: archive it instead"}) from exc


@transaction.atomic
def template_duplicate(*, template: Template, actor: Actor, name: str | None = None) -> Template:
    """A new template with a copy of every current version (as version 1 of each channel).
    Default name: "<name> (copy)", numbered when taken."""
    from content.services.versions import template_version_save

    account = template.account
    if name is None:
        base = f"{template.name} (copy)"[:190]
        name, n = base, 1
        while _name_taken(account, name):
            n += 1
            name = f"{base} {n}"
    copy = template_create(account=account, name=name, kind=template.kind, actor=actor, database=template.database,
                           description=template.description)
    for version in template.versions.filter(is_current=True).order_by("channel"):
        template_version_save(template=copy, channel=version.channel, data=version.data, actor=actor,
                              note=f"Copied from “{template.name}” v{version.number}")
    audit_log(account=account, actor=actor, verb="template.duplicated", target=copy,
              data={"from": template.pk})
    return copy
