"""Demo profiles for `manage.py create_demo`: a "Shop customers" database with a few thousand
realistic, deterministic profiles (set-based inserts). Idempotent."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from accounts.access import Actor
from accounts.models import Account, User
from profiles.models import Profile, ProfileDatabase
from profiles.services import database_create, field_add

DEMO_DB_SLUG = "shop-customers"
DEMO_SIZE = 3000

FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Klara", "Leon", "Mia",
         "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sven", "Tara", "Ugo", "Vera", "Will", "Xenia", "Yusuf", "Zoe",
         "Amir", "Chiara", "Mateo", "Sofia", "Lukas", "Hannah", "Emil", "Lea", "Mohammed", "Aylin"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
        "Rossi", "Novak", "Kowalski", "Dubois", "Garcia", "Silva", "Jensen", "Nielsen", "Yilmaz", "Ivanova",
        "Smith", "Brown", "Taylor", "Martin", "Bernard", "Costa", "Horvat", "Lindqvist", "Popescu", "Papadopoulos"]
CITIES = ["Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart", "Leipzig", "Dresden", "Vienna", "Zurich"]
TAGS = ["newsletter", "app-user", "returning", "gift-buyer", "sale-hunter", "b2b"]
DOMAINS = ["example.com", "example.org", "example.net"]


def demo_profiles(account: Account, owner: User) -> str:
    database = ProfileDatabase.objects.filter(account=account, slug=DEMO_DB_SLUG).first()
    actor = Actor.system()
    if database is None:
        database = database_create(account=account, name="Shop customers", slug=DEMO_DB_SLUG, actor=actor,
                                   description="Everyone who bought in the web shop or signed up for the newsletter.")
        field_add(database=database, name="city", label="City", type="string", indexed=True, actor=actor)
        field_add(database=database, name="loyalty_points", label="Loyalty points", type="integer", indexed=True, actor=actor)
        field_add(database=database, name="vip", label="VIP", type="boolean", actor=actor)
        field_add(database=database, name="tier", label="Tier", type="enum", choices=["bronze", "silver", "gold"], actor=actor)
        field_add(database=database, name="signup", label="Signed up", type="datetime", actor=actor)
        field_add(database=database, name="tags", label="Tags", type="list", actor=actor)
    if Profile.objects.filter(database=database).exists():
        return f"{Profile.objects.filter(database=database).count():,} demo profiles"
    rng = random.Random(20261128)  # noqa: S311 (demo data, not security)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(DEMO_SIZE):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = f"{first}.{last}".lower().translate(str.maketrans("üöäß", "uoas")) + str(i)
        points = int(rng.paretovariate(1.6) * 400)
        created = now - timedelta(days=rng.randint(0, 900), minutes=rng.randint(0, 1440))
        rows.append(Profile(
            account=account, database=database,
            email=f"{local}@{rng.choice(DOMAINS)}",
            phone=f"+49151{rng.randint(10_000_000, 99_999_999)}" if rng.random() < 0.6 else None,
            first_name=first, last_name=last,
            birthday=date(rng.randint(1950, 2006), rng.randint(1, 12), rng.randint(1, 28)) if rng.random() < 0.7 else None,
            gender=rng.choice(["female", "male", "other", ""]),
            timezone="Europe/Berlin",
            data={
                "city": rng.choice(CITIES),
                "loyalty_points": points,
                "vip": points > 5000,
                "tier": "gold" if points > 5000 else "silver" if points > 1000 else "bronze",
                "signup": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "tags": rng.sample(TAGS, rng.randint(0, 3)),
            },
            created_at=created, updated_at=created,
        ))
    Profile.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    return f"{DEMO_SIZE:,} demo profiles"
