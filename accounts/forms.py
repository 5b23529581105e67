from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation

from accounts.models import Account
from accounts.permissions import ROLE_DESCRIPTIONS, Role, grantable_roles
from cdp.forms import StyledForm, StyledModelForm


class LoginForm(StyledForm):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}))
    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))


def _role_choices(actor_role: str) -> list[tuple[str, str]]:
    return [(r.value, f"{r.label} — {ROLE_DESCRIPTIONS[r]}") for r in reversed(grantable_roles(actor_role))]


class InviteForm(StyledForm):
    email = forms.EmailField(label="E-mail address", widget=forms.EmailInput(attrs={"placeholder": "colleague@company.com"}))
    role = forms.ChoiceField(choices=())

    def __init__(self, *args: Any, actor_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = _role_choices(actor_role)
        self.fields["role"].initial = Role.MARKETER


class RoleForm(StyledForm):
    role = forms.ChoiceField(choices=())

    def __init__(self, *args: Any, actor_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = [(r.value, r.label) for r in reversed(grantable_roles(actor_role))]


class AccountSettingsForm(StyledModelForm):
    class Meta:
        model = Account
        fields = ["name", "timezone", "language", "default_phone_region"]
        labels = {"default_phone_region": "Default phone region"}

    def clean_default_phone_region(self) -> str:
        return self.cleaned_data["default_phone_region"].strip().upper()


class ApiTokenForm(StyledForm):
    EXPIRY_CHOICES = [("", "Never"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]

    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "e.g. Shop backend"}))
    role = forms.ChoiceField(choices=(), help_text="The token can do what a member with this role can.")
    expires_in_days = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Expires")
    create_profiles = forms.BooleanField(
        required=False, label="May create profiles from events",
        help_text="Events that name an unknown profile create it. Off: they are refused with an error.",
    )

    def __init__(self, *args: Any, actor_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = _role_choices(actor_role)
        self.fields["role"].initial = Role.MARKETER


class InvitationSignupForm(StyledForm):
    full_name = forms.CharField(max_length=200, label="Your name", widget=forms.TextInput(attrs={"autocomplete": "name"}))
    password1 = forms.CharField(
        label="Password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def __init__(self, *args: Any, email: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            from accounts.models import User

            try:
                password_validation.validate_password(p1, User(email=self.email, full_name=data.get("full_name", "")))
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data
