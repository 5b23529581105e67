"""One sentence for "this is still used": a delete refused by a PROTECT/RESTRICT reference from a
higher app (a mailing's sender, template, provider or resource) names what holds it, without the
lower app importing the higher one."""

from __future__ import annotations

from django.db.models import ProtectedError, RestrictedError


def used_by(exc: ProtectedError | RestrictedError, *, limit: int = 5) -> str:
    """"used by mailing “Welcome”, mailing “News” …" from the objects that hold the row."""
    held = getattr(exc, "protected_objects", None) or getattr(exc, "restricted_objects", None) or []
    labels = sorted({f"{o._meta.verbose_name} “{o}”" for o in held})
    more = " …" if len(labels) > limit else ""
    return "used by " + ", ".join(labels[:limit]) + more if labels else "still in use"
