"""Fragments: reusable pieces (a header, a footer) that templates include by key. The list, new,
edit, delete (refused while a template includes it, naming those templates)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.tables import Column, EmptyState, Table
from content import services
from content.forms import FragmentForm
from content.models import Fragment
from content.views import can_edit, error_dict, error_text, get_fragment


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def fragment_list(request: HttpRequest) -> HttpResponse:
    editable = can_edit(request)
    table = Table(
        request, Fragment.objects.for_account(request.account).select_related("created_by"), id="fragments",
        columns=[Column("Fragment", sort="key"), Column("Name", sort="name"), Column("Updated", sort="updated_at")],
        search_fields=["key", "name"], search_placeholder="Search fragments", default_sort="key",
        row_template="content/_fragment_row.html",
        empty=EmptyState("No fragments yet",
                         "A fragment is a piece written once and included in many templates: "
                         "{% include \"footer\" %}. Change it once, and every template that includes it changes.",
                         icon="puzzle", action_url=reverse("content:fragment_create") if editable else "",
                         action_label="New fragment"),
    )
    if table.is_filtered:
        table.empty = EmptyState("No fragments match", "Try another word, or clear the search.", icon="search")
    context = {"table": table, "can_edit": editable, "section": "fragments"}
    if table.is_partial_request:
        return render(request, "components/table.html", context)
    return render(request, "content/fragment_list.html", context)


def _save(request: HttpRequest, form: FragmentForm, fragment: Fragment | None) -> Fragment | None:
    try:
        return services.fragment_save(account=request.account, fragment=fragment, actor=Actor.from_request(request),
                                      **form.cleaned_data)
    except ValidationError as exc:
        for part, msgs in error_dict(exc).items():
            for m in msgs:
                form.add_error(part if part in form.fields else None, m)
    return None


@require_http_methods(["GET", "POST"])
@account_required(Perm.CONTENT_EDIT)
def fragment_create(request: HttpRequest) -> HttpResponse:
    form = FragmentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        saved = _save(request, form, None)
        if saved is not None:
            messages.success(request, f"Fragment {saved.key} is saved.")
            return redirect("content:fragment_list")
    return render(request, "content/fragment_form.html", {"form": form, "section": "fragments", "can_edit": True},
                  status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def fragment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """A fragment's page: read for everyone, saved by CONTENT_EDIT."""
    fragment = get_fragment(request, pk)
    editable = can_edit(request)
    if request.method == "POST" and not editable:
        messages.error(request, "Your role can read fragments but not change them.")
        return redirect("content:fragment_edit", fragment.pk)
    initial = {"key": fragment.key, "name": fragment.name, "html": fragment.html, "text": fragment.text}
    form = FragmentForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        saved = _save(request, form, fragment)
        if saved is not None:
            messages.success(request, f"Fragment {saved.key} is saved: templates get it at their next render.")
            return redirect("content:fragment_edit", saved.pk)
    if not editable:
        for f in form.fields.values():
            f.disabled = True
    context = {"form": form, "fragment": fragment, "section": "fragments", "can_edit": editable}
    return render(request, "content/fragment_form.html", context, status=400 if form.is_bound else 200)


@require_http_methods(["GET", "POST"])
@account_required(Perm.CONTENT_EDIT)
def fragment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    fragment = get_fragment(request, pk)
    problem = ""
    if request.method == "POST":
        key = fragment.key
        try:
            services.fragment_delete(fragment=fragment, actor=Actor.from_request(request))
        except ValidationError as exc:
            problem = error_text(exc)
        else:
            messages.success(request, f"Fragment {key} is deleted.")
            return redirect("content:fragment_list")
    context = {"fragment": fragment, "problem": problem, "section": "fragments"}
    return render(request, "content/fragment_delete.html", context, status=409 if problem else 200)
