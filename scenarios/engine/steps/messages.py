"""The send step: the group's messages go into the send ledger through the step's trigger mailing.

`mailings.services.triggers.firing.fires_insert` does the work set-based (one query for the
subscriptions, one for the skips, one INSERT .. ON CONFLICT DO NOTHING per 500 rows): consent,
suppression, category opt-outs, frequency caps, send windows and tracking apply as for any
trigger mailing, and the mailing's report counts the messages. The trigger key
`scn:<participation>:<seq>` makes a repeated call insert nothing; the ledger rows are then looked
up by (mailing, trigger key) — one query — so a repeat still reports what happened, and
`context["messages"][step key]` names the row a later condition step can test."""

from __future__ import annotations

from typing import Any

from mailings.models import LedgerEntry, Mailing
from mailings.services.triggers.firing import Fire, fires_insert, rows_by_key
from scenarios.engine.steps import Handler, Item, Outcome, StepRun, same


def trigger_key(item: Item) -> str:
    """The ledger's trigger key of this item's visit to a send step (unique per mailing)."""
    return f"scn:{item.id}:{item.seq}"


def _describe(status: str, reason: str, ledger_id: int) -> str:
    if status == LedgerEntry.Status.SKIPPED:
        return f"skipped: {reason or 'unknown reason'}"
    return f"{status}: ledger #{ledger_id}"


def send_run(run: StepRun, items: list[Item]) -> list[Outcome]:
    """Add a message per item to the ledger and go on ("next") whatever the ledger decided: a
    skip by consent, suppression or cap is not a failure of the trip (the path log says why).
    Fails the trips when the step has no mailing (the version was never published)."""
    step = run.step
    mailing = (Mailing.objects.filter(pk=step.mailing_id, account_id=run.scenario.account_id)
               .select_related("resource").first() if step.mailing_id else None)
    if mailing is None:
        return same(Outcome(fail="the send step has no mailing (publish the scenario)"), len(items))
    if mailing.state in Mailing.FINISHED_STATES:
        # Cancelled (or finished) in the mailings app: the trips go on, as for any other skip.
        return same(Outcome(exit="next", outcome=f"skipped: the step's mailing is {mailing.get_state_display().lower()}"),
                    len(items))
    fires = [Fire(mailing=mailing, profile_id=item.profile_id, key=trigger_key(item),
                  data=_data(item)) for item in items]
    keys = [f.key for f in fires]
    rows = {r.key: (r.id, r.status, r.reason) for r in fires_insert(fires, now=run.now)}
    # The rows just inserted came back from the INSERT; only a key the ledger had already (this
    # visit was done before: a redelivered batch) or a fire with no subscription is looked up.
    rows.update(rows_by_key(mailing.pk, [key for key in keys if key not in rows]))
    resource = mailing.resource.name if mailing.resource_id else "the resource"
    outcomes: list[Outcome] = []
    for item, key in zip(items, keys, strict=True):
        row = rows.get(key)
        if row is None:
            outcomes.append(Outcome(exit="next", outcome=f"no subscription on {resource} {mailing.channel}"))
            continue
        ledger_id, status, reason = row
        messages = dict(item.context.get("messages") or {})
        messages[step.key] = ledger_id
        outcomes.append(Outcome(exit="next", outcome=_describe(status, reason, ledger_id),
                                context={"messages": messages}))
    return outcomes


def _data(item: Item) -> dict[str, Any] | None:
    data = item.context.get("data")
    return data if isinstance(data, dict) else None


HANDLERS: dict[str, Handler] = {"send": send_run}
