"""mailings.bounces: inbound mail at the bounce domain -> classified reports.

The samples in bounce_samples/ hold placeholders ({{VERP}}, {{UNSUB}}, {{MSGID}}) filled with
addresses made by delivery.mime, so their MACs match the test SECRET_KEY.
"""

from __future__ import annotations

import logging
import mailbox
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.mime import make_message_id, unsubscribe_address, verp_address
from mailings.bounces import (
    InboundReport,
    classify,
    clean_diagnostic,
    iter_maildir,
    iter_mbox,
    parse_message,
    process_mailbox,
)

SAMPLES = Path(__file__).parent / "bounce_samples"
DOMAIN = "bounces.shop.example"
REF = "L4711"


def sample(name: str, ref: str = REF) -> bytes:
    raw = (SAMPLES / name).read_bytes()
    return (
        raw.replace(b"{{VERP}}", verp_address(ref, DOMAIN).encode())
        .replace(b"{{UNSUB}}", unsubscribe_address(ref, DOMAIN).encode())
        .replace(b"{{MSGID}}", make_message_id(ref, "shop.example").encode())
    )


def parse(name: str) -> InboundReport:
    report = parse_message(sample(name))
    assert report is not None
    return report


# --- DSNs ----------------------------------------------------------------------------------------


def test_a_postfix_user_unknown_dsn_is_a_hard_bounce_with_its_ref_recipient_and_reason():
    report = parse("postfix_5_1_1.eml")
    assert report.kind == "hard_bounce"
    assert report.ref == REF
    assert report.ref_source == "verp"
    assert report.recipient == "olga.nobody@example.com"
    assert report.status == "5.1.1"
    assert report.reason == "mailbox does not exist"
    assert report.diagnostic == (
        "550 5.1.1 <olga.nobody@example.com>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert report.reporting_mta == "out1.shop.example"
    assert report.remote_mta == "mx.example.com"
    assert report.arrival_date == datetime(2026, 3, 3, 10, 15, 1, tzinfo=UTC)
    assert report.message_id == "<20260303101503.4Zx1q02mZKz9sRk@out1.shop.example>"
    assert report.is_bounce


def test_a_delayed_mailbox_full_dsn_is_not_a_bounce():
    report = parse("postfix_4_2_2_delayed.eml")
    assert report.kind == "delayed"
    assert not report.is_bounce
    assert report.status == "4.2.2"
    assert report.reason == "delivery delayed: mailbox full"
    assert report.recipient == "full.box@example.net"
    assert report.ref == REF


def test_the_final_mailbox_full_dsn_is_a_soft_bounce():
    report = parse("postfix_4_2_2_final.eml")
    assert report.kind == "soft_bounce"
    assert report.status == "4.2.2"
    assert report.reason == "mailbox full"
    assert report.diagnostic == "452 4.2.2 <full.box@example.net>: Mailbox full"


def test_a_gmail_dsn_has_its_multiline_550_5_1_1_reply_joined_into_one_line():
    report = parse("gmail_5_1_1.eml")
    assert report.kind == "hard_bounce"
    assert report.status == "5.1.1"
    assert report.recipient == "no.such.person@gmail.com"
    assert report.diagnostic.startswith("550-5.1.1 The email account that you tried to reach does not exist.")
    assert "550-5.1.1" not in report.diagnostic[10:]
    assert "550 5.1.1" not in report.diagnostic
    assert report.diagnostic.endswith("NoSuchUser d2si1234567ejc.123 - gsmtp")
    assert report.reporting_mta == "googlemail.com"
    assert report.remote_mta == "gmail-smtp-in.l.google.com"
    assert report.ref == REF


def test_a_dsn_names_its_failed_recipient_when_several_are_reported():
    raw = sample("postfix_5_1_1.eml").replace(
        b"Final-Recipient: rfc822; olga.nobody@example.com",
        b"Final-Recipient: rfc822; fine@example.com\nAction: delivered\nStatus: 2.0.0\n\n"
        b"Final-Recipient: rfc822; olga.nobody@example.com",
    )
    report = parse_message(raw)
    assert report is not None
    assert report.kind == "hard_bounce"
    assert report.recipient == "olga.nobody@example.com"


def test_a_dsn_prefers_the_original_recipient_over_the_final_one():
    raw = sample("postfix_5_1_1.eml").replace(
        b"Original-Recipient: rfc822;olga.nobody@example.com", b"Original-Recipient: rfc822;olga@alias.example"
    )
    report = parse_message(raw)
    assert report is not None
    assert report.recipient == "olga@alias.example"


def test_a_dsn_for_a_spam_block_is_a_soft_bounce():
    raw = sample("postfix_5_1_1.eml").replace(b"Status: 5.1.1", b"Status: 5.7.1").replace(
        b"Diagnostic-Code: smtp; 550 5.1.1 <olga.nobody@example.com>: Recipient address\n    rejected: User unknown in virtual mailbox table",
        b"Diagnostic-Code: smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.10]\n    blocked using zen.spamhaus.org",
    )
    report = parse_message(raw)
    assert report is not None
    assert (report.kind, report.status, report.reason) == ("soft_bounce", "5.7.1", "message rejected as spam")


# --- non-standard bounces ------------------------------------------------------------------------


def test_an_exim_bounce_without_a_delivery_status_part_is_read_from_its_text():
    report = parse("exim_failed.eml")
    assert report.kind == "hard_bounce"
    assert report.recipient == "gone@example.org"
    assert report.diagnostic == "550 No such user here"
    assert report.reason == "mailbox does not exist"
    assert report.ref == REF


def test_an_old_plain_text_exim_bounce_is_read_and_its_quoted_copy_ignored():
    report = parse("exim_plain.eml")
    assert report.kind == "hard_bounce"
    assert report.recipient == "gone@example.org"
    assert report.diagnostic == "Unrouteable address"
    assert report.reason.startswith("recipient domain does not exist")


def test_a_qmail_failure_notice_gives_its_status_and_recipient():
    report = parse("qmail_failure.eml")
    assert report.kind == "hard_bounce"
    assert report.status == "5.1.1"
    assert report.recipient == "nobody@example.info"
    assert report.diagnostic == "Sorry, no mailbox here by that name. (#5.1.1)"


def test_a_microsoft_html_ndr_is_read_from_its_html():
    report = parse("outlook_ndr.eml")
    assert report.kind == "hard_bounce"
    assert report.status == "5.1.10"
    assert report.recipient == "jane.doe@contoso.com"
    assert report.reason == "mailbox does not exist"
    assert "RESOLVER.ADR.RecipientNotFound" in report.diagnostic


def test_a_bounce_whose_envelope_lost_the_verp_address_takes_the_ref_from_the_quoted_return_path():
    raw = sample("qmail_failure.eml")
    verp = verp_address(REF, DOMAIN).encode()
    raw = raw.replace(b"Delivered-To: " + verp, b"Delivered-To: bounces@" + DOMAIN.encode())
    raw = raw.replace(b"To: " + verp, b"To: bounces@" + DOMAIN.encode(), 1)
    report = parse_message(raw)
    assert report is not None
    assert (report.ref, report.ref_source) == (REF, "verp")


def test_a_bounce_with_a_bare_550_and_no_telling_text_stays_unknown():
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\nTo: " + verp_address(REF, DOMAIN).encode() + b"\n"
        b"Subject: failure notice\n\n<someone@example.org>:\n550 Requested action not taken\n"
    )
    report = parse_message(raw)
    assert report is not None
    assert report.kind == "unknown"
    assert report.status == "5.0.0"
    assert report.reason == "permanent failure, cause unclear"
    assert report.recipient == "someone@example.org"


def test_a_bounce_with_a_temporary_code_in_its_text_is_soft():
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\nTo: x@" + DOMAIN.encode() + b"\n"
        b"Subject: Undelivered Mail Returned to Sender\n\n"
        b"<late@example.org>: host mx.example.org said: 451 4.7.1 Please try again later\n"
    )
    report = parse_message(raw)
    assert report is not None
    assert (report.kind, report.status, report.recipient) == ("soft_bounce", "4.7.1", "late@example.org")


# --- refs and forgeries --------------------------------------------------------------------------


def test_a_dsn_to_a_verp_address_with_a_bad_mac_has_no_ref():
    report = parse("forged_verp.eml")
    assert report.kind == "hard_bounce"
    assert report.ref is None
    assert report.ref_source == ""


def test_a_forged_envelope_is_not_rescued_by_a_valid_quoted_return_path():
    good = verp_address(REF, DOMAIN).encode()
    raw = sample("forged_verp.eml").replace(b"Return-Path: <b+L999.0123456789@" + DOMAIN.encode() + b">", b"Return-Path: <" + good + b">")
    report = parse_message(raw)
    assert report is not None
    assert report.ref is None


def test_a_verp_address_signed_with_another_secret_key_gives_no_ref():
    with override_settings(SECRET_KEY="another-secret-key-for-this-test-only-0123456789"):
        raw = sample("postfix_5_1_1.eml")
    report = parse_message(raw)
    assert report is not None
    assert report.kind == "hard_bounce"
    assert report.ref is None


def test_a_lowercased_verp_address_still_gives_the_ref_lowercased():
    verp = verp_address(REF, DOMAIN).encode()
    report = parse_message(sample("postfix_5_1_1.eml").replace(verp, verp.lower()))
    assert report is not None
    assert report.ref == REF.lower()


# --- complaints ----------------------------------------------------------------------------------


def test_a_yahoo_arf_abuse_report_is_a_complaint_with_the_verp_ref():
    report = parse("yahoo_arf.eml")
    assert report.kind == "complaint"
    assert (report.ref, report.ref_source) == (REF, "verp")
    assert report.recipient == "ann.reader@yahoo.com"
    assert report.reporting_mta == "mta1.arf.mail.yahoo.com"
    assert report.arrival_date == datetime(2026, 3, 7, 18, 0, 1, tzinfo=UTC)
    assert report.reason == "marked as spam by the recipient"
    assert report.diagnostic == "abuse (Yahoo!-Mail-Feedback/2.0)"


def test_an_arf_report_with_only_the_quoted_message_id_gives_an_unauthenticated_ref():
    report = parse("arf_message_id_only.eml")
    assert report.kind == "complaint"
    assert (report.ref, report.ref_source) == (REF, "message_id")
    assert report.recipient == "redacted@isp.example"


def test_a_not_spam_feedback_report_is_not_a_complaint():
    report = parse_message(sample("yahoo_arf.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam"))
    assert report is not None
    assert report.kind == "unknown"
    assert "not-spam" in report.reason


# --- auto-replies and unsubscribes ---------------------------------------------------------------


def test_a_vacation_reply_is_an_auto_reply():
    report = parse("vacation.eml")
    assert report.kind == "auto_reply"
    assert report.reason == "automatic reply (Auto-Submitted: auto-replied)"
    assert report.recipient == "peter@example.com"


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Autoreply: yes\nSubject: Re: Our spring sale\n",
        b"Precedence: auto_reply\nSubject: Re: Our spring sale\n",
        b"Subject: Out of Office: Our spring sale\n",
        b"Subject: =?utf-8?q?Abwesenheitsnotiz=3A_Our_spring_sale?=\n",
        b"Subject: =?utf-8?q?R=C3=A9ponse_automatique?=\n",
    ],
)
def test_auto_replies_are_recognised_by_their_headers_or_their_subject(headers):
    raw = b"From: peter@example.com\nTo: " + verp_address(REF, DOMAIN).encode() + b"\n" + headers + b"\nAway.\n"
    report = parse_message(raw)
    assert report is not None
    assert report.kind == "auto_reply"


def test_a_message_marked_auto_submitted_no_is_not_an_auto_reply():
    raw = b"From: peter@example.com\nTo: x@" + DOMAIN.encode() + b"\nAuto-Submitted: no\nSubject: hello\n\nHi\n"
    report = parse_message(raw)
    assert report is not None
    assert report.kind == "unknown"


def test_mail_to_an_unsubscribe_address_is_an_unsubscribe_with_its_ref():
    report = parse("unsubscribe.eml")
    assert report.kind == "unsubscribe"
    assert (report.ref, report.ref_source) == (REF, "unsubscribe")
    assert report.recipient == "ann.reader@example.com"


def test_mail_to_an_unsubscribe_address_with_a_bad_mac_has_no_ref():
    good = unsubscribe_address(REF, DOMAIN).encode()
    report = parse_message(sample("unsubscribe.eml").replace(good, b"u+L4711.0000000000@" + DOMAIN.encode()))
    assert report is not None
    assert report.kind == "unsubscribe"
    assert report.ref is None


def test_a_bounce_address_cannot_be_used_as_an_unsubscribe_address():
    verp = verp_address(REF, DOMAIN)
    forged = "u+" + verp[2:]
    report = parse_message(sample("unsubscribe.eml").replace(unsubscribe_address(REF, DOMAIN).encode(), forged.encode()))
    assert report is not None
    assert report.ref is None


# --- bad input -----------------------------------------------------------------------------------


def test_binary_garbage_is_not_an_email_message():
    assert parse_message(sample("garbage.bin")) is None
    assert parse_message(b"") is None
    assert parse_message(b"\x00\x01\x02 hello") is None


def test_an_ordinary_message_at_the_bounce_domain_is_unknown():
    report = parse_message(b"From: a@example.com\nTo: info@" + DOMAIN.encode() + b"\nSubject: Hi\n\nHello\n")
    assert report is not None
    assert report.kind == "unknown"
    assert report.reason == "not a bounce, complaint, auto-reply or unsubscribe"


def test_a_truncated_dsn_with_broken_mime_is_still_classified():
    raw = sample("postfix_5_1_1.eml")
    report = parse_message(raw[: raw.index(b"Content-Description: Delivery report")])
    assert report is not None
    assert report.kind == "hard_bounce"  # from the human-readable part
    assert report.recipient == "olga.nobody@example.com"


def test_the_same_message_has_the_same_fingerprint():
    raw = sample("postfix_5_1_1.eml")
    first, again = parse_message(raw), parse_message(raw)
    assert first is not None and again is not None
    assert first.fingerprint == again.fingerprint
    assert len(first.fingerprint) == 32
    assert first.fingerprint != parse("gmail_5_1_1.eml").fingerprint


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_parse_message_never_raises_on_any_bytes(raw):
    result = parse_message(raw)
    assert result is None or isinstance(result, InboundReport)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=400))
def test_parse_message_never_raises_on_any_text_after_a_report_header(body):
    raw = (
        b"From: MAILER-DAEMON@x.example\nSubject: Undelivered Mail\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\n"
        b"Content-Type: message/delivery-status\n\n" + body.encode("utf-8", "surrogatepass") + b"\n--b--\n"
    )
    result = parse_message(raw)
    assert result is not None


# --- classification rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "diagnostic", "trusted", "expected"),
    [
        ("5.1.1", "", True, ("hard_bounce", "5.1.1", "mailbox does not exist")),
        ("5.1.2", "", False, ("hard_bounce", "5.1.2", "recipient domain does not exist")),
        ("5.2.1", "", True, ("hard_bounce", "5.2.1", "mailbox disabled")),
        ("5.2.2", "", True, ("soft_bounce", "5.2.2", "mailbox full")),
        ("5.3.4", "", True, ("soft_bounce", "5.3.4", "message too large")),
        ("5.4.4", "", True, ("hard_bounce", "5.4.4", "unable to route to the recipient domain")),
        ("5.4.7", "", True, ("soft_bounce", "5.4.7", "delivery time expired")),
        ("5.7.1", "550 5.7.1 Message rejected as spam", True, ("soft_bounce", "5.7.1", "message rejected as spam")),
        ("5.7.1", "550 5.7.1 Relaying denied", True, ("soft_bounce", "5.7.1", "message rejected by policy")),
        ("5.7.1", "550 5.7.1 <x@example.com>: user unknown", True, ("hard_bounce", "5.7.1", "mailbox does not exist")),
        ("5.7.13", "", True, ("hard_bounce", "5.7.13", "mailbox disabled")),
        ("5.0.0", "550-5.1.1 The email account that you tried to reach does not exist", True,
         ("hard_bounce", "5.1.1", "mailbox does not exist")),
        ("5.0.0", "550 Mailbox quota exceeded", True, ("soft_bounce", "5.0.0", "mailbox full")),
        ("5.0.0", "550 Requested action not taken", True, ("hard_bounce", "5.0.0", "delivery failed")),
        ("5.0.0", "550 Requested action not taken", False, ("unknown", "5.0.0", "permanent failure, cause unclear")),
        ("4.4.1", "connection timed out", True, ("soft_bounce", "4.4.1", "network or routing problem")),
        ("4.0.0", "452 mailbox full", True, ("soft_bounce", "4.0.0", "mailbox full")),
        ("", "552 Message size exceeds fixed limit", True, ("soft_bounce", "5.0.0", "message too large")),
        ("", "552 over quota", True, ("soft_bounce", "5.2.2", "mailbox full")),
        ("", "421 try later", False, ("soft_bounce", "4.0.0", "delivery failed")),
        ("2.0.0", "250 ok", True, ("unknown", "2.0.0", "delivered, not a failure")),
        ("", "", False, ("unknown", "", "no status code found")),
    ],
)
def test_classification_follows_rfc_3463_with_the_documented_exceptions(status, diagnostic, trusted, expected):
    assert classify(status, diagnostic, trusted=trusted) == expected


def test_clean_diagnostic_drops_the_type_and_folds_and_caps_the_text():
    assert clean_diagnostic("smtp; 550 5.1.1 <a@b.example>:\n    User unknown") == "550 5.1.1 <a@b.example>: User unknown"
    assert clean_diagnostic("X-Postfix; host not found") == "host not found"
    long = clean_diagnostic("smtp; 550 " + "x" * 2000)
    assert len(long) == 500
    assert long.endswith("…")


# --- readers -------------------------------------------------------------------------------------


def make_maildir(path: Path, messages: dict[str, bytes]) -> Path:
    box = mailbox.Maildir(str(path), create=True)
    for raw in messages.values():
        box.add(raw)
    box.close()
    return path


def make_mbox(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.mbox(str(path), create=True)
    for raw in messages:
        box.add(raw)
    box.flush()
    box.close()
    return path


def all_samples() -> dict[str, bytes]:
    return {p.name: sample(p.name) for p in sorted(SAMPLES.iterdir())}


def test_iter_maildir_yields_every_message_in_new_and_cur(tmp_path):
    box_path = make_maildir(tmp_path / "Maildir", {"a": sample("vacation.eml")})
    seen = mailbox.Maildir(str(box_path))
    key = seen.add(sample("unsubscribe.eml"))
    msg = seen.get_message(key)
    msg.set_subdir("cur")
    seen[key] = msg
    items = list(iter_maildir(box_path))
    assert len(items) == 2
    assert {parse_message(raw).kind for _, raw in items} == {"auto_reply", "unsubscribe"}


def test_iter_maildir_refuses_a_directory_that_is_not_a_maildir(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(iter_maildir(tmp_path))


def test_iter_mbox_yields_every_message_with_its_index(tmp_path):
    path = make_mbox(tmp_path / "bounces.mbox", [sample("postfix_5_1_1.eml"), sample("yahoo_arf.eml")])
    items = list(iter_mbox(path))
    assert [key for key, _ in items] == ["0", "1"]
    assert [parse_message(raw).kind for _, raw in items] == ["hard_bounce", "complaint"]


def test_process_mailbox_hands_over_every_message_and_does_not_stop_on_garbage(tmp_path, caplog):
    box_path = make_maildir(tmp_path / "Maildir", all_samples())
    reports: list[InboundReport] = []
    with caplog.at_level(logging.WARNING, logger="mailings.bounces"):
        result = process_mailbox(box_path, reports.append)
    assert result.seen == result.handled == len(all_samples())
    assert result.failed == result.deleted == 0
    assert sorted(result.kinds.items()) == [
        ("auto_reply", 1), ("complaint", 2), ("delayed", 1), ("hard_bounce", 7), ("soft_bounce", 1),
        ("unknown", 1), ("unsubscribe", 1),
    ]
    garbage = [r for r in reports if r.kind == "unknown"]
    assert garbage[0].reason == "not an e-mail message"
    assert garbage[0].source_id
    assert "not an e-mail message" in caplog.text
    assert all(r.source_id for r in reports)
    assert len(list(iter_maildir(box_path))) == len(all_samples())  # nothing deleted


def test_process_mailbox_with_delete_removes_handled_messages_and_keeps_failed_ones(tmp_path):
    box_path = make_maildir(tmp_path / "Maildir", {"a": sample("postfix_5_1_1.eml"), "b": sample("yahoo_arf.eml")})

    def handle(report: InboundReport) -> None:
        if report.kind == "complaint":
            raise RuntimeError("database down")

    result = process_mailbox(box_path, handle, delete=True)
    assert (result.seen, result.handled, result.failed, result.deleted) == (2, 1, 1, 1)
    left = list(iter_maildir(box_path))
    assert [parse_message(raw).kind for _, raw in left] == ["complaint"]


def test_process_mailbox_reads_and_empties_an_mbox(tmp_path):
    path = make_mbox(tmp_path / "bounces.mbox", [sample("gmail_5_1_1.eml"), b"garbage\x00\x01", sample("vacation.eml")])
    kinds: list[str] = []
    result = process_mailbox(path, lambda report: kinds.append(report.kind), delete=True)
    assert kinds == ["hard_bounce", "unknown", "auto_reply"]
    assert result.deleted == 3
    assert list(iter_mbox(path)) == []


def test_a_raw_8bit_vacation_subject_is_read_as_utf8():
    raw = (
        b"From: peter@example.com\nTo: " + verp_address(REF, DOMAIN).encode() + b"\n"
        + "Subject: Réponse automatique : absent\n\nAbsent.\n".encode()
    )
    report = parse_message(raw)
    assert report is not None
    assert report.kind == "auto_reply"
