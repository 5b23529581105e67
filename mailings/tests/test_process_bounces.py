"""`manage.py process_bounces`: a Maildir (applied messages move to cur/ and are not read again),
an mbox (applied again as duplicates), and the SMTP listener (a DSN sent with smtplib is applied)."""

from __future__ import annotations

import io
import mailbox
import smtplib
import threading
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from delivery.mime import make_message_id, unsubscribe_address, verp_address
from mailings.bounces.listener import BounceListener, with_envelope
from mailings.models import LedgerEntry
from mailings.services.feedback import bounces_process
from mailings.tests.factories import make_run, queue_entries
from resources.models import Subscription, Suppression
from tests.ports import free_port

SAMPLES = Path(__file__).parent / "bounce_samples"
DOMAIN = "bounces.shop.example"


def sample(name: str, ref: str) -> bytes:
    raw = (SAMPLES / name).read_bytes()
    return (raw.replace(b"{{VERP}}", verp_address(ref, DOMAIN).encode())
            .replace(b"{{UNSUB}}", unsubscribe_address(ref, DOMAIN).encode())
            .replace(b"{{MSGID}}", make_message_id(ref, "shop.example").encode()))


@pytest.fixture
def entries(world, mailing):
    run = make_run(mailing)
    queue_entries(run, status="sent")
    LedgerEntry.objects.filter(run=run).update(sent_at=timezone.now())
    return list(LedgerEntry.objects.filter(run=run).order_by("id"))


def status_of(entry: LedgerEntry) -> str:
    return Subscription.objects.get(pk=entry.subscription_id).status


def make_maildir(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(str(path), create=True)
    for raw in messages:
        box.add(raw)
    box.close()
    return path


def test_it_applies_a_maildir_and_moves_what_it_applied_to_cur(entries, tmp_path):
    box = make_maildir(tmp_path / "Maildir", [
        sample("postfix_5_1_1.eml", entries[0].ref), sample("yahoo_arf.eml", entries[1].ref),
        sample("vacation.eml", entries[2].ref), sample("unsubscribe.eml", entries[3].ref),
        (SAMPLES / "garbage.bin").read_bytes(),
    ])
    out = io.StringIO()
    call_command("process_bounces", "--maildir", str(box), "--once", stdout=out)
    text = out.getvalue()
    assert "seen 5" in text and "moved 5" in text
    assert "hard_bounce applied: 1" in text and "complaint applied: 1" in text
    assert "unsubscribe applied: 1" in text and "ignored: auto_reply: 1" in text
    assert [status_of(e) for e in entries[:4]] == ["bounced", "complained", "subscribed", "unsubscribed"]
    assert not list((box / "new").iterdir())
    assert all(name.name.endswith(":2,S") for name in (box / "cur").iterdir())
    # The next run reads nothing again.
    assert bounces_process(path=str(box), fmt="auto") == {"seen": 0, "failed": 0, "moved": 0}


def test_a_message_in_cur_not_yet_seen_is_applied_and_a_failing_one_is_kept(entries, tmp_path, monkeypatch):
    box = make_maildir(tmp_path / "Maildir", [])
    (box / "cur" / "1700000000.M1P1.host:2,").write_bytes(sample("postfix_5_1_1.eml", entries[0].ref))
    (box / "new" / "1700000001.M2P2.host").write_bytes(sample("postfix_5_1_1.eml", entries[1].ref))

    from mailings.services.feedback import inbound_apply

    def explode(*, report, source):
        if report.ref == entries[1].ref:
            raise RuntimeError("database down")
        return inbound_apply(report=report, source=source)

    monkeypatch.setattr("mailings.services.feedback.inbound_apply", explode)
    counts = bounces_process(path=str(box), fmt="maildir")
    assert (counts["seen"], counts["failed"], counts["moved"]) == (2, 1, 1)
    assert (box / "new" / "1700000001.M2P2.host").exists()
    assert (box / "cur" / "1700000000.M1P1.host:2,S").exists()


def test_it_applies_an_mbox_and_a_second_run_changes_nothing(entries, tmp_path):
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(str(path))
    box.add(sample("postfix_5_1_1.eml", entries[0].ref))
    box.add(sample("postfix_4_2_2_final.eml", entries[1].ref))
    box.close()
    first = bounces_process(path=str(path), fmt="mbox")
    assert first["hard_bounce applied"] == 1 and first["soft_bounce applied"] == 1
    second = bounces_process(path=str(path), fmt="auto")
    assert second["duplicate"] == 2
    assert Suppression.objects.count() == 1
    out = io.StringIO()
    call_command("process_bounces", "--mbox", str(path), "--once", "--delete", stdout=out)
    assert "deleted 2" in out.getvalue()
    assert len(mailbox.mbox(str(path))) == 0


def test_the_command_refuses_a_missing_path_and_a_bad_listen_address(tmp_path):
    with pytest.raises(CommandError, match="No mbox file"):
        call_command("process_bounces", "--mbox", str(tmp_path / "nope"), "--once")
    with pytest.raises(CommandError, match="Not a Maildir"):
        call_command("process_bounces", "--maildir", str(tmp_path), "--once")
    with pytest.raises(CommandError, match="HOST:PORT"):
        call_command("process_bounces", "--listen", "localhost", "--once")


# --- the SMTP listener ------------------------------------------------------------------------------------


def test_the_listener_adds_the_envelope_and_refuses_other_domains():
    got: list[bytes] = []
    port = free_port()
    with BounceListener(got.append, port=port, domains=[DOMAIN]) as listener, smtplib.SMTP("127.0.0.1", port) as smtp:
        refused = smtp.sendmail("", ["someone@elsewhere.example", f"b+x@{DOMAIN}"], b"Subject: hi\r\n\r\nbody\r\n")
        assert "someone@elsewhere.example" in refused
        assert listener.wait(1, timeout=10)
    assert got[0].startswith(f"X-Original-To: b+x@{DOMAIN}\r\n".encode())
    assert with_envelope(b"x", ["a@b\r\nBcc: evil"]) == b"X-Original-To: a@bBcc: evil\r\nx"


def test_the_listener_asks_the_sender_to_retry_when_applying_fails():
    port = free_port()

    def fail(raw: bytes) -> str:
        raise RuntimeError("database down")

    with BounceListener(fail, port=port) as listener, smtplib.SMTP("127.0.0.1", port) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            smtp.sendmail("", [f"b+x@{DOMAIN}"], b"Subject: hi\r\n\r\nbody\r\n")
        assert exc.value.smtp_code == 451
        assert listener.received == 0


@pytest.mark.django_db(transaction=True)
def test_process_bounces_listen_applies_a_dsn_sent_over_smtp(acme, alice):
    from mailings.tests.factories import make_mailing, make_world

    world = make_world(acme, user=alice, n=2)
    run = make_run(make_mailing(world))
    queue_entries(run, status="sent")
    entry = LedgerEntry.objects.filter(run=run).order_by("id").first()
    port = free_port()
    out = io.StringIO()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            call_command("process_bounces", "--listen", f"127.0.0.1:{port}", "--once", stdout=out)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while "Listening" not in out.getvalue() and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    assert not errors, errors
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        wire = sample("postfix_5_1_1.eml", entry.ref).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # SMTP lines end in CRLF
        smtp.sendmail("", [verp_address(entry.ref, DOMAIN)], wire)
    thread.join(timeout=15)
    assert not thread.is_alive() and not errors, errors
    assert "hard_bounce applied" in out.getvalue()
    assert status_of(entry) == "bounced"
    assert Suppression.objects.filter(value=entry.address, reason="bounce").exists()
