"""Demo history for `manage.py create_demo`: custom event types (cart_abandoned, product_viewed)
and a few months of site activity for the demo shop's profiles (page views, products, carts,
orders, promo codes), plus "subscribed" events for the demo subscriptions. Idempotent: the events
carry demo keys, so a second run stores nothing twice."""

from __future__ import annotations

import random
from datetime import timedelta

from django.utils import timezone

from accounts.access import Actor
from accounts.models import Account, User
from history.models import EventType
from history.services import EventIn, TypeBook, events_ingest, eventtype_create
from profiles.demo import DEMO_DB_SLUG
from profiles.models import Profile, ProfileDatabase

PAGES = [("/", "Home"), ("/shoes", "Shoes"), ("/bags", "Bags"), ("/sale", "Sale"), ("/about", "About us"),
         ("/blog/winter-care", "Winter care for leather")]
PRODUCTS = [("SH-100", "Trail runner", 89.9), ("SH-210", "City sneaker", 74.5), ("BG-020", "Canvas tote", 29.0),
            ("BG-310", "Leather backpack", 149.0), ("AC-005", "Wool socks", 12.5)]


def demo_history(account: Account, owner: User) -> str:
    database = ProfileDatabase.objects.filter(account=account, slug=DEMO_DB_SLUG).first()
    if database is None:
        return "history: skipped (no demo database)"
    actor = Actor.system()
    if not EventType.objects.filter(account=account, name="cart_abandoned").exists():
        eventtype_create(account=account, name="cart_abandoned", label="Cart abandoned", actor=actor,
                         description="A visitor left items in the cart for an hour.",
                         properties=[{"name": "sku", "type": "string", "required": True},
                                     {"name": "price", "type": "decimal"}, {"name": "quantity", "type": "integer"}])
    if not EventType.objects.filter(account=account, name="product_viewed").exists():
        eventtype_create(account=account, name="product_viewed", label="Product viewed", actor=actor, strict=False,
                         properties=[{"name": "sku", "type": "string", "required": True}, {"name": "name", "type": "string"},
                                     {"name": "price", "type": "decimal"}])
    rng = random.Random(5)  # noqa: S311 - demo data
    now = timezone.now()
    events: list[EventIn] = []
    # The newest profiles: the ones the profile list shows first.
    for p in Profile.objects.filter(database=database).only("id").order_by("-id")[:1500]:
        visits = rng.randint(0, 6)
        for v in range(visits):
            t = now - timedelta(days=rng.uniform(0, 90), minutes=rng.uniform(0, 600))
            for n, (url, title) in enumerate(rng.sample(PAGES, rng.randint(1, 3))):
                events.append(EventIn("page.viewed", p.pk, t + timedelta(minutes=n), {"url": "https://shop.example.com" + url,
                                      "title": title}, key=f"demo:{p.pk}:{v}:page:{n}", channel="web", source="demo"))
            sku, name, price = rng.choice(PRODUCTS)
            events.append(EventIn("product_viewed", p.pk, t + timedelta(minutes=4), {"sku": sku, "name": name, "price": price},
                                  key=f"demo:{p.pk}:{v}:product", channel="web", source="demo"))
            roll = rng.random()
            if roll < 0.25:
                events.append(EventIn("cart_abandoned", p.pk, t + timedelta(minutes=70),
                                      {"sku": sku, "price": price, "quantity": rng.randint(1, 3)},
                                      key=f"demo:{p.pk}:{v}:cart", channel="web", source="demo"))
            elif roll < 0.45:
                order = f"{p.pk:05d}-{v}"
                qty = rng.randint(1, 2)
                events.append(EventIn("order.placed", p.pk, t + timedelta(minutes=9),
                                      {"order_id": order, "total": round(price * qty, 2), "currency": "EUR",
                                       "items": [{"sku": sku, "quantity": qty, "price": price}]},
                                      key=f"demo:{p.pk}:{v}:order", channel="web", source="demo"))
                if rng.random() < 0.9:
                    events.append(EventIn("order.paid", p.pk, t + timedelta(minutes=10),
                                          {"order_id": order, "total": round(price * qty, 2), "currency": "EUR"},
                                          key=f"demo:{p.pk}:{v}:paid", channel="web", source="demo"))
                if rng.random() < 0.2:
                    events.append(EventIn("promo.redeemed", p.pk, t + timedelta(minutes=9),
                                          {"code": "WINTER10", "order_id": order},
                                          key=f"demo:{p.pk}:{v}:promo", channel="web", source="demo"))
    _consent_events(account)
    book = TypeBook.load(account)
    stored = 0
    for start in range(0, len(events), 1000):
        stored += sum(r.status == "stored" for r in events_ingest(account=account, events=events[start:start + 1000],
                                                                   source="demo", book=book))
    return f"history: {stored:,} demo events" if stored else "history: already there"


def _consent_events(account: Account) -> None:
    """The demo subscriptions were written in bulk (no handlers ran): record their "subscribed" events."""
    from history.services import consent_events
    from resources.models import ConsentRecord

    records = list(ConsentRecord.objects.filter(account=account, source="demo", action="created"))
    if records:
        consent_events(records)
