"""Every URL that names an object is a 404 for a member of another account.

The walker reads the whole URLconf. A route with parameters must be listed either in
OBJECT_ROUTES (how to build an object of account A for it) or in NOT_TENANT_OBJECTS (why it
names no tenant object). A new route in neither list fails `test_every_route_is_covered`, so
apps added later cannot forget isolation.

For each object route, charlie (an owner, so no permission stops him before the lookup)
requests account A's object with every method the view accepts, as a page and as an htmx
partial, and must get 404; the owner of A must not (so the check can fail).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from accounts.access import Actor
from accounts.models import Account, ApiToken, Invitation, Job, Membership, User
from accounts.permissions import Role
from accounts.services import api_token_create
from content.models import Fragment, Template, TemplateVersion
from content.services import fragment_save, template_create, template_version_save
from delivery.backends.base import OutboundMessage
from delivery.backends.file import FileBackend
from delivery.models import DkimKey, ProviderAccount, Sender, SendingDomain
from delivery.services import dkim_key_rotate, provider_account_create, sender_create, sending_domain_create
from delivery.vapid import generate_vapid_keys
from history.models import Event, EventType
from history.services import EventIn, events_ingest, eventtype_create
from mailings.models import LedgerEntry, Mailing, Run
from profiles.models import Profile, ProfileDatabase, ProfileImport
from profiles.services import database_create, field_add, profile_upsert
from resources.models import Resource, Subscription, Suppression
from resources.services import Via, resource_create, subscription_create, suppression_add
from scenarios.models import Participation, PathEntry, Scenario, ScenarioVersion, Step, Transition
from segments.models import Segment, SegmentRun
from segments.services import segment_create, segment_members_add, segment_recalculate


@dataclass
class World:
    """Objects of account A (acme) that charlie (globex) must never reach."""

    account: Account
    owner: User
    member: Membership
    invitation: Invitation
    token: ApiToken
    job: Job
    database: ProfileDatabase
    profile: Profile
    profile_import: ProfileImport
    resource: Resource
    subscription: Subscription
    suppression: Suppression
    suppressions_job: Job
    event_type: EventType
    segment: Segment
    segment_run: SegmentRun
    event: Event
    template: Template
    version: TemplateVersion
    fragment: Fragment
    domain: SendingDomain
    retired_key: DkimKey
    sender: Sender
    provider: ProviderAccount
    webpush_provider: ProviderAccount
    outbox_message: tuple[str, str]
    mailing: Mailing
    mailing_run: Run
    ledger_entry: LedgerEntry
    scenario: Scenario
    participation: Participation


Build = Callable[[World], dict[str, Any]]

# route name -> the URL kwargs naming an object of account A ("?": a query string the view needs).
# Extend as apps add routes.
OBJECT_ROUTES: dict[str, Build] = {
    # history
    "api:profile_events_api": lambda w: {"db": w.database.slug, "profile_id": w.profile.pk},
    "api:eventtype_get_api": lambda w: {"name": w.event_type.name},
    "api:eventtype_update_api": lambda w: {"name": w.event_type.name},
    "api:eventtype_delete_api": lambda w: {"name": w.event_type.name},
    "api:segment_list_api": lambda w: {"db": w.database.slug},
    "api:segment_create_api": lambda w: {"db": w.database.slug},
    "api:segment_count_draft_api": lambda w: {"db": w.database.slug},
    "api:segment_get_api": lambda w: {"segment_id": w.segment.pk},
    "api:segment_update_api": lambda w: {"segment_id": w.segment.pk},
    "api:segment_delete_api": lambda w: {"segment_id": w.segment.pk},
    "api:segment_count_api": lambda w: {"segment_id": w.segment.pk},
    "api:segment_recalculate_api": lambda w: {"segment_id": w.segment.pk},
    "api:segment_members_api": lambda w: {"segment_id": w.segment.pk},
    "api:segment_members_add_api": lambda w: {"segment_id": w.segment.pk},
    "api:segment_members_remove_api": lambda w: {"segment_id": w.segment.pk},
    "api:segment_explain_api": lambda w: {"segment_id": w.segment.pk},
    "api:segment_runs_api": lambda w: {"segment_id": w.segment.pk},
    "segments:detail": lambda w: {"pk": w.segment.pk},
    "segments:edit": lambda w: {"pk": w.segment.pk},
    "segments:delete": lambda w: {"pk": w.segment.pk},
    "segments:duplicate": lambda w: {"pk": w.segment.pk},
    "segments:recalculate": lambda w: {"pk": w.segment.pk},
    "segments:export": lambda w: {"pk": w.segment.pk},
    "segments:members_add": lambda w: {"pk": w.segment.pk},
    "segments:members_remove": lambda w: {"pk": w.segment.pk},
    "segments:explain": lambda w: {"pk": w.segment.pk},
    "segments:run": lambda w: {"pk": w.segment.pk, "run": w.segment_run.pk},
    "segments:card_membership": lambda w: {"db": w.database.slug, "pk": w.profile.pk},
    "history:type_detail": lambda w: {"name": w.event_type.name},
    "history:type_delete": lambda w: {"name": w.event_type.name},
    "history:timeline": lambda w: {"db": w.database.slug, "pk": w.profile.pk},
    "history:event_detail": lambda w: {"pk": w.event.pk},
    "history:site_tracking_events": lambda w: {"slug": w.resource.slug},
    # Templates and fragments.
    "content:template_detail": lambda w: {"pk": w.template.pk},
    "content:template_check": lambda w: {"pk": w.template.pk},
    "content:template_profiles": lambda w: {"pk": w.template.pk},
    "content:template_preview": lambda w: {"pk": w.template.pk},
    "content:template_settings": lambda w: {"pk": w.template.pk},
    "content:template_archive": lambda w: {"pk": w.template.pk},
    "content:template_duplicate": lambda w: {"pk": w.template.pk},
    "content:template_delete": lambda w: {"pk": w.template.pk},
    "content:template_versions": lambda w: {"pk": w.template.pk},
    "content:version_compare": lambda w: {"pk": w.template.pk},
    "content:version_restore": lambda w: {"pk": w.template.pk, "version": w.version.pk},
    "content:template_links": lambda w: {"pk": w.template.pk},
    "content:template_test_send": lambda w: {"pk": w.template.pk},
    "content:fragment_edit": lambda w: {"pk": w.fragment.pk},
    "content:fragment_delete": lambda w: {"pk": w.fragment.pk},
    "api:template_get_api": lambda w: {"template_id": w.template.pk},
    "api:template_update_api": lambda w: {"template_id": w.template.pk},
    "api:template_render_api": lambda w: {"template_id": w.template.pk},
    "api:template_test_send_api": lambda w: {"template_id": w.template.pk},
    # Sending domains, DKIM keys, senders, providers and the outbox.
    "delivery:domain_detail": lambda w: {"pk": w.domain.pk},
    "delivery:domain_verify": lambda w: {"pk": w.domain.pk},
    "delivery:domain_delete": lambda w: {"pk": w.domain.pk},
    "delivery:dkim_generate": lambda w: {"pk": w.domain.pk},
    "delivery:dkim_rotate": lambda w: {"pk": w.domain.pk},
    "delivery:dkim_remove": lambda w: {"pk": w.domain.pk, "key": w.retired_key.pk},
    "delivery:sender_edit": lambda w: {"pk": w.sender.pk},
    "delivery:sender_delete": lambda w: {"pk": w.sender.pk},
    "delivery:provider_edit": lambda w: {"pk": w.provider.pk},
    "delivery:provider_delete": lambda w: {"pk": w.provider.pk},
    "delivery:provider_default": lambda w: {"pk": w.provider.pk},
    "delivery:provider_test": lambda w: {"pk": w.provider.pk},
    "delivery:provider_vapid": lambda w: {"pk": w.webpush_provider.pk},
    "delivery:outbox_message": lambda w: {"day": w.outbox_message[0], "name": w.outbox_message[1]},
    "delivery:outbox_html": lambda w: {"day": w.outbox_message[0], "name": w.outbox_message[1]},
    "delivery:outbox_raw": lambda w: {"day": w.outbox_message[0], "name": w.outbox_message[1]},
    "api:sending_domain_get_api": lambda w: {"domain_id": w.domain.pk},
    "api:sending_domain_verify_api": lambda w: {"domain_id": w.domain.pk},
    "accounts:member_role": lambda w: {"pk": w.member.pk},
    "accounts:member_remove": lambda w: {"pk": w.member.pk},
    "accounts:invitation_action": lambda w: {"pk": w.invitation.pk, "action": "revoke"},
    "accounts:api_token_revoke": lambda w: {"pk": w.token.pk},
    "accounts:job_detail": lambda w: {"pk": w.job.pk},
    "accounts:job_download": lambda w: {"pk": w.job.pk},
    "api:invitation_revoke_api": lambda w: {"invitation_id": w.invitation.pk},
    "api:job_get_api": lambda w: {"job_id": w.job.pk},
    "api:database_get_api": lambda w: {"db": w.database.slug},
    "api:database_update_api": lambda w: {"db": w.database.slug},
    "api:database_delete_api": lambda w: {"db": w.database.slug},
    "api:field_list_api": lambda w: {"db": w.database.slug},
    "api:field_add_api": lambda w: {"db": w.database.slug},
    "api:fields_reorder_api": lambda w: {"db": w.database.slug},
    "api:field_update_api": lambda w: {"db": w.database.slug, "name": "tier"},
    "api:field_remove_api": lambda w: {"db": w.database.slug, "name": "tier"},
    "api:profile_list_api": lambda w: {"db": w.database.slug},
    "api:profile_upsert_api": lambda w: {"db": w.database.slug},
    "api:profile_batch_api": lambda w: {"db": w.database.slug},
    "api:profile_lookup_api": lambda w: {"db": w.database.slug},
    "api:profile_merge_api": lambda w: {"db": w.database.slug},
    "api:profile_get_api": lambda w: {"db": w.database.slug, "profile_id": w.profile.pk},
    "api:profile_update_api": lambda w: {"db": w.database.slug, "profile_id": w.profile.pk},
    "api:profile_erase_api": lambda w: {"db": w.database.slug, "profile_id": w.profile.pk},
    # Profile pages (databases, schema, list, card, merge, erase, export).
    "profiles:database_settings": lambda w: {"db": w.database.slug},
    "profiles:database_delete": lambda w: {"db": w.database.slug},
    "profiles:field_create": lambda w: {"db": w.database.slug},
    "profiles:field_reorder": lambda w: {"db": w.database.slug},
    "profiles:field_edit": lambda w: {"db": w.database.slug, "name": "tier"},
    "profiles:field_remove": lambda w: {"db": w.database.slug, "name": "tier"},
    "profiles:profile_list": lambda w: {"db": w.database.slug},
    "profiles:profile_export": lambda w: {"db": w.database.slug},
    "profiles:profile_create": lambda w: {"db": w.database.slug},
    "profiles:profile_detail": lambda w: {"db": w.database.slug, "pk": w.profile.pk},
    "profiles:profile_merge": lambda w: {"db": w.database.slug, "pk": w.profile.pk},
    "profiles:profile_erase": lambda w: {"db": w.database.slug, "pk": w.profile.pk},
    "profiles:import_list": lambda w: {"db": w.database.slug},
    "profiles:import_upload": lambda w: {"db": w.database.slug},
    "profiles:import_detail": lambda w: {"db": w.database.slug, "pk": w.profile_import.pk},
    "profiles:import_errors": lambda w: {"db": w.database.slug, "pk": w.profile_import.pk},
    # Resources, subscriptions and suppressions (API).
    "api:resource_get_api": lambda w: {"resource": w.resource.slug},
    "api:resource_update_api": lambda w: {"resource": w.resource.slug},
    "api:resource_subscribe_api": lambda w: {"resource": w.resource.slug},
    "api:resource_rotate_key_api": lambda w: {"resource": w.resource.slug},
    "api:resource_delete_api": lambda w: {"resource": w.resource.slug},
    "api:subscription_list_api": lambda w: {"db": w.database.slug, "profile_id": w.profile.pk},
    "api:subscription_create_api": lambda w: {"db": w.database.slug, "profile_id": w.profile.pk},
    "api:consent_list_api": lambda w: {"db": w.database.slug, "profile_id": w.profile.pk},
    "api:subscription_update_api": lambda w: {"db": w.database.slug, "profile_id": w.profile.pk, "subscription_id": w.subscription.pk},
    "api:subscription_delete_api": lambda w: {"db": w.database.slug, "profile_id": w.profile.pk, "subscription_id": w.subscription.pk},
    "api:suppression_delete_api": lambda w: {"suppression_id": w.suppression.pk},
    # Resource and suppression pages.
    "resources:detail": lambda w: {"slug": w.resource.slug},
    "resources:settings": lambda w: {"slug": w.resource.slug},
    "resources:rotate_key": lambda w: {"slug": w.resource.slug},
    "resources:delete": lambda w: {"slug": w.resource.slug},
    "resources:suppression_remove": lambda w: {"pk": w.suppression.pk},
    "resources:suppression_import_detail": lambda w: {"pk": w.suppressions_job.pk},
    # The profile card's subscriptions tab.
    "resources:subscription_add": lambda w: {"db": w.database.slug, "pk": w.profile.pk},
    "resources:subscription_change": lambda w: {"db": w.database.slug, "pk": w.profile.pk, "sub": w.subscription.pk},
    "resources:consent_export": lambda w: {"db": w.database.slug, "pk": w.profile.pk},
    # Mailings: the pages (a run is named by ?run=, checked in mailings/tests/test_views.py) and the API.
    "mailings:detail": lambda w: {"pk": w.mailing.pk},
    "mailings:progress": lambda w: {"pk": w.mailing.pk},
    "mailings:edit": lambda w: {"pk": w.mailing.pk, "step": "audience"},
    "mailings:audience_preview": lambda w: {"pk": w.mailing.pk},
    "mailings:test_send": lambda w: {"pk": w.mailing.pk},
    "mailings:launch": lambda w: {"pk": w.mailing.pk},
    "mailings:pause": lambda w: {"pk": w.mailing.pk},
    "mailings:resume": lambda w: {"pk": w.mailing.pk},
    "mailings:cancel": lambda w: {"pk": w.mailing.pk},
    "mailings:duplicate": lambda w: {"pk": w.mailing.pk},
    "mailings:delete": lambda w: {"pk": w.mailing.pk},
    "mailings:report": lambda w: {"pk": w.mailing.pk},
    "mailings:recipients": lambda w: {"pk": w.mailing.pk},
    "mailings:explain": lambda w: {"pk": w.mailing.pk},
    "mailings:export": lambda w: {"pk": w.mailing.pk, "what": "report"},
    "api:mailing_get_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_update_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_launch_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_pause_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_resume_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_cancel_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_preview_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_report_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_recipients_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_trigger_api": lambda w: {"mailing_id": w.mailing.pk},
    "api:mailing_trigger_bulk_api": lambda w: {"mailing_id": w.mailing.pk},
    # Scenarios: an active scenario with a live version and a draft (same step keys), a participation.
    "scenarios:detail": lambda w: {"pk": w.scenario.pk},
    "scenarios:settings": lambda w: {"pk": w.scenario.pk},
    "scenarios:export": lambda w: {"pk": w.scenario.pk},
    "scenarios:delete": lambda w: {"pk": w.scenario.pk},
    "scenarios:draft": lambda w: {"pk": w.scenario.pk},
    "scenarios:palette": lambda w: {"pk": w.scenario.pk},
    "scenarios:step_add": lambda w: {"pk": w.scenario.pk, "?": "kind=wait"},  # an unknown kind is a 404 too
    "scenarios:step_edit": lambda w: {"pk": w.scenario.pk, "key": "s2"},
    "scenarios:step_move": lambda w: {"pk": w.scenario.pk, "key": "s2"},
    "scenarios:step_delete": lambda w: {"pk": w.scenario.pk, "key": "s2"},
    "scenarios:activate": lambda w: {"pk": w.scenario.pk},
    "scenarios:publish": lambda w: {"pk": w.scenario.pk},
    "scenarios:pause": lambda w: {"pk": w.scenario.pk},
    "scenarios:resume": lambda w: {"pk": w.scenario.pk},
    "scenarios:stop": lambda w: {"pk": w.scenario.pk},
    "scenarios:participants": lambda w: {"pk": w.scenario.pk},
    "scenarios:participation": lambda w: {"pk": w.scenario.pk, "participation_id": w.participation.pk},
    "scenarios:report": lambda w: {"pk": w.scenario.pk},
    "scenarios:profile_trips": lambda w: {"profile_id": w.profile.pk},
    "api:scenario_get_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_update_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_delete_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_activate_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_pause_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_resume_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_stop_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_enter_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_participants_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_report_api": lambda w: {"scenario_id": w.scenario.pk},
    "api:scenario_export_api": lambda w: {"scenario_id": w.scenario.pk},
}

# Routes with parameters that do not name a tenant object, and why.
NOT_TENANT_OBJECTS: dict[str, str] = {
    "tracking:collect": "public endpoint of the website snippet; the resource's public key is the credential",
    "tracking:open": "public pixel; the signed token is the credential (history/tests/test_tracking.py: forged, "
                     "other account's link)",
    "tracking:click": "public redirect; the signed token is the credential and only its account's stored link is "
                      "followed (history/tests/test_tracking.py)",
    "accounts:invitation_accept": "public page; the secret key in the URL is the credential",
    "accounts:password_reset_confirm": "public page; the signed token in the URL is the credential",
    "api_not_found": "answers 404 in the API error shape for any unknown path",
    "public:unsubscribe": "public page; the signed token in the URL is the credential (and names its profile)",
    "public:one_click": "RFC 8058 endpoint; the signed token in the URL is the credential",
    "public:preferences": "public page; the signed token is the credential; posted subscription ids are checked against its profile and resource",
    "public:confirm": "public page; the signed (expiring) token in the URL is the credential",
    "public:subscribe": "public endpoint; the resource's public key is the credential",
    "public:subscribe_without_slash": "the same endpoint without the trailing slash",
}
NOT_TENANT_NAMESPACES = {"admin": "Django admin, for superusers only (is_staff), not for tenants"}


@dataclass
class Route:
    name: str
    pattern: URLPattern
    params: list[str]


def _walk(patterns: list, namespace: str = "") -> Iterator[Route]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, p.namespace or namespace)
        elif isinstance(p, URLPattern):
            params = list(p.pattern.regex.groupindex)
            name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or f"{namespace}:<catch-all>")
            yield Route(name, p, params)


def _routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns))


def _object_routes() -> list[Route]:
    return [r for r in _routes() if r.name in OBJECT_ROUTES]


def test_every_route_is_covered():
    uncovered = [
        f"{r.name} ({r.pattern.pattern})"
        for r in _routes()
        if r.params
        and r.name not in OBJECT_ROUTES
        and r.name not in NOT_TENANT_OBJECTS
        and r.name.split(":")[0] not in NOT_TENANT_NAMESPACES
    ]
    assert not uncovered, (
        "Routes with parameters missing from the tenant-isolation walker; add them to OBJECT_ROUTES "
        f"(or NOT_TENANT_OBJECTS with the reason): {uncovered}"
    )
    assert {r.name for r in _object_routes()} == set(OBJECT_ROUTES), "OBJECT_ROUTES names a route that does not exist"


@pytest.fixture
def world(acme, olivia, alice, settings) -> World:
    token, _ = api_token_create(account=acme, name="acme token", role=Role.ADMIN, actor=Actor.system())
    job = Job(account=acme, kind="audit.export", title="Acme export", state=Job.State.SUCCEEDED)
    job.result_file.save("acme.csv", ContentFile(b"secret,acme,data\n"), save=False)
    job.save()
    database = database_create(account=acme, name="Acme customers", actor=Actor.system())
    field_add(database=database, name="tier", label="Tier", type="string", actor=Actor.system())  # the "tier" routes
    profile = profile_upsert(database=database, values={"email": "p@acme.example"}, actor=Actor.system()).profile
    profile_import = ProfileImport(account=acme, database=database, original_name="acme.csv", headers=["email"],
                                   state=ProfileImport.State.SUCCEEDED)
    profile_import.file.save("acme.csv", ContentFile(b"email\np@acme.example\n"), save=False)
    profile_import.error_report.save("acme-errors.csv", ContentFile(b"row,column,value,reason\n"), save=False)
    profile_import.save()
    resource = resource_create(account=acme, database=database, actor=Actor.system(),
                               values={"name": "Acme news", "channels": ["email", "sms"], "categories": ["news"]})
    subscription = subscription_create(profile=profile, resource=resource, channel="email", address=profile.email,
                                       actor=Actor.system(), via=Via(source="test"))
    suppression, _ = suppression_add(account=acme, kind="email", value="blocked@acme.example", actor=Actor.system())
    # A custom type only acme has (globex must not get one of the same name: its own would answer).
    event_type = eventtype_create(account=acme, name="acme_only", actor=Actor.system())
    [stored] = events_ingest(account=acme, events=[EventIn("acme_only", profile.pk, key="acme-event")])
    segment = segment_create(database=database, name="Acme list", kind="static", actor=Actor.system())
    segment_members_add(segment=segment, profile_ids=[profile.pk], actor=Actor.system())
    segment_run = segment_recalculate(segment=segment)
    settings.DELIVERY_DNS_RESOLVER = "delivery.tests.test_views_domains.fake_resolve"  # never the network
    system = Actor.system()
    fragment = fragment_save(account=acme, key="acme-footer", name="Acme footer", html="<p>Acme</p>", actor=system)
    template = template_create(account=acme, name="Acme welcome", kind="transactional", database=database, actor=system)
    version = template_version_save(template=template, channel="email", actor=system,
                                    data={"subject": "Hi", "html": '<p>Hi</p>{% include "acme-footer" %}'})
    domain = sending_domain_create(account=acme, domain="acme.example", actor=system)
    retired_key = DkimKey.objects.get(domain=domain)
    dkim_key_rotate(domain=domain, actor=system)
    sender = sender_create(account=acme, domain=domain, local_part="news", from_name="Acme", actor=system)
    provider = provider_account_create(account=acme, channel="telegram", kind="telegram", name="Acme bot",
                                       data={"bot_token": "123:acme"}, actor=system)
    keys = generate_vapid_keys()
    vapid = {"vapid_private_key": keys.private_key, "vapid_public_key": keys.public_key}
    webpush_provider = provider_account_create(account=acme, channel="webpush", kind="webpush", name="Acme push",
                                               data={"vapid_subject": "mailto:ops@acme.example", **vapid}, actor=system)
    backend = FileBackend(directory=str(settings.DELIVERY_OUTBOX_DIR))
    backend.account_id = acme.pk
    backend.open()
    [sent] = backend.send_many([OutboundMessage(channel="sms", to="+4915112345678", payload={"text": "hi"})])
    day, name = sent.provider_id.split("/")
    # A mailing of acme that has run once: a run and a ledger row (the report, log and exports read them).
    mailing = Mailing.objects.create(account=acme, database=database, name="Acme sale", resource=resource,
                                     sender=sender, template=template, schedule={"mode": "now"},
                                     state=Mailing.State.DONE)
    mailing_run = Run.objects.create(account=acme, mailing=mailing, slot="once", state=Run.State.DONE, version=version,
                                     planned=1)
    ledger_entry = LedgerEntry.objects.create(account_id=acme.pk, mailing_id=mailing.pk, run=mailing_run,
                                              subscription_id=subscription.pk, profile_id=profile.pk, channel="email",
                                              address=subscription.address, status=LedgerEntry.Status.SENT,
                                              sent_at=timezone.now())
    scenario, participation = _scenario(acme, database, profile)
    return World(
        account=acme,
        owner=olivia,
        member=Membership.objects.get(user=alice),
        invitation=Invitation.objects.create(
            account=acme, email="x@acme.test", role=Role.ANALYST, key_hash="1" * 64,
            expires_at=timezone.now() + timedelta(days=3),
        ),
        token=token,
        job=job,
        database=database,
        profile=profile,
        profile_import=profile_import,
        resource=resource,
        subscription=subscription,
        suppression=suppression,
        suppressions_job=Job.objects.create(account=acme, kind="suppressions.import", title="Import suppressions",
                                            state=Job.State.SUCCEEDED, result={"added": 1}),
        event_type=event_type,
        event=Event.objects.get(pk=stored.id),
        segment=segment,
        segment_run=segment_run,
        template=template,
        version=version,
        fragment=fragment,
        domain=domain,
        retired_key=retired_key,
        sender=sender,
        provider=provider,
        webpush_provider=webpush_provider,
        outbox_message=(day, name),
        mailing=mailing,
        mailing_run=mailing_run,
        ledger_entry=ledger_entry,
        scenario=scenario,
        participation=participation,
    )


def _scenario(account: Account, database: ProfileDatabase, profile: Profile) -> tuple[Scenario, Participation]:
    """An active scenario of acme (API entry -> exit) with its live version 1 and a draft version 2
    of the same steps (the editor's step routes name a draft step), and the profile's trip through it."""
    now = timezone.now()
    scenario = Scenario.objects.create(account=account, database=database, name="Acme journey",
                                       state=Scenario.State.ACTIVE, activated_at=now)
    versions = []
    for number, state in ((1, ScenarioVersion.State.PUBLISHED), (2, ScenarioVersion.State.DRAFT)):
        version = ScenarioVersion.objects.create(account=account, scenario=scenario, number=number, state=state)
        s1 = Step.objects.create(account=account, version=version, key="s1", kind="entry.api", title="API call")
        s2 = Step.objects.create(account=account, version=version, key="s2", kind="exit", title="Done", col=1)
        Transition.objects.create(account=account, version=version, source=s1, exit="next", target=s2)
        versions.append((version, s2))
    live, done = versions[0]
    scenario.live_version = live
    scenario.save(update_fields=["live_version"])
    participation = Participation.objects.create(account_id=account.pk, scenario=scenario, version=live,
                                                 profile_id=profile.pk, step=done, state=Participation.State.COMPLETED,
                                                 seq=1, finished_at=now)
    PathEntry.objects.create(participation=participation, version_number=1, step_key="s1", seq=0, exit="next",
                             left_at=now)
    PathEntry.objects.create(participation=participation, version_number=1, step_key="s2", seq=1)
    return scenario, participation


def _url(route: Route, kwargs: dict[str, Any]) -> str:
    """The route's URL; a "?" entry of the kwargs is its query string (a view that needs one)."""
    from django.urls import reverse

    kwargs = dict(kwargs)
    query = kwargs.pop("?", "")
    return reverse(route.name, kwargs=kwargs) + (f"?{query}" if query else "")


METHODS = ["get", "post", "delete"]


def _call(client, method: str, url: str, headers: dict[str, str]) -> int:
    return getattr(client, method)(url, headers=headers).status_code


@pytest.mark.parametrize("route_name", sorted(OBJECT_ROUTES))
def test_another_accounts_object_is_404(route_name, world, charlie, globex, login, api_token, client):
    route = next(r for r in _routes() if r.name == route_name)
    url = _url(route, OBJECT_ROUTES[route_name](world))
    if route_name.startswith("api:"):
        outsider, insider = client, client
        outsider_headers = {"Authorization": f"Bearer {api_token(globex, Role.OWNER)}"}
        insider_headers = {"Authorization": f"Bearer {api_token(world.account, Role.OWNER)}"}
    else:
        outsider, insider = login(charlie), login(world.owner)
        outsider_headers = insider_headers = {}
    answered = []
    for method in METHODS:
        for extra in ({}, {"HX-Request": "true", "HX-Target": f"job-{world.job.pk}"}):
            status = _call(outsider, method, url, {**outsider_headers, **extra})
            if status == 405:
                continue
            answered.append(method)
            assert status == 404, f"{method.upper()} {url} as another account answered {status}"
    assert answered, f"{url} accepted no method"
    # The owner reaches it: without this, a broken route would pass as "isolated".
    status = _call(insider, answered[0], url, insider_headers)
    assert status != 404, f"{answered[0].upper()} {url} is 404 for its own account too"
