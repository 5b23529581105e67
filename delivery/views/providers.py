"""Provider accounts: how each channel's messages leave (an SMTP relay, an SMS API, web push with
VAPID keys, FCM, APNs, a Telegram bot). Admins and owners only (Perm.CHANNELS_MANAGE).

The form of a kind is built from its option spec (delivery.backends.KINDS): nothing here knows
a kind's fields, so a new backend module brings its own form. Secrets are password inputs that
never carry a value: "saved - leave blank to keep". "Test connection" runs the backend's
`check()` when it has one (SMTP: connect, EHLO, AUTH), else opens and closes a connection.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.secrets import SecretError
from delivery import services
from delivery.backends import ALL_CHANNELS, DeliveryError, KindSpec, get_kind, kinds
from delivery.forms import ChannelKindForm, ProviderForm
from delivery.models import ProviderAccount
from delivery.vapid import generate_vapid_keys
from delivery.views import error_text, get_provider
from resources.models import CHANNEL_ICONS, Channel

# Kinds for tests and development only: not offered in the "add" form (settings choose them).
HIDDEN_KINDS = {"locmem"}


def _channels() -> list[tuple[str, str]]:
    return [(c, Channel(c).label) for c in ALL_CHANNELS if c in Channel.values]


def _kinds_for(channel: str) -> list[KindSpec]:
    return [s for s in kinds().values() if channel in s.channels and s.kind not in HIDDEN_KINDS]


def vapid_fields(spec: KindSpec) -> tuple[str, str] | None:
    """(private key field, public key field) of a web push kind, found by name in its spec."""
    names = [f.name for f in spec.fields]
    private = next((n for n in names if "vapid" in n and "private" in n), None)
    public = next((n for n in names if "vapid" in n and "public" in n), None)
    return (private, public) if private and public else None


def _summary(provider: ProviderAccount, spec: KindSpec | None) -> str:
    """A line naming where it sends: host:port, a URL, a project id... from the non-secret options."""
    options = provider.options or {}
    if "host" in options:
        return f"{options['host']}:{options['port']}" if options.get("port") else str(options["host"])
    if spec is not None:
        for f in spec.option_fields:
            value = options.get(f.name)
            if value not in (None, "") and f.type in ("url", "str", "email") and not isinstance(value, bool):
                return f"{f.label}: {value}"
    return ""


@require_GET
@account_required(Perm.CHANNELS_MANAGE)
def provider_list(request: HttpRequest) -> HttpResponse:
    registry = kinds()
    providers = list(ProviderAccount.objects.for_account(request.account))
    groups = []
    for channel, label in _channels():
        rows = []
        for p in providers:
            if p.channel == channel:
                spec = registry.get(p.kind)
                p.kind_label = spec.label if spec else p.get_kind_display()
                p.summary = _summary(p, spec)
                rows.append(p)
        groups.append({"channel": channel, "label": label, "icon": CHANNEL_ICONS.get(Channel(channel), "dot"),
                       "providers": rows})
    return render(request, "delivery/provider_list.html",
                  {"groups": groups, "has_any": bool(providers), "section": "providers"})


def _pick(request: HttpRequest) -> tuple[str, KindSpec | None, ChannelKindForm]:
    """The channel and kind of a new provider account, from ?channel=&kind= (or the POST)."""
    source = request.POST if request.method == "POST" else request.GET
    channels = _channels()
    channel = source.get("channel", "")
    if channel not in dict(channels):
        channel = channels[0][0]
    specs = _kinds_for(channel)
    kind = source.get("kind", "")
    spec = next((s for s in specs if s.kind == kind), None)
    picker = ChannelKindForm({"channel": channel, "kind": spec.kind if spec else ""}, channels=channels,
                             kinds=[(s.kind, s.label) for s in specs])
    return channel, spec, picker


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def provider_create(request: HttpRequest) -> HttpResponse:
    """Step one (GET): the channel, then a kind of that channel. Step two: the kind's form. The
    web push kind's "Generate VAPID keys" button fills both keys and saves, so the private key
    goes straight to the encrypted secrets and is never shown."""
    channel, spec, picker = _pick(request)
    form = None
    if spec is not None:
        data = request.POST.copy() if request.method == "POST" else None
        vapid = vapid_fields(spec)
        generated = None
        if data is not None and vapid and "generate_vapid" in data:
            generated = generate_vapid_keys()
            data[f"opt_{vapid[0]}"] = generated.private_key
            data[f"opt_{vapid[1]}"] = generated.public_key
        form = ProviderForm(data, account=request.account, spec=spec, channel=channel)
        if data is not None and form.is_valid():
            try:
                provider = _save(request, form, None)
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                messages.success(request, f"{provider.name} is saved." + (
                    " VAPID keys are generated: copy the public key into your site's push script." if generated
                    else " Test its connection below."))
                return redirect("delivery:provider_edit", pk=provider.pk)
    context = {"picker": picker, "channel": channel, "spec": spec, "form": form, "provider": None,
               "vapid": vapid_fields(spec) if spec else None, "section": "providers"}
    return render(request, "delivery/provider_form.html", context,
                  status=400 if form is not None and form.is_bound else 200)


def _add_errors(form: ProviderForm, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            key = name if name in form.fields else f"opt_{name}" if f"opt_{name}" in form.fields else None
            for error in errors:
                form.add_error(key, error)
    else:
        form.add_error(None, exc)


def _save(request: HttpRequest, form: ProviderForm, provider: ProviderAccount | None) -> ProviderAccount:
    data = form.cleaned_data
    actor = Actor.from_request(request)
    if provider is None:
        return services.provider_account_create(
            account=request.account, channel=form.channel, kind=form.spec.kind, name=data["name"],
            data=data["data"], is_default=data["is_default"], active=data["active"], actor=actor,
        )
    return services.provider_account_update(
        provider=provider, name=data["name"], data=data["data"], is_default=data["is_default"],
        active=data["active"], actor=actor,
    )


def _edit_context(request: HttpRequest, provider: ProviderAccount, spec: KindSpec, form: ProviderForm,
                  **extra: Any) -> dict[str, Any]:
    vapid = vapid_fields(spec)
    public_key = (provider.options or {}).get(vapid[1], "") if vapid else ""
    return {"provider": provider, "spec": spec, "form": form, "channel": provider.channel, "vapid": vapid,
            "vapid_public_key": public_key, "section": "providers", **extra}


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def provider_edit(request: HttpRequest, pk: int) -> HttpResponse:
    provider = get_provider(request, pk)
    try:
        spec = get_kind(provider.kind)
    except DeliveryError:
        messages.error(request, f"{provider.name} is of a kind ({provider.kind}) this installation does not have.")
        return redirect("delivery:provider_list")
    form = ProviderForm(request.POST or None, account=request.account, spec=spec, channel=provider.channel,
                        instance=provider)
    if request.method == "POST" and form.is_valid():
        try:
            provider = _save(request, form, provider)
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"{provider.name} is saved.")
            return redirect("delivery:provider_edit", pk=provider.pk)
    return render(request, "delivery/provider_form.html", _edit_context(request, provider, spec, form),
                  status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@account_required(Perm.CHANNELS_MANAGE)
def provider_delete(request: HttpRequest, pk: int) -> HttpResponse:
    provider = get_provider(request, pk)
    problem = ""
    if request.method == "POST":
        name = provider.name
        try:
            services.provider_account_delete(provider=provider, actor=Actor.from_request(request))
        except ValidationError as exc:
            problem = error_text(exc)
        else:
            messages.success(request, f"{name} is deleted.")
            return redirect("delivery:provider_list")
    return render(request, "delivery/provider_delete.html",
                  {"provider": provider, "problem": problem, "section": "providers"},
                  status=400 if request.method == "POST" else 200)


@require_POST
@account_required(Perm.CHANNELS_MANAGE)
def provider_default(request: HttpRequest, pk: int) -> HttpResponse:
    provider = get_provider(request, pk)
    try:
        services.provider_account_update(provider=provider, is_default=True, actor=Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"{provider.name} now sends {Channel(provider.channel).label} by default.")
    return redirect(request.POST.get("next") if request.POST.get("next") == reverse("delivery:provider_list")
                    else reverse("delivery:provider_edit", args=[provider.pk]))


def connection_check(provider: ProviderAccount) -> tuple[bool, str]:
    """(worked, what happened) for "test connection" (services.provider_account_check). Never
    raises for provider trouble: a refused login or an unreachable host is the answer."""
    try:
        return True, services.provider_account_check(provider=provider) or "Connected."
    except DeliveryError as exc:
        return False, exc.message
    except SecretError as exc:
        return False, f"The saved secrets cannot be read ({exc}); enter them again."


@require_POST
@account_required(Perm.CHANNELS_MANAGE)
def provider_test(request: HttpRequest, pk: int) -> HttpResponse:
    provider = get_provider(request, pk)
    ok, detail = connection_check(provider)
    if request.htmx:
        return render(request, "delivery/provider_form.html#test_result",
                      {"provider": provider, "test": {"ok": ok, "detail": detail}})
    (messages.success if ok else messages.error)(
        request, f"Connection test {'passed' if ok else 'failed'}: {detail}")
    return redirect("delivery:provider_edit", pk=provider.pk)


@require_POST
@account_required(Perm.CHANNELS_MANAGE)
def provider_vapid(request: HttpRequest, pk: int) -> HttpResponse:
    """New VAPID keys for a web push provider. Browsers subscribed with the old public key must
    subscribe again, so the page asks before posting here."""
    provider = get_provider(request, pk)
    spec = get_kind(provider.kind)
    fields = vapid_fields(spec)
    if fields is None:
        messages.error(request, f"{spec.label} does not use VAPID keys.")
        return redirect("delivery:provider_edit", pk=provider.pk)
    keys = generate_vapid_keys()
    # The options as they are plus the new pair; the other secrets, left out, keep their values.
    data = {**(provider.options or {}), fields[0]: keys.private_key, fields[1]: keys.public_key}
    services.provider_account_update(provider=provider, data=data, actor=Actor.from_request(request))
    messages.success(request, "New VAPID keys are generated. Put the new public key in your site's push script.")
    return redirect("delivery:provider_edit", pk=provider.pk)
