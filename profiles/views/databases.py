"""Profile databases and their schema: the list, creating one, settings, fields, deleting."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import Actor, account_required
from accounts.permissions import Perm
from cdp.forms import ConfirmNameForm, StyledForm
from profiles.fieldtypes import FieldType
from profiles.forms import (
    DatabaseCreateForm,
    DatabaseSettingsForm,
    FieldAddForm,
    FieldEditForm,
    mark_invalid,
)
from profiles.models import Field, ProfileDatabase
from profiles.selectors import database_list as database_list_query
from profiles.selectors import profile_count_estimate, profile_count_label
from profiles.services import (
    ProfileError,
    ProfileValidationError,
    database_create,
    database_delete,
    database_update,
    field_add,
    field_remove,
    field_update,
    fields_reorder,
)
from profiles.views import get_database


def _settings_url(database: ProfileDatabase, anchor: str = "") -> str:
    return reverse("profiles:database_settings", args=[database.slug]) + (f"#{anchor}" if anchor else "")


def _add_errors(form: StyledForm, exc: ProfileError) -> None:
    """A service's refusal on the inputs it names (the rest above the form)."""
    if isinstance(exc, ProfileValidationError):
        for name, reason in exc.errors.items():
            form.add_error(name if name in form.fields else None, reason)
    else:
        form.add_error(None, str(exc))
    mark_invalid(form)


def _require(request: HttpRequest, perm: Perm) -> None:
    if not request.membership.can(perm):
        raise PermissionDenied(f"Your role does not allow this ({perm.label.lower()}).")


# --- databases -----------------------------------------------------------------------------------


@require_GET
@account_required(Perm.ACCOUNT_VIEW)
def database_list(request: HttpRequest) -> HttpResponse:
    databases = list(database_list_query(account=request.account))
    for database in databases:
        database.count_label = profile_count_label(profile_count_estimate(database))
    return render(request, "profiles/database_list.html", {"databases": databases, "section": "profiles"})


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATABASES_MANAGE)
def database_create_view(request: HttpRequest) -> HttpResponse:
    form = DatabaseCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            database = database_create(
                account=request.account,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                match_keys=[form.cleaned_data["match_key"]],
                actor=Actor.from_request(request),
            )
        except ProfileError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"{database.name} is ready. Add the fields your profiles need.")
            return redirect(_settings_url(database, "fields"))
    status = 400 if form.is_bound else 200
    return render(request, "profiles/database_create.html", {"form": form, "section": "profiles"}, status=status)


def _settings_page(
    request: HttpRequest, database: ProfileDatabase, *, form: DatabaseSettingsForm | None = None,
    add_form: FieldAddForm | None = None, status: int = 200,
) -> HttpResponse:
    fields = list(database.fields.all())
    form = form or DatabaseSettingsForm(
        fields=fields, current=database.match_keys,
        initial={"name": database.name, "description": database.description, "match_keys": database.match_keys},
    )
    context = {
        "database": database,
        "fields": fields,
        "form": form,
        "add_form": add_form or FieldAddForm(),
        "count_label": profile_count_label(profile_count_estimate(database)),
        "can_manage": request.membership.can(Perm.DATABASES_MANAGE),
        "section": "profiles",
    }
    return render(request, "profiles/database_settings.html", context, status=status)


@require_http_methods(["GET", "POST"])
@account_required(Perm.ACCOUNT_VIEW)
def database_settings(request: HttpRequest, db: str) -> HttpResponse:
    """Everyone may read the schema; changing it needs DATABASES_MANAGE."""
    database = get_database(request, db)
    if request.method == "GET":
        return _settings_page(request, database)
    _require(request, Perm.DATABASES_MANAGE)
    form = DatabaseSettingsForm(request.POST, fields=list(database.fields.all()), current=database.match_keys)
    if form.is_valid():
        try:
            database_update(
                database=database,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                match_keys=form.cleaned_data["match_keys"],
                actor=Actor.from_request(request),
            )
        except ProfileError as exc:
            database.refresh_from_db()
            if isinstance(exc, ProfileValidationError):
                _add_errors(form, exc)
            else:
                form.add_error("match_keys", str(exc))
                mark_invalid(form)
        else:
            messages.success(request, "Database settings saved.")
            return redirect(_settings_url(database))
    return _settings_page(request, database, form=form, status=400)


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATABASES_MANAGE)
def database_delete_view(request: HttpRequest, db: str) -> HttpResponse:
    database = get_database(request, db)
    form = ConfirmNameForm(request.POST or None, expected=database.name, what="database")
    if request.method == "POST" and form.is_valid():
        name = database.name
        try:
            database_delete(database=database, actor=Actor.from_request(request))
        except ProfileError as exc:  # resources, mailings or scenarios still use it
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{name} and all its profiles are deleted.")
            return redirect("profiles:database_list")
    context = {
        "database": database,
        "form": form,
        "count_label": profile_count_label(profile_count_estimate(database)),
        "section": "profiles",
    }
    return render(request, "profiles/database_delete.html", context, status=400 if form.is_bound else 200)


# --- fields --------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATABASES_MANAGE)
def field_create(request: HttpRequest, db: str) -> HttpResponse:
    database = get_database(request, db)
    form = FieldAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            f = field_add(
                database=database,
                name=data["name"],
                label=data["label"],
                type=data["type"],
                required=data["required"],
                unique=data["unique"],
                indexed=data["indexed"],
                choices=data["choices"],
                default=data["default"],
                actor=Actor.from_request(request),
            )
        except ProfileError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"Field “{f.label}” added.")
            return redirect(_settings_url(database, "fields"))
    status = 400 if form.is_bound else 200
    return render(request, "profiles/field_create.html", {"database": database, "form": form, "section": "profiles"},
                  status=status)


def _get_field(database: ProfileDatabase, name: str) -> Field:
    return get_object_or_404(Field.objects.filter(database=database), name=name)


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATABASES_MANAGE)
def field_edit(request: HttpRequest, db: str, name: str) -> HttpResponse:
    database = get_database(request, db)
    field = _get_field(database, name)
    form = FieldEditForm(request.POST or None, field=field)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        changes: dict = {"label": data["label"], "required": data["required"]}
        if not field.is_system:
            changes.update(type=data["type"], unique=data["unique"], indexed=data["indexed"])
            if data["type"] == FieldType.ENUM:
                changes["choices"] = data["choices"]
        try:
            field_update(field=field, actor=Actor.from_request(request), **changes)
        except ProfileError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"Field “{data['label']}” saved.")
            return redirect(_settings_url(database, "fields"))
    context = {"database": database, "field": field, "form": form, "section": "profiles"}
    return render(request, "profiles/field_edit.html", context, status=400 if form.is_bound else 200)


@require_POST
@account_required(Perm.DATABASES_MANAGE)
def field_reorder(request: HttpRequest, db: str) -> HttpResponse:
    """Move one field up or down (`name`, `direction`), or set the whole order (`order`: names)."""
    database = get_database(request, db)
    names = list(database.fields.values_list("name", flat=True))
    if request.POST.get("order"):
        wanted = [n.strip() for n in request.POST["order"].split(",") if n.strip()]
    else:
        name, direction = request.POST.get("name", ""), request.POST.get("direction", "")
        if name not in names or direction not in ("up", "down"):
            messages.error(request, "Choose a field and a direction to move it.")
            return redirect(_settings_url(database, "fields"))
        i = names.index(name)
        j = i - 1 if direction == "up" else i + 1
        if 0 <= j < len(names):
            names[i], names[j] = names[j], names[i]
        wanted = names
    try:
        fields_reorder(database=database, names=wanted, actor=Actor.from_request(request))
    except ProfileError as exc:
        messages.error(request, str(exc))
    return redirect(_settings_url(database, "fields"))


@require_http_methods(["GET", "POST"])
@account_required(Perm.DATABASES_MANAGE)
def field_remove_view(request: HttpRequest, db: str, name: str) -> HttpResponse:
    database = get_database(request, db)
    field = _get_field(database, name)
    refusal = ""
    if field.is_system:
        refusal = f"{field.label} is a system field: every database has it, so it cannot be removed."
    elif field.name in database.match_keys:
        refusal = f"{field.label} is a match key. Remove it from the match keys in the settings first."
    if request.method == "POST" and not refusal:
        try:
            job = field_remove(field=field, actor=Actor.from_request(request))
        except ProfileError as exc:
            refusal = str(exc)
        else:
            messages.success(request, f"Field “{field.label}” removed. Its values are being removed from profiles.")
            return redirect(job)
    context = {"database": database, "field": field, "refusal": refusal, "section": "profiles"}
    return render(request, "profiles/field_remove.html", context, status=400 if request.method == "POST" else 200)
