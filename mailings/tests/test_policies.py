"""Frequency caps: which one applies, how it reads, what is refused."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent
from mailings.models import FrequencyCap
from mailings.services.errors import MailingError
from mailings.services.lifecycle import cap_clear, cap_set
from mailings.services.policies import cap_clean, cap_for, cap_text
from mailings.tests.factories import make_mailing, make_resource


def test_it_takes_the_narrowest_cap(world, mailing):
    assert cap_for(mailing) is None
    cap_set(account=world.account, actor=world.actor, max_messages=3, days=7, scope="profile")
    assert cap_for(mailing).level == "account"
    cap_set(account=world.account, actor=world.actor, resource=world.resource, max_messages=2, days=7, scope="profile")
    assert cap_for(mailing).level == "resource"
    cap_set(account=world.account, actor=world.actor, mailing=mailing, max_messages=1, days=1, scope="address")
    assert cap_for(mailing).level == "mailing"
    assert cap_clear(account=world.account, actor=world.actor, mailing=mailing) is True
    assert cap_for(mailing).level == "resource"


def test_it_ignores_another_resources_cap(world, mailing):
    other = make_resource(world.account, world.database, name="Other")
    cap_set(account=world.account, actor=world.actor, resource=other, max_messages=2, days=7, scope="profile")
    assert cap_for(mailing) is None


def test_it_exempts_transactional_mailings(world):
    cap_set(account=world.account, actor=world.actor, max_messages=1, days=1, scope="profile")
    assert cap_for(make_mailing(world, transactional=True)) is None


def test_it_reads_a_cap_as_a_rule(world, mailing):
    cap = cap_set(account=world.account, actor=world.actor, max_messages=3, days=7, scope="profile")
    assert cap_text(cap) == "at most 3 in 7 days per recipient (account policy)"
    cap = cap_set(account=world.account, actor=world.actor, resource=world.resource, max_messages=1, days=1,
                  scope="profile_channel")
    assert cap_text(cap) == "at most 1 in 1 day per recipient and channel (resource policy)"


@pytest.mark.parametrize(("n", "d", "scope", "field"), [
    (0, 7, "profile", "max_messages"), (16, 7, "profile", "max_messages"), (3, 0, "profile", "days"),
    (3, 17, "profile", "days"), (3, 7, "household", "scope"), ("x", 7, "profile", "max_messages"),
])
def test_it_refuses_caps_out_of_range(n, d, scope, field):
    with pytest.raises(MailingError) as exc:
        cap_clean(max_messages=n, days=d, scope=scope)
    assert field in exc.value.errors


def test_it_replaces_a_levels_cap_and_audits_it(world):
    cap_set(account=world.account, actor=world.actor, max_messages=3, days=7)
    cap_set(account=world.account, actor=world.actor, max_messages=5, days=14, scope="address")
    cap = FrequencyCap.objects.get(account=world.account)
    assert (cap.max_messages, cap.days, cap.scope) == (5, 14, "address")
    assert AuditEvent.objects.filter(verb="frequency_cap.set").count() == 2


def test_it_refuses_another_accounts_resource(world, other_world):
    with pytest.raises(MailingError):
        cap_set(account=world.account, actor=world.actor, resource=other_world.resource, max_messages=1, days=1)
