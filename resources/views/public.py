"""Public pages for subscribers: no login, signed links (resources.tokens), English and Russian.

- unsubscribe: GET shows a confirmation (link scanners fetch GETs, so a GET never changes
  anything); POST unsubscribes and the page then shows "done" with a way back.
- one_click: RFC 8058. POST only, no cookie, no session, no CSRF token; idempotent; 200.
- preferences: every subscription of the token's profile on the resource; categories, pause,
  resubscribe, unsubscribe, and the profile fields the resource lets people edit.
- confirm: double opt-in. GET shows a "Confirm" button and POST confirms (scanners again).
- subscribe: the public subscribe endpoint of a resource (form or JSON, CORS, honeypot, rate limit).

No page here uses a cookie or a session, so there is nothing for a cross-site request to ride
on: the signed token in the URL is the only authority, and an attacker without it can do nothing.
The forms are therefore CSRF-exempt and set no cookie. (CSRF checking would also fail: with
`Referrer-Policy: no-referrer`, which keeps tokens out of Referer headers, browsers send
`Origin: null` on these forms' POSTs.)

A token names a subscription and its profile; a subscription that is gone or that belongs to
another profile now (an erasure, a merge) gives the same neutral "no longer valid" page as a
forged token, so nothing is revealed. Every write goes through resources.services or
profiles.services, which write the consent ledger and the profile's change history.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.utils.translation.trans_real import parse_accept_lang_header
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.access import Actor, client_ip
from cdp.ratelimit import over_limit
from profiles.fieldtypes import FieldValueError
from profiles.forms import form_value, mark_invalid, profile_form
from profiles.models import Profile
from profiles.services import ProfileError, ProfileValidationError, Schema, profile_update, profile_upsert
from resources import services, tokens
from resources.models import STATUS_TONES, SYSTEM_STATUSES, Channel, Resource, Status, Subscription
from resources.services import ResourceError, ResourceValidationError, Via

logger = logging.getLogger(__name__)

PUBLIC_LANGUAGES = ("en", "ru")
TEMPLATES = "resources/public/"

STATUS_LABELS = {
    Status.SUBSCRIBED: gettext_lazy("Subscribed"),
    Status.UNCONFIRMED: gettext_lazy("Awaiting confirmation"),
    Status.SUSPENDED: gettext_lazy("Paused"),
    Status.UNSUBSCRIBED: gettext_lazy("Unsubscribed"),
    Status.BOUNCED: gettext_lazy("Not deliverable"),
    Status.COMPLAINED: gettext_lazy("Reported as spam"),
    Status.BLOCKED: gettext_lazy("Blocked"),
}
CHANNEL_LABELS = {
    Channel.EMAIL: gettext_lazy("E-mail"),
    Channel.SMS: gettext_lazy("SMS"),
    Channel.WEBPUSH: gettext_lazy("Web push"),
    Channel.MOBILEPUSH: gettext_lazy("Mobile push"),
    Channel.TELEGRAM: gettext_lazy("Telegram"),
}
FIELD_LABELS = {
    "email": gettext_lazy("E-mail"),
    "phone": gettext_lazy("Phone"),
    "first_name": gettext_lazy("First name"),
    "last_name": gettext_lazy("Last name"),
    "birthday": gettext_lazy("Birthday"),
    "gender": gettext_lazy("Gender"),
    "timezone": gettext_lazy("Timezone"),
}
# ?saved=<key> after a redirect: a notice without a cookie (no messages framework on these pages).
SAVED_NOTICES = {
    "categories": gettext_lazy("Your topics are saved."),
    "paused": gettext_lazy("Your subscription is paused."),
    "resubscribed": gettext_lazy("You are subscribed again."),
    "unconfirmed": gettext_lazy("Almost there: please confirm your subscription with the link we have just sent."),
    "unsubscribed": gettext_lazy("You are unsubscribed."),
    "profile": gettext_lazy("Your details are saved."),
    "unchanged": gettext_lazy("Nothing has changed."),
}


class InvalidLink(Exception):
    def __init__(self, *, expired: bool = False) -> None:
        self.expired = expired


# --- helpers ---------------------------------------------------------------------------------------


def browser_language(request: HttpRequest) -> str:
    """The first of the browser's Accept-Language that we have (en or ru); English otherwise."""
    for code, _q in parse_accept_lang_header(request.headers.get("Accept-Language", "")):
        base = code.split("-")[0].lower()
        if base in PUBLIC_LANGUAGES:
            return base
    return "en"


def use_language(request: HttpRequest, resource: Resource | None) -> str:
    """Activate the resource's language, or the browser's (inside public_page's override)."""
    lang = resource.language if resource is not None and resource.language in PUBLIC_LANGUAGES else browser_language(request)
    translation.activate(lang)
    request.LANGUAGE_CODE = lang
    return lang


def public_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Language, headers and the neutral page for an invalid link, for every public view.

    Token URLs must not be cached, leak through Referer, or be indexed."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with translation.override(browser_language(request)):
            try:
                response = view(request, *args, **kwargs)
            except InvalidLink as exc:
                response = invalid_page(request, expired=exc.expired)
            except Http404:  # e.g. a form naming a subscription that is not the link's profile's
                response = invalid_page(request)
            lang = translation.get_language()
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        response["X-Robots-Tag"] = "noindex, nofollow"
        response["Content-Language"] = lang
        return response

    return wrapper


def invalid_page(request: HttpRequest, *, expired: bool = False) -> HttpResponse:
    kind = "expired" if expired else "invalid"
    return render(request, TEMPLATES + "message.html", {"kind": kind}, status=410 if expired else 404)


def load_subscription(purpose: str, token: str) -> Subscription:
    """The token's subscription, still the token's profile's. Raises InvalidLink."""
    try:
        data = tokens.read_token(purpose, token)
    except tokens.TokenError as exc:
        raise InvalidLink(expired=exc.expired) from None
    sub = (
        Subscription.objects.select_related("resource", "resource__database", "profile")
        .filter(pk=data.subscription_id, profile_id=data.profile_id)
        .first()
    )
    if sub is None:
        raise InvalidLink
    return sub


def subscriber(request: HttpRequest) -> Actor:
    return Actor(subscriber=True, ip=client_ip(request))


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


def describe(sub: Subscription) -> dict[str, Any]:
    """What a template shows of a subscription, in the active language."""
    return {
        "sub": sub,
        "channel_label": str(CHANNEL_LABELS.get(sub.channel, sub.channel)),
        "status_label": status_label(sub.status),
        "tone": STATUS_TONES.get(sub.status, "secondary"),
        "can_pause": sub.status in (Status.SUBSCRIBED, Status.SUSPENDED),
        "can_resubscribe": sub.status in (Status.UNSUBSCRIBED, Status.SUSPENDED),
        "can_unsubscribe": sub.status != Status.UNSUBSCRIBED,
        "is_system": sub.status in SYSTEM_STATUSES,
        "categories": [
            {"key": c["key"], "label": c.get("label") or c["key"], "checked": c["key"] not in sub.opted_out}
            for c in sub.resource.categories
        ],
    }


# --- unsubscribe -----------------------------------------------------------------------------------


@csrf_exempt  # see the module docstring: the token is the proof, there is no cookie to ride on
@require_http_methods(["GET", "HEAD", "POST"])
@public_page
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks to confirm (and changes nothing); POST unsubscribes, then the page says so."""
    sub = load_subscription(tokens.UNSUBSCRIBE, token)
    use_language(request, sub.resource)
    if request.method == "POST":
        services.subscription_set_status(subscription=sub, status=Status.UNSUBSCRIBED, actor=subscriber(request),
                                         via=Via.from_request(request, "link"), reason="unsubscribed by the link in a message")
        return redirect(request.path)
    return render(request, TEMPLATES + "unsubscribe.html", {
        "resource": sub.resource, "s": describe(sub), "done": sub.status == Status.UNSUBSCRIBED,
        "preferences_url": reverse("public:preferences", args=[tokens.make_token(tokens.PREFERENCES, sub)]),
    })


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
@public_page
def one_click(request: HttpRequest, token: str) -> HttpResponse:
    """RFC 8058 one-click unsubscribe: a mail client POSTs `List-Unsubscribe=One-Click` with no
    cookie. Idempotent: a second POST answers 200 and writes nothing. A GET (a person who opened
    the URL) goes to the page that asks first."""
    if request.method != "POST":
        return redirect("public:unsubscribe", token=token)
    try:
        sub = load_subscription(tokens.UNSUBSCRIBE, token)
    except InvalidLink:
        return HttpResponse("This link is no longer valid.\n", status=404, content_type="text/plain; charset=utf-8")
    services.subscription_set_status(subscription=sub, status=Status.UNSUBSCRIBED, actor=subscriber(request),
                                     via=Via.from_request(request, "one-click"), reason="one-click unsubscribe (RFC 8058)")
    return HttpResponse("Unsubscribed.\n", content_type="text/plain; charset=utf-8")


# --- preferences -----------------------------------------------------------------------------------


def _profile_form(data: Any, *, sch: Schema, profile: Profile, resource: Resource) -> forms.Form | None:
    editable = [n for n in resource.preference_editable_fields if n in sch.fields and not sch.fields[n].read_only]
    if not editable:
        return None
    form = profile_form(data, schema=sch, profile=profile, prefix="profile")
    for name in list(form.fields):
        if name not in editable:
            del form.fields[name]
            continue
        field = form.fields[name]
        if name in FIELD_LABELS and sch.fields[name].is_system:
            field.label = str(FIELD_LABELS[name])
        field.help_text = ""
        field.widget.attrs.pop("placeholder", None)
    form.order_fields(editable)
    return form


def _field_error(label: str, reason: str) -> str:
    # The service's reasons are English and may say that another profile has a value: show a
    # translated sentence that reveals nothing.
    if "another profile" in reason:
        return _("This value cannot be used.")
    if reason.startswith("is required"):
        return _("%(field)s is required.") % {"field": label}
    return _("Please check %(field)s.") % {"field": label}


def _read_only_fields(sch: Schema, profile: Profile, resource: Resource) -> list[dict[str, str]]:
    rows = []
    for name in resource.preference_visible_fields:
        f = sch.fields.get(name)
        if f is None or name in resource.preference_editable_fields:
            continue
        value = form_value(f, profile.value(name), sch.ctx.tz)
        label = str(FIELD_LABELS[name]) if name in FIELD_LABELS and f.is_system else f.label
        rows.append({"label": label, "value": "—" if value in (None, "") else ("✓" if value is True else value)})
    return rows


@csrf_exempt  # see the module docstring: the token is the proof, there is no cookie to ride on
@require_http_methods(["GET", "HEAD", "POST"])
@public_page
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    """The subscriber's page. Every form posts `action` and the `subscription` it acts on, which
    must be the token's profile's on the token's resource (else 404)."""
    sub = load_subscription(tokens.PREFERENCES, token)
    resource, profile = sub.resource, sub.profile
    use_language(request, resource)
    sch = Schema.load(resource.database)
    form = None
    error = ""
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "profile":
            form = _profile_form(request.POST, sch=sch, profile=profile, resource=resource)
            if form is None:
                raise Http404
            if form.is_valid():
                values = {n: form.cleaned_data[n] for n in form.changed_data}
                try:
                    diff = profile_update(profile=profile, values=values, actor=subscriber(request), source="preferences") if values else {}
                except ProfileError as exc:
                    errors = exc.errors if isinstance(exc, ProfileValidationError) else {}
                    for name, reason in errors.items():
                        label = form.fields[name].label if name in form.fields else name
                        form.add_error(name if name in form.fields else None, _field_error(label, reason))
                    if not errors:
                        form.add_error(None, _("Your details could not be saved."))
                    mark_invalid(form)
                else:
                    return redirect(f"{request.path}?saved={'profile' if diff else 'unchanged'}")
            status = 400
        else:
            target = _posted_subscription(request, sub)
            try:
                saved = _act(request, target, action)
            except ResourceError:
                error = _("This change is not possible for %(address)s. Please contact us if you need help.") % {
                    "address": target.short_address()}
                status = 400
            else:
                return redirect(f"{request.path}?saved={saved}#sub-{target.pk}")
    subs = list(Subscription.objects.filter(profile=profile, resource=resource).select_related("resource")
                .order_by("channel", "priority", "id"))
    subs.sort(key=lambda s: s.pk != sub.pk)  # the one the link came from first
    if form is None:
        form = _profile_form(None, sch=sch, profile=profile, resource=resource)
    notice = SAVED_NOTICES.get(request.GET.get("saved", "")) if request.method != "POST" else None
    return render(request, TEMPLATES + "preferences.html", {
        "resource": resource, "subs": [describe(s) for s in subs], "form": form, "error": error,
        "notice": notice, "pause_days": services.PAUSE_DAYS,
        "read_only": _read_only_fields(sch, profile, resource),
    }, status=status)


def _posted_subscription(request: HttpRequest, sub: Subscription) -> Subscription:
    try:
        pk = int(request.POST.get("subscription", ""))
    except ValueError:
        raise Http404 from None
    target = Subscription.objects.select_related("resource").filter(
        pk=pk, profile_id=sub.profile_id, resource_id=sub.resource_id).first()
    if target is None:
        raise Http404
    return target


def _act(request: HttpRequest, target: Subscription, action: str) -> str:
    """Carry out one preference-page action; returns the notice key. Raises ResourceError, Http404."""
    actor, how = subscriber(request), Via.from_request(request, "preferences")
    if action == "categories":
        wanted = set(request.POST.getlist("categories"))
        opted_out = [k for k in target.resource.category_keys if k not in wanted]
        changed = services.subscription_set_categories(subscription=target, opted_out=opted_out, actor=actor, via=how)
        return "categories" if changed else "unchanged"
    if action == "pause":
        try:
            days = int(request.POST.get("days", ""))
        except ValueError:
            raise ResourceValidationError({"days": "not a number"}) from None
        services.subscription_pause(subscription=target, days=days, actor=actor, via=how)
        return "paused"
    if action == "resubscribe":
        services.subscription_set_status(subscription=target, status=Status.SUBSCRIBED, actor=actor, via=how,
                                         reason="resubscribed on the preference page")
        return "unconfirmed" if target.status == Status.UNCONFIRMED else "resubscribed"
    if action == "unsubscribe":
        changed = services.subscription_set_status(subscription=target, status=Status.UNSUBSCRIBED, actor=actor, via=how,
                                                   reason="unsubscribed on the preference page")
        return "unsubscribed" if changed else "unchanged"
    raise Http404


# --- double opt-in -----------------------------------------------------------------------------------


@csrf_exempt  # see the module docstring: the token is the proof, there is no cookie to ride on
@require_http_methods(["GET", "HEAD", "POST"])
@public_page
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """Confirming is idempotent, but a GET still only shows a button: mail scanners fetch links,
    and a confirmation must be the person's own act. A second click says "already confirmed"."""
    sub = load_subscription(tokens.CONFIRM, token)
    use_language(request, sub.resource)
    if request.method == "POST":
        services.subscription_confirm(subscription=sub, actor=subscriber(request), via=Via.from_request(request, "confirmation"))
        return redirect(f"{request.path}?done=1")
    if sub.status == Status.UNCONFIRMED:
        state = "ask"
    elif sub.status in (Status.SUBSCRIBED, Status.SUSPENDED):
        state = "done" if request.GET.get("done") else "already"
    else:
        state = "closed"
    return render(request, TEMPLATES + "confirm.html", {
        "resource": sub.resource, "s": describe(sub), "state": state,
        "preferences_url": reverse("public:preferences", args=[tokens.make_token(tokens.PREFERENCES, sub)]),
    })


# --- the public subscribe endpoint -------------------------------------------------------------------


def _rate_limited(key: str, limit: int, window: int = 60) -> int:
    """The seconds to wait when the public subscribe endpoint is over `limit` for `key`, else 0."""
    return over_limit(f"public-subscribe:{key}", limit, window)


def _cors(response: HttpResponse) -> HttpResponse:
    response["Access-Control-Allow-Origin"] = "*"
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.content_type == "application/json" or "application/json" in request.headers.get("Accept", "")


def _payload(request: HttpRequest) -> dict[str, Any]:
    """The posted fields; `categories` as a list. Raises ValueError for a broken JSON body."""
    if request.content_type == "application/json":
        data = json.loads(request.body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("a JSON object is expected")
        cats = data.get("categories")
        if isinstance(cats, str):
            data["categories"] = [c.strip() for c in cats.split(",") if c.strip()]
        return data
    data = {k: request.POST.get(k) for k in request.POST}
    if "categories" in request.POST:
        data["categories"] = request.POST.getlist("categories")
    return data


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _targets(resource: Resource, data: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """[(channel, clean address)] to subscribe, or field errors."""
    errors: dict[str, str] = {}
    wanted: list[tuple[str, str, str]] = []  # (channel, raw address, the field to blame)
    channel, address = _text(data.get("channel")), _text(data.get("address"))
    if channel or address:
        if channel not in resource.channels or channel in (Channel.WEBPUSH, Channel.MOBILEPUSH):
            errors["channel"] = "this resource does not take subscriptions on this channel here"
        elif not address:
            errors["address"] = "is required"
        else:
            wanted.append((channel, address, "address"))
    else:
        if _text(data.get("email")) and Channel.EMAIL in resource.channels:
            wanted.append((Channel.EMAIL, _text(data["email"]), "email"))
        if _text(data.get("phone")) and Channel.SMS in resource.channels:
            wanted.append((Channel.SMS, _text(data["phone"]), "phone"))
        if not wanted:
            errors["email" if Channel.EMAIL in resource.channels else "phone"] = "is required"
    out = []
    for ch, raw, field in wanted:
        try:
            out.append((ch, services.clean_address(resource, ch, raw)))
        except ResourceValidationError as exc:
            errors[field] = next(iter(exc.errors.values()))
    return out, errors


def _profile_values(resource: Resource, sch: Schema, data: dict[str, Any], targets: list[tuple[str, str]]
                    ) -> tuple[dict[str, Any], dict[str, str]]:
    """The profile's incoming values: the match keys from the addresses (or the fields), plus the
    fields the resource lets people edit. Converted here, so bad values are errors before any write."""
    raw: dict[str, Any] = {}
    for name in resource.preference_editable_fields:
        if name in data and name in sch.fields and _text(data[name]):
            raw[name] = data[name]
    for key in ("email", "phone"):
        if _text(data.get(key)):
            raw[key] = data[key]
    for ch, address in targets:
        if ch == Channel.EMAIL:
            raw["email"] = address
        elif ch == Channel.SMS:
            raw["phone"] = address
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, value in raw.items():
        f = sch.fields.get(name)
        if f is None or f.read_only:
            continue
        try:
            values[name] = sch.convert(name, value)
        except FieldValueError as exc:
            errors[name] = str(exc)
    return values, errors


def _find_or_create_profile(resource: Resource, sch: Schema, values: dict[str, Any], actor: Actor
                            ) -> tuple[Profile | None, set[str]]:
    """The profile with one of these match keys (its empty fields filled, nothing overwritten), or a
    new one, and the fields left out because another profile holds their value. No profile when
    the person was erased or none can be made (the visitor is never told)."""
    db = resource.database
    keys = [k for k in db.match_keys if values.get(k) is not None]
    dropped: set[str] = set()
    if not keys:
        return None, dropped
    existing, match = None, keys[0]
    for key in keys:
        lookup = {key: values[key]} if key in ("email", "phone") else {f"data__{key}": values[key]}
        existing = Profile.objects.filter(database=db, **lookup).first()
        if existing is not None:
            match = key
            break
    if existing is not None:
        fill = {k: v for k, v in values.items() if existing.value(k) in (None, "", [])}
        if not fill:
            return existing, dropped
        fill[match] = values[match]
        mode = "update"
    else:
        fill, mode = dict(values), "insert"
    for _attempt in range(3):
        result = profile_upsert(database=db, values=fill, actor=actor, match=match, mode=mode, source="subscribe-form", sch=sch)
        if result.skipped and result.profile is None:
            return None, dropped  # erased, or gone meanwhile
        if not result.errors:
            return result.profile, dropped
        if match in result.errors:
            return existing, dropped
        # A value another profile holds (the phone of someone else): leave it out, say nothing.
        dropped |= set(result.errors)
        fill = {k: v for k, v in fill.items() if k not in result.errors}
    return existing, dropped


def _expected_status(resource: Resource, channel: str) -> str:
    # The answer depends only on the input, so it never tells whether an address was known.
    return Status.UNCONFIRMED if resource.needs_confirmation(channel) else Status.SUBSCRIBED


def _subscribe_error(request: HttpRequest, resource: Resource, errors: dict[str, str], data: dict[str, Any]) -> HttpResponse:
    if _wants_json(request):
        return _cors(JsonResponse({"error": {"message": "Please check the fields.", "fields": errors}}, status=400))
    shown = {}
    for name, reason in errors.items():
        if name in ("email", "address") and reason != "is required":
            shown[name] = _("Enter a valid e-mail address.") if name == "email" else _("Enter a valid address.")
        elif name == "phone" and reason != "is required":
            shown[name] = _("Enter a valid phone number.")
        elif reason == "is required":
            shown[name] = _("This field is required.")
        else:
            shown[name] = _("Please check this value.")
    return render(request, TEMPLATES + "subscribe.html", {"resource": resource, "errors": shown, "data": data,
                                                          "fields": _subscribe_fields(resource)}, status=400)


def _subscribe_fields(resource: Resource) -> list[dict[str, str]]:
    """Extra profile fields the hosted form asks for (the editable ones, e-mail and phone aside)."""
    fields = {f.name: f for f in resource.database.fields.all()}
    out = []
    for name in resource.preference_editable_fields:
        f = fields.get(name)
        if f is None or name in ("email", "phone") or f.read_only:
            continue
        label = str(FIELD_LABELS[name]) if name in FIELD_LABELS and f.is_system else f.label
        out.append({"name": name, "label": label, "type": "date" if f.type == "date" else "text"})
    return out


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST", "OPTIONS"])
@public_page
def subscribe(request: HttpRequest, key: str) -> HttpResponse:
    """POST (form or JSON) subscribes; GET shows a hosted form; OPTIONS answers CORS preflight.

    Cross-site by design, so no CSRF: protected by the resource's key, a honeypot field
    ("website", must be empty) and rate limits per IP and per resource. Double opt-in applies.
    Answers never tell whether the address was known."""
    if request.method == "OPTIONS":
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type, Accept"
        response["Access-Control-Max-Age"] = "86400"
        return _cors(response)
    if request.method == "POST":
        wait = _rate_limited(f"ip:{client_ip(request) or '-'}", settings.PUBLIC_SUBSCRIBE_RATE_IP)
        if not wait:
            wait = _rate_limited(f"key:{key[:64]}", settings.PUBLIC_SUBSCRIBE_RATE_RESOURCE)
        if wait:
            if _wants_json(request):
                response = _cors(JsonResponse({"error": {"message": "Too many requests: try again in a minute."}}, status=429))
            else:
                response = render(request, TEMPLATES + "message.html", {"kind": "busy"}, status=429)
            response["Retry-After"] = str(wait)
            return response
    resource = Resource.objects.select_related("database").filter(public_key=key, subscribe_enabled=True).first()
    if resource is None:
        if _wants_json(request):
            return _cors(JsonResponse({"error": {"message": "Not found."}}, status=404))
        raise InvalidLink
    use_language(request, resource)
    if request.method != "POST":
        return render(request, TEMPLATES + "subscribe.html", {"resource": resource, "errors": {}, "data": {},
                                                              "fields": _subscribe_fields(resource)})
    try:
        data = _payload(request)
    except (ValueError, UnicodeDecodeError):
        return _cors(JsonResponse({"error": {"message": "The body is not a JSON object."}}, status=400))
    targets, errors = _targets(resource, data)
    sch = Schema.load(resource.database)
    values, field_errors = _profile_values(resource, sch, data, targets)
    errors = {**field_errors, **errors}
    opted_out = None
    if data.get("categories") is not None:
        wanted = data["categories"] if isinstance(data["categories"], list) else [data["categories"]]
        unknown = [str(c) for c in wanted if c not in resource.category_keys]
        if unknown:
            errors["categories"] = f"unknown: {', '.join(unknown)}"
        opted_out = [k for k in resource.category_keys if k not in wanted]
    keys = resource.database.match_keys or ["email"]
    if not errors and all(values.get(k) is None for k in keys):
        errors[keys[0]] = "is required"  # to find or make the profile (the database's match key)
    if errors:
        return _subscribe_error(request, resource, errors, data)
    answers = [(ch, _expected_status(resource, ch)) for ch, _address in targets]
    if not _text(data.get("website")):  # the honeypot: a bot filled it; it is told it worked
        _subscribe_profile(request, resource, sch, values, targets, opted_out)
    overall = Status.UNCONFIRMED if any(st == Status.UNCONFIRMED for _ch, st in answers) else Status.SUBSCRIBED
    if _wants_json(request):
        return _cors(JsonResponse({"status": overall,
                                   "subscriptions": [{"channel": ch, "status": st} for ch, st in answers]}))
    if resource.subscribe_redirect_url:
        return HttpResponseRedirect(resource.subscribe_redirect_url, status=303)
    return render(request, TEMPLATES + "subscribed.html", {"resource": resource, "unconfirmed": overall == Status.UNCONFIRMED})


def _subscribe_profile(request: HttpRequest, resource: Resource, sch: Schema, values: dict[str, Any],
                       targets: list[tuple[str, str]], opted_out: list[str] | None) -> None:
    actor, how = subscriber(request), Via.from_request(request, "form")
    profile, dropped = _find_or_create_profile(resource, sch, values, actor)
    if profile is None:
        return
    for channel, address in targets:
        if {Channel.EMAIL: "email", Channel.SMS: "phone"}.get(channel) in dropped:
            continue  # that address is another profile's
        # Categories are set on a new subscription only: a stranger who knows an address must not
        # change what its owner chose (the owner has the preference page for that).
        known = Subscription.objects.filter(resource=resource, channel=channel, address=address).exists()
        try:
            services.subscription_subscribe(profile=profile, resource=resource, channel=channel, address=address,
                                            actor=actor, via=how, opted_out=None if known else opted_out,
                                            reason="public subscribe form")
        except ResourceError as exc:
            # Another profile's address, a complained address...: the visitor is not told.
            logger.info("public subscribe to %s on %s not done: %s", resource.pk, channel, exc)
