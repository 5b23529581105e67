"""Demo resources for `manage.py create_demo`: "Shop news" on the demo shop database, with e-mail
subscriptions for most demo profiles (a realistic mix of statuses, each with its ledger row), SMS
for some, and a small suppression list. Idempotent."""

from __future__ import annotations

import random
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.models import Account, User
from profiles.demo import DEMO_DB_SLUG
from profiles.models import Profile, ProfileDatabase
from resources.models import ConsentRecord, Resource, Status, Subscription, Suppression
from resources.services import resource_create, subscription_counts_rebuild, suppression_add

DEMO_RESOURCE = "shop-news"


@transaction.atomic
def demo_resources(account: Account, owner: User) -> str:
    database = ProfileDatabase.objects.filter(account=account, slug=DEMO_DB_SLUG).first()
    if database is None:
        return "resources: skipped (no demo database)"
    if Resource.objects.filter(account=account, slug=DEMO_RESOURCE).exists():
        return "resources: already there"
    actor = Actor.system()
    resource = resource_create(account=account, database=database, actor=actor, values={
        "name": "Shop news", "slug": DEMO_RESOURCE, "description": "The web shop's newsletter, offers and event invitations.",
        "channels": ["email", "sms", "webpush", "mobilepush", "telegram"],
        "categories": ["news:News", "offers:Offers and sales", "events:Events"],
        "double_opt_in": ["email"],
        "preference_visible_fields": ["first_name", "last_name", "city"],
        "preference_editable_fields": ["first_name", "last_name", "city"],
    })
    rng = random.Random(7)  # noqa: S311 - demo data
    now = timezone.now()
    subs = []
    for p in Profile.objects.filter(database=database).only("id", "email", "phone", "created_at").order_by("id"):
        if p.email and rng.random() < 0.9:
            roll = rng.random()
            status = (Status.SUBSCRIBED if roll < 0.8 else Status.UNSUBSCRIBED if roll < 0.9 else
                      Status.UNCONFIRMED if roll < 0.95 else Status.SUSPENDED if roll < 0.97 else Status.BOUNCED)
            opted = ["offers"] if rng.random() < 0.1 else []
            subs.append(Subscription(
                account=account, resource=resource, profile_id=p.pk, channel="email", address=p.email, status=status,
                opted_out=opted, source="demo", created_at=p.created_at, changed_at=p.created_at, updated_at=p.created_at,
                suspended_until=now + timedelta(days=rng.choice([14, 30])) if status == Status.SUSPENDED else None,
                confirmed_at=p.created_at if status != Status.UNCONFIRMED else None,
            ))
        if p.phone and rng.random() < 0.3:
            subs.append(Subscription(account=account, resource=resource, profile_id=p.pk, channel="sms", address=p.phone,
                                     status=Status.SUBSCRIBED, source="demo", created_at=p.created_at, changed_at=p.created_at,
                                     updated_at=p.created_at))
    Subscription.objects.bulk_create(subs, batch_size=1000)
    ConsentRecord.objects.bulk_create([
        ConsentRecord(account=account, resource=resource, subscription=s, profile_id=s.profile_id, channel=s.channel,
                      address=s.address, action=ConsentRecord.Action.CREATED, new_status=s.status, actor_type="system",
                      actor_label="System", source="demo", created_at=s.created_at)
        for s in subs
    ], batch_size=1000)
    subscription_counts_rebuild(resource=resource)
    for kind, value, reason in [("domain", "mailinator.com", "role"), ("email", "abuse@example.com", "role"),
                                ("email", "noreply@example.org", "role")]:
        suppression_add(account=account, kind=kind, value=value, reason=reason, actor=actor, source="demo")
    return f"resources: Shop news with {len(subs):,} subscriptions; {Suppression.objects.filter(account=account).count()} suppressions"
