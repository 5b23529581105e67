"""The profile card's "Subscriptions" tab (registered with profiles in AppConfig.ready) and its
actions: add a subscription, change one (status, pause, categories, primary, delete), and the
profile's consent ledger as CSV.

Every action posts to its own URL and redirects back to the card's tab with a toast, so the tab
works without JavaScript. The tab itself costs a fixed number of queries, however many
subscriptions the profile has (its subscriptions, the database's resources, a page of the ledger).
"""

from __future__ import annotations

import csv
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.audit import audit_log
from accounts.permissions import Perm
from cdp.spreadsheets import formula_safe
from profiles.models import Profile, ProfileDatabase
from profiles.views import get_database
from resources import tokens
from resources.forms_card import CategoriesForm, PauseForm, StatusForm, SubscriptionAddForm, status_targets
from resources.models import CHANNEL_ICONS, STATUS_TONES, ConsentRecord, Resource, Status, Subscription
from resources.selectors import profile_subscriptions
from resources.services import (
    PAUSE_DAYS,
    ResourceError,
    ResourceValidationError,
    Via,
    subscription_create,
    subscription_delete,
    subscription_make_primary,
    subscription_pause,
    subscription_set_categories,
    subscription_set_status,
)

LEDGER_PAGE = 50
ACTIONS = ("status", "pause", "categories", "primary", "delete")


def _links(sub: Subscription, *, with_confirm: bool) -> dict[str, str]:
    """The subscriber's signed links; empty while the public pages are not routed."""
    makers = {"unsubscribe": tokens.unsubscribe_url, "preferences": tokens.preferences_url}
    if with_confirm:
        makers["confirm"] = tokens.confirmation_url
    out = {}
    for name, make in makers.items():
        try:
            out[name] = make(sub)
        except NoReverseMatch:
            out[name] = ""
    return out


def _ledger(request: HttpRequest, profile: Profile) -> dict[str, Any]:
    # Keyset on id (newest first): a page is one index scan however long the ledger is.
    qs = ConsentRecord.objects.for_account(request.account).filter(profile=profile).select_related("resource").order_by("-id")
    before = request.GET.get("ledger_before", "")
    if before.isdigit():
        qs = qs.filter(id__lt=int(before))
    rows = list(qs[: LEDGER_PAGE + 1])
    more = len(rows) > LEDGER_PAGE
    rows = rows[:LEDGER_PAGE]
    for r in rows:
        r.tone = STATUS_TONES.get(r.new_status, "secondary")
        r.old_labels = [r.resource.category_label(k) for k in r.old_categories or []]
        r.new_labels = [r.resource.category_label(k) for k in r.new_categories or []]
    return {"ledger": rows, "ledger_next": rows[-1].pk if more and rows else None, "ledger_paged": before.isdigit()}


def subscriptions_tab_context(request: HttpRequest, profile: Profile) -> dict[str, Any]:
    can_edit = request.membership.can(Perm.DATA_EDIT)
    groups = profile_subscriptions(profile)
    resources = [g["resource"] for g in groups]
    total = 0
    for g in groups:
        r = g["resource"]
        total += g["count"]
        for ch in g["channels"]:
            ch["icon"] = CHANNEL_ICONS.get(ch["channel"], "broadcast")
            several = len(ch["subscriptions"]) > 1
            for s in ch["subscriptions"]:
                s.tone = STATUS_TONES.get(s.status, "secondary")
                s.is_primary = s.priority == 1 and several
                s.opted_out_labels = [r.category_label(k) for k in s.opted_out]
                s.categories = [(c["key"], c.get("label") or c["key"], c["key"] in s.opted_out) for c in r.categories]
                s.targets = status_targets(s.status) if can_edit else []
                s.needs_consent = any(needs for _, _, needs in s.targets)
                s.links = _links(s, with_confirm=can_edit and s.status == Status.UNCONFIRMED)
    add_form = SubscriptionAddForm(resources=resources, profile=profile) if can_edit and resources else None
    try:
        create_url = reverse("resources:create") if request.membership.can(Perm.CHANNELS_MANAGE) else ""
    except NoReverseMatch:
        create_url = ""
    return {
        "resource_groups": groups,
        "subscription_count": total,
        "add_form": add_form,
        "pause_days": PAUSE_DAYS,
        "resource_create_url": create_url,
        "can_edit_subscriptions": can_edit,
        **_ledger(request, profile),
    }


# --- actions -------------------------------------------------------------------------------------


def _get_profile(request: HttpRequest, database: ProfileDatabase, pk: int) -> Profile:
    return get_object_or_404(Profile.objects.for_account(request.account).filter(database=database), pk=pk)


def _card_url(database: ProfileDatabase, profile: Profile) -> str:
    return reverse("profiles:profile_detail", args=[database.slug, profile.pk]) + "?tab=subscriptions"


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATA_EDIT)
def subscription_add(request: HttpRequest, db: str, pk: int) -> HttpResponse:
    """Add a subscription to the profile. The card's tab holds the same form; this page shows it
    again with the errors next to the fields when the service refuses."""
    database = get_database(request, db)
    profile = _get_profile(request, database, pk)
    resources = list(Resource.objects.for_account(request.account).filter(database=database).order_by("name", "id"))
    if not resources:
        messages.info(request, "This database has no resources yet: an admin creates one first.")
        return redirect(_card_url(database, profile))
    form = SubscriptionAddForm(request.POST or None, resources=resources, profile=profile)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            sub = subscription_create(
                profile=profile, resource=form.chosen_resource, channel=data["channel"], address=data["address"],
                actor=Actor.from_request(request), via=Via.from_request(request, "ui"), status=data["status"],
                opted_out=data["opted_out"], confirmed=data["confirmed"],
            )
        except ResourceValidationError as exc:
            form.add_service_errors(exc)
        except ResourceError as exc:
            form.add_error(None, str(exc))
        else:
            if sub.status == Status.UNCONFIRMED:
                messages.success(request, f"{sub.address} is subscribed to {form.chosen_resource.name}, awaiting the person's confirmation.")
            else:
                messages.success(request, f"Added {sub.address} to {form.chosen_resource.name} ({sub.get_status_display().lower()}).")
            return redirect(_card_url(database, profile))
    context = {"database": database, "profile": profile, "form": form, "section": "profiles",
               "card_url": _card_url(database, profile)}
    return render(request, "resources/_card_subscription_add.html", context, status=400 if form.is_bound else 200)


@require_POST
@account_required(Perm.DATA_EDIT)
def subscription_change(request: HttpRequest, db: str, pk: int, sub: int) -> HttpResponse:
    """One action on one subscription, named by the "action" field: status, pause, categories,
    primary or delete. A refusal comes back as an error toast; nothing is changed."""
    database = get_database(request, db)
    profile = _get_profile(request, database, pk)
    subscription = get_object_or_404(
        Subscription.objects.for_account(request.account).filter(profile=profile).select_related("resource"), pk=sub
    )
    back = redirect(_card_url(database, profile))
    action = request.POST.get("action", "")
    actor, via = Actor.from_request(request), Via.from_request(request, "ui")
    name = f"{subscription.resource.name} · {subscription.short_address()}"
    try:
        if action == "status":
            form = StatusForm(request.POST, current=subscription.status)
            if not form.is_valid():
                messages.error(request, " ".join(form.errors.get("__all__", []) or ["Pick a status."]))
                return back
            data = form.cleaned_data
            reason = data["reason"].strip()
            if data["force"]:
                reason = f"renewed consent: {data['reason'].strip()}"
            changed = subscription_set_status(subscription=subscription, status=data["status"], actor=actor, via=via,
                                              reason=reason, force=data["force"])
            text = f"{name}: {subscription.get_status_display().lower()}." if changed else f"{name}: nothing changed."
        elif action == "pause":
            form = PauseForm(request.POST)
            if not form.is_valid():
                messages.error(request, "Pause for 1 to 365 days.")
                return back
            subscription_pause(subscription=subscription, days=form.cleaned_data["days"], actor=actor, via=via)
            until = timezone.localtime(subscription.suspended_until, request.account.tzinfo)
            text = f"{name}: paused until {until:%b} {until.day}, {until:%Y}."
        elif action == "categories":
            form = CategoriesForm(request.POST, resource=subscription.resource)
            if not form.is_valid():
                messages.error(request, "Pick categories of this resource.")
                return back
            changed = subscription_set_categories(subscription=subscription, opted_out=form.cleaned_data["opted_out"], actor=actor,
                                                  via=via)
            text = f"{name}: categories saved." if changed else f"{name}: nothing changed."
        elif action == "primary":
            subscription_make_primary(subscription=subscription)
            text = f"{subscription.short_address()} is now the primary {subscription.get_channel_display()} address."
        elif action == "delete":
            if request.POST.get("confirm") != "yes":
                messages.error(request, "Tick “Forget this address” to delete it; to stop messages, unsubscribe instead.")
                return back
            subscription_delete(subscription=subscription, actor=actor, via=via)
            text = f"Deleted {name}. The ledger keeps a record of it."
        else:
            messages.error(request, "Unknown action.")
            return back
    except ResourceValidationError as exc:
        messages.error(request, " ".join(m[:1].upper() + m[1:] for m in exc.errors.values()))
        return back
    except ResourceError as exc:
        messages.error(request, str(exc))
        return back
    messages.success(request, text)
    return back


# --- the consent ledger as CSV -------------------------------------------------------------------

CSV_HEADER = ["time", "resource", "channel", "address", "action", "old_status", "new_status", "old_categories",
              "new_categories", "actor_type", "actor", "source", "reason", "ip", "user_agent"]


class _Echo:
    def write(self, value: str) -> str:
        return value


@require_GET
@account_required(Perm.DATA_EDIT)
def consent_export(request: HttpRequest, db: str, pk: int) -> HttpResponse:
    """Every ledger row of the profile, newest first (a person's request for their consent history)."""
    database = get_database(request, db)
    profile = _get_profile(request, database, pk)
    audit_log(account=request.account, actor=Actor.from_request(request), verb="consent.exported", target=profile,
              target_label=f"{database.name}: {profile}")
    qs = (ConsentRecord.objects.for_account(request.account).filter(profile=profile).select_related("resource")
          .order_by("-id"))
    writer = csv.writer(_Echo())

    def rows():  # type: ignore[no-untyped-def]
        yield "\ufeff" + writer.writerow(CSV_HEADER)
        for r in qs.iterator(chunk_size=2000):
            text = [r.resource.name, r.channel, r.address, r.action, r.old_status, r.new_status,
                    " ".join(r.old_categories or []), " ".join(r.new_categories or []), r.actor_type, r.actor_label, r.source,
                    r.reason, r.ip or "", r.user_agent]
            yield writer.writerow([r.created_at.isoformat(), *(formula_safe(str(t), keep_numbers=True) for t in text)])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="consent-{database.slug}-{profile.pk}.csv"'
    return response
