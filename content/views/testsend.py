""""Send a test": the channel's current version, to one address, through the real backend
(delivery.services.test_send), personalised as a chosen profile or the sample person.

The answer is a toast: the provider's id when it was accepted, or what went wrong said plainly
(nothing saved yet, no sender configured, the template's own error with its part and line, the
provider's refusal).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from content.forms import TestSendForm
from content.models import Template, TemplateVersion
from content.rendering import RenderError
from content.views import CHANNEL_LABELS, error_text, get_template, pick_channel
from content.views.drafts import parse_sample_data, preview_context, profile_pick
from delivery.backends.base import DeliveryError
from delivery.services import test_send
from profiles.models import Profile


@require_POST
@account_required(Perm.CONTENT_EDIT)
def template_test_send(request: HttpRequest, pk: int) -> HttpResponse:
    template = get_template(request, pk)
    form = TestSendForm(request.POST)
    channel = pick_channel(request.POST.get("channel"))
    level, text = "danger", ""
    if not form.is_valid():
        text = " ".join(f"{form.fields[k].label or k}: {' '.join(v)}" if k in form.fields else " ".join(v)
                        for k, v in form.errors.items())
    else:
        channel = form.cleaned_data["channel"]
        version = TemplateVersion.objects.filter(template=template, channel=channel, is_current=True).first()
        sample, problem = parse_sample_data(request.POST.get("sample_data", ""))
        if version is None:
            text = f"Save the {CHANNEL_LABELS[channel]} first: a test sends the saved version."
        elif problem:
            text = problem
        else:
            text, level = _send(request, template, version, form.cleaned_data["address"].strip(),
                                profile_pick(template, form.cleaned_data.get("profile")), sample)
    if request.htmx:
        return render(request, "content/_toast.html", {"level": level, "text": text})
    getattr(messages, "success" if level == "success" else "error")(request, text)
    return redirect(f"{template.get_absolute_url()}?channel={channel}")


def _send(request: HttpRequest, template: Template, version: TemplateVersion, address: str,
          profile: Profile | None, data: dict[str, Any]) -> tuple[str, str]:
    """(message, level) for the toast."""
    label = CHANNEL_LABELS[version.channel]
    try:
        # Personalised exactly like the preview: the chosen profile, or the sample person.
        context = preview_context(template=template, channel=version.channel, profile=profile, data=data)
        result = test_send(account=request.account, version=version, address=address, context=context,
                           actor=Actor.from_request(request))
    except RenderError as exc:
        where = f" ({exc.part}, line {exc.line})" if exc.part and exc.line else f" ({exc.part})" if exc.part else ""
        return f"The template cannot be rendered{where}: {exc.message}", "danger"
    except DeliveryError as exc:
        return f"The test was not sent: {exc.message}", "danger"
    except ValidationError as exc:
        return f"The test was not sent: {error_text(exc)}", "danger"
    if not result.ok:
        return f"The provider refused the test to {address}: {result.error or 'no reason given'}", "danger"
    sent = f"Test {label.lower() if label != 'SMS' else label} v{version.number} sent to {address}"
    return (f"{sent} (provider id {result.provider_id})." if result.provider_id else f"{sent}."), "success"
