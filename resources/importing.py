"""Subscribing the profiles of an import, in the import's transaction and set-based (an ImportHook).

Options (ProfileImport.extra["subscribe"]): {"resource": <id>, "channel": "email" | "sms",
"status": "subscribed" | "unconfirmed" | "unsubscribed"}. The address is the profile's e-mail or
phone. Rules, so that an import can never overrule a person's own choice:
- a new address gets the chosen status;
- "unsubscribed" unsubscribes existing subscribed, unconfirmed and paused subscriptions;
- "subscribed" confirms unconfirmed ones; it never re-subscribes an unsubscribed, bounced,
  complained or blocked address (those are counted as kept);
- an address another profile holds on this resource is left alone and counted.
Every created or changed subscription gets its consent-ledger row. Erased people never reach
here: the import skips them by their salted match-key hash.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from django.db import connection
from django.utils import timezone

from profiles.importing.report import Result
from profiles.models import ProfileDatabase
from resources.models import Channel, Resource, Status
from resources.services import write_count_deltas

IMPORT_CHANNELS = {Channel.EMAIL: "email", Channel.SMS: "phone"}
IMPORT_STATUSES = (Status.SUBSCRIBED, Status.UNCONFIRMED, Status.UNSUBSCRIBED)
# existing status -> may the import's status replace it?
_CHANGES_FROM = {
    Status.SUBSCRIBED: (Status.UNCONFIRMED,),
    Status.UNCONFIRMED: (),
    Status.UNSUBSCRIBED: (Status.SUBSCRIBED, Status.UNCONFIRMED, Status.SUSPENDED),
}
_LEDGER_COLUMNS = (
    "account_id, resource_id, subscription_id, profile_id, channel, address, action, old_status, new_status, "
    "actor_type, actor_label, source, reason, user_agent, created_at"
)


def check_subscribe(database: ProfileDatabase, options: Any) -> list[str]:
    if not isinstance(options, dict):
        return ["Subscribe: expected resource, channel and status."]
    resource = Resource.objects.filter(pk=options.get("resource"), database=database).first()
    if resource is None:
        return ["Subscribe: pick a resource of this database."]
    channel = options.get("channel")
    problems = []
    if channel not in IMPORT_CHANNELS:
        problems.append("Subscribe: an import subscribes on e-mail (the profile's e-mail) or SMS (its phone).")
    elif channel not in resource.channels:
        problems.append(f"Subscribe: {Channel(channel).label} is not enabled on {resource.name}.")
    if options.get("status") not in IMPORT_STATUSES:
        problems.append("Subscribe: the status is subscribed, unconfirmed or unsubscribed.")
    return problems


def subscribe_imported(*, database: ProfileDatabase, options: dict[str, Any], ids_table: str, result: Result, source: str,
                       actor_label: str) -> None:
    resource = Resource.objects.get(pk=options["resource"], database=database)
    channel, status = options["channel"], options["status"]
    col = IMPORT_CHANNELS[channel]
    ts = connection.ops.adapt_datetimefield_value(timezone.now())
    actor_type = "user" if actor_label else "system"
    src = source[:64]
    ids, rid = ids_table, int(resource.pk)
    counts: dict[str, int] = {}
    pg = connection.vendor == "postgresql"
    olds = _CHANGES_FROM[status]
    marks = ", ".join(["%s"] * len(olds)) or "NULL"
    cls = f"{ids}_cls"
    # On PostgreSQL the new subscriptions' ids are drawn here, so that the subscriptions and their
    # ledger rows are two plain INSERT .. SELECTs from this table (a CTE over INSERT .. RETURNING
    # would hold a million returned rows in memory and spill to disk).
    started = time.perf_counter()
    with connection.cursor() as cur:
        new_id = "NULL"
        if pg:
            # The sequence's name is looked up once: as a literal it is a constant regclass, where
            # pg_get_serial_sequence() in the SELECT would be evaluated per row (2 s a million).
            cur.execute("SELECT pg_get_serial_sequence('resources_subscription', 'id')")
            sequence = cur.fetchone()[0].replace("'", "''")
            new_id = f"CASE WHEN i.{col} IS NOT NULL AND s.id IS NULL THEN nextval('{sequence}') END"
        # One pass classifies every named profile: its address, the subscription already at that
        # address on this resource and channel (whoever holds it), and the profile's highest
        # priority there. Everything below reads this table, never the table it writes: an INSERT
        # that read the table it fills would scan the rows it is adding and go quadratic.
        cur.execute(f"DROP TABLE IF EXISTS {cls}")
        if pg:
            # The database does not check these references row by row (see Subscription): the
            # import holds its database's write lock (erasure and merge wait for it) and here the
            # resource row, so nothing it subscribes can disappear before it commits.
            cur.execute("SELECT id FROM resources_resource WHERE id = %s FOR KEY SHARE", [rid])
        cur.execute(
            f"CREATE TEMP TABLE {cls} AS SELECT i.id AS profile_id, i.{col} AS address, s.id AS sub_id, "  # noqa: S608
            f"s.profile_id AS owner, s.status AS status, COALESCE(m.top, 0) + 1 AS priority, {new_id} AS new_id "
            f"FROM {ids} i LEFT JOIN resources_subscription s ON s.resource_id = %s AND s.channel = %s AND s.address = i.{col} "
            f"LEFT JOIN (SELECT x.profile_id, max(x.priority) AS top FROM resources_subscription x JOIN {ids} j "
            f"ON j.id = x.profile_id WHERE x.resource_id = %s AND x.channel = %s GROUP BY x.profile_id) m ON m.profile_id = i.id",
            [rid, channel, rid, channel],
        )
        cur.execute(
            f"SELECT COALESCE(SUM(CASE WHEN address IS NULL THEN 1 ELSE 0 END), 0), "  # noqa: S608
            f"COALESCE(SUM(CASE WHEN sub_id IS NOT NULL AND owner <> profile_id THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN owner = profile_id THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN owner = profile_id AND status IN ({marks}) THEN 1 ELSE 0 END), 0) FROM {cls}",
            list(olds),
        )
        no_address, taken, own, changing = cur.fetchone()
        counts.update(no_address=no_address, taken=taken, changed=0, kept=own - changing)
        deltas: Counter[tuple[int, int, str, str]] = Counter()
        if changing:
            # Existing subscriptions at the profile's own address whose status the import may change.
            mine = f"SELECT sub_id FROM {cls} WHERE owner = profile_id AND status IN ({marks})"  # noqa: S608
            cur.execute(f"SELECT status, count(*) FROM {cls} WHERE owner = profile_id AND status IN ({marks}) GROUP BY status",  # noqa: S608
                        list(olds))
            for old, n in cur.fetchall():
                deltas[(resource.account_id, rid, channel, old)] -= n
                deltas[(resource.account_id, rid, channel, status)] += n
            cur.execute(
                f"INSERT INTO resources_consentrecord ({_LEDGER_COLUMNS}) SELECT s.account_id, s.resource_id, s.id, s.profile_id, "  # noqa: S608
                f"s.channel, s.address, 'status', s.status, %s, %s, %s, %s, 'import', '', %s FROM resources_subscription s "
                f"WHERE s.id IN ({mine})",
                [status, actor_type, actor_label[:200], src, ts, *olds],
            )
            cur.execute(
                f"UPDATE resources_subscription SET status = %s, reason = 'import', suspended_until = NULL, changed_at = %s, "  # noqa: S608
                f"updated_at = %s, confirmed_at = CASE WHEN %s = 'subscribed' AND status = 'unconfirmed' THEN %s ELSE confirmed_at END "
                f"WHERE id IN ({mine})",
                [status, ts, ts, status, ts, *olds],
            )
            counts["changed"] = cur.rowcount
        classified = time.perf_counter()
        confirmed = "%s" if status == Status.SUBSCRIBED and resource.needs_confirmation(channel) else "NULL"
        id_column, id_value = ("id, ", "new_id, ") if pg else ("", "")
        cur.execute(
            f"INSERT INTO resources_subscription ({id_column}account_id, resource_id, profile_id, channel, address, status, "  # noqa: S608
            "reason, suspended_until, opted_out, priority, meta, source, confirmed_at, created_at, changed_at, updated_at) "
            f"SELECT {id_value}%s, %s, profile_id, %s, address, %s, '', NULL, '[]', priority, '{{}}', %s, {confirmed}, %s, %s, %s "
            f"FROM {cls} WHERE address IS NOT NULL AND sub_id IS NULL" + ("" if pg else " RETURNING id"),
            [resource.account_id, rid, channel, status, src, *([ts] if confirmed != "NULL" else []), ts, ts, ts],
        )
        inserted = time.perf_counter()
        ledger = (f"INSERT INTO resources_consentrecord ({_LEDGER_COLUMNS}) SELECT %s, %s, {{id}}, profile_id, %s, address, "  # noqa: S608
                  f"'created', '', %s, %s, %s, %s, 'import', '', %s FROM {{table}} WHERE {{where}}")
        head = [resource.account_id, rid, channel, status, actor_type, actor_label[:200], src, ts]
        if pg:
            counts["created"] = cur.rowcount
            cur.execute(ledger.format(id="new_id", table=cls, where="new_id IS NOT NULL"), head)
        else:
            new_ids = [r[0] for r in cur.fetchall()]
            counts["created"] = len(new_ids)
            for n in range(0, len(new_ids), 500):
                chunk = new_ids[n:n + 500]
                cur.execute(ledger.format(id="id", table="resources_subscription", where=f"id IN ({', '.join(['%s'] * len(chunk))})"),
                            [*head, *chunk])
        cur.execute(f"DROP TABLE {cls}")
    deltas[(resource.account_id, rid, channel, status)] += counts["created"]
    write_count_deltas(deltas)
    done = time.perf_counter()
    result.phases.update({"subscribe.classify": classified - started, "subscribe.insert": inserted - classified,
                          "subscribe.ledger": done - inserted})
    result.extra["subscribe"] = {"resource": resource.name, "channel": channel, "status": status, **counts}
