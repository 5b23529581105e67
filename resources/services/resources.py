"""Resources: create, change (validated settings), rotate the public key, delete."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError, RestrictedError
from django.utils.text import slugify

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from cdp.protect import used_by
from profiles.models import ProfileDatabase
from resources.models import Channel, Resource, Subscription
from resources.services.common import ResourceValidationError

# Slugs that would collide with the pages under /resources/.
RESERVED_SLUGS = frozenset({"new"})
MAX_CATEGORIES = 50
_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")


# --- resources -----------------------------------------------------------------------------------


def clean_categories(raw: Iterable[Any]) -> list[dict[str, str]]:
    """[{"key", "label"}] from dicts or "key" / "key:Label" strings. Raises ResourceValidationError."""
    out: list[dict[str, str]] = []
    for item in raw:
        if isinstance(item, dict):
            key, label = str(item.get("key", "")).strip(), str(item.get("label", "")).strip()
        else:
            key, _, label = str(item).partition(":")
            key, label = key.strip(), label.strip()
        if not key:
            continue
        key_norm = slugify(key).replace("-", "_")
        if not _KEY_RE.fullmatch(key_norm):
            raise ResourceValidationError({"categories": f"{key!r}: a category key is letters, digits and _ (at most 40), starting with a letter"})
        if any(c["key"] == key_norm for c in out):
            raise ResourceValidationError({"categories": f"the category {key_norm!r} is listed twice"})
        out.append({"key": key_norm, "label": (label or key.replace("_", " ").capitalize())[:100]})
    if len(out) > MAX_CATEGORIES:
        raise ResourceValidationError({"categories": f"at most {MAX_CATEGORIES} categories"})
    return out


def _clean_resource(values: dict[str, Any], database: ProfileDatabase, resource: Resource | None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    if "name" in values:
        name = str(values["name"] or "").strip()
        if not name:
            errors["name"] = "is required"
        clean["name"] = name[:200]
    if "channels" in values:
        channels = list(dict.fromkeys(values["channels"] or []))
        unknown = [c for c in channels if c not in Channel.values]
        if unknown:
            errors["channels"] = f"unknown channel(s) {', '.join(map(str, unknown))}; use {', '.join(Channel.values)}"
        elif not channels:
            errors["channels"] = "enable at least one channel"
        clean["channels"] = [c for c in Channel.values if c in channels]
    channels = clean.get("channels", resource.channels if resource else [])
    if "double_opt_in" in values:
        doi = list(dict.fromkeys(values["double_opt_in"] or []))
        bad = [c for c in doi if c not in channels]
        if bad:
            errors["double_opt_in"] = f"{', '.join(map(str, bad))} is not an enabled channel of this resource"
        clean["double_opt_in"] = [c for c in Channel.values if c in doi]
    if "categories" in values:
        try:
            clean["categories"] = clean_categories(values["categories"] or [])
        except ResourceValidationError as exc:
            errors.update(exc.errors)
    field_names = set(database.fields.values_list("name", flat=True))
    for key in ("preference_visible_fields", "preference_editable_fields"):
        if key in values:
            names = list(dict.fromkeys(values[key] or []))
            unknown = [n for n in names if n not in field_names]
            read_only = [n for n in names if n in ("created_at", "updated_at")] if key.endswith("editable_fields") else []
            if unknown:
                errors[key] = f"no such field(s) in {database.name}: {', '.join(map(str, unknown))}"
            elif read_only:
                errors[key] = f"read-only field(s) cannot be edited: {', '.join(read_only)}"
            clean[key] = names
    if "preference_editable_fields" in clean:
        # An editable field is visible too.
        visible = clean.get("preference_visible_fields", resource.preference_visible_fields if resource else [])
        clean["preference_visible_fields"] = list(dict.fromkeys([*visible, *clean["preference_editable_fields"]]))
    if "language" in values:
        lang = str(values["language"] or "")
        if lang not in ("", "en", "ru"):
            errors["language"] = "use en, ru, or empty (the visitor's browser)"
        clean["language"] = lang
    for key in ("description", "subscribe_redirect_url"):
        if key in values:
            clean[key] = str(values[key] or "").strip()
    if clean.get("subscribe_redirect_url") and not re.match(r"https?://", clean["subscribe_redirect_url"]):
        errors["subscribe_redirect_url"] = "must be an http:// or https:// address"
    if "subscribe_enabled" in values:
        clean["subscribe_enabled"] = bool(values["subscribe_enabled"])
    if "sender_defaults" in values:
        defaults = values["sender_defaults"] or {}
        if not isinstance(defaults, dict) or any(k not in Channel.values for k in defaults):
            errors["sender_defaults"] = "an object keyed by channel"
        clean["sender_defaults"] = defaults
    if "slug" in values:
        slug = slugify(str(values["slug"] or ""))[:60]
        if not slug:
            errors["slug"] = "is required (letters, digits and -)"
        elif slug in RESERVED_SLUGS:
            errors["slug"] = f"{slug!r} is reserved; pick another"
        clean["slug"] = slug
    if errors:
        raise ResourceValidationError(errors)
    return clean


def _unique_slug(account: Account, base: str, exclude: int | None = None) -> str:
    base = slugify(base)[:50] or "resource"
    if base in RESERVED_SLUGS:
        base = f"{base}-resource"
    slug, n = base, 2
    qs = Resource.objects.filter(account=account)
    if exclude:
        qs = qs.exclude(pk=exclude)
    while qs.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def resource_create(*, account: Account, database: ProfileDatabase, values: dict[str, Any], actor: Actor) -> Resource:
    """Create a resource for `database`. values: name (required), channels (required), slug, description,
    categories, double_opt_in, preference_*_fields, language, subscribe_*. Raises ResourceValidationError."""
    if database.account_id != account.pk:
        raise ResourceValidationError({"database": "no such database in this account"})
    values = {"channels": [Channel.EMAIL], **values}
    clean = _clean_resource({"name": "", **values}, database, None)
    if "slug" in values:
        if Resource.objects.filter(account=account, slug=clean["slug"]).exists():
            raise ResourceValidationError({"slug": f"another resource already uses {clean['slug']!r}"})
    else:
        clean["slug"] = _unique_slug(account, clean["name"])
    resource = Resource.objects.create(account=account, database=database, **clean)
    audit_log(account=account, actor=actor, verb="resource.created", target=resource,
              data={"database": database.slug, "channels": resource.channels})
    return resource


@transaction.atomic
def resource_update(*, resource: Resource, values: dict[str, Any], actor: Actor) -> dict[str, list[Any]]:
    """Change a resource's settings; returns {name: [old, new]}. Raises ResourceValidationError.

    A channel with subscriptions cannot be disabled (the subscriptions would be orphaned): stop
    sending on it, or delete them, first."""
    locked = Resource.objects.select_for_update().get(pk=resource.pk)
    clean = _clean_resource(values, locked.database, locked)
    if "slug" in clean and clean["slug"] != locked.slug and Resource.objects.filter(
            account_id=locked.account_id, slug=clean["slug"]).exclude(pk=locked.pk).exists():
        raise ResourceValidationError({"slug": f"another resource already uses {clean['slug']!r}"})
    if "channels" in clean:
        removed = set(locked.channels) - set(clean["channels"])
        used = sorted(set(Subscription.objects.filter(resource=locked, channel__in=removed).values_list("channel", flat=True)))
        if used:
            raise ResourceValidationError({"channels": f"{', '.join(Channel(c).label for c in used)} still has subscriptions: delete them first"})
        if "double_opt_in" not in clean:
            clean["double_opt_in"] = [c for c in locked.double_opt_in if c in clean["channels"]]
    # Opt-outs of a category that is removed stay on the subscriptions (harmless, and not worth
    # rewriting a million rows): nothing is sent in a category that does not exist.
    diff = {k: [getattr(locked, k), v] for k, v in clean.items() if getattr(locked, k) != v}
    if not diff:
        return {}
    for k, (_, v) in diff.items():
        setattr(locked, k, v)
    locked.save()
    audit_log(account=locked.account, actor=actor, verb="resource.updated", target=locked, data={"fields": sorted(diff)})
    resource.__dict__.update({k: v for k, v in locked.__dict__.items() if not k.startswith("_")})
    return diff


@transaction.atomic
def resource_rotate_public_key(*, resource: Resource, actor: Actor) -> str:
    """A new key for the public subscribe endpoint; forms with the old key stop working."""
    from resources.models import new_public_key

    resource.public_key = new_public_key()
    resource.save(update_fields=["public_key", "updated_at"])
    audit_log(account=resource.account, actor=actor, verb="resource.key_rotated", target=resource)
    return resource.public_key


def resource_delete(*, resource: Resource, actor: Actor) -> None:
    """Delete a resource with its subscriptions and consent records. Audited with the counts.
    Raises ResourceValidationError while a mailing sends from it."""
    try:
        with transaction.atomic():
            count = Subscription.objects.filter(resource=resource).count()
            audit_log(account=resource.account, actor=actor, verb="resource.deleted", target_label=resource.name,
                      data={"slug": resource.slug, "subscriptions": count})
            resource.delete()
    except (ProtectedError, RestrictedError) as exc:
        raise ResourceValidationError({"resource": f"“{resource.name}” is {used_by(exc)}; change or delete them first"}) from exc
