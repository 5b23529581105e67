"""Writes on templates, versions and fragments (keyword-only, atomic, audited). Modules: templates
(create, change, archive, delete, duplicate), versions (save a channel's parts as a new version,
restore an old one) and fragments (save, delete). Every refusal is a ContentError."""

from __future__ import annotations

from content.services.errors import ContentError  # noqa: F401
from content.services.fragments import fragment_delete, fragment_save, fragment_usage  # noqa: F401
from content.services.templates import (  # noqa: F401
    template_archive,
    template_create,
    template_delete,
    template_duplicate,
    template_update,
)
from content.services.versions import clean_data, template_version_restore, template_version_save  # noqa: F401
