"""What mailings hold in the lower apps: a sender, provider, template, resource or segment a live
mailing uses cannot be deleted from under it (each refusal names the mailing), and a profile's
merge and erasure reach the ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from content.services import ContentError, template_delete
from delivery.models import ProviderAccount
from delivery.services import provider_account_delete, sender_delete
from mailings.models import HandledEvent, LedgerEntry, MailingStat
from mailings.services.ledger import handled_events_prune
from mailings.tests.factories import SYSTEM, make_mailing, make_run, queue_entries
from profiles.models import Profile
from profiles.services import profile_erase, profile_merge
from resources.services import ResourceValidationError, resource_delete
from segments.services import SegmentError, segment_create, segment_delete

pytestmark = pytest.mark.django_db


def test_it_refuses_to_delete_a_sender_a_mailing_uses_and_names_the_mailing(world, mailing):
    with pytest.raises(ValidationError) as exc:
        sender_delete(sender=world.sender, actor=SYSTEM)
    assert "mailing “Spring sale”" in str(exc.value)


def test_it_refuses_to_delete_a_provider_a_mailing_uses(world):
    provider = ProviderAccount.objects.create(account=world.account, channel="email", kind="locmem", name="Relay",
                                              secrets={})
    make_mailing(world, provider=provider, name="Via relay")
    with pytest.raises(ValidationError) as exc:
        provider_account_delete(provider=provider, actor=SYSTEM)
    assert "mailing “Via relay”" in str(exc.value)
    assert ProviderAccount.objects.filter(pk=provider.pk).exists()


def test_it_refuses_to_delete_a_template_a_mailing_uses(world, mailing):
    with pytest.raises(ContentError) as exc:
        template_delete(template=world.template, actor=SYSTEM)
    assert "mailing “Spring sale”" in str(exc.value) and "archive it instead" in str(exc.value)


def test_it_refuses_to_delete_a_resource_a_mailing_sends_from(world, mailing):
    with pytest.raises(ResourceValidationError) as exc:
        resource_delete(resource=world.resource, actor=SYSTEM)
    assert "mailing “Spring sale”" in str(exc.value)


def test_it_refuses_to_delete_a_segment_an_unfinished_mailing_targets_but_not_a_finished_one(world):
    seg = segment_create(database=world.database, name="VIPs", kind="static", actor=SYSTEM, compute=False)
    m = make_mailing(world, include=[seg], name="VIP news")
    with pytest.raises(SegmentError) as exc:
        segment_delete(segment=seg, actor=SYSTEM)
    assert "mailing “VIP news”" in str(exc.value)
    m.state = m.State.DONE
    m.save(update_fields=["state"])
    segment_delete(segment=seg, actor=SYSTEM)


def test_it_skips_an_erased_profiles_queued_rows_and_blanks_its_personal_data(world, mailing):
    run = make_run(mailing)
    rows = queue_entries(run)
    sent = rows[1]
    LedgerEntry.objects.filter(pk=sent.pk).update(status="sent")
    victim = Profile.objects.get(pk=rows[0].profile_id)
    profile_erase(profile=victim, actor=SYSTEM)
    erased = LedgerEntry.objects.get(pk=rows[0].pk)
    assert (erased.status, erased.reason, erased.address) == ("skipped", "erased", "")
    assert LedgerEntry.objects.get(pk=sent.pk).status == "sent"  # another profile's row is untouched
    assert MailingStat.objects.filter(mailing_id=mailing.pk, metric="skipped:erased").values_list("delta", flat=True)[0] == 1


def test_it_moves_ledger_rows_to_the_merged_profile(world, mailing):
    run = make_run(mailing)
    rows = queue_entries(run)
    target = Profile.objects.get(pk=rows[0].profile_id)
    source = Profile.objects.get(pk=rows[1].profile_id)
    profile_merge(target=target, source=source, actor=SYSTEM)
    assert LedgerEntry.objects.filter(profile_id=target.pk).count() == 2
    assert not LedgerEntry.objects.filter(profile_id=source.pk).exists()


def test_it_forgets_handled_event_marks_after_the_configured_days(settings):
    settings.MAILINGS_HANDLED_EVENT_DAYS = 7
    now = timezone.now()
    HandledEvent.objects.create(handler="feedback", event_id=1, created_at=now - timedelta(days=8))
    HandledEvent.objects.create(handler="feedback", event_id=2, created_at=now - timedelta(days=6))
    assert handled_events_prune(now=now, batch=1) == 1
    assert list(HandledEvent.objects.values_list("event_id", flat=True)) == [2]
