"""The demo scenario for `manage.py create_demo` (a DEMO_HOOKS entry, after the demo mailings): the
issue's "Welcome journey" on the demo shop, built with the authoring services and activated.

    s1 subscribes to "Shop news" by e-mail -> s2 send "Welcome" -> s3 wait 2 days
    -> s4 opened the welcome? yes: s5 send "Top picks" / no: s6 SMS "Did you miss this?"
    -> s7 wait for order.placed, 7 days -> event: s8 customer stage = buyer -> s9 exit
                                          -> timeout: s10 split 50/50 -> s11 / s12 reminder e-mails -> s13 exit

It needs the field "customer_stage" (added to the demo database when missing), the templates
"Top picks", "Did you miss this?" (SMS) and two reminders (made when missing), and an SMS
provider (the file outbox, as the demo's e-mail uses). Then the first demo subscribers enter
through the real engine (`participations_enter` + `participations_advance`, in this process):
they get the welcome e-mail through the send ledger and wait at s3, so the diagram has figures.
Idempotent: a scenario that exists by name is left as it is.
"""

from __future__ import annotations

from django.db import transaction

from accounts.access import Actor
from accounts.models import Account, User
from content.models import Template
from content.services import template_create, template_version_save
from delivery.models import ProviderAccount, Sender
from profiles.models import Field, ProfileDatabase
from resources.models import Resource, Subscription
from scenarios.models import Scenario

NAME = "Welcome journey"
DEMO_DB_SLUG = "shop-customers"
DEMO_RESOURCE = "shop-news"
FIRST_ENTRIES = 25  # demo subscribers who are already on their way
FOOTER = '{% include "footer" %}'

EMAILS = {
    "Top picks": {
        "subject": "{{ profile.first_name|default('Hello', true) }}, we picked these for you",
        "preheader": "Three things our customers love this week.",
        "html": "<h1>Top picks</h1><p>Hi {{ profile.first_name|default('there', true) }}, here is what is popular right "
                "now.</p><p><a href=\"https://shop.example/top\">See the top picks</a></p>" + FOOTER,
        "text": ""},
    "Reminder A: free shipping": {
        "subject": "Free shipping on your first order",
        "preheader": "This week only.",
        "html": "<p>Your first order ships free this week.</p>"
                "<p><a href=\"https://shop.example/new\">Start shopping</a></p>" + FOOTER,
        "text": ""},
    "Reminder B: 10% off": {
        "subject": "10% off your first order",
        "preheader": "Use the code HELLO10.",
        "html": "<p>Use the code <b>HELLO10</b> for 10% off your first order.</p>"
                "<p><a href=\"https://shop.example/new\">Start shopping</a></p>" + FOOTER,
        "text": ""},
}
SMS_NAME = "Did you miss this?"
SMS_TEXT = "{{ account.name }}: did you miss our welcome? Top picks: https://shop.example/top STOP to opt out"


def _email_template(account: Account, database: ProfileDatabase, name: str, actor: Actor) -> Template:
    found = Template.objects.filter(account=account, name=name).first()
    if found is None:
        found = template_create(account=account, name=name, kind=Template.Kind.MARKETING, actor=actor, database=database)
        template_version_save(template=found, channel="email", data=EMAILS[name], actor=actor, note="Demo")
    return found


def _sms_template(account: Account, database: ProfileDatabase, actor: Actor) -> Template:
    found = Template.objects.filter(account=account, name=SMS_NAME).first()
    if found is None:
        found = template_create(account=account, name=SMS_NAME, kind=Template.Kind.MARKETING, actor=actor, database=database)
        template_version_save(template=found, channel="sms", data={"text": SMS_TEXT}, actor=actor, note="Demo")
    return found


def _sms_provider(account: Account, actor: Actor) -> ProviderAccount:
    from delivery.services.providers import provider_account_create

    found = ProviderAccount.objects.filter(account=account, channel="sms").order_by("-is_default", "id").first()
    return found or provider_account_create(account=account, channel="sms", kind=ProviderAccount.Kind.FILE,
                                            name="SMS outbox (demo)", data={}, actor=actor, is_default=True)


def _stage_field(database: ProfileDatabase, actor: Actor) -> None:
    from profiles.services import field_add

    if not Field.objects.filter(database=database, name="customer_stage").exists():
        field_add(database=database, name="customer_stage", label="Customer stage", type="string", actor=actor)


def build_welcome_journey(*, account: Account, database: ProfileDatabase, resource: Resource, actor: Actor) -> Scenario:
    """The issue's welcome journey as a draft scenario (its steps laid out on the diagram's grid)."""
    from scenarios.services import scenario_create, step_add, transition_set

    sender = Sender.objects.filter(account=account).order_by("-is_default", "id").first()
    welcome = Template.objects.filter(account=account, name="Welcome").first() or _email_template(
        account, database, "Top picks", actor)

    def email(template: Template) -> dict:
        return {"channel": "email", "resource_id": resource.pk, "template_id": template.pk,
                "sender_id": sender.pk if sender else None, "provider_id": None, "transactional": False,
                "track_opens": True, "track_clicks": True}

    scenario = scenario_create(account=account, database=database, name=NAME, actor=actor, reentry="never",
                               goal={}, description="Welcomes new subscribers of Shop news and turns them into buyers.")
    version = scenario.versions.get()
    sms = {"channel": "sms", "resource_id": resource.pk, "template_id": _sms_template(account, database, actor).pk,
           "sender_id": None, "provider_id": _sms_provider(account, actor).pk, "transactional": False,
           "track_opens": False, "track_clicks": True}
    plan = [
        ("entry.subscription", "Subscribes to Shop news", {"resource_id": resource.pk, "channel": "email"}, 0, 1),
        ("send", "Welcome", email(welcome), 1, 1),
        ("wait", "Wait 2 days", {"mode": "duration", "seconds": 2 * 86400}, 2, 1),
        ("condition", "Opened the welcome?", {"test": "message", "step": "s2", "what": "opened"}, 3, 1),
        ("send", "Top picks", email(_email_template(account, database, "Top picks", actor)), 4, 0),
        ("send", "Did you miss this? (SMS)", sms, 4, 2),
        ("wait_event", "Order placed, or 7 days", {"type": "order.placed", "filters": [],
                                                   "timeout_seconds": 7 * 86400}, 5, 1),
        ("update", "Customer stage: buyer", {"values": {"customer_stage": "buyer"}}, 6, 0),
        ("exit", "Bought", {}, 7, 0),
        ("split", "A/B reminder", {"branches": [{"exit": "a", "label": "A", "weight": 50},
                                                {"exit": "b", "label": "B", "weight": 50}]}, 6, 2),
        ("send", "Reminder A: free shipping", email(_email_template(account, database, "Reminder A: free shipping", actor)),
         7, 2),
        ("send", "Reminder B: 10% off", email(_email_template(account, database, "Reminder B: 10% off", actor)), 7, 3),
        ("exit", "Reminded", {}, 8, 2),
    ]
    steps = [step_add(version=version, kind=kind, title=title, config=config, col=col, row=row, actor=actor)
             for kind, title, config, col, row in plan]
    s = {step.key: step for step in steps}  # s1 .. s13 in plan order
    for source, exit_, target in [("s1", "next", "s2"), ("s2", "next", "s3"), ("s3", "next", "s4"), ("s4", "yes", "s5"),
                                  ("s4", "no", "s6"), ("s5", "next", "s7"), ("s6", "next", "s7"), ("s7", "event", "s8"),
                                  ("s8", "next", "s9"), ("s7", "timeout", "s10"), ("s10", "a", "s11"),
                                  ("s10", "b", "s12"), ("s11", "next", "s13"), ("s12", "next", "s13")]:
        transition_set(source=s[source], exit=exit_, target=s[target], actor=actor)
    return scenario


def _first_entries(scenario: Scenario, resource: Resource) -> int:
    """The first demo subscribers enter and run to the wait (the real engine, in this process)."""
    from scenarios.engine import Entry, participations_advance, participations_enter

    profile_ids = list(Subscription.objects.filter(resource=resource, channel="email", status="subscribed")
                       .order_by("id").values_list("profile_id", flat=True)[:FIRST_ENTRIES])
    ids = participations_enter(scenario=scenario, entries=[
        Entry(profile_id=pid, step_key="s1", source=f"subscription:{resource.pk}", key=f"demo:{pid}")
        for pid in profile_ids])
    participations_advance(ids=ids)
    return len(ids)


def seed_demo(account: Account, owner: User) -> str:
    """The demo scenario (see the module docstring). Returns a summary for create_demo."""
    from scenarios.services import ScenarioError, scenario_activate

    database = ProfileDatabase.objects.filter(account=account, slug=DEMO_DB_SLUG).first()
    resource = Resource.objects.filter(account=account, slug=DEMO_RESOURCE).first()
    if database is None or resource is None:
        return "scenarios: skipped (no demo database or resource)"
    if Scenario.objects.filter(account=account, name=NAME).exists():
        return "scenarios: already there"
    actor = Actor(user=owner)
    with transaction.atomic():
        _stage_field(database, actor)
        scenario = build_welcome_journey(account=account, database=database, resource=resource, actor=actor)
    try:
        scenario_activate(scenario=scenario, actor=actor)
    except ScenarioError as exc:  # the draft stays for the person to look at; say why
        return f"scenarios: “{NAME}” left as a draft ({exc.text})"
    with transaction.atomic():
        entered = _first_entries(scenario, resource)
    return f"scenarios: “{NAME}” active, {entered} subscribers on their way"
