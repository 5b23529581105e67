"""Template pages, split by area: templates.py (the list, new, settings, archive, duplicate,
delete), editor.py (the editor page, saving a version, the lint/inbox panel and the profile
picker), preview.py (the sandboxed preview document), versions.py (history, compare, restore,
links), testsend.py ("send a test"), fragments.py (reusable pieces).

Every view looks objects up through `.for_account(request.account)`: another account's template,
version or fragment is a 404. Reading is ACCOUNT_VIEW; writing is CONTENT_EDIT.
"""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from accounts.permissions import Perm
from content.models import Fragment, Template, TemplateVersion
from resources.models import CHANNEL_ICONS, Channel

# The editor's tabs, in this order: (value, label, bootstrap icon).
CHANNELS: list[tuple[str, str, str]] = [(c.value, c.label, CHANNEL_ICONS[c]) for c in Channel]
CHANNEL_LABELS = dict(Channel.choices)


def can_edit(request: HttpRequest) -> bool:
    return request.membership.can(Perm.CONTENT_EDIT)


def get_template(request: HttpRequest, pk: int) -> Template:
    """The current account's template, or 404 (another account's is a 404 too)."""
    return get_object_or_404(
        Template.objects.for_account(request.account).select_related("database", "created_by"), pk=pk
    )


def get_version(request: HttpRequest, template: Template, pk: int | str | None) -> TemplateVersion:
    """A version of `template` (of the current account), or 404."""
    try:
        vid = int(pk or 0)
    except (TypeError, ValueError):
        raise Http404("No such version") from None
    return get_object_or_404(
        TemplateVersion.objects.for_account(request.account).select_related("created_by"), template=template, pk=vid
    )


def get_fragment(request: HttpRequest, pk: int) -> Fragment:
    return get_object_or_404(Fragment.objects.for_account(request.account), pk=pk)


def pick_channel(raw: str | None, default: str = Channel.EMAIL) -> str:
    """A known channel from a query/form value, else `default`."""
    return raw if raw in CHANNEL_LABELS else default


def error_dict(exc: Exception) -> dict[str, list[str]]:
    """A service's refusal as {part or "": [messages]}: django's ValidationError (a dict keyed by
    part, or a list), or an error with `.message` / `.part` / `.line` (RenderError, ContentError)."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors and all(isinstance(e, tuple) and len(e) == 3 for e in errors):
        # content.services.ContentError: (part, line, message) with the line where known.
        out: dict[str, list[str]] = {}
        for part, line, message in errors:
            out.setdefault(part or "", []).append(f"Line {line}: {message}" if line else message)
        return out
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return {("" if k == NON_FIELD_ERRORS else k): list(v) for k, v in exc.message_dict.items()}
        return {"": list(exc.messages)}
    message = getattr(exc, "message", "") or str(exc)
    part = getattr(exc, "part", "") or ""
    line = getattr(exc, "line", None)
    return {part: [f"Line {line}: {message}" if line else message]}


def error_text(exc: Exception) -> str:
    """The refusal in one sentence, for a toast."""
    parts = []
    for part, msgs in error_dict(exc).items():
        for m in msgs:
            parts.append(f"{part.capitalize()}: {m}" if part else m)
    return " ".join(parts)
