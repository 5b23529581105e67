"""`fuzz_tenants`: acme's and globex's objects built once per test module, each test rolling back
to them.

Building two tenants costs a second or more on the shared 2-core machine; a hundred operations
each rebuilding them would spend minutes on setup alone. The module fixture opens an outer
transaction, builds both tenants in it and rolls it back at the end; each test's `db` fixture
opens a savepoint inside it (pytest-django's TestCase atomics nest), so whatever a test writes
or deletes is undone before the next test and every test sees the same two tenants.

Import the fixture into a test module: `from tests.fuzz.fixtures import fuzz_tenants  # noqa: F401`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection, transaction
from django.test.utils import override_settings

from accounts.tests.factories import AccountFactory
from tests.fuzz.world import Tenant, build_tenant


@pytest.fixture(scope="module")
def fuzz_tenants(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[tuple[Tenant, Tenant]]:
    """(acme, globex): two accounts with one of everything and an owner token each."""
    media = tmp_path_factory.mktemp("fuzz-media")
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media), transaction.atomic():
        acme = AccountFactory(name="Acme", slug="acme")
        globex = AccountFactory(name="Globex", slug="globex")
        tenants = build_tenant(acme), build_tenant(globex)
        if connection.vendor == "postgresql":
            # In production each request starts a transaction of its own; here the tenants' rows
            # share the test's, and their deferred foreign-key checks, still pending, would make
            # a request's CREATE INDEX (adding an indexed field) fail. Check them now.
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # back to Django's default for what follows
        yield tenants
        transaction.set_rollback(True)


@pytest.fixture
def tenants(fuzz_tenants, db, settings) -> tuple[Tenant, Tenant]:
    """The module's tenants, inside this test's savepoint, with the settings the API tests need."""
    settings.API_RATE_LIMIT_PER_MINUTE = 1_000_000  # the fuzzer sends far more than a client would
    settings.DELIVERY_DNS_RESOLVER = "delivery.tests.test_views_domains.fake_resolve"  # never the network
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]  # schemathesis' WSGI client's host
    return fuzz_tenants
