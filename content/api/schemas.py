"""Schemas of the templates API. A version's parts travel per channel as the editor writes them
(`data` of content.models.TemplateVersion); pydantic checks their shape and sizes, the services
check what a channel requires and the Jinja syntax, naming the part and the line."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field as F
from ninja import Schema
from pydantic import ConfigDict, StringConstraints

ChannelName = Literal["email", "sms", "webpush", "mobilepush", "telegram"]
KindName = Literal["marketing", "transactional"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Part = Annotated[str, StringConstraints(max_length=512 * 1024)]
ShortPart = Annotated[str, StringConstraints(max_length=2000)]

_PARTS = ("Parts are Jinja templates (sandboxed): variables {{ profile.first_name }}, conditions, loops, "
          "filters, and fragments {% include \"footer\" %}.")


class EmailIn(Schema):
    model_config = ConfigDict(extra="forbid")
    subject: ShortPart = ""
    preheader: ShortPart = ""
    html: Part = ""
    text: Part = F("", description="Left out or empty: generated from the HTML.")


class SmsIn(Schema):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, StringConstraints(max_length=16 * 1024)] = ""


class PushIn(Schema):
    model_config = ConfigDict(extra="forbid")
    title: ShortPart = ""
    body: Annotated[str, StringConstraints(max_length=16 * 1024)] = ""
    icon: ShortPart = ""
    image: ShortPart = ""
    url: ShortPart = F("", description="Where a tap on the notification leads.")


class ButtonIn(Schema):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class TelegramIn(Schema):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, StringConstraints(max_length=16 * 1024)] = ""
    parse_mode: Literal["", "HTML", "MarkdownV2"] = ""
    buttons: list[Annotated[list[ButtonIn], F(max_length=8)]] = F(default_factory=list, max_length=10,
                                                                   description="Rows of buttons.")


class VersionsIn(Schema):
    """New versions, one per channel given. """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"description": _PARTS})
    email: EmailIn | None = None
    sms: SmsIn | None = None
    webpush: PushIn | None = None
    mobilepush: PushIn | None = None
    telegram: TelegramIn | None = None

    def given(self) -> dict[str, dict[str, Any]]:
        """{channel: data} of the channels sent, empty parts left out."""
        out = {}
        for channel in ("email", "sms", "webpush", "mobilepush", "telegram"):
            value = getattr(self, channel)
            if value is not None:
                out[channel] = {k: v for k, v in value.model_dump().items() if v not in ("", None, [])}
        return out


_EXAMPLE_VERSIONS = {
    "email": {"subject": "Welcome, {{ profile.first_name|default('friend') }}",
              "html": "<p>Hello {{ profile.first_name }}!</p><p><a href=\"{{ links.unsubscribe }}\">Unsubscribe</a></p>"},
    "sms": {"text": "Hi {{ profile.first_name }}, welcome aboard!"},
}


class TemplateIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Welcome", "kind": "marketing", "database": "customers", "versions": _EXAMPLE_VERSIONS},
        {"name": "Password reset", "kind": "transactional"},
    ]})

    name: Name
    kind: KindName = F("marketing", description="Marketing e-mails must carry an unsubscribe link.")
    database: str | None = F(None, max_length=80, description="Slug of the profile database whose fields the "
                                                              "template uses (variables, preview profiles).")
    description: str = F("", max_length=5000)
    versions: VersionsIn | None = F(None, description="A first version per channel.")
    note: str = F("", max_length=500, description="A note on the new versions.")


class TemplatePatch(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Welcome (2026)"}, {"versions": {"sms": {"text": "Hi {{ profile.first_name }}!"}}, "note": "shorter"},
    ]})

    name: Name | None = None
    kind: KindName | None = None
    database: str | None = F(None, max_length=80, description="A database slug; null removes it.")
    description: str | None = F(None, max_length=5000)
    versions: VersionsIn | None = F(None, description="Each channel given becomes a new current version.")
    note: str = F("", max_length=500)


class LintOut(Schema):
    level: str
    code: str = ""
    message: str
    part: str = ""
    line: int | None = None


class TemplateLinkOut(Schema):
    id: int
    url: str
    text: str = ""


class TemplateVersionOut(Schema):
    id: int
    channel: ChannelName
    number: int
    data: dict[str, Any]
    links: list[TemplateLinkOut]
    lint: list[LintOut]
    size: int
    note: str
    created_at: datetime
    created_by: str | None = F(None, description="E-mail of who saved it.")


class TemplateSummaryOut(Schema):
    id: int
    name: str
    kind: KindName
    database: str | None
    description: str
    channels: list[ChannelName] = F(description="Channels with a saved version.")
    archived: bool
    created_at: datetime
    updated_at: datetime


class TemplateOut(TemplateSummaryOut):
    versions: dict[str, TemplateVersionOut] = F(description="The current version of each channel.")


class RenderIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"channel": "email", "profile_id": 1042}, {"channel": "sms", "data": {"order": {"number": "A-17"}}},
    ]})

    channel: ChannelName
    profile_id: int | None = F(None, ge=1, description="Render for this profile (of the template's database).")
    data: dict[str, Any] | None = F(None, description="The trigger data: `data` in the template.")
    version: int | None = F(None, ge=1, description="The version number of the channel; the current one if left out.")


class RenderOut(Schema):
    channel: ChannelName
    version: int = F(description="The version number rendered.")
    parts: dict[str, Any] = F(description="email: subject, preheader, html, text; sms: text; push: title, body, "
                                          "icon, image, url; telegram: text, parse_mode, buttons.")


class TestSendIn(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"channel": "email", "address": "me@example.com", "profile_id": 1042},
    ]})

    channel: ChannelName
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)] = F(
        description="E-mail address, phone number, Telegram chat id or push endpoint/token.")
    profile_id: int | None = F(None, ge=1)
    data: dict[str, Any] | None = None


class TestSendOut(Schema):
    ok: bool
    version: int
    provider_id: str = ""
    error: str = ""
    permanent: bool = False
