"""Settings of the fault tests' worker processes: the project's own (from the environment the
harness gives: the test database, the test Redis db, SMTP to the fault server), with the waits
that would make a test last minutes made short. Nothing else differs from production."""

from __future__ import annotations

from cdp.settings import *  # noqa: F403

# Back-off after a 421/451 (mailings.throttle): seconds, not the production 30 s doubling to 15 min.
MAILINGS_BACKOFF_BASE = 1.0
MAILINGS_BACKOFF_CAP = 2.0
MAILINGS_THROTTLE_OUTAGE_WAIT = 1.0
MAILINGS_THROTTLE_REDIS_RETRY = 1.0
# The dispatch's leases (mailings.services.dispatch.common): a handed-out row unclaimed for this
# long is handed out again; a claim without news for this long is swept. The claim lease is
# renewed at every chunk (100 messages, well under a second here). The test process, which ticks
# and sweeps, uses the same values (tests/faults/conftest.py).
MAILINGS_HANDOUT_LEASE = 10.0
MAILINGS_CLAIM_LEASE = 6.0
