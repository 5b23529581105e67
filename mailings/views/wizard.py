"""The mailing wizard: create and edit a mailing step by step, each step a real form.

  basics   kind, name, transactional          (create: then "channel", the first save)
  channel  channel, resource, sender, provider
  audience database or segments in / out, categories; the live audience preview
  content  template, its sandboxed preview, a test send
  when     broadcast now / at / local time; regular schedule; trigger; send window; speed limit
  policy   frequency cap override, tracking
  review   everything in words, what stops a launch (links to the step that fixes it), launch

Without JavaScript each step posts to its own URL and redirects to the next one. With htmx the
form posts in place (`hx-target="#wizard"`) and the answer is the next step's partial with
`HX-Push-Url`, so the address bar, back button and reloads agree with what is shown.
A mailing is created at the end of step 2 (it needs its resource); steps 1's answers ride along
as hidden fields. Only draft, scheduled and paused mailings change (Mailing.EDITABLE_STATES).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from content.models import TemplateVersion
from content.rendering import RenderError
from content.views import error_text
from delivery.backends.base import DeliveryError
from delivery.services import test_send
from mailings.forms import (
    FIELD_STEP,
    STEP_FORMS,
    AudienceForm,
    BasicsForm,
    CreateForm,
    TestSendForm,
    add_service_errors,
    schedule_words,
    window_words,
)
from mailings.models import Mailing
from mailings.services import lifecycle, planning
from mailings.services.errors import MailingError
from mailings.views import can_edit, get_mailing

STEPS: list[tuple[str, str, str]] = [
    ("basics", "Kind & name", "tag"),
    ("channel", "Channel & sender", "broadcast"),
    ("audience", "Audience", "people"),
    ("content", "Content", "file-earmark-richtext"),
    ("when", "When", "calendar-event"),
    ("policy", "Policy", "shield-check"),
    ("review", "Review & launch", "rocket-takeoff"),
]
STEP_NAMES = [s[0] for s in STEPS]


def _next_step(step: str) -> str:
    i = STEP_NAMES.index(step)
    return STEP_NAMES[min(i + 1, len(STEP_NAMES) - 1)]


def _step_url(mailing: Mailing | None, step: str) -> str:
    if mailing is None:
        return reverse("mailings:create")
    return reverse("mailings:edit", args=[mailing.pk, step])


def _render(request: HttpRequest, mailing: Mailing | None, step: str, *, form: Any = None,
            status: int = 200, push: str = "", extra: dict[str, Any] | None = None) -> HttpResponse:
    """The wizard page (or, for htmx, its #wizard partial) at `step`."""
    problems: dict[str, str] = {}
    if mailing is not None and step == "review":
        problems = lifecycle.mailing_problems(mailing)
    steps = [{"key": k, "label": label, "icon": icon, "url": _step_url(mailing, k),
              "problem": any(FIELD_STEP.get(f) == k for f in problems)} for k, label, icon in STEPS]
    context: dict[str, Any] = {
        "mailing": mailing,
        "step": step,
        "step_label": {k: label for k, label, _ in STEPS}[step],
        "steps": steps,
        "form": form,
        "action": _step_url(mailing, step) if mailing is not None else reverse("mailings:create"),
        "editable": mailing is None or (mailing.is_editable and can_edit(request)),
        "problems": [(f, m, FIELD_STEP.get(f, "review")) for f, m in problems.items()],
        "section": "mailings",
        **(extra or {}),
    }
    if mailing is not None:
        context.update(_step_extras(request, mailing, step))
    template = "mailings/mailing_wizard.html"
    if request.htmx:
        template += "#wizard"
        status = 200  # htmx swaps only 2xx answers; the errors are in the partial it swaps in
    response = render(request, template, context, status=status)
    if push and request.htmx:
        response["HX-Push-Url"] = push
    return response


def _preview(mailing: Mailing) -> dict[str, Any]:
    """The audience preview of the saved mailing, for the steps that show it inline (so it is there
    without JavaScript too); a refusal (no resource yet, a broken segment) is shown in its place."""
    try:
        return {"preview": planning.audience_preview(mailing=mailing), "problem": ""}
    except MailingError as exc:
        return {"preview": None, "problem": exc.text}


def _step_extras(request: HttpRequest, mailing: Mailing, step: str) -> dict[str, Any]:
    if step == "audience":
        return _preview(mailing)
    if step == "content":
        version = None
        if mailing.template_id:
            version = TemplateVersion.objects.filter(template_id=mailing.template_id, channel=mailing.channel,
                                                     is_current=True).first()
        return {"version": version, "test_form": TestSendForm(),
                "can_test": request.membership.can(Perm.CONTENT_EDIT) or can_edit(request)}
    if step == "review":
        return {**_preview(mailing), "schedule": schedule_words(mailing), "window": window_words(mailing.send_window),
                "cap": next(iter(mailing.caps.all()), None),
                "segments_in": list(mailing.include_segments.all()),
                "segments_out": list(mailing.exclude_segments.all())}
    return {}


# --- create: steps 1 and 2, then the first save ----------------------------------------------------


@require_http_methods(["GET", "POST"])
@account_required(Perm.MAILINGS_EDIT)
def mailing_create(request: HttpRequest) -> HttpResponse:
    account = request.account
    if request.method == "GET":
        return _render(request, None, "basics", form=BasicsForm(account=account))
    step = request.POST.get("_step", "basics")
    basics = BasicsForm(request.POST, account=account)
    if step == "basics" or not basics.is_valid():
        if not basics.is_valid():
            return _render(request, None, "basics", form=basics, status=400)
        form = CreateForm(account=account, initial={"channel": "email", **_one_resource(account)})
        return _render(request, None, "channel", form=form, extra={"carried": basics.values()})
    form = CreateForm(request.POST, account=account)
    if form.is_valid():
        try:
            mailing = lifecycle.mailing_create(account=account, actor=Actor.from_request(request), values=form.values())
        except MailingError as exc:
            add_service_errors(form, exc.errors)
        else:
            messages.success(request, f"{mailing.name} is saved as a draft.")
            nxt = _step_url(mailing, "audience")
            if request.htmx:
                # The page's heading and breadcrumbs (outside #wizard) change from "New mailing" to its name.
                response = HttpResponse()
                response["HX-Redirect"] = nxt
                return response
            return redirect(nxt)
    return _render(request, None, "channel", form=form, status=400, extra={"carried": basics.values()})


def _one_resource(account: Any) -> dict[str, Any]:
    from resources.models import Resource

    ids = list(Resource.objects.for_account(account).values_list("pk", flat=True)[:2])
    return {"resource": ids[0]} if len(ids) == 1 else {}


# --- edit: one step ----------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def mailing_edit(request: HttpRequest, pk: int, step: str) -> HttpResponse:
    mailing = get_mailing(request, pk)
    if step not in STEP_NAMES:
        raise Http404("No such step")
    form_class = STEP_FORMS.get(step)
    if request.method == "GET":
        form = form_class(account=request.account, mailing=mailing) if form_class else None
        return _render(request, mailing, step, form=form)
    if not can_edit(request):
        raise PermissionDenied
    if form_class is None:  # the review step takes no form: launching has its own URL
        return redirect(_step_url(mailing, step))
    form = form_class(request.POST, account=request.account, mailing=mailing)
    if not mailing.is_editable:
        form.add_error(None, f"A {mailing.get_state_display().lower()} mailing cannot be changed"
                             f"{': pause it first' if mailing.state == Mailing.State.SENDING else ''}.")
        return _render(request, mailing, step, form=form, status=400)
    if form.is_valid():
        try:
            mailing = lifecycle.mailing_update(mailing=mailing, actor=Actor.from_request(request), values=form.values())
        except MailingError as exc:
            add_service_errors(form, exc.errors)
        else:
            mailing = get_mailing(request, mailing.pk)  # fresh relations (segments, caps) for the next step
            nxt = step if "_stay" in request.POST else _next_step(step)
            if not request.htmx:
                return redirect(_step_url(mailing, nxt))
            next_class = STEP_FORMS.get(nxt)
            next_form = next_class(account=request.account, mailing=mailing) if next_class else None
            return _render(request, mailing, nxt, form=next_form, push=_step_url(mailing, nxt),
                           extra={"saved": True})
    return _render(request, mailing, step, form=form, status=400)


# --- the audience preview ----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def audience_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """How many the mailing would reach now, and who is left out and why (planning.audience_preview:
    the plan's SQL as counts, nothing written).

    POST (the audience step's form as it changes): a draft takes the audience first (a draft is
    saved as you go), then counts; a live mailing is only counted as saved."""
    mailing = get_mailing(request, pk)
    problem = ""
    if request.method == "POST":
        if not can_edit(request):
            raise PermissionDenied
        form = AudienceForm(request.POST, account=request.account, mailing=mailing)
        if mailing.state != Mailing.State.DRAFT:
            problem = "Counted as saved: save the step to count the changes."
        elif not form.is_valid():
            problem = " ".join(e for errs in form.errors.values() for e in errs)
        else:
            try:
                mailing = lifecycle.mailing_update(mailing=mailing, actor=Actor.from_request(request),
                                                   values=form.values())
            except MailingError as exc:
                problem = exc.text
    preview = None
    if not problem or mailing.state != Mailing.State.DRAFT:
        try:
            preview = planning.audience_preview(mailing=mailing)
        except MailingError as exc:
            problem = exc.text
    return render(request, "mailings/_audience_preview.html",
                  {"mailing": mailing, "preview": preview, "problem": problem})


# --- test send ------------------------------------------------------------------------------------------


@require_POST
@account_required(Perm.MAILINGS_EDIT)
def mailing_test_send(request: HttpRequest, pk: int) -> HttpResponse:
    """The mailing's template (current version on its channel) to up to 10 addresses, through the
    mailing's sender and provider, personalised as the sample person (delivery.services.test_send)."""
    mailing = get_mailing(request, pk)
    form = TestSendForm(request.POST)
    results: list[tuple[str, bool, str]] = []
    problem = ""
    version = None
    if mailing.template_id:
        version = TemplateVersion.objects.filter(template_id=mailing.template_id, channel=mailing.channel,
                                                 is_current=True).first()
    if not form.is_valid():
        problem = " ".join(form.errors.get("addresses", []))
    elif version is None:
        problem = "Choose a template with a saved version on this channel first."
    else:
        for address in form.cleaned_data["addresses"]:
            results.append(_send_one(request, mailing, version, address))
    if request.htmx:
        return render(request, "mailings/_test_result.html", {"results": results, "problem": problem})
    if problem:
        messages.error(request, problem)
    for address, ok, text in results:
        (messages.success if ok else messages.error)(request, f"{address}: {text}")
    return redirect(_step_url(mailing, "content"))


def _send_one(request: HttpRequest, mailing: Mailing, version: TemplateVersion, address: str) -> tuple[str, bool, str]:
    try:
        result = test_send(account=request.account, version=version, address=address, actor=Actor.from_request(request),
                           sender=mailing.sender, provider=mailing.provider)
    except RenderError as exc:
        where = f" ({exc.part}, line {exc.line})" if exc.part and exc.line else f" ({exc.part})" if exc.part else ""
        return address, False, f"the template cannot be rendered{where}: {exc.message}"
    except DeliveryError as exc:
        return address, False, f"not sent: {exc.message}"
    except ValidationError as exc:
        return address, False, f"not sent: {error_text(exc)}"
    if not result.ok:
        return address, False, f"refused: {result.error or 'no reason given'}"
    return address, True, f"sent (v{version.number})" + (f", provider id {result.provider_id}" if result.provider_id else "")
