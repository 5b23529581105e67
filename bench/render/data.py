"""The render benchmark's data: the template as a person writes it, and the seeded account,
profiles, subscriptions, template version, sending domain, DKIM key and sender (see the package
docstring). Set-based (bulk_create), so the smoke test seeds it on SQLite too."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.db import connection

from bench.harness import FIRST_NAMES, LAST_NAMES, Timer, delete_accounts, detail, make_rng

SLUG = "bench-render"
EMAIL = "bench-render-owner@bench.test"
DOMAIN = "shop.example"
SIGNED_HEADERS = ("from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post")

# --- the template (Jinja sources, as a person writes them) ------------------------------------------

CITIES = ["Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Stuttgart", "Leipzig", "Dresden", "Wien", "Zürich"]
PRODUCTS = [
    ("Linen shirt", "49.90"), ("Trail runner", "129.00"), ("Wool beanie", "19.90"), ("Canvas tote", "24.50"),
    ("Rain jacket", "159.00"), ("Café mug", "12.00"), ("Leather belt", "39.00"), ("Sun hat", "29.90"),
    ("Denim jacket", "89.00"), ("Cotton socks (3)", "14.90"), ("Yoga mat", "34.00"), ("Water bottle", "22.00"),
]

# --- the template (Jinja sources, as a person writes them) ------------------------------------------

_CSS_RULES = [
    "body { margin: 0; padding: 0; background-color: #f4f4f7; }",
    "body, td, p { font-family: Helvetica, Arial, sans-serif; font-size: 15px; line-height: 1.5; color: #333333; }",
    ".wrapper { width: 100%; background-color: #f4f4f7; padding: 24px 0; }",
    ".container { width: 600px; margin: 0 auto; background-color: #ffffff; border-radius: 6px; }",
    ".header { background-color: #1d3557; padding: 16px 24px; }",
    ".header .brand { color: #ffffff; font-size: 22px; font-weight: bold; letter-spacing: 1px; }",
    ".nav { padding: 8px 24px; background-color: #457b9d; text-align: center; }",
    ".nav a { color: #ffffff; text-decoration: none; font-size: 13px; margin: 0 8px; }",
    ".preheader { display: none; max-height: 0; overflow: hidden; }",
    ".hero { padding: 32px 24px 16px; text-align: left; }",
    ".hero h1 { font-size: 26px; margin: 0 0 12px; color: #1d3557; }",
    ".lead { font-size: 17px; color: #555555; margin: 0 0 16px; }",
    ".badge { display: inline-block; padding: 6px 12px; border-radius: 12px; background-color: #e9ecef; }",
    ".badge.gold { background-color: #ffd166; color: #5a4300; font-weight: bold; }",
    ".button { display: inline-block; padding: 12px 24px; background-color: #e63946; color: #ffffff; }",
    "a.button { text-decoration: none; border-radius: 4px; font-weight: bold; }",
    ".section { padding: 16px 24px; }",
    ".section h2 { font-size: 20px; color: #1d3557; margin: 0 0 12px; }",
    ".products { width: 100%; border-collapse: collapse; }",
    ".product { padding: 12px 0; border-bottom: 1px solid #eeeeee; vertical-align: top; }",
    ".product img { display: block; border: 0; border-radius: 4px; }",
    ".product h3 { margin: 0 0 4px; font-size: 16px; color: #222222; }",
    ".price { color: #e63946; font-weight: bold; margin: 0 0 6px; }",
    ".link { color: #457b9d; text-decoration: underline; }",
    ".columns { width: 100%; }",
    ".column { width: 50%; padding: 8px; vertical-align: top; }",
    ".column p { font-size: 14px; color: #666666; }",
    ".divider { border-top: 1px solid #e5e5e5; margin: 16px 24px; }",
    ".quote { font-style: italic; color: #777777; border-left: 3px solid #a8dadc; padding-left: 12px; }",
    ".app { background-color: #f1faee; padding: 16px 24px; text-align: center; }",
    ".app a { color: #1d3557; font-weight: bold; }",
    ".footer { padding: 16px 24px 32px; text-align: center; }",
    ".footer p { font-size: 12px; color: #999999; margin: 4px 0; }",
    ".footer a { color: #999999; text-decoration: underline; }",
    ".social a { display: inline-block; margin: 0 6px; color: #457b9d; }",
    ".legal { font-size: 11px; color: #aaaaaa; }",
    "h1, h2, h3 { font-weight: bold; }",
    "img { max-width: 100%; height: auto; }",
    "table { border-spacing: 0; }",
    "@media only screen and (max-width: 620px) { .container { width: 100% !important; } "
    ".column { display: block !important; width: 100% !important; } }",
]

HEADER = """<table class="header" role="presentation" width="100%"><tr>
<td class="brand"><img src="https://cdn.shop.example/logo.png" alt="Northwind" width="140" height="32"></td>
<td align="right" style="color:#a8dadc;font-size:12px">{{ account.name }}</td></tr></table>
"""

FOOTER = """<table class="footer" role="presentation" width="100%"><tr><td>
<p>You receive this e-mail because {{ subscription.address }} subscribed to {{ resource.name }}.</p>
<p><a href="{{ links.preferences }}">Choose what you get</a> &middot; <a href="{{ links.unsubscribe }}">Unsubscribe</a></p>
<p class="legal">Northwind Handels GmbH &middot; Beispielstra\u00dfe 1 &middot; 10115 Berlin &middot; HRB 123456</p>
</td></tr></table>
"""

SUBJECT = "{{ profile.first_name }}, spring picks for {{ profile.city }} \U0001f337"
PREHEADER = "{{ profile.loyalty_points }} points are waiting - and three things we think you will like"
HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Spring at Northwind</title>
<style>
""" + "\n".join(_CSS_RULES) + """
</style></head>
<body><div class="wrapper"><table class="container" role="presentation" width="600"><tr><td>
{% include "header" %}
<div class="nav"><a href="https://shop.example/new?utm_source=newsletter">New in</a> &middot;
<a href="https://shop.example/sale?utm_source=newsletter">Sale</a> &middot;
<a href="https://shop.example/stores?utm_source=newsletter">Stores</a></div>
<div class="hero">
<h1>Hello {{ profile.first_name|default("there") }} {{ profile.last_name }},</h1>
<p class="lead">Spring has arrived in {{ profile.city|default("your city") }}, and so have our new collections: light
linen, bright colours and shoes made for long walks. We picked a few things for you below.</p>
{% if profile.loyalty_points >= 10000 %}<p class="badge gold">Gold member: {{ profile.loyalty_points }} points,
free shipping on every order.</p>{% else %}<p class="badge">You have {{ profile.loyalty_points }} points:
{{ 10000 - profile.loyalty_points }} more and you are Gold.</p>{% endif %}
<p><a class="button" href="https://shop.example/spring?utm_source=newsletter&amp;utm_campaign=spring">Shop the collection</a></p>
</div>
<div class="section"><h2>Picked for you</h2>
<table class="products" role="presentation">
{% for p in profile.recommended %}<tr><td class="product" width="130"><img src="{{ p.image }}" alt="{{ p.name }}" width="120"></td>
<td class="product"><h3>{{ p.name }}</h3><p class="price">{{ p.price }} EUR</p><a class="link" href="{{ p.url }}">View it</a></td></tr>
{% endfor %}</table></div>
<div class="divider"></div>
<div class="section"><table class="columns" role="presentation"><tr>
<td class="column"><h3>Spring style guide</h3><p>Five outfits for changeable weather, from the first warm morning to
the last cold evening. Layers, colours and the one jacket that goes with all of them.</p>
<p><a class="link" href="https://shop.example/blog/spring-guide?utm_source=newsletter">Read the guide</a></p></td>
<td class="column"><h3>Gift cards</h3><p>Not sure what they would like? A gift card arrives in seconds, never
expires and can be spent online or in any of our stores.</p>
<p><a class="link" href="https://shop.example/gift-cards?utm_source=newsletter">Give a gift card</a></p></td>
</tr></table></div>
<div class="section"><p class="quote">"The linen shirt is the most comfortable thing I own. I bought it in three
colours." - a customer from Hamburg</p></div>
<div class="app"><p>Scan in store, collect points and get offers before anyone else:
<a href="https://shop.example/app?utm_source=newsletter">get the Northwind app</a>.</p></div>
<div class="section"><p class="social" style="text-align:center">
Follow us on <a href="https://instagram.com/northwind">Instagram</a></p></div>
{% include "footer" %}
</td></tr></table></div></body></html>
"""
STATIC_LINKS = 8  # the static http(s) hrefs above: the catalogue must hold exactly these


def _product(i: int) -> dict[str, Any]:
    name, price = PRODUCTS[i % len(PRODUCTS)]
    slug = name.lower().replace(" ", "-").replace("(", "").replace(")", "")
    return {"name": name, "price": price, "url": f"https://shop.example/p/{slug}?utm_source=newsletter",
            "image": f"https://cdn.shop.example/p/{slug}.jpg"}


# --- data --------------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What the run made and what both paths need (keys, the template, the sender)."""

    account: Any
    database: Any
    resource: Any
    version: Any
    sender: Any
    dkim_key: Any
    selector: str
    private_pem: bytes
    txt_record: bytes  # the DKIM TXT record's value, what the local DNS function answers
    fragments: dict[str, str] = field(default_factory=dict)
    size: int = 0


def cleanup() -> None:
    """Delete everything an earlier run made: the subscriptions set-based, then the account (its
    profiles set-based by harness.delete_accounts; templates, links, domains, keys and senders
    follow the account by cascade: a handful of rows)."""
    from accounts.models import Account, User

    def before(ids: list[int]) -> None:
        with connection.cursor() as cur:
            cur.execute("DELETE FROM resources_subscription WHERE account_id = ANY(%s)", [ids])
            # Sender.domain is PROTECT, which stops the account's cascade; senders go first.
            cur.execute("DELETE FROM delivery_sender WHERE account_id = ANY(%s)", [ids])

    # The tables the dispatch, trigger, load and scenario benchmarks fill too (deleted before this
    # by their own cleanups): vacuumed, or the next run scans their dead rows (measured: a second
    # scenario run in a row met 320,000 dead ledger rows: this machine's PostgreSQL runs without autovacuum).
    delete_accounts(list(Account.objects.filter(slug=SLUG)), before=before, vacuum=[
        "resources_subscription", "mailings_ledgerentry", "mailings_mailingstat", "history_eventdispatch",
        "scenarios_participation", "scenarios_pathentry", "scenarios_stepstat"])
    User.objects.filter(email=EMAIL).delete()


def _profiles(account: Any, database: Any, resource: Any, size: int) -> None:
    """`size` profiles and their e-mail subscriptions, bulk_create in chunks (seeded: same data every run)."""
    from profiles.models import Profile
    from resources.models import Subscription

    rng = make_rng("render", size)
    chunk = 2_000
    for lo in range(0, size, chunk):
        profiles = []
        for g in range(lo, min(size, lo + chunk)):
            first = rng.choice(FIRST_NAMES)
            first_product = rng.randrange(len(PRODUCTS))
            profiles.append(Profile(
                account=account, database=database, email=f"customer{g}@example.com", first_name=first,
                last_name=rng.choice(LAST_NAMES), birthday=date(1960, 1, 1) + timedelta(days=rng.randrange(16_000)),
                data={"city": rng.choice(CITIES), "loyalty_points": rng.randrange(20_000),
                      "recommended": [_product(first_product + k * 5) for k in range(3)]},
            ))
        Profile.objects.bulk_create(profiles)
        Subscription.objects.bulk_create([
            Subscription(account=account, resource=resource, profile_id=p.pk, channel="email", address=p.email,
                         status="subscribed", source="import:bench")
            for p in profiles
        ])


def seed(size: int) -> Seeded:
    """Make the account, profiles, subscriptions, template, domain, DKIM key and sender."""
    from accounts.access import Actor
    from accounts.models import User
    from accounts.services import account_create
    from profiles.services import database_create, field_add
    from resources.services import resource_create

    system = Actor.system()
    owner = User.objects.create_user(email=EMAIL, password=None, full_name="Bench Owner")
    account = account_create(name="Bench render", slug=SLUG, owner=owner, actor=system, timezone_name="Europe/Berlin")
    db = database_create(account=account, name="Shop", slug="shop", actor=system)
    field_add(database=db, name="city", label="City", type="string", actor=system)
    field_add(database=db, name="loyalty_points", label="Loyalty points", type="integer", actor=system)
    field_add(database=db, name="recommended", label="Recommended products", type="json", actor=system)
    resource = resource_create(account=account, database=db, actor=system,
                               values={"name": "Shop news", "slug": "shop-news", "channels": ["email"]})
    with Timer() as t:
        _profiles(account, db, resource, size)
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:  # fresh statistics, as autovacuum would leave them
                cur.execute("ANALYZE profiles_profile")
                cur.execute("ANALYZE resources_subscription")
    detail(f"data: {size:,} profiles and e-mail subscriptions in {t.seconds:.1f}s")
    version = _template(account, db)
    sender, key, selector, pem, txt = _sending(account)
    return Seeded(account=account, database=db, resource=resource, version=version, sender=sender, dkim_key=key,
                  selector=selector, private_pem=pem, txt_record=txt, fragments={"header": HEADER, "footer": FOOTER},
                  size=size)


def _template(account: Any, database: Any) -> Any:
    """The fragments and the template's e-mail version, saved through content's services."""
    from accounts.access import Actor
    from content.services import fragment_save, template_create, template_version_save

    actor = Actor.system()
    fragment_save(account=account, key="header", name="Header", html=HEADER, actor=actor)
    fragment_save(account=account, key="footer", name="Footer", html=FOOTER, actor=actor)
    template = template_create(account=account, name="Spring picks", database=database, kind="marketing", actor=actor)
    with Timer() as t:
        version = template_version_save(template=template, channel="email", actor=actor,
                                        data={"subject": SUBJECT, "preheader": PREHEADER, "html": HTML})
    links = version.links or []
    detail(f"template: {len(HTML):,} bytes of HTML source, {len(_CSS_RULES)} CSS rules, saved (inlined, "
           f"{len(links)} links catalogued) in {t.seconds * 1000:.0f}ms; compiled HTML {version.size:,} bytes")
    if len(links) != STATIC_LINKS:
        raise RuntimeError(f"the saved version catalogued {len(links)} links, expected the {STATIC_LINKS} static ones")
    return version


def _sending(account: Any) -> tuple[Any, Any, str, bytes, bytes]:
    """The sending domain with its DKIM key and a sender, through delivery's services."""
    from dns.resolver import NXDOMAIN

    from accounts.access import Actor
    from delivery.services import sender_create, sending_domain_create, sending_domain_verify

    actor = Actor.system()
    domain = sending_domain_create(account=account, domain=DOMAIN, actor=actor)  # with its first DKIM key
    key = domain.active_key()
    txt = key.txt_value

    def resolve(name: str, rdtype: str) -> list[str]:  # the DNS the domain would have: our DKIM record only
        if rdtype == "TXT" and name.rstrip(".") == key.record_name:
            return [txt]
        raise NXDOMAIN(name)

    sending_domain_verify(domain=domain, actor=actor, resolve=resolve)
    if not domain.is_verified:
        raise RuntimeError(f"{DOMAIN} did not verify against its own DKIM record: {domain.last_check}")
    sender = sender_create(account=account, domain=domain, from_name="Northwind Läden", local_part="news", actor=actor)
    return sender, key, key.selector, key.private_key.encode(), txt.encode()
