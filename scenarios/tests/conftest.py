"""Fixtures of the scenarios tests (helpers in `factories`):

- `world` / `scenario_world` (the same object): acme's mailings world — 5 profiles with e-mail and
  SMS subscriptions on "Shop news", a verified sender, a template with e-mail and SMS versions;
  alice acts.
- `other_world`: globex's (2 profiles; charlie acts), for the cross-account checks.
- `scenario`: an active scenario of `world`: s1 entry.api -> s2 send (e-mail) -> s3 wait 0 -> s4 exit.
- `draft_scenario`: the same graph as a draft (v1 is the draft; no mailings yet).
"""

from __future__ import annotations

import pytest

from mailings.tests.factories import World
from scenarios.models import Scenario
from scenarios.tests.factories import make_scenario, make_scenario_world


@pytest.fixture
def world(acme, alice) -> World:
    return make_scenario_world(acme, user=alice, n=5)


@pytest.fixture
def scenario_world(world) -> World:
    return world


@pytest.fixture
def other_world(globex, charlie) -> World:
    return make_scenario_world(globex, user=charlie, n=2, domain="globex.example")


@pytest.fixture
def scenario(world) -> Scenario:
    return make_scenario(world)


@pytest.fixture
def draft_scenario(world) -> Scenario:
    return make_scenario(world, active=False, name="Draft journey")
