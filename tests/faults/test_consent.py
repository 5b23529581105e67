"""F11 (one-click unsubscribe while a run is sending) and F12 (erasure during a run, then the
same person imported again)."""

from __future__ import annotations

import io
import time
from urllib.parse import urlsplit

import pytest
from django.test import Client

from tests.faults.stack import add_subscribers, broadcast, check_invariants, drain, wait_for_run

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]

SIZE = 1500  # three batches for one worker: the last one is claimed seconds after the first


def _status(run, profile_id: int) -> str:
    from mailings.models import LedgerEntry

    # By profile: an erasure blanks the ledger's copy of the address.
    return LedgerEntry.objects.filter(run=run, profile_id=profile_id).values_list("status", flat=True).get()


def test_it_sends_nothing_to_a_profile_that_unsubscribed_with_one_click_during_the_run(stack, world):
    from mailings.models import LedgerEntry
    from resources.tokens import LinkMaker

    subs = add_subscribers(world, SIZE)
    profile_id, sub_id, address = subs[-1]
    stack.smtp.delay_s = 0.003
    stack.start_worker("w1")
    run = wait_for_run(broadcast(world))
    assert stack.smtp.wait_for(30, timeout=90) >= 30, stack.logs()

    url = urlsplit(LinkMaker().one_click(sub_id, profile_id))
    answer = Client().post(url.path + (f"?{url.query}" if url.query else ""), data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    committed = time.time()
    assert answer.status_code == 200, answer.content
    assert _status(run, profile_id) in ("queued", "skipped"), "its row was claimed before the unsubscribe"

    drain(run, timeout=60, progress=lambda: len(stack.smtp.arrivals))
    counts = check_invariants(run, stack.smtp, forbidden={address: committed}, max_ambiguous=0)
    row = LedgerEntry.objects.get(run=run, address=address)
    assert (row.status, row.reason) == ("skipped", "unsubscribed"), (row.status, row.reason)
    assert counts == {"sent": SIZE - 1, "skipped": 1}, counts
    assert address not in {a.rcpt for a in stack.smtp.snapshot()}


def test_it_sends_nothing_after_an_erasure_and_a_reimport_does_not_resubscribe(stack, world):
    from mailings.models import LedgerEntry
    from mailings.services.lifecycle import mailing_duplicate, mailing_launch
    from profiles.importing import Options, auto_mapping, import_file, sniff, writable_fields
    from profiles.models import Profile
    from profiles.services import profile_erase
    from resources.models import Subscription

    subs = add_subscribers(world, SIZE)
    profile_id, _, address = subs[-2]
    stack.smtp.delay_s = 0.003
    stack.start_worker("w1")
    mailing = broadcast(world)
    run = wait_for_run(mailing)
    assert stack.smtp.wait_for(30, timeout=90) >= 30, stack.logs()

    profile_erase(profile=Profile.objects.get(pk=profile_id), actor=world.actor)
    committed = time.time()
    # Not claimed yet (still queued, or skipped by the erasure itself): what follows tests the claim.
    assert _status(run, profile_id) in ("queued", "skipped"), "its row was claimed before the erasure"

    drain(run, timeout=60, progress=lambda: len(stack.smtp.arrivals))
    check_invariants(run, stack.smtp, forbidden={address: committed}, max_ambiguous=0)
    row = LedgerEntry.objects.get(run=run, profile_id=profile_id)
    assert row.status == "skipped" and row.reason in ("erased", "gone"), (row.status, row.reason)

    # The same person comes back in an import that subscribes everyone in the file.
    data = f"email,first_name\n{address},Back\nnew.person@a.example.com,New\n".encode()
    file = io.BytesIO(data)
    info = sniff(file, size=len(data))
    options = Options(auto_mapping(info.headers, writable_fields(world.database)), "email",
                      extra={"subscribe": {"resource": world.resource.pk, "channel": "email", "status": "subscribed"}})
    result = import_file(database=world.database, file=file, info=info, options=options, report=io.StringIO(),
                         source="import:faults")
    assert result.skipped_erased == 1, result
    assert not Profile.objects.filter(database=world.database, email=address).exists()
    assert not Subscription.objects.filter(resource=world.resource, address=address).exists()

    again = mailing_launch(mailing=mailing_duplicate(mailing=mailing, actor=world.actor), actor=world.actor)
    run2 = wait_for_run(again)
    drain(run2, timeout=60, progress=lambda: len(stack.smtp.arrivals))
    check_invariants(run2, stack.smtp, forbidden={address: committed}, max_ambiguous=0)
    assert not LedgerEntry.objects.filter(run=run2, address=address).exclude(status="skipped").exists()
