"""The sweeper (dispatch.ledger_sweep): expired handouts and claims, a worker that died before or
during the wire, transactional resends with the same Message-ID, the attempts cap."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes

import pytest
from django.db.models import Sum
from django.utils import timezone

from delivery.backends import locmem
from mailings.models import LedgerEntry, Mailing, MailingStat, Run
from mailings.services import dispatch
from mailings.services.dispatch import common as dispatch_common
from mailings.tests.factories import make_mailing, make_run, queue_entries
from mailings.throttle import Throttle

Status = LedgerEntry.Status


@pytest.fixture(autouse=True)
def _local_throttle(monkeypatch) -> None:
    throttle = Throttle(None)
    monkeypatch.setattr(dispatch_common, "get_throttle", lambda: throttle)


def ids_of(run: Run) -> list[int]:
    return list(LedgerEntry.objects.filter(run=run).order_by("id").values_list("id", flat=True))


def metric(mailing: Mailing, name: str) -> int:
    return MailingStat.objects.filter(mailing_id=mailing.pk, metric=name).aggregate(n=Sum("delta"))["n"] or 0


@pytest.fixture
def run(mailing) -> Run:
    run = make_run(mailing)
    queue_entries(run)
    return run


class WorkerKilled(BaseException):
    """Stands for a worker killed while a chunk is on the wire (nothing after it runs)."""


@pytest.fixture
def dies_on_the_wire(monkeypatch):
    """The next send_many dies mid-conversation: the chunk was stamped, its answers never come."""
    state = {"armed": True}
    real = locmem.LocmemBackend.send_many

    def send_many(self, messages):
        if state["armed"]:
            state["armed"] = False
            raise WorkerKilled()
        return real(self, messages)

    monkeypatch.setattr(locmem.LocmemBackend, "send_many", send_many)
    return state


def test_it_hands_a_lost_handout_out_again(run, django_capture_on_commit_callbacks, monkeypatch):
    lost = []
    monkeypatch.setattr("mailings.services.dispatch.publish_on_commit", lambda task, *args: lost.append(args))
    now = timezone.now()
    assert dispatch.run_kick(run_id=run.pk, now=now) == 5  # published, then Redis was flushed
    assert dispatch.run_kick(run_id=run.pk, now=now) == 0  # leased: not handed out twice
    later = now + dispatch.handout_lease() + timedelta(seconds=1)
    assert dispatch.ledger_sweep(now=later)["handed_out_again"] == 5
    assert LedgerEntry.objects.filter(run=run, lease_until__isnull=True, status=Status.QUEUED).count() == 5
    assert dispatch.run_kick(run_id=run.pk, now=later) == 5
    assert len(lost) == 2


def test_it_requeues_an_expired_claim_that_never_reached_the_wire(run):
    now = timezone.now()
    ids = ids_of(run)
    assert dispatch.claim(run.pk, ids, now) == ids  # the worker claimed, then died before sending
    assert dispatch.ledger_sweep(now=now)["requeued"] == 0  # the lease still runs
    result = dispatch.ledger_sweep(now=now + dispatch.claim_lease() + timedelta(seconds=1))
    assert result["requeued"] == 5
    rows = LedgerEntry.objects.filter(run=run)
    assert {(r.status, r.attempts, r.lease_until) for r in rows} == {(Status.QUEUED, 1, None)}
    # And they go out normally afterwards, once.
    assert dispatch.batch_send(run_id=run.pk, ids=ids)["sent"] == 5
    assert len(locmem.outbox) == 5


def test_it_makes_a_marketing_message_on_the_wire_ambiguous(run, mailing, dies_on_the_wire):
    with pytest.raises(WorkerKilled):
        dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    rows = list(LedgerEntry.objects.filter(run=run))
    assert {r.status for r in rows} == {Status.SENDING} and all(r.wire_at for r in rows)
    result = dispatch.ledger_sweep(now=timezone.now() + dispatch.claim_lease() + timedelta(seconds=1))
    assert result["ambiguous"] == 5
    assert set(LedgerEntry.objects.filter(run=run).values_list("status", "reason")) == {
        (Status.AMBIGUOUS, "connection_lost")}
    assert metric(mailing, "ambiguous") == 5
    # Never resent: a later batch or kick claims nothing.
    assert dispatch.batch_send(run_id=run.pk, ids=ids_of(run)) == {"claimed": 0}
    assert not locmem.outbox


def test_it_puts_back_only_the_rows_that_never_reached_the_wire(world, mailing, dies_on_the_wire, monkeypatch):
    from mailings.tests.factories import add_subscribers

    monkeypatch.setattr("mailings.services.dispatch.batch.CHUNK_SIZE", 2)
    add_subscribers(world.resource, 1, start=10)
    run = make_run(mailing)
    queue_entries(run)
    dies_on_the_wire["armed"] = False
    real = locmem.LocmemBackend.send_many
    calls = {"n": 0}

    def second_chunk_dies(self, messages):
        calls["n"] += 1
        if calls["n"] == 2:
            raise WorkerKilled()
        return real(self, messages)

    monkeypatch.setattr(locmem.LocmemBackend, "send_many", second_chunk_dies)
    with pytest.raises(WorkerKilled):
        dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    counts = dict.fromkeys(Status.values, 0)
    for status in LedgerEntry.objects.filter(run=run).values_list("status", flat=True):
        counts[status] += 1
    # Chunk 1 sent, chunk 2 in doubt (still sending, stamped), chunk 3 released to the queue.
    assert (counts["sent"], counts["sending"], counts["queued"]) == (2, 2, 2)
    dispatch.ledger_sweep(now=timezone.now() + dispatch.claim_lease() + timedelta(seconds=1))
    dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    final = sorted(LedgerEntry.objects.filter(run=run).values_list("status", flat=True))
    assert final == ["ambiguous", "ambiguous", "sent", "sent", "sent", "sent"]
    assert len(locmem.outbox) == 4


def test_it_resends_a_transactional_message_once_with_the_same_message_id(world, dies_on_the_wire):
    mailing = make_mailing(world, transactional=True, kind=Mailing.Kind.TRIGGER, trigger={"on": "api"})
    run = make_run(mailing, slot=f"day:{timezone.now().date().isoformat()}")
    queue_entries(run)
    with pytest.raises(WorkerKilled):
        dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    first_ids = dict(LedgerEntry.objects.filter(run=run).values_list("id", "message_id"))
    assert all(mid.startswith("<L") for mid in first_ids.values())  # stamped before the wire
    result = dispatch.ledger_sweep(now=timezone.now() + dispatch.claim_lease() + timedelta(seconds=1))
    assert result["resent"] == 5 and result["ambiguous"] == 0
    assert dispatch.batch_send(run_id=run.pk, ids=ids_of(run))["sent"] == 5
    for message in locmem.outbox:
        row_id = int(message.ref[1:])
        assert message_from_bytes(message.raw)["Message-ID"] == first_ids[row_id]
    assert dict(LedgerEntry.objects.filter(run=run).values_list("id", "message_id")) == first_ids


def test_it_resends_a_transactional_message_only_once(world, dies_on_the_wire):
    mailing = make_mailing(world, transactional=True)
    run = make_run(mailing)
    queue_entries(run)
    with pytest.raises(WorkerKilled):
        dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    dispatch.ledger_sweep(now=timezone.now() + dispatch.claim_lease() + timedelta(seconds=1))
    dies_on_the_wire["armed"] = True
    with pytest.raises(WorkerKilled):
        dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    result = dispatch.ledger_sweep(now=timezone.now() + dispatch.claim_lease() + timedelta(seconds=1))
    assert result["ambiguous"] == 5
    assert set(LedgerEntry.objects.filter(run=run).values_list("status", flat=True)) == {Status.AMBIGUOUS}


def test_it_fails_a_row_that_keeps_killing_its_worker(run, mailing):
    now = timezone.now()
    ids = ids_of(run)
    LedgerEntry.objects.filter(pk=ids[0]).update(attempts=dispatch.MAX_ATTEMPTS - 1)
    dispatch.claim(run.pk, ids, now)
    result = dispatch.ledger_sweep(now=now + dispatch.claim_lease() + timedelta(seconds=1))
    assert result["failed"] == 1 and result["requeued"] == 4
    row = LedgerEntry.objects.get(pk=ids[0])
    assert (row.status, row.reason, row.attempts) == (Status.FAILED, "attempts", dispatch.MAX_ATTEMPTS)
    assert metric(mailing, "failed:attempts") == 1


def test_it_leaves_terminal_rows_and_live_leases_alone(run):
    now = timezone.now()
    ids = ids_of(run)
    dispatch.batch_send(run_id=run.pk, ids=ids[:2])
    dispatch.claim(run.pk, ids[2:4], now)
    before = list(LedgerEntry.objects.filter(run=run).order_by("id").values_list("status", "reason", "updated_at"))
    assert dispatch.ledger_sweep(now=now) == {"handed_out_again": 0, "requeued": 0, "resent": 0, "failed": 0,
                                              "ambiguous": 0}
    late = now + timedelta(days=1)
    LedgerEntry.objects.filter(pk__in=ids[:2]).update(lease_until=now)  # never for terminal rows, but if so
    dispatch.ledger_sweep(now=late)
    after = list(LedgerEntry.objects.filter(run=run).order_by("id").values_list("status", "reason"))
    assert [a[:2] for a in before[:2]] == after[:2] == [(Status.SENT, ""), (Status.SENT, "")]
    assert after[2:4] == [(Status.QUEUED, ""), (Status.QUEUED, "")]


def test_a_drained_run_adds_up_after_a_crash(world, mailing, dies_on_the_wire):
    run = make_run(mailing)
    queue_entries(run)
    with pytest.raises(WorkerKilled):
        dispatch.batch_send(run_id=run.pk, ids=ids_of(run))
    dispatch.ledger_sweep(now=timezone.now() + dispatch.claim_lease() + timedelta(seconds=1))
    dispatch.dispatch_tick()
    run.refresh_from_db()
    assert run.state == Run.State.DONE
    total = sum(metric(mailing, m) for m in ("sent", "failed", "skipped", "ambiguous"))
    assert total == run.planned == 5
