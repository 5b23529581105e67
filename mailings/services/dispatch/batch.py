"""One claimed batch of one run: consent at claim time, throttling per chunk, building, the wire,
and each answer as the row's outcome (see the package docstring)."""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone as tz

from mailings import throttle as throttle_mod
from mailings.models import LedgerEntry, Mailing, Run
from mailings.services.dispatch import common
from mailings.services.dispatch.common import (
    CHUNK_SIZE,
    MAX_ATTEMPTS,
    MAX_SLEEP,
    SLEEP_BUDGET,
    TEMPORARY_CODES,
    stamp,
)
from mailings.services.sending import (
    Builder,
    BuildFailed,
    Outcome,
    Row,
    load_rows,
    message_id_of,
    outcomes_write,
    skip_reason,
)

log = logging.getLogger(__name__)

Status = LedgerEntry.Status
Reason = LedgerEntry.Reason
_CODE = re.compile(r"(?<!\d)([2-5]\d\d)(?!\d)")


def _code(error: str) -> int:
    """The SMTP / HTTP status code a provider's answer starts with (or names), 0 when none."""
    found = _CODE.search(error or "")
    return int(found.group(1)) if found else 0


def _default_id(mailing: Mailing, what: str) -> int | None:
    """The resource's default sender / provider id for the mailing's channel, if it names one
    (Resource.sender_defaults: {"email": {"sender": id, "provider": id}})."""
    entry = (mailing.resource.sender_defaults or {}).get(mailing.channel)
    value = entry.get(what) if isinstance(entry, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Batch:
    """One claimed batch of one run: what stays the same for all its rows (run, mailing, backend,
    sender, builder, throttle keys) and the counters it returns."""

    def __init__(self, run_id: int, now: datetime, lease: datetime) -> None:
        self.now = now
        self.lease = lease  # the batch's claim token (see common.stamp)
        self.leases = [lease]
        self.renewed = time.monotonic()
        self.run = Run.objects.select_related(
            "version", "mailing", "mailing__account", "mailing__resource", "mailing__sender__domain",
            "mailing__provider", "mailing__template",
        ).get(pk=run_id)
        self.mailing: Mailing = self.run.mailing
        self.channel = self.mailing.channel
        self.throttle = common.get_throttle()
        self.slept = 0.0
        self.timings: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.template_name = self.mailing.template.name if self.mailing.template_id else ""

    # -- outcomes --

    def write(self, outcomes: list[Outcome]) -> None:
        t0 = time.perf_counter()
        written = outcomes_write(run=self.run, mailing=self.mailing, outcomes=outcomes, now=tz.now(),
                                 template_name=self.template_name, leases=self.leases)
        for o in written.outcomes:
            self.counts["deferred" if o.status == Status.QUEUED and o.undo else o.status] += 1
        failures = [o.failure for o in written.outcomes if o.failure is not None]
        if failures:
            try:
                from mailings.services.feedback import sync_failures_apply

                sync_failures_apply(rows=failures)
            except Exception:  # the ledger is right already; the subscription update can be redone from it
                log.exception("mailings: applying %d synchronous failures of run %s failed", len(failures), self.run.pk)
        self.timings["ledger"] += time.perf_counter() - t0

    def retry_or_fail(self, row: Row, *, wait: float, reason: str, detail: str) -> Outcome:
        """A try that did not work but may later: back to the queue after `wait` seconds, unless
        the row has used its attempts (then failed with `reason`)."""
        if row.attempts >= MAX_ATTEMPTS:
            return Outcome(row.id, Status.FAILED, reason, detail=detail)
        return Outcome(row.id, Status.QUEUED, detail=detail, not_before=self.now + timedelta(seconds=max(wait, 1.0)))

    def backoff_wait(self, row: Row) -> float:
        """A row's own back-off when no key is to blame: 30 s, doubling per attempt (max 15 min)."""
        return min(900.0, 30.0 * 2 ** max(row.attempts - 1, 0))

    # -- throttling --

    def provider_key(self) -> str:
        return f"provider:{self.provider_id}" if self.provider_id else f"provider:settings:{self.channel}"

    def domain_key(self, row: Row) -> str:
        return throttle_mod.domain_key(row.address, provider=self.provider_id or "settings")

    def admit(self, chunk: list[Row]) -> tuple[list[Row], list[Outcome]]:
        """The chunk's rows that may go now and the deferred ones (back to the queue with
        not_before, the attempt not counted). Recipient domains first (a blocked domain holds up
        only its own rows), then the provider's and the mailing's buckets."""
        t0 = time.perf_counter()
        admitted: list[Row] = []
        deferred: list[Outcome] = []

        def defer(rows: list[Row], wait: float) -> None:
            not_before = self.now + timedelta(seconds=max(wait, 0.5))
            deferred.extend(Outcome(r.id, Status.QUEUED, detail="throttled", not_before=not_before, undo=1) for r in rows)

        if self.channel == "email":
            for domain, group in throttle_mod.split_by_domain(chunk, lambda r: r.address).items():
                limit = throttle_mod.domain_limit(domain) if domain else None
                grant = self.throttle.take(self.domain_key(group[0]), len(group), limit.rate if limit else 0,
                                           limit.burst if limit else None)
                admitted.extend(group[:grant.granted])
                if grant.granted < len(group):
                    defer(group[grant.granted:], grant.wait_s)
        else:
            admitted = list(chunk)
        for key, rate, burst in self.shared_buckets:
            if not admitted:
                break
            granted, wait = self._take_waiting(key, len(admitted), rate, burst)
            if granted < len(admitted):
                defer(admitted[granted:], wait)
                admitted = admitted[:granted]
        self.timings["throttle"] += time.perf_counter() - t0
        return admitted, deferred

    def _take_waiting(self, key: str, n: int, rate: float, burst: float | None) -> tuple[int, float]:
        """Take n tokens, sleeping through short waits (everything behind this key waits alike)
        within the batch's sleep budget. Returns (granted, wait before the next token)."""
        granted = 0
        while True:
            grant = self.throttle.take(key, n - granted, rate, burst)
            granted += grant.granted
            if granted >= n or grant.wait_s > MAX_SLEEP or self.slept + grant.wait_s > SLEEP_BUDGET:
                return granted, grant.wait_s
            time.sleep(grant.wait_s)
            self.slept += grant.wait_s

    # -- the batch --

    def send(self, claimed: list[int]) -> dict[str, Any]:
        t0 = time.perf_counter()
        rows = load_rows(account_id=self.run.account_id, channel=self.channel, ids=claimed)
        self.timings["load"] += time.perf_counter() - t0
        pending: list[Outcome] = []
        sendable: list[Row] = []
        for row in rows:
            reason = skip_reason(row, self.mailing)
            if reason:
                pending.append(Outcome(row.id, Status.SKIPPED, reason, detail="at claim time"))
            else:
                sendable.append(row)
        if sendable:
            pending = self._send(sendable, pending)
        if pending:
            self.write(pending)
        return {"claimed": len(claimed), **dict(self.counts),
                "timings": {k: round(v, 6) for k, v in self.timings.items()}}

    def _setup(self) -> Any:
        """The backend (not opened), the sender and signer (e-mail), the builder. Raises
        DeliveryError (no backend) or ValidationError (no usable sender)."""
        from delivery.backends import get_backend
        from delivery.models import ProviderAccount

        provider = self.mailing.provider
        if provider is None and (pid := _default_id(self.mailing, "provider")):
            provider = ProviderAccount.objects.filter(account_id=self.run.account_id, pk=pid).first()
        backend = get_backend(self.channel, provider=provider, account=self.mailing.account)
        self.provider_id = provider.pk if provider is not None else None
        rate = float(getattr(backend, "rate", 0) or (getattr(backend, "options", None) or {}).get("rate_per_second")
                     or common.seconds("MAILINGS_PROVIDER_RATE", 0))
        self.shared_buckets: list[tuple[str, float, float | None]] = []
        if self.mailing.speed_limit:
            per_second = self.mailing.speed_limit / 60.0
            self.shared_buckets.append((f"mailing:{self.mailing.pk}", per_second, max(1.0, per_second)))
        self.shared_buckets.append((self.provider_key(), rate, max(1.0, rate * 2) if rate > 0 else None))
        sender = signer = None
        if self.channel == "email":
            from delivery.dkim import signer_for
            from delivery.models import Sender
            from delivery.services.senders import sender_for_sending

            sender = self.mailing.sender
            if sender is None and (sid := _default_id(self.mailing, "sender")):
                sender = Sender.objects.select_related("domain").filter(account_id=self.run.account_id, pk=sid).first()
            sender = sender_for_sending(account=self.mailing.account, sender=sender,
                                        local_backend=bool(getattr(backend, "local", False)))
            key = sender.domain.active_key()
            signer = signer_for(key) if key is not None else None
        builder = Builder(run=self.run, mailing=self.mailing, sender=sender, signer=signer)
        return backend, builder

    def _send(self, sendable: list[Row], pending: list[Outcome]) -> list[Outcome]:
        """Send the consented rows chunk by chunk on one open backend; returns outcomes not yet
        written. Writes each chunk's outcomes as soon as its answers are in."""
        from delivery.backends import DeliveryError

        try:
            backend, builder = self._setup()
        except ValidationError as exc:
            detail = "; ".join(exc.messages)[:1000]
            return pending + [Outcome(r.id, Status.SKIPPED, Reason.NO_SENDER, detail=detail) for r in sendable]
        except DeliveryError as exc:
            return pending + self._batch_error(sendable, exc)
        try:
            t0 = time.perf_counter()
            try:
                backend.open()
            except DeliveryError as exc:
                return pending + self._batch_error(sendable, exc)
            finally:
                self.timings["smtp"] += time.perf_counter() - t0
            for lo in range(0, len(sendable), CHUNK_SIZE):
                chunk = sendable[lo:lo + CHUNK_SIZE]
                admitted, deferred = self.admit(chunk)
                pending.extend(deferred)
                built: list[tuple[Row, Any, str]] = []
                for row in admitted:
                    try:
                        message, subject = builder.build(row)
                    except BuildFailed as exc:
                        pending.append(Outcome(row.id, Status.FAILED, exc.reason, detail=exc.message))
                        continue
                    built.append((row, message, subject))
                if built:
                    t1 = time.perf_counter()
                    keep = self.mailing.transactional and self.channel == "email"
                    mids = {r.id: message_id_of(m.raw) for r, m, _ in built if not r.message_id} if keep else {}
                    ours = self.stamp([r for r, _, _ in built], [r.id for r in sendable[lo:]], keep, mids)
                    built = [b for b in built if b[0].id in ours]
                    self.timings["ledger"] += time.perf_counter() - t1
                    t2 = time.perf_counter()
                    try:
                        results = backend.send_many([m for _, m, _ in built]) if built else []
                    except DeliveryError as exc:
                        # Nothing of this chunk left (the contract): it and the rest go back or fail.
                        self.timings["smtp"] += time.perf_counter() - t2
                        pending.extend(self._batch_error([b[0] for b in built] + sendable[lo + CHUNK_SIZE:], exc))
                        return pending
                    self.timings["smtp"] += time.perf_counter() - t2
                    pending.extend(self._results(built, results))
                if pending:
                    self.write(pending)
                    pending = []
        finally:
            backend.close()
            self.timings["render"] += builder.render_s
            self.timings["compose"] += builder.compose_s
        return pending

    def stamp(self, chunk: list[Row], remaining: list[int], keep: bool, mids: dict[int, str]) -> set[int]:
        """Stamp a chunk; renew the batch's claim lease when a third of it has passed (rarely:
        a batch takes seconds), so only the chunk's rows are written each time."""
        now = tz.now()
        renew = None
        if time.monotonic() - self.renewed > common.claim_lease().total_seconds() / 3:
            renew = now + common.claim_lease()
        ours = stamp(chunk, remaining, now, lease=self.lease, renew=renew, keep_ids=keep, messages=mids)
        if renew is not None:
            self.lease, self.renewed = renew, time.monotonic()
            self.leases.append(renew)
        return ours

    def _batch_error(self, rows: list[Row], exc: Exception) -> list[Outcome]:
        """The backend failed for the whole batch before sending (cannot connect, switched off):
        permanent -> failed (provider); else back to the queue behind the provider's back-off."""
        detail = str(getattr(exc, "message", "") or exc)[:1000]
        if getattr(exc, "permanent", False):
            return [Outcome(r.id, Status.FAILED, Reason.PROVIDER, detail=detail) for r in rows]
        wait = self.throttle.backoff(self.provider_key()) if hasattr(self, "shared_buckets") else 30.0
        return [self.retry_or_fail(r, wait=wait, reason=Reason.PROVIDER, detail=detail) for r in rows]

    def _results(self, built: list[tuple[Row, Any, str]], results: Sequence[Any]) -> list[Outcome]:
        """Each SendResult as the row's outcome (see the module docstring); back-offs for "slow
        down" answers, once per key and chunk."""
        out: list[Outcome] = []
        backed: dict[str, float] = {}
        succeeded: set[str] = set()
        by_ref = {r.ref: (r, m, s) for r, m, s in built}
        answered: set[str] = set()
        for res in results:
            item = by_ref.get(res.ref)
            if item is None or res.ref in answered:
                continue
            answered.add(res.ref)
            row, message, subject = item
            pid = row.profile["id"] if row.profile else 0
            if res.ok:
                mid = message_id_of(message.raw) if self.channel == "email" else res.provider_id
                out.append(Outcome(row.id, Status.SENT, detail=res.provider_id[:1000] if self.channel == "email" else "",
                                   message_id=mid or res.provider_id, profile_id=pid, subject=subject))
                if self.channel == "email":
                    succeeded.add(self.domain_key(row))
                continue
            code = _code(res.error)
            if res.ambiguous:
                out.append(Outcome(row.id, Status.AMBIGUOUS, Reason.CONNECTION_LOST, detail=res.error))
            elif res.deactivate:
                out.append(Outcome(row.id, Status.FAILED, Reason.INVALID, detail=res.error,
                                   failure=(row.id, code, res.error, True, True)))
            elif res.permanent:
                reason = Reason.HARD_BOUNCE if self.channel == "email" else Reason.INVALID
                out.append(Outcome(row.id, Status.FAILED, reason, detail=res.error,
                                   failure=(row.id, code, res.error, True, False)))
            elif res.retry_after is not None or code in TEMPORARY_CODES or 400 <= code < 500:
                # "Slow down": a provider's 429 / Retry-After backs the provider off; an SMTP 4xx
                # the recipient's domain (other domains go on).
                key = (self.domain_key(row) if self.channel == "email" and res.retry_after is None
                       else self.provider_key())
                if key not in backed:
                    backed[key] = self.throttle.backoff(key, res.retry_after)
                    STRUCK.add(key)
                out.append(self.retry_or_fail(row, wait=backed[key], reason=Reason.SOFT_BOUNCE, detail=res.error))
            else:
                out.append(self.retry_or_fail(row, wait=self.backoff_wait(row), reason=Reason.PROVIDER,
                                              detail=res.error))
        for row, _, _ in built:  # a backend that answered for fewer messages than it was given
            if row.ref not in answered:
                out.append(Outcome(row.id, Status.AMBIGUOUS, Reason.CONNECTION_LOST, detail="no answer from the backend"))
        for key in succeeded & STRUCK:
            self.throttle.succeeded(key)
            STRUCK.discard(key)
        return out


# Keys this process backed off: a later success through one forgets its strikes (bounded).
STRUCK: set[str] = set()


