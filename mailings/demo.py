"""Demo mailings for `manage.py create_demo` (a DEMO_HOOKS entry, after the demo profiles, resources,
segments, content and sender): a finished "November newsletter" broadcast with a realistic report,
the regular "Birthday greetings" (daily at 10:00 to a dynamic "Birthday today" segment), the
trigger mailings "Welcome" (on subscription), "Abandoned cart" (on cart_abandoned, an hour later)
and "Please confirm your subscription" (the double opt-in), and a draft.

The newsletter's outcome is written as it would have been recorded, not sent: its ledger rows in
bulk (deterministic: sent, a few hard bounces, skips by the subscriptions' statuses, opens and
clicks spread over two days) and the counters the report sums, per hour. Idempotent: a mailing
that exists by name is left as it is.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.access import Actor
from accounts.models import Account, User
from cdp import confcache
from content.models import Template, TemplateVersion
from content.services import template_create, template_version_save
from delivery.models import Sender
from mailings.models import LedgerEntry, Mailing, Run
from mailings.services.stats import StatKey, hour, stats_add
from profiles.models import ProfileDatabase
from resources.models import Resource, Subscription

DEMO_DB_SLUG = "shop-customers"
DEMO_RESOURCE = "shop-news"

FOOTER = '{% include "footer" %}'
TEMPLATES: dict[str, tuple[str, dict[str, str]]] = {
    "November newsletter": ("marketing", {
        "subject": "{{ profile.first_name|default('Hello', true) }}, our winter picks are here",
        "preheader": "Warm boots, wool socks and 20% off bags this week.",
        "html": "<h1>Winter is coming</h1><p>Hi {{ profile.first_name|default('there', true) }}, our winter picks "
                "are in.</p><p><a href=\"https://shop.example/winter\">See the winter collection</a></p>"
                "<p><a href=\"https://shop.example/sale\">20% off bags</a></p>" + FOOTER,
        "text": ""}),
    "Birthday": ("marketing", {
        "subject": "Happy birthday, {{ profile.first_name|default('friend', true) }}!",
        "preheader": "A little present from us inside.",
        "html": "<h1>Happy birthday!</h1><p>Here is 15% off your next order: <b>BDAY15</b>.</p>"
                "<p><a href=\"https://shop.example/gifts\">Treat yourself</a></p>" + FOOTER,
        "text": ""}),
    "Abandoned cart": ("marketing", {
        "subject": "You left something in your cart",
        "preheader": "It is still there, waiting for you.",
        "html": "<p>Hi {{ profile.first_name|default('there', true) }}, your {{ data.event.sku|default('item') }} is "
                "still in your cart{% if data.event.price %} ({{ data.event.price }} EUR){% endif %}.</p>"
                "<p><a href=\"https://shop.example/cart\">Back to my cart</a></p>" + FOOTER,
        "text": ""}),
    "Confirm subscription": ("transactional", {
        "subject": "Please confirm your subscription",
        "preheader": "One click and you are in.",
        "html": "<p>Please confirm that you want {{ resource.name|default('our news') }}:</p>"
                "<p><a href=\"{{ links.confirm }}\">Yes, subscribe me</a></p>"
                "<p>If you did not ask for this, ignore this message.</p>",
        "text": ""}),
}

BIRTHDAY_SEGMENT = {
    "slug": "birthday-today", "name": "Birthday today", "kind": "dynamic",
    "description": "Profiles whose birthday is today (the account's timezone).",
    "conditions": {"type": "group", "op": "and", "negate": False, "items": [
        {"type": "field", "field": "birthday", "operator": "anniversary_in_days", "value": 0}]},
}


def _template(account: Account, database: ProfileDatabase, name: str, actor: Actor) -> Template:
    found = Template.objects.filter(account=account, name=name).first()
    if found is not None:
        return found
    kind, parts = TEMPLATES[name]
    template = template_create(account=account, name=name, kind=kind, actor=actor, database=database)
    template_version_save(template=template, channel="email", data=parts, actor=actor, note="Demo")
    return template


def _segment(database: ProfileDatabase) -> Any:
    from segments.models import Segment
    from segments.services import segment_create

    found = Segment.objects.filter(database=database, slug=BIRTHDAY_SEGMENT["slug"]).first()
    return found or segment_create(database=database, actor=Actor.system(), **BIRTHDAY_SEGMENT)


def _mailing(account: Account, owner: User, name: str, **values: Any) -> Mailing | None:
    """A demo mailing written directly (the demo's sender domain cannot be verified, so a launch
    through the lifecycle would refuse it); None when one by that name exists."""
    if Mailing.objects.filter(account=account, name=name).exists():
        return None
    include = values.pop("include", [])
    mailing = Mailing.objects.create(account=account, name=name, created_by=owner, **values)
    if include:
        mailing.include_segments.set(include)
    return mailing


def _newsletter_outcome(mailing: Mailing, run: Run, sent_from: datetime) -> int:
    """The broadcast's ledger rows (one bulk INSERT per 1,000) and counters (one insert per hour)."""
    rng = random.Random(20261105)  # noqa: S311 - demo data
    version = TemplateVersion.objects.get(pk=run.version_id)
    link_ids = [int(lk.get("id") or 0) for lk in (version.links or []) if lk.get("id")]
    subs = list(Subscription.objects.filter(resource_id=mailing.resource_id, channel="email")
                .order_by("id").values_list("id", "profile_id", "address", "status", "opted_out"))
    key = (mailing.account_id, mailing.pk, run.pk)
    by_hour: dict[datetime, Counter[StatKey]] = defaultdict(Counter)

    def count(when: datetime, metric: str, n: int = 1, link: int | None = None) -> None:
        by_hour[hour(when)][(*key, metric, link)] += n

    rows: list[LedgerEntry] = []
    for sub_id, profile_id, address, status, opted_out in subs:
        row = LedgerEntry(account_id=mailing.account_id, mailing_id=mailing.pk, run=run, subscription_id=sub_id,
                          profile_id=profile_id, channel="email", address=address, created_at=sent_from,
                          updated_at=sent_from)
        count(sent_from, "planned")
        if status != "subscribed" or "offers" in (opted_out or []):
            row.status, row.reason = "skipped", status if status != "subscribed" else "opted_out"
            count(sent_from, "skipped")
            count(sent_from, f"skipped:{row.reason}")
            rows.append(row)
            continue
        sent_at = sent_from + timedelta(seconds=rng.uniform(0, 1800))
        row.attempts, row.sent_at = 1, sent_at
        if rng.random() < 0.015:
            row.status, row.reason, row.bounced_at = "failed", "hard_bounce", sent_at
            row.detail = "550 5.1.1 The email account that you tried to reach does not exist"
            count(sent_at, "failed")
            count(sent_at, "failed:hard_bounce")
            count(sent_at, "bounced_hard")
            rows.append(row)
            continue
        row.status, row.delivered_at = "sent", sent_at
        count(sent_at, "sent")
        roll = rng.random()
        if roll < 0.42:  # opened, mostly in the first hours
            opened = sent_at + timedelta(minutes=rng.expovariate(1 / 240))
            opened = min(opened, sent_at + timedelta(days=2))
            row.opened_at = opened
            opens = rng.choice((1, 1, 1, 2, 3))
            count(opened, "opened", opens)
            count(opened, "opened_unique")
            if rng.random() < 0.08:
                count(opened, "opened_machine")
            if roll < 0.11 and link_ids:
                clicked = opened + timedelta(minutes=rng.uniform(0, 5))
                row.clicked_at = clicked
                link = rng.choice(link_ids)
                count(clicked, "clicked")
                count(clicked, "clicked_unique")
                count(clicked, "link_clicked", 1, link)
            if rng.random() < 0.006:
                count(opened + timedelta(minutes=1), "unsubscribed")
        rows.append(row)
    LedgerEntry.objects.bulk_create(rows, batch_size=1000)
    for when, deltas in by_hour.items():
        stats_add(deltas, when=when)
    return len(rows)


@transaction.atomic
def seed_demo(account: Account, owner: User) -> str:
    """The demo mailings (see the module docstring). Returns a summary for create_demo."""
    database = ProfileDatabase.objects.filter(account=account, slug=DEMO_DB_SLUG).first()
    resource = Resource.objects.filter(account=account, slug=DEMO_RESOURCE).first()
    if database is None or resource is None:
        return "mailings: skipped (no demo database or resource)"
    actor = Actor(user=owner)
    sender = Sender.objects.filter(account=account).order_by("-is_default", "id").first()
    common = {"database": database, "resource": resource, "channel": "email", "sender": sender}
    now = timezone.now()
    made: list[str] = []

    newsletter = _mailing(account, owner, "November newsletter", kind=Mailing.Kind.BROADCAST,
                          template=_template(account, database, "November newsletter", actor), categories=["offers"],
                          schedule={"mode": "now"}, state=Mailing.State.DONE, launched_at=now - timedelta(days=10),
                          finished_at=now - timedelta(days=10) + timedelta(minutes=35), **common)
    if newsletter is not None:
        version = TemplateVersion.objects.filter(template_id=newsletter.template_id, channel="email", is_current=True).first()
        sent_from = newsletter.launched_at
        run = Run.objects.create(account_id=account.pk, mailing=newsletter, slot="once", state=Run.State.DONE,
                                 version=version, scheduled_for=sent_from, planned_at=sent_from,
                                 finished_at=newsletter.finished_at, exclusions={"no_address": 0})
        run.planned = _newsletter_outcome(newsletter, run, sent_from)
        run.save(update_fields=["planned"])
        made.append(f"a sent newsletter ({run.planned:,} recipients)")

    from mailings.services.lifecycle.validation import schedule_at

    birthday = _mailing(account, owner, "Birthday greetings", kind=Mailing.Kind.REGULAR,
                        template=_template(account, database, "Birthday", actor), schedule={"daily_at": "10:00"},
                        audience=Mailing.Audience.SEGMENTS, include=[_segment(database)], state=Mailing.State.SCHEDULED,
                        launched_at=now, **common)
    if birthday is not None:
        birthday.next_run_at = schedule_at(birthday, now)
        birthday.save(update_fields=["next_run_at"])
        made.append("birthday greetings")
    welcome_template = Template.objects.filter(account=account, name="Welcome").first()
    if welcome_template is not None and _mailing(
            account, owner, "Welcome", kind=Mailing.Kind.TRIGGER, template=welcome_template,
            trigger={"on": "subscription", "delay_seconds": 0}, state=Mailing.State.SENDING, launched_at=now, **common):
        made.append("welcome")
    if _mailing(account, owner, "Abandoned cart", kind=Mailing.Kind.TRIGGER,
                template=_template(account, database, "Abandoned cart", actor),
                trigger={"on": "event", "event": "cart_abandoned", "filters": [], "delay_seconds": 3600},
                state=Mailing.State.SENDING, launched_at=now, **common):
        made.append("abandoned cart")
    if _mailing(account, owner, "Please confirm your subscription", kind=Mailing.Kind.TRIGGER, transactional=True,
                template=_template(account, database, "Confirm subscription", actor), trigger={"on": "confirmation"},
                state=Mailing.State.SENDING, launched_at=now, track_opens=False, track_clicks=False, **common):
        made.append("double opt-in confirmation")
    if _mailing(account, owner, "Spring collection preview", kind=Mailing.Kind.BROADCAST,
                template=_template(account, database, "November newsletter", actor),
                description="A draft: pick the template and the audience, then launch.",
                schedule={"mode": "local", "date": f"{now.year + 1}-03-01", "time": "09:00"}, **common):
        made.append("a draft")
    if made:
        confcache.changed()  # new trigger mailings listen: every process reloads the types they want
    return "mailings: " + (", ".join(made) if made else "already there")
