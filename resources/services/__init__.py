"""Writes on resources, subscriptions and suppressions. Atomic, keyword-only, and the only way a
subscription's status changes: every change is validated against TRANSITIONS and written to the
consent ledger in the same transaction.

Errors a person can fix are `ResourceError` (one message) or `ResourceValidationError` (a message
per field name).

Modules: common (errors, Via, the ledger, the counters), resources, subscriptions, suppressions.
"""

from __future__ import annotations

from resources.services.common import (  # noqa: F401
    CONSENT_HANDLERS,
    ResourceError,
    ResourceValidationError,
    Via,
    subscription_counts_compact,
    subscription_counts_rebuild,
    write_count_deltas,
)
from resources.services.resources import (  # noqa: F401
    MAX_CATEGORIES,
    RESERVED_SLUGS,
    clean_categories,
    resource_create,
    resource_delete,
    resource_rotate_public_key,
    resource_update,
)
from resources.services.subscriptions import (  # noqa: F401
    CONFIRMATION_HANDLERS,
    PAUSE_DAYS,
    TRANSITIONS,
    check_transition,
    clean_address,
    hold_parents,
    subscription_confirm,
    subscription_create,
    subscription_delete,
    subscription_make_primary,
    subscription_pause,
    subscription_set_categories,
    subscription_set_status,
    subscription_subscribe,
    subscription_update,
    subscriptions_erase,
    subscriptions_merge,
    subscriptions_resume_due,
    subscriptions_set_status_bulk,
)
from resources.services.suppressions import (  # noqa: F401
    clean_suppression,
    guess_kind,
    suppression_add,
    suppression_remove,
    suppressions_add_bulk,
)
