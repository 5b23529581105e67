"""The backend registry: which class sends a channel's messages, and what each provider kind needs.

Two ways a backend is chosen (`get_backend`):
1. A ProviderAccount (the account's own relay or API): its kind's backend class, built with the
   account's options and decrypted secrets.
2. settings.DELIVERY_BACKENDS, shaped like CACHES (the embedded default and tests):
       DELIVERY_BACKENDS = {"email": {"BACKEND": "delivery.backends.file.FileBackend",
                                      "OPTIONS": {...}}, "sms": {...}, ...}
   A "default" entry serves channels without their own.

Provider kinds: every backend module in KIND_MODULES declares its kind(s) at module level:

    KIND = KindSpec(kind="smtp", label="SMTP relay", channels=("email",),
                    backend="delivery.backends.smtp.SmtpBackend",
                    fields=(FieldSpec("host", "Host", required=True), ...,
                            FieldSpec("password", "Password", secret=True)))

(or `KINDS = [KindSpec(...), ...]` for several), and KIND_MODULES names the module of each
kind. `kinds()` collects them all (the provider pages list them); `get_kind(kind)` imports only
that kind's module, so a worker sending through an SMTP provider account does not load the push,
SMS and Telegram clients (httpx, requests, pywebpush: about 20 MB a process). The UI builds the
provider form from `KindSpec.fields` (secret fields go to ProviderAccount.secrets, the others
to ProviderAccount.options), and `KindSpec.clean(data)` validates and splits the values.
A module that is not there yet (or fails to import because an optional dependency is
missing) is skipped, so a half-installed deployment still starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from delivery.backends.base import BaseBackend, DeliveryError, OutboundMessage, SendResult

if TYPE_CHECKING:
    from accounts.models import Account
    from delivery.models import ProviderAccount

__all__ = [
    "ALL_CHANNELS",
    "KIND_MODULES",
    "BaseBackend",
    "DeliveryError",
    "FieldSpec",
    "KindSpec",
    "OutboundMessage",
    "SendResult",
    "backend_for_settings",
    "get_backend",
    "get_kind",
    "kinds",
]

ALL_CHANNELS = ("email", "sms", "webpush", "mobilepush", "telegram")

# kind -> the module that declares it (KIND / KINDS). Order is the order the UI lists kinds in.
KIND_MODULES = {
    "smtp": "delivery.backends.smtp",
    "http_sms": "delivery.backends.http_sms",
    "twilio": "delivery.backends.twilio",
    "webpush": "delivery.backends.webpush",
    "fcm": "delivery.backends.fcm",
    "apns": "delivery.backends.apns",
    "telegram": "delivery.backends.telegram",
    "file": "delivery.backends.file",
    "console": "delivery.backends.console",
    "locmem": "delivery.backends.locmem",
}

FIELD_TYPES = ("str", "text", "int", "float", "bool", "choice", "url", "email", "json")


@dataclass(frozen=True)
class FieldSpec:
    """One setting of a provider kind.

    type: str | text (multi-line, e.g. a PEM or a JSON service account) | int | float | bool |
        choice (from `choices`) | url | email | json (a dict/list written as JSON).
    secret: stored encrypted in ProviderAccount.secrets and never rendered back.
    default: used when the value is left empty (and shown as the initial value for non-secrets);
        for "bool" it is only the form's initial value: a missing bool is False, because an
        unticked HTML checkbox is not posted at all.
    """

    name: str
    label: str
    type: str = "str"
    required: bool = False
    secret: bool = False
    default: Any = None
    choices: tuple[tuple[str, str], ...] = ()
    help: str = ""
    min_value: float | None = None
    max_value: float | None = None

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"FieldSpec {self.name}: unknown type {self.type!r}")

    def coerce(self, value: Any) -> Any:
        """The typed value, or raises ValidationError with a message for this field."""
        if self.type == "bool" and (value is None or value == ""):
            return False
        if value is None or value == "":
            return self.default
        try:
            if self.type == "int":
                value = int(value)
            elif self.type == "float":
                value = float(value)
            elif self.type == "bool":
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "on", "yes")
            elif self.type == "json":
                import json

                value = json.loads(value) if isinstance(value, str) else value
            else:
                value = str(value).strip() if self.type != "text" else str(value)
        except (TypeError, ValueError) as exc:
            raise ValidationError({self.name: f"{self.label}: not a valid {self.type}."}) from exc
        if self.type == "choice" and value not in {c for c, _ in self.choices}:
            raise ValidationError({self.name: f"{self.label}: choose one of {', '.join(c for c, _ in self.choices)}."})
        if self.type in ("int", "float"):
            if self.min_value is not None and value < self.min_value:
                raise ValidationError({self.name: f"{self.label}: at least {self.min_value:g}."})
            if self.max_value is not None and value > self.max_value:
                raise ValidationError({self.name: f"{self.label}: at most {self.max_value:g}."})
        if self.type == "url" and not str(value).startswith(("http://", "https://")):
            raise ValidationError({self.name: f"{self.label}: an http(s) URL."})
        return value


@dataclass(frozen=True)
class KindSpec:
    """A provider kind: its backend class (dotted path), the channels it serves, its settings.

    check: name of an optional backend method `check() -> str` that tests the credentials
        ("test connection"); it raises DeliveryError when they do not work.
    """

    kind: str
    label: str
    channels: tuple[str, ...]
    backend: str
    fields: tuple[FieldSpec, ...] = ()
    help: str = ""
    check: str = "check"

    @property
    def option_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if not f.secret)

    @property
    def secret_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.secret)

    def backend_class(self) -> type[BaseBackend]:
        return import_string(self.backend)

    def clean(
        self, data: dict[str, Any], *, existing_secrets: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate `data` (field name -> raw value) into (options, secrets).

        A secret left empty keeps its saved value (`existing_secrets`): forms never show
        secrets, so "blank" means "unchanged". Unknown keys are ignored. Raises ValidationError
        (a dict keyed by field name) listing every bad field."""
        options: dict[str, Any] = {}
        secrets: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        existing = existing_secrets or {}
        for spec in self.fields:
            raw = data.get(spec.name)
            if spec.secret and (raw is None or raw == ""):
                if existing.get(spec.name) not in (None, ""):
                    secrets[spec.name] = existing[spec.name]
                elif spec.required:
                    errors.setdefault(spec.name, []).append(f"{spec.label} is required.")
                continue
            try:
                value = spec.coerce(raw)
            except ValidationError as exc:
                errors.setdefault(spec.name, []).extend(exc.message_dict[spec.name])
                continue
            if spec.required and (value is None or value == ""):
                errors.setdefault(spec.name, []).append(f"{spec.label} is required.")
                continue
            if value is not None:
                (secrets if spec.secret else options)[spec.name] = value
        if errors:
            raise ValidationError(errors)
        return options, secrets


@cache
def _module_kinds(path: str) -> dict[str, KindSpec]:
    """kind -> KindSpec of what one module declares; empty when the module is not installed
    (cached per process)."""
    try:
        module = import_module(path)
    except ModuleNotFoundError as exc:
        # Only "this backend is not installed" is skipped; a broken import inside it is a bug.
        if exc.name and (path == exc.name or path.startswith(exc.name + ".")):
            return {}
        raise
    specs = list(getattr(module, "KINDS", ()))
    if getattr(module, "KIND", None) is not None:
        specs.insert(0, module.KIND)
    return {spec.kind: spec for spec in specs}


def kinds() -> dict[str, KindSpec]:
    """kind -> KindSpec, from every importable module in KIND_MODULES, in their order."""
    found: dict[str, KindSpec] = {}
    for path in dict.fromkeys(KIND_MODULES.values()):
        found.update(_module_kinds(path))
    return found


def get_kind(kind: str) -> KindSpec:
    """The KindSpec of `kind`, importing only its module; raises DeliveryError(permanent) for an
    unknown kind (or one whose module is not installed)."""
    path = KIND_MODULES.get(kind)
    spec = _module_kinds(path).get(kind) if path else None
    if spec is None:
        raise DeliveryError(f"Unknown provider kind {kind!r}.", permanent=True)
    return spec


def kinds_for_channel(channel: str) -> list[KindSpec]:
    return [spec for spec in kinds().values() if channel in spec.channels]


def backend_for_settings(channel: str, *, account_id: int | None = None) -> BaseBackend:
    """The backend settings.DELIVERY_BACKENDS configures for `channel` (or its "default")."""
    config = getattr(settings, "DELIVERY_BACKENDS", {})
    entry = config.get(channel) or config.get("default")
    if not entry:
        raise DeliveryError(f"No delivery backend is configured for the {channel} channel.", permanent=True)
    backend = import_string(entry["BACKEND"])(**dict(entry.get("OPTIONS") or {}))
    backend.channel = channel
    backend.account_id = account_id  # type: ignore[attr-defined]
    backend.pool_key = f"settings:{channel}"  # type: ignore[attr-defined]
    return backend


def backend_for_provider(provider: ProviderAccount) -> BaseBackend:
    """The provider account's backend, built with its options and decrypted secrets."""
    if not provider.active:
        raise DeliveryError(f"The provider account {provider.name!r} is switched off.", permanent=True)
    spec = get_kind(provider.kind)
    backend = spec.backend_class()(**{**(provider.options or {}), **(provider.secrets or {})})
    backend.channel = provider.channel
    backend.account_id = provider.account_id  # type: ignore[attr-defined]
    backend.restricted = True  # type: ignore[attr-defined]  # its hosts must be public (delivery.netpolicy)
    # Connection pools (SMTP) are keyed by this: a changed provider gets fresh connections.
    stamp = provider.updated_at.timestamp() if provider.updated_at else 0
    backend.pool_key = f"provider:{provider.pk}:{stamp}"  # type: ignore[attr-defined]
    return backend


def get_backend(
    channel: str, *, provider: ProviderAccount | None = None, account: Account | None = None
) -> BaseBackend:
    """The backend that sends `channel` messages.

    provider given: that provider account's backend (it must serve `channel`).
    account given (no provider): the account's active default provider for the channel, if it
        has one; otherwise settings.DELIVERY_BACKENDS.
    neither: settings.DELIVERY_BACKENDS.
    The instance is new and not opened: use it as a context manager or call open()/close().
    Raises DeliveryError(permanent=True) when nothing is configured or the provider is off.
    """
    if provider is not None:
        if provider.channel != channel:
            raise DeliveryError(
                f"The provider account {provider.name!r} sends {provider.channel}, not {channel}.", permanent=True
            )
        return backend_for_provider(provider)
    if account is not None:
        from delivery.models import ProviderAccount

        default = (
            ProviderAccount.objects.for_account(account)
            .filter(channel=channel, is_default=True, active=True)
            .first()
        )
        if default is not None:
            return backend_for_provider(default)
        return backend_for_settings(channel, account_id=account.pk)
    return backend_for_settings(channel)

