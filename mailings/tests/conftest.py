"""Fixtures of the mailings tests (helpers in `factories`): `world` (acme: 5 profiles with e-mail
and SMS subscriptions on "Shop news", a verified sender, a template with e-mail and SMS versions;
alice acts), `mailing` (a draft e-mail broadcast, "now", of that world), `other_world` (globex's,
charlie acts) for the cross-account checks."""

from __future__ import annotations

import pytest

from mailings.models import Mailing
from mailings.tests.factories import World, make_mailing, make_world


@pytest.fixture
def world(acme, alice) -> World:
    return make_world(acme, user=alice, n=5)


@pytest.fixture
def mailing(world) -> Mailing:
    return make_mailing(world)


@pytest.fixture
def other_world(globex, charlie) -> World:
    return make_world(globex, user=charlie, n=2, domain="globex.example")
