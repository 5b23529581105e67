"""Demo data for `manage.py create_demo`. Idempotent; later apps add theirs through `DEMO_HOOKS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.audit import audit_log
from accounts.models import Account, Membership, User
from accounts.permissions import Role
from accounts.services import account_create

# Higher apps register `hook(account, owner) -> str` (a summary) in their AppConfig.ready().
DEMO_HOOKS: list[Callable[[Account, User], str]] = []

DEMO_SLUG = "demo"
TEAM = [
    ("ada@example.com", "Ada Admin", Role.ADMIN),
    ("mark@example.com", "Mark Marketer", Role.MARKETER),
    ("anna@example.com", "Anna Analyst", Role.ANALYST),
]


@dataclass
class DemoResult:
    account: Account
    email: str
    password: str | None
    summary: str


@transaction.atomic
def demo_create(*, email: str, password: str | None, new_password: str) -> DemoResult:
    owner = User.objects.filter(email__iexact=email).first()
    shown_password = None
    if owner is None:
        shown_password = password or new_password
        owner = User.objects.create_user(email=email, password=shown_password, full_name="Dana Demo")
    elif password:
        owner.set_password(password)
        owner.save(update_fields=["password"])
        shown_password = password
    account = Account.objects.filter(slug=DEMO_SLUG).first()
    system = Actor.system()
    if account is None:
        account = account_create(name="Demo Shop", slug=DEMO_SLUG, owner=owner, actor=system, timezone_name="Europe/Berlin",
                                 language="en", default_phone_region="DE")
    Membership.objects.update_or_create(account=account, user=owner, defaults={"role": Role.OWNER})
    for member_email, name, role in TEAM:
        user, created = User.objects.get_or_create(email=member_email, defaults={"full_name": name})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        _, joined = Membership.objects.get_or_create(account=account, user=user, defaults={"role": role})
        if joined:
            audit_log(account=account, actor=system, verb="member.joined", target_label=member_email, data={"role": role})
    # A second account, so the account switcher has something to switch to.
    second = Account.objects.filter(slug="demo-outlet").first()
    if second is None:
        account_create(name="Demo Outlet", slug="demo-outlet", owner=owner, actor=system, timezone_name="Europe/London",
                       default_phone_region="GB")
    # Land in the shop, not the outlet, when signing in.
    Membership.objects.filter(account=account, user=owner).update(last_seen_at=timezone.now())
    parts = [f"{Membership.objects.filter(account=account).count()} members"]
    parts += [hook(account, owner) for hook in DEMO_HOOKS]
    return DemoResult(account=account, email=owner.email, password=shown_password, summary=", ".join(p for p in parts if p))
