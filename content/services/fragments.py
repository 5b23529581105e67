"""Fragments: pieces of HTML (and text) that templates include by key."""

from __future__ import annotations

import re

from django.db import IntegrityError, transaction
from jinja2 import TemplateSyntaxError

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account
from content import rendering
from content.models import Fragment, Template
from content.sandbox import SandboxEnvironment
from content.services.errors import ContentError

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_FRAGMENT = 128_000
MAX_FRAGMENTS_PER_ACCOUNT = 1_000


def fragment_usage(fragment: Fragment) -> list[Template]:
    """Templates whose current versions include this fragment (by its key), by name."""
    from content.services.versions import fragment_keys_used

    ids = fragment_keys_used(fragment.account_id).get(fragment.key, set())
    return list(Template.objects.filter(account_id=fragment.account_id, pk__in=ids).order_by("name", "id"))


def _names(templates: list[Template]) -> str:
    shown = ", ".join(f"“{t.name}”" for t in templates[:5])
    return shown + (f" and {len(templates) - 5} more" if len(templates) > 5 else "")


def _check_source(account: Account, part: str, source: str, own_key: str) -> list[tuple[str, int | None, str]]:
    env = SandboxEnvironment()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as e:
        return [(part, e.lineno, e.message or str(e))]
    errors: list[tuple[str, int | None, str]] = []
    refs = rendering._references(tree)
    known = set(Fragment.objects.for_account(account).filter(key__in=[n for n, _ in refs]).values_list("key", flat=True))
    for name, line in refs:
        if name == own_key:
            errors.append((part, line, "a fragment cannot include itself"))
        elif name not in known:
            errors.append((part, line, f"no fragment named {name!r}"))
    return errors


@transaction.atomic
def fragment_save(*, account: Account, key: str, name: str, html: str, actor: Actor, text: str = "",
                  fragment: Fragment | None = None) -> Fragment:
    """Create (fragment=None) or change a fragment. The next render of every template that
    includes it uses the new content (compiled versions are dropped through cdp.confcache).
    A key in use by templates cannot change. Raises ContentError keyed by field."""
    key = str(key or "").strip().lower()
    name = " ".join(str(name or "").split()) or key
    html, text = str(html or ""), str(text or "")
    errors: list[tuple[str, int | None, str]] = []
    if not KEY.match(key):
        errors.append(("key", None, "use lowercase letters, digits, - and _ (at most 64), e.g. footer"))
    if len(name) > 200:
        errors.append(("name", None, "at most 200 characters"))
    for part, value in (("html", html), ("text", text)):
        if len(value) > MAX_FRAGMENT:
            errors.append((part, None, f"at most {MAX_FRAGMENT:,} characters"))
    if not html.strip() and not text.strip():
        errors.append(("html", None, "a fragment needs HTML or text"))
    if errors:
        raise ContentError(errors)
    for part, value in (("html", html), ("text", text)):
        errors += _check_source(account, part, value, key)
    if errors:
        raise ContentError(errors)
    taken = Fragment.objects.for_account(account).filter(key=key)
    if fragment is not None:
        fragment = Fragment.objects.select_for_update().get(pk=fragment.pk, account=account)
        taken = taken.exclude(pk=fragment.pk)
        if key != fragment.key:
            users = fragment_usage(fragment)
            if users:
                raise ContentError({"key": f"“{fragment.key}” is included by {_names(users)}: the key cannot change"})
    if taken.exists():
        raise ContentError({"key": f"another fragment has the key “{key}”"})
    if fragment is None and Fragment.objects.for_account(account).count() >= MAX_FRAGMENTS_PER_ACCOUNT:
        raise ContentError({"key": f"an account has at most {MAX_FRAGMENTS_PER_ACCOUNT:,} fragments"})
    try:
        with transaction.atomic():
            if fragment is None:
                fragment = Fragment.objects.create(account=account, key=key, name=name, html=html, text=text,
                                                   created_by=actor.user)
                verb = "fragment.created"
            else:
                fragment.key, fragment.name, fragment.html, fragment.text = key, name, html, text
                fragment.save(update_fields=["key", "name", "html", "text", "updated_at"])
                verb = "fragment.updated"
    except IntegrityError:
        raise ContentError({"key": f"another fragment has the key “{key}”"}) from None
    audit_log(account=account, actor=actor, verb=verb, target=fragment, data={"key": key})
    return fragment


@transaction.atomic
def fragment_delete(*, fragment: Fragment, actor: Actor) -> None:
    """Delete a fragment no current template version includes; otherwise ContentError naming
    the templates that include it."""
    users = fragment_usage(fragment)
    if users:
        raise ContentError({"key": f"“{fragment.key}” is included by {_names(users)}: change those templates first"})
    audit_log(account=fragment.account, actor=actor, verb="fragment.deleted", target=fragment,
              target_label=fragment.key)
    fragment.delete()


