"""Events as integrations send them (JSON objects), turned into `EventIn`s and stored.

The API (`POST /events`, `/events/batch`), the JavaScript collector and `manage.py import_events`
all send items of this shape:

    {"id": "ord-1001-placed",            # the sender's event id: idempotency key (optional)
     "event": "order.placed",            # a type name: system (public ones) or the account's own
     "time": "2026-11-28T10:15:00Z",     # ISO 8601 or epoch seconds/ms; default: now
     "profile": {"email": "ann@example.com"},   # exactly one match key of the database, or {"id": 42}
     "properties": {"order_id": "1001", "total": "59.90"},
     "channel": "web", "resource": "shop"}      # optional: channel, a resource slug of the database

Profiles are resolved set-based, one query per match key used in the batch; unknown ones are
created only when `create_profiles` (the API token's permission).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from accounts.models import Account
from history.services.ingest import MAX_BATCH, EventIn, ItemResult, TypeBook, events_ingest
from profiles.models import ProfileDatabase
from profiles.services import ProfileValidationError, Schema, profiles_by_key

ITEM_KEYS = frozenset({"id", "event", "time", "profile", "properties", "channel", "resource"})


@dataclass
class BatchOutcome:
    results: list[ItemResult]
    profiles_created: int = 0

    @property
    def counts(self) -> dict[str, int]:
        c = {"stored": 0, "duplicate": 0, "error": 0}
        for r in self.results:
            c[r.status] += 1
        return c

    def as_dict(self) -> dict[str, Any]:
        return {**self.counts, "profiles_created": self.profiles_created, "results": [r.as_dict() for r in self.results]}

    def as_json(self) -> str:
        """`as_dict` as JSON text, built from each result's own (the API's answer to a batch)."""
        c = self.counts
        return (f'{{"stored":{c["stored"]},"duplicate":{c["duplicate"]},"error":{c["error"]},'
                f'"profiles_created":{self.profiles_created},"results":['
                + ",".join(r.as_json() for r in self.results) + "]}")


class BatchTooLarge(ValueError):
    pass


def _fail(result: ItemResult, field: str, message: str) -> None:
    result.status, result.field, result.error = "error", field, message


def ingest_payloads(*, account: Account, database: ProfileDatabase, items: list[Any], create_profiles: bool = False,
                    source: str = "api", public_only: bool = True, resource_ids: dict[str, int] | None = None,
                    book: TypeBook | None = None) -> BatchOutcome:
    """Store a batch of JSON events for `database`; one result per item, in order."""
    if len(items) > MAX_BATCH:
        raise BatchTooLarge(f"a batch holds at most {MAX_BATCH:,} events; this one has {len(items):,} (split it)")
    results = [ItemResult(i) for i in range(len(items))]
    refs: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    allowed_keys = set(database.match_keys) | {"id", "email", "phone"}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            _fail(results[i], "", f"expected an event object, got {type(item).__name__}")
            continue
        unknown = set(item) - ITEM_KEYS
        if unknown:
            _fail(results[i], sorted(unknown)[0], f"unknown key (an event has {', '.join(sorted(ITEM_KEYS))})")
            continue
        ref = item.get("profile")
        if not isinstance(ref, dict) or len(ref) != 1:
            _fail(results[i], "profile", 'name the profile by one match key, e.g. {"email": "ann@example.com"} or {"id": 42}')
            continue
        (key, raw), = ref.items()
        if key not in allowed_keys:
            _fail(results[i], "profile", f"{key!r} is not a match key of database {database.slug!r} "
                                         f"(use one of: {', '.join(sorted(allowed_keys))})")
            continue
        if isinstance(raw, dict | list) or raw is None:
            _fail(results[i], f"profile.{key}", "expected a text or number value")
            continue
        refs[key].append((i, raw))
    profile_of: dict[int, int] = {}
    created = 0
    if database.account_id == account.pk:
        database.account = account  # the converters read the account's region; no query for it
    # The schema is needed for custom match keys and to create profiles; e-mail and phone convert without it.
    sch = Schema.load(database) if create_profiles or any(k not in ("id", "email", "phone") for k in refs) else None
    for key, pairs in refs.items():
        try:
            lookup, norm = profiles_by_key(database=database, key=key, raw_values=[raw for _, raw in pairs],
                                           create=create_profiles, sch=sch)
        except ProfileValidationError as exc:  # pragma: no cover - keys were checked above
            for i, _ in pairs:
                _fail(results[i], "profile", str(exc))
            continue
        created += len(lookup.created)
        for i, raw in pairs:
            value = norm.get(raw)
            if value is None:
                _fail(results[i], f"profile.{key}", lookup.errors.get(raw, "is empty"))
            elif value in lookup.ids:
                profile_of[i] = lookup.ids[value]
            else:
                _fail(results[i], f"profile.{key}", lookup.errors.get(value, "no such profile"))
    if resource_ids is None:
        wanted = {item.get("resource") for i, item in enumerate(items) if i in profile_of and item.get("resource")}
        resource_ids = _resources(database, wanted) if wanted else {}
    events: list[EventIn] = []
    index: list[int] = []
    for i, pid in profile_of.items():
        item = items[i]
        resource = item.get("resource")
        rid = None
        if resource:
            rid = resource_ids.get(resource) if isinstance(resource, str) else None
            if rid is None:
                _fail(results[i], "resource", f"{str(resource)[:60]!r} is not a resource of database {database.slug!r}")
                continue
        events.append(EventIn(
            type=item.get("event"), profile_id=pid, occurred_at=item.get("time"), properties=item.get("properties"),
            key=item.get("id"), channel=item.get("channel") or "", resource_id=rid, source=source,
        ))
        index.append(i)
    if events:
        results_in = events_ingest(account=account, events=events, source=source, public_only=public_only, book=book,
                                   database_id=database.pk)
        for r, i in zip(results_in, index, strict=True):
            r.index = i
            results[i] = r
    return BatchOutcome(results, created)


def _resources(database: ProfileDatabase, slugs: set[Any]) -> dict[str, int]:
    # Resources sit above profiles and below history: reading them here is the allowed direction.
    from resources.models import Resource

    return dict(Resource.objects.filter(database=database, slug__in=[s for s in slugs if isinstance(s, str)])
                .values_list("slug", "id"))
