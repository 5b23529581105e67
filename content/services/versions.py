"""Versions: every save of a channel's parts is a new TemplateVersion, compiled once here (CSS
inlined, links catalogued, text generated, linted) and never changed afterwards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Max

from accounts.access import Actor
from accounts.audit import audit_log
from content import rendering
from content.lint import lint
from content.models import Fragment, Template, TemplateVersion
from content.services.errors import ContentError
from history.tracking import links_ensure


def clean_data(channel: str, data: Any) -> dict[str, Any]:
    """The channel's parts from `data` (unknown keys dropped, strings trimmed of nothing but
    checked): required parts present, sizes within limits, telegram buttons well formed.
    Raises ContentError keyed by part."""
    if channel not in rendering.CHANNEL_PARTS:
        raise ContentError({"channel": f"unknown channel {channel!r}"})
    if not isinstance(data, Mapping):
        raise ContentError({"data": "the parts must be an object, e.g. {\"subject\": ..., \"html\": ...}"})
    errors: list[tuple[str, int | None, str]] = []
    clean: dict[str, Any] = {}
    for part in rendering.CHANNEL_PARTS[channel]:
        value = data.get(part)
        if part == "buttons":
            clean[part] = _clean_buttons(value, errors)
            continue
        if value is None:
            value = ""
        if not isinstance(value, (str, int, float)):
            errors.append((part, None, "must be text"))
            continue
        value = str(value)
        limit = rendering.CHANNEL_TEXT_LIMITS.get(channel) if part == "text" and channel != "email" else None
        limit = limit or rendering.PART_LIMITS.get(part, 10_000)
        if len(value) > limit:
            errors.append((part, None, f"at most {limit:,} characters ({len(value):,} given)"))
        if part == "parse_mode" and value not in rendering.TELEGRAM_PARSE_MODES:
            errors.append((part, None, "must be empty, HTML or MarkdownV2"))
        clean[part] = value
    for part in rendering.REQUIRED_PARTS[channel]:
        if part in clean and not str(clean[part]).strip():
            errors.append((part, None, "is required"))
    if errors:
        raise ContentError(errors)
    return clean


def _clean_buttons(value: Any, errors: list[tuple[str, int | None, str]]) -> list[list[dict[str, str]]]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        errors.append(("buttons", None, "rows of buttons: [[{\"text\": ..., \"url\": ...}]]"))
        return []
    rows: list[list[dict[str, str]]] = []
    count = 0
    for r, row in enumerate(value):
        out_row = []
        for c, b in enumerate(row):
            count += 1
            if not isinstance(b, Mapping) or not str(b.get("text") or "").strip() or not str(b.get("url") or "").strip():
                errors.append((f"buttons[{r}][{c}]", None, "a button needs a text and a URL"))
                continue
            text, url = str(b["text"]), str(b["url"])
            if len(text) > 200 or len(url) > 2000:
                errors.append((f"buttons[{r}][{c}]", None, "text at most 200, URL at most 2,000 characters"))
                continue
            out_row.append({"text": text, "url": url})
        if out_row:
            rows.append(out_row)
    if count > rendering.MAX_BUTTONS:
        errors.append(("buttons", None, f"at most {rendering.MAX_BUTTONS} buttons"))
    return rows


def _fragment_html(account_id: int, compiled: Mapping[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in rendering.fragments_for(account_id, compiled).items()}


@transaction.atomic
def template_version_save(*, template: Template, channel: str, data: Any, actor: Actor, note: str = "",
                          restored_from: TemplateVersion | None = None) -> TemplateVersion:
    """Save `data` (the channel's parts as written) as the template's new current version of
    `channel`: validated (parts, sizes, template syntax of every part, fragments it includes:
    ContentError with part and line), compiled once (CSS inlined, preheader inserted, links
    catalogued as account Links, text part generated when absent), linted (lint messages are
    stored, not refused). Versions are numbered 1, 2, 3... per template and channel."""
    clean = clean_data(channel, data)
    # Lock the template: concurrent saves of one template get consecutive numbers, one current.
    template = Template.objects.select_for_update().get(pk=template.pk)
    account_id = template.account_id
    # The parts as written first, so line numbers are the person's own; then the compiled form
    # (inlining could in principle break what parsed before: refuse rather than store it).
    for compiled in (clean, None):
        if compiled is None:
            try:
                prepared = rendering.prepare(channel, clean,
                                             ensure_links=lambda urls: links_ensure(account_id=account_id, urls=urls))
            except rendering.RenderError as e:
                raise ContentError([(e.part, e.line, e.message)]) from None
            compiled = prepared.compiled
        errors = rendering.check(account_id=account_id, channel=channel, compiled=compiled)
        if errors:
            raise ContentError([(e.part, e.line, e.message) for e in errors])
    messages = lint(channel, clean, database=template.database, kind=template.kind, compiled=prepared.compiled,
                    fragments=_fragment_html(account_id, prepared.compiled))
    last = TemplateVersion.objects.filter(template=template, channel=channel).aggregate(n=Max("number"))["n"] or 0
    TemplateVersion.objects.filter(template=template, channel=channel, is_current=True).update(is_current=False)
    version = TemplateVersion.objects.create(
        account_id=account_id, template=template, channel=channel, number=last + 1, data=clean,
        compiled=prepared.compiled, links=prepared.links, lint=[m.as_dict() for m in messages], size=prepared.size,
        is_current=True, note=str(note or "")[:500], restored_from=restored_from, created_by=actor.user,
    )
    template.save(update_fields=["updated_at"])
    audit_log(account=template.account, actor=actor, verb="template.version_saved", target=template,
              data={"channel": channel, "number": version.number, "version": version.pk,
                    "lint_errors": sum(m.level == "error" for m in messages)})
    return version


@transaction.atomic
def template_version_restore(*, version: TemplateVersion, actor: Actor) -> TemplateVersion:
    """A new current version with the data of `version` (compiled again: fragments and links as
    they are now). The old version stays as it was."""
    new = template_version_save(template=version.template, channel=version.channel, data=version.data, actor=actor,
                                note=f"Restored from v{version.number}", restored_from=version)
    audit_log(account=version.template.account, actor=actor, verb="template.version_restored",
              target=version.template, data={"channel": version.channel, "from": version.number, "number": new.number})
    return new


def fragment_keys_used(account_id: int) -> dict[str, set[int]]:
    """{fragment key: ids of templates whose current versions include it} (for fragment changes)."""
    from jinja2 import TemplateSyntaxError

    from content.sandbox import SandboxEnvironment

    env = SandboxEnvironment()
    used: dict[str, set[int]] = {}
    keys = set(Fragment.objects.filter(account_id=account_id).values_list("key", flat=True))
    rows = TemplateVersion.objects.filter(account_id=account_id, is_current=True).values_list("template_id", "compiled")
    for template_id, compiled in rows.iterator():
        for source in rendering._sources(compiled or {}):
            if "{%" not in source or not any(k in source for k in keys):
                continue
            try:
                tree = env.parse(source)
            except TemplateSyntaxError:
                continue
            for name, _ in rendering._references(tree):
                used.setdefault(name, set()).add(template_id)
    return used
