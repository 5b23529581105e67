"""One tenant's objects for the API fuzz and isolation tests: `build_tenant(account)`.

Every object an API path parameter can name (database, field, profile, resource, subscription,
suppression, event type, segment, template, sending domain, mailing, scenario, invitation, job)
is made once per account through the services the app tests use. Names that appear in URLs
(database slug, field name, event type name, resource slug) carry the account's slug, so one
account's value never resolves to the other account's object of the same name: a 404 for
another account's value then proves the lookup is scoped, not that the name is unknown to all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.files.base import ContentFile
from django.utils import timezone

from accounts.access import Actor
from accounts.models import Account, ApiToken, Invitation, Job
from accounts.permissions import Role
from accounts.services import api_token_create
from content.models import Template, TemplateVersion
from content.services import template_create, template_version_save
from delivery.models import Sender, SendingDomain
from delivery.services import sender_create, sending_domain_create
from history.models import EventType
from history.services import EventIn, events_ingest, eventtype_create
from mailings.models import Mailing
from profiles.models import Profile, ProfileDatabase
from profiles.services import database_create, field_add, profile_upsert
from resources.models import Resource, Subscription, Suppression
from resources.services import Via, resource_create, subscription_create, suppression_add
from scenarios.models import Participation, PathEntry, Scenario, ScenarioVersion, Step, Transition
from segments.models import Segment
from segments.services import segment_create, segment_members_add


@dataclass
class Tenant:
    """One account's objects and an owner token of it (`token`: the raw bearer secret)."""

    account: Account
    token: str
    api_token: ApiToken
    invitation: Invitation
    job: Job
    database: ProfileDatabase
    field: str
    profile: Profile
    other_profile: Profile
    resource: Resource
    subscription: Subscription
    suppression: Suppression
    event_type: EventType
    segment: Segment
    template: Template
    version: TemplateVersion
    domain: SendingDomain
    sender: Sender
    mailing: Mailing
    trigger: Mailing
    scenario: Scenario
    participation: Participation

    def path_values(self) -> dict[str, Any]:
        """Path parameter name -> this tenant's value, for the parameter names the API uses.
        `name` is ambiguous (a field of a database, an event type): `path_value` resolves it."""
        return {
            "db": self.database.slug,
            "profile_id": self.profile.pk,
            "resource": self.resource.slug,
            "subscription_id": self.subscription.pk,
            "suppression_id": self.suppression.pk,
            "segment_id": self.segment.pk,
            "template_id": self.template.pk,
            "domain_id": self.domain.pk,
            "mailing_id": self.mailing.pk,
            "scenario_id": self.scenario.pk,
            "invitation_id": self.invitation.pk,
            "job_id": self.job.pk,
        }

    def path_value(self, path: str, name: str) -> Any:
        """This tenant's value for path parameter `name` of the operation at `path` (KeyError if
        the API grew a parameter this builder does not know: add it here)."""
        if name == "name":
            return self.event_type.name if "/event-types/" in path else self.field
        return self.path_values()[name]


def build_tenant(account: Account) -> Tenant:
    """Make one of everything for `account` (see the module docstring). Call inside a test with
    database access; the two accounts of a test must have different slugs."""
    system = Actor.system()
    slug = account.slug.replace("-", "_")
    api_token, raw = api_token_create(account=account, name=f"{slug} fuzz", role=Role.OWNER, actor=system)
    job = Job(account=account, kind="audit.export", title=f"{account.name} export", state=Job.State.SUCCEEDED)
    job.result_file.save(f"{slug}.csv", ContentFile(f"secret,{slug}\n".encode()), save=False)
    job.save()
    database = database_create(account=account, name=f"{account.name} customers", actor=system)
    field = f"{slug}_tier"
    field_add(database=database, name=field, label="Tier", type="string", actor=system)
    profile = profile_upsert(database=database, values={"email": f"p@{slug}.example"}, actor=system).profile
    other = profile_upsert(database=database, values={"email": f"q@{slug}.example"}, actor=system).profile
    resource = resource_create(account=account, database=database, actor=system,
                               values={"name": f"{account.name} news", "channels": ["email", "sms"],
                                       "categories": ["news"]})
    subscription = subscription_create(profile=profile, resource=resource, channel="email", address=profile.email,
                                       actor=system, via=Via(source="test"))
    subscription_create(profile=other, resource=resource, channel="email", address=other.email,
                        actor=system, via=Via(source="test"))
    suppression, _ = suppression_add(account=account, kind="email", value=f"blocked@{slug}.example", actor=system)
    event_type = eventtype_create(account=account, name=f"{slug}_only", actor=system)
    events_ingest(account=account, events=[EventIn(event_type.name, profile.pk, key=f"{slug}-event")])
    segment = segment_create(database=database, name=f"{account.name} list", kind="static", actor=system)
    segment_members_add(segment=segment, profile_ids=[profile.pk], actor=system)
    template = template_create(account=account, name=f"{account.name} welcome", kind="transactional",
                               database=database, actor=system)
    version = template_version_save(template=template, channel="email", actor=system,
                                    data={"subject": "Hi {{ profile.email }}", "html": "<p>Hi</p>"})
    domain = sending_domain_create(account=account, domain=f"{slug}.example", actor=system)
    sender = sender_create(account=account, domain=domain, local_part="news", from_name=account.name, actor=system)
    mailing = Mailing.objects.create(account=account, database=database, name=f"{account.name} sale",
                                     resource=resource, sender=sender, template=template, channel="email",
                                     schedule={"mode": "now"})
    trigger = Mailing.objects.create(account=account, database=database, name=f"{account.name} receipt",
                                     kind=Mailing.Kind.TRIGGER, resource=resource, sender=sender,
                                     template=template, channel="email", transactional=True,
                                     state=Mailing.State.SENDING)  # launched: the API can fire it
    scenario, participation = _scenario(account, database, profile)
    return Tenant(
        account=account, token=raw, api_token=api_token,
        invitation=Invitation.objects.create(account=account, email=f"x@{slug}.example", role=Role.ANALYST,
                                             key_hash=f"{account.pk:064d}"[-64:],
                                             expires_at=timezone.now() + timedelta(days=3)),
        job=job, database=database, field=field, profile=profile, other_profile=other, resource=resource,
        subscription=subscription, suppression=suppression, event_type=event_type, segment=segment,
        template=template, version=version, domain=domain, sender=sender, mailing=mailing, trigger=trigger,
        scenario=scenario, participation=participation,
    )


def _scenario(account: Account, database: ProfileDatabase, profile: Profile) -> tuple[Scenario, Participation]:
    """An active scenario (API entry -> exit) with its live version 1, and the profile's finished
    trip through it (the participants and report endpoints read it)."""
    now = timezone.now()
    scenario = Scenario.objects.create(account=account, database=database, name=f"{account.name} journey",
                                       state=Scenario.State.ACTIVE, activated_at=now)
    version = ScenarioVersion.objects.create(account=account, scenario=scenario, number=1,
                                             state=ScenarioVersion.State.PUBLISHED)
    s1 = Step.objects.create(account=account, version=version, key="s1", kind="entry.api", title="API call")
    s2 = Step.objects.create(account=account, version=version, key="s2", kind="exit", title="Done", col=1)
    Transition.objects.create(account=account, version=version, source=s1, exit="next", target=s2)
    scenario.live_version = version
    scenario.save(update_fields=["live_version"])
    participation = Participation.objects.create(account_id=account.pk, scenario=scenario, version=version,
                                                 profile_id=profile.pk, step=s2, seq=1, finished_at=now,
                                                 state=Participation.State.COMPLETED)
    PathEntry.objects.create(participation=participation, version_number=1, step_key="s1", seq=0, exit="next",
                             left_at=now)
    PathEntry.objects.create(participation=participation, version_number=1, step_key="s2", seq=1)
    return scenario, participation
