"""Demo segments for `manage.py create_demo` (a DEMO_HOOKS entry): one of each kind over the demo
shop's fields and events. Idempotent: a segment that exists by slug is left as it is."""

from __future__ import annotations

from accounts.access import Actor
from accounts.models import Account, User
from profiles.demo import DEMO_DB_SLUG
from profiles.models import ProfileDatabase
from segments.models import Segment
from segments.services import segment_create

DEMO_SEGMENTS = [
    {"slug": "berlin-vips", "name": "Active Berlin VIPs", "kind": "updatable", "schedule": {"every_hours": 1},
     "description": "In Berlin, over 1,000 points, and bought something in the last 30 days.",
     "conditions": {"type": "group", "op": "and", "negate": False, "items": [
         {"type": "field", "field": "city", "operator": "eq", "value": "Berlin"},
         {"type": "field", "field": "loyalty_points", "operator": "gt", "value": 1000},
         {"type": "event", "event": "order.placed", "count": {"op": "exists", "n": 1}, "window": {"last_days": 30}},
     ]}},
    {"slug": "cart-abandoners", "name": "Abandoned a cart this week", "kind": "dynamic",
     "description": "Left something in the cart in the last 7 days and placed no order since.",
     "conditions": {"type": "group", "op": "and", "negate": False, "items": [
         {"type": "event", "event": "cart_abandoned", "count": {"op": "exists", "n": 1}, "window": {"last_days": 7}},
         {"type": "event", "event": "order.placed", "count": {"op": "not_exists", "n": 1}, "window": {"last_days": 7}},
     ]}},
    {"slug": "gold-snapshot", "name": "Gold tier (snapshot)", "kind": "static",
     "description": "Everyone in the gold tier when the demo was made.",
     "conditions": {"type": "group", "op": "and", "negate": False, "items": [
         {"type": "field", "field": "tier", "operator": "in", "value": ["gold"]},
     ]}},
]


def demo_segments(account: Account, owner: User) -> str:
    database = ProfileDatabase.objects.filter(account=account, slug=DEMO_DB_SLUG).first()
    if database is None:
        return "segments: skipped (no demo database)"
    made = 0
    for spec in DEMO_SEGMENTS:
        if Segment.objects.filter(database=database, slug=spec["slug"]).exists():
            continue
        segment_create(database=database, actor=Actor.system(), **spec)
        made += 1
    return f"segments: {made} made"
