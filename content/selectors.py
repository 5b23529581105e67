"""Reads on templates, versions and fragments shared by the views, the API and the mailings."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Account
from content.models import Fragment, Template, TemplateVersion
from profiles.models import Profile


def template_list(*, account: Account, search: str = "", channel: str | None = None,
                  include_archived: bool = False) -> QuerySet[Template]:
    """The account's templates by name; `channel`: only those with a current version on it."""
    qs = Template.objects.for_account(account).select_related("database")
    if not include_archived:
        qs = qs.filter(archived_at__isnull=True)
    if search.strip():
        qs = qs.filter(name__icontains=search.strip()[:100])
    if channel:
        qs = qs.filter(Exists(TemplateVersion.objects.filter(template=OuterRef("pk"), channel=channel, is_current=True)))
    return qs.order_by("name", "id")


def template_get(*, account: Account, pk: int) -> Template:
    """The account's template (Http404 for another account's or none)."""
    return get_object_or_404(Template.objects.for_account(account).select_related("database"), pk=pk)


def current_versions(template: Template) -> dict[str, TemplateVersion]:
    """{channel: current version}, in the channel order of resources.Channel."""
    rows = {v.channel: v for v in TemplateVersion.objects.filter(template=template, is_current=True)}
    return {c: rows[c] for c in TemplateVersion.Channel.values if c in rows}


def versions(template: Template, channel: str) -> QuerySet[TemplateVersion]:
    """All versions of one channel of a template, newest first."""
    return (TemplateVersion.objects.filter(template=template, channel=channel)
            .select_related("created_by", "restored_from").order_by("-number"))


def version_get(*, account: Account, pk: int) -> TemplateVersion:
    return get_object_or_404(TemplateVersion.objects.for_account(account).select_related("template"), pk=pk)


def fragment_list(*, account: Account, search: str = "") -> QuerySet[Fragment]:
    qs = Fragment.objects.for_account(account)
    if search.strip():
        s = search.strip()[:100]
        qs = qs.filter(key__icontains=s) | qs.filter(name__icontains=s)
    return qs.order_by("key", "id")


def fragment_get(*, account: Account, pk: int) -> Fragment:
    return get_object_or_404(Fragment.objects.for_account(account), pk=pk)


def fragment_usage(fragment: Fragment) -> list[Template]:
    from content.services.fragments import fragment_usage as usage

    return usage(fragment)


def preview_profiles(*, template: Template, search: str = "", limit: int = 20) -> QuerySet[Profile]:
    """Profiles to preview the template as: of its database (any of the account's when it has
    none), newest first; `search` matches the start of e-mail, phone or names."""
    qs = Profile.objects.for_account(template.account)
    if template.database_id:
        qs = qs.filter(database_id=template.database_id)
    s = search.strip()[:100]
    if s:
        qs = (qs.filter(email__istartswith=s) | qs.filter(phone__startswith=s) | qs.filter(first_name__istartswith=s)
              | qs.filter(last_name__istartswith=s))
    return qs.order_by("-id")[:limit]
