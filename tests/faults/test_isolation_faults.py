"""F15: another account's ids on every page, partial and API route answer 404, as part of the
fault suite (`make test-faults`).

The checks are the two walkers', not copies of them:

- tests/test_tenant_isolation.py walks the URLconf: every route with a parameter is covered,
  and every object route (GET/POST/DELETE, as a page and as an htmx partial) is 404 for a
  member of another account and not 404 for the owner;
- tests/test_api_isolation.py walks /api/v1/openapi.json: every operation with a path
  parameter is covered, another account's token gets 404 on each (every method, PATCH/PUT
  included), and another account's object named in a body is refused like a missing one.

Their test functions and fixtures are imported here, where they carry the `faults` marker, so
a route or operation added to either walker is in the fault suite at once. The page walker's
per-route check builds its whole world (two DKIM keys, VAPID keys, a scenario...) for every
route: run like that it costs minutes on the shared 2-core machine, so here it is called for
every route against one world, each route inside a savepoint rolled back afterwards (what a
route's owner request changes is undone before the next route). (That fixture is named
`world`, like the harness's in tests/faults/conftest.py: the import overrides it in this
module only.)
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from tests import test_api_isolation as api_walker
from tests import test_tenant_isolation as page_walker

pytestmark = [pytest.mark.faults]

# The walkers' fixtures.
world = page_walker.world
fuzz_tenants = api_walker.fuzz_tenants
tenants = api_walker.tenants

# The page, partial and download routes (the URLconf walker).
test_every_route_is_covered = page_walker.test_every_route_is_covered


def test_every_object_route_is_404_for_another_account(world: Any, charlie: Any, globex: Any, login: Any,
                                                       api_token: Any, client: Any) -> None:
    """page_walker.test_another_accounts_object_is_404 for every route of its OBJECT_ROUTES."""
    failures = []
    for route_name in sorted(page_walker.OBJECT_ROUTES):
        try:
            with transaction.atomic():
                page_walker.test_another_accounts_object_is_404(route_name, world, charlie, globex, login, api_token,
                                                                client)
                transaction.set_rollback(True)
        except AssertionError as exc:
            failures.append(f"{route_name}: {str(exc).splitlines()[0]}")
    assert not failures, f"{len(failures)} of {len(page_walker.OBJECT_ROUTES)} routes:\n" + "\n".join(failures)

# The API routes (the OpenAPI walker).
test_it_covers_every_operation_with_a_path_parameter = api_walker.test_it_covers_every_operation_with_a_path_parameter
test_it_answers_404_to_another_accounts_token = api_walker.test_it_answers_404_to_another_accounts_token
test_it_refuses_another_accounts_object_in_a_body_like_a_missing_one = (
    api_walker.test_it_refuses_another_accounts_object_in_a_body_like_a_missing_one)


RUN_BY_LOOP = {"test_another_accounts_object_is_404"}  # called above, route by route


def test_it_runs_every_check_of_both_walkers() -> None:
    """A check added to a walker later must be imported above, or `make test-faults` misses it."""
    here = globals()
    for walker in (page_walker, api_walker):
        checks = {name for name in vars(walker) if name.startswith("test_") and callable(getattr(walker, name))}
        missing = sorted(name for name in checks if here.get(name) is not getattr(walker, name)
                         and name not in RUN_BY_LOOP)
        assert not missing, f"{walker.__name__} has checks this fault module does not run: {missing}"
