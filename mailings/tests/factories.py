"""Shared test helpers for the mailings tests: a "world" to send in (a profile database with N
profiles and their e-mail / SMS subscriptions on a resource, a sender on a verified domain with a
DKIM key, a template with current e-mail and SMS versions) and mailings, runs and ledger rows.

Everything is made through the owning apps' services where that is cheap (databases, resources,
templates, senders) and set-based where N may be big (profiles and subscriptions: bulk_create in
chunks, no per-row service call). The DKIM key pair is generated once per process: RSA-2048
generation costs ~0.1 s and is not what any mailings test measures.

Helpers that build ledger rows (`make_run`, `queue_entries`) write them directly, without the
planner, so the dispatch and feedback tests do not depend on planning; `launch_now` goes through
the real lifecycle and planner for tests that want the whole path.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.models import Account, User
from content.models import Template, TemplateVersion
from delivery.models import DkimKey, Sender, SendingDomain
from mailings.models import LedgerEntry, Mailing, Run
from profiles.models import Profile, ProfileDatabase
from resources.models import Resource, Subscription

SYSTEM = Actor.system()
CHUNK = 2_000  # rows per bulk_create: bounded memory for big N

EMAIL_HTML = (
    "<html><body><p>Hello {{ profile.first_name }}!</p>"
    '<p><a href="https://shop.example/sale">See the sale</a></p>'
    '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p></body></html>'
)
EMAIL_PARTS = {"subject": "News for {{ profile.first_name }}", "preheader": "", "html": EMAIL_HTML, "text": ""}
SMS_PARTS = {"text": "Hi {{ profile.first_name }}, the sale is on. STOP to opt out"}


@functools.cache
def dkim_keypair() -> tuple[str, str]:
    """One RSA key pair per test process (private PEM, public base64)."""
    from delivery import dkim

    return dkim.generate_keypair()


def actor_for(user: User | None) -> Actor:
    return Actor(user=user) if user is not None else SYSTEM


def make_sender(account: Account, *, domain: str = "shop.example", local_part: str = "news",
                from_name: str = "Northwind", verified: bool = True) -> Sender:
    """A sender on `domain` (created when the account does not have it yet) with an active DKIM
    key; the domain is marked verified unless `verified=False`."""
    from delivery.services import sender_create, sending_domain_create

    dom = SendingDomain.objects.filter(account=account, domain=domain).first()
    if dom is None:
        dom = sending_domain_create(account=account, domain=domain, actor=SYSTEM, with_key=False)
        pem, public = dkim_keypair()
        DkimKey.objects.create(account=account, domain=dom, selector="cdptest", private_key=pem, public_key=public)
    status = SendingDomain.Status.VERIFIED if verified else SendingDomain.Status.PENDING
    SendingDomain.objects.filter(pk=dom.pk).update(status=status, verified_at=timezone.now() if verified else None)
    dom.refresh_from_db()
    return sender_create(account=account, domain=dom, local_part=local_part, from_name=from_name, actor=SYSTEM)


def make_database(account: Account, *, name: str = "Shop customers") -> ProfileDatabase:
    from profiles.services import database_create

    return database_create(account=account, name=name, actor=SYSTEM)


def make_resource(account: Account, database: ProfileDatabase, *, name: str = "Shop news",
                  channels: Sequence[str] = ("email", "sms"),
                  categories: Sequence[str] = ("news", "offers"), double_opt_in: Sequence[str] = ()) -> Resource:
    from resources.services import resource_create

    return resource_create(account=account, database=database, actor=SYSTEM, values={
        "name": name, "channels": list(channels), "categories": [{"key": c, "label": c.title()} for c in categories],
        "double_opt_in": list(double_opt_in),
    })


def make_template(account: Account, database: ProfileDatabase | None = None, *, name: str = "Spring sale",
                  kind: str = "marketing", channels: Sequence[str] = ("email", "sms"),
                  email: dict[str, Any] | None = None, sms: dict[str, Any] | None = None) -> Template:
    """A template with a current version per channel in `channels` (e-mail and SMS parts given or
    the defaults above, which lint clean for a marketing template)."""
    from content.services import template_create, template_version_save

    template = template_create(account=account, name=name, kind=kind, database=database, actor=SYSTEM)
    parts = {"email": email or EMAIL_PARTS, "sms": sms or SMS_PARTS}
    for channel in channels:
        template_version_save(template=template, channel=channel, data=parts[channel], actor=SYSTEM)
    return template


def current_version(template: Template, channel: str = "email") -> TemplateVersion:
    return TemplateVersion.objects.get(template=template, channel=channel, is_current=True)


def add_subscribers(resource: Resource, n: int, *, start: int = 0, email: bool = True, sms: bool = False,
                    status: str = "subscribed", timezone_name: str = "", opted_out: Sequence[str] = (),
                    prefix: str = "person", domain: str = "example.com") -> list[int]:
    """`n` new profiles in the resource's database (person<i>@example.com, +4915100<i 6 digits>,
    first name "P<i>"), with an e-mail and/or SMS subscription of `status` on `resource`; `i`
    counts from `start` so calls can add disjoint groups. Set-based: one bulk INSERT per CHUNK
    profiles and subscriptions. Returns the new profile ids in order."""
    ids: list[int] = []
    now = timezone.now()
    with transaction.atomic():
        for lo in range(start, start + n, CHUNK):
            hi = min(start + n, lo + CHUNK)
            profiles = [
                Profile(account_id=resource.account_id, database_id=resource.database_id,
                        email=f"{prefix}{i}@{domain}" if email else None,
                        phone=f"+49151{i:08d}" if sms else None,
                        first_name=f"P{i}", timezone=timezone_name, created_at=now, updated_at=now)
                for i in range(lo, hi)
            ]
            Profile.objects.bulk_create(profiles)
            subs: list[Subscription] = []
            for p in profiles:
                common = {"account_id": resource.account_id, "resource_id": resource.pk, "profile_id": p.pk,
                          "status": status, "opted_out": list(opted_out), "source": "test",
                          "confirmed_at": now if status == "subscribed" else None,
                          "suspended_until": now + timedelta(days=30) if status == "suspended" else None}
                if email:
                    subs.append(Subscription(channel="email", address=p.email, **common))
                if sms:
                    subs.append(Subscription(channel="sms", address=p.phone, **common))
            Subscription.objects.bulk_create(subs)
            ids.extend(p.pk for p in profiles)
    return ids


def add_profiles_without_subscription(database: ProfileDatabase, n: int, *, start: int = 900_000) -> list[int]:
    """`n` profiles with an e-mail address but no subscription (the planner's "no_address")."""
    rows = [Profile(account_id=database.account_id, database=database, email=f"bare{i}@example.com",
                    first_name=f"B{i}") for i in range(start, start + n)]
    Profile.objects.bulk_create(rows)
    return [p.pk for p in rows]


@dataclass
class World:
    """Everything a mailing of `account` needs, made by `make_world`."""

    account: Account
    actor: Actor
    database: ProfileDatabase
    resource: Resource
    sender: Sender
    template: Template
    profile_ids: list[int] = field(default_factory=list)

    @property
    def version(self) -> TemplateVersion:
        return current_version(self.template, "email")

    def subscriptions(self, channel: str = "email") -> Any:
        return Subscription.objects.filter(resource=self.resource, channel=channel)


def make_world(account: Account, *, user: User | None = None, n: int = 5, sms: bool = True,
               channels: Sequence[str] = ("email", "sms"), verified: bool = True,
               domain: str = "shop.example") -> World:
    """A database with `n` subscribed profiles (e-mail, and SMS when `sms`) on a resource with both
    channels and the categories news/offers, a verified sender and a template with current e-mail
    and SMS versions. `actor` is `user` (a marketer, usually) or the system."""
    database = make_database(account)
    resource = make_resource(account, database, channels=channels)
    sender = make_sender(account, domain=domain, verified=verified)
    template = make_template(account, database, channels=[c for c in ("email", "sms") if c in channels])
    ids = add_subscribers(resource, n, sms=sms and "sms" in channels) if n else []
    return World(account=account, actor=actor_for(user), database=database, resource=resource, sender=sender,
                 template=template, profile_ids=ids)


def make_mailing(world: World, *, include: Iterable[Any] = (), exclude: Iterable[Any] = (), **values: Any) -> Mailing:
    """A draft mailing written directly (no validation, no audit): a broadcast of the world's
    template over e-mail to the whole database, sent now, unless `values` say otherwise (any
    Mailing field). `include` / `exclude`: segments (sets audience to "segments" when given)."""
    defaults: dict[str, Any] = {
        "account": world.account, "database": world.database, "name": "Spring sale", "kind": Mailing.Kind.BROADCAST,
        "channel": "email", "resource": world.resource, "sender": world.sender, "template": world.template,
        "schedule": {"mode": "now"}, "created_by": world.actor.user,
    }
    if values.get("channel", "email") != "email":
        defaults["sender"] = None
    include, exclude = list(include), list(exclude)
    if include:
        defaults["audience"] = Mailing.Audience.SEGMENTS
    mailing = Mailing.objects.create(**{**defaults, **values})
    if include:
        mailing.include_segments.set(include)
    if exclude:
        mailing.exclude_segments.set(exclude)
    return mailing


def make_run(mailing: Mailing, *, slot: str = "once", state: str = Run.State.SENDING,
             scheduled_for: datetime | None = None) -> Run:
    """A run written directly, its template version frozen; the mailing goes to `sending` when the
    run is sending (what a launch does)."""
    version = None
    if mailing.template_id:
        version = TemplateVersion.objects.filter(template_id=mailing.template_id, channel=mailing.channel,
                                                 is_current=True).first()
    run = Run.objects.create(account_id=mailing.account_id, mailing=mailing, slot=slot, state=state, version=version,
                             scheduled_for=scheduled_for or timezone.now())
    if state == Run.State.SENDING and mailing.state != Mailing.State.SENDING:
        Mailing.objects.filter(pk=mailing.pk).update(state=Mailing.State.SENDING, launched_at=timezone.now())
        mailing.refresh_from_db()
    return run


def queue_entries(run: Run, *, subscriptions: Iterable[Subscription] | None = None, status: str = "queued",
                  reason: str = "", not_before: datetime | None = None) -> list[LedgerEntry]:
    """Ledger rows of `run` for `subscriptions` (default: every subscription of the mailing's
    resource on its channel), written directly in one bulk INSERT with `status`; `run.planned`
    grows by their number. For tests of what comes after planning."""
    mailing = run.mailing
    if subscriptions is None:
        subscriptions = Subscription.objects.filter(resource_id=mailing.resource_id, channel=mailing.channel).order_by("id")
    rows = [LedgerEntry(account_id=run.account_id, mailing_id=mailing.pk, run=run, subscription_id=s.pk,
                        profile_id=s.profile_id, channel=s.channel, address=s.address, status=status, reason=reason,
                        not_before=not_before)
            for s in subscriptions]
    LedgerEntry.objects.bulk_create(rows)
    Run.objects.filter(pk=run.pk).update(planned=run.planned + len(rows))
    run.refresh_from_db()
    return rows


def launch_now(mailing: Mailing, actor: Actor = SYSTEM) -> Run:
    """Launch a broadcast "now" through the real lifecycle (validation, run, planning on commit:
    call inside `django_capture_on_commit_callbacks(execute=True)` or a transactional test) and
    return its run."""
    from mailings.services.lifecycle import mailing_launch

    mailing_launch(mailing=mailing, actor=actor)
    return Run.objects.get(mailing=mailing, slot="once")
