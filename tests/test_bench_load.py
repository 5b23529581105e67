"""Smoke test of `python -m bench load`'s parts at a tiny size (no timing assertions): the locust
users (bench/_locustfile.py, a real `locust --headless` subprocess) against a live server with the
benchmark's own data, token, trigger mailing, session and tracking tokens, every answer checked;
the summary's groups, errors and baseline; and the smtp-sink dump read back as arrivals for the
invariant checker. Runs on SQLite and PostgreSQL (the dump test needs Debian's smtp-sink)."""

from __future__ import annotations

import shutil
import smtplib
import tempfile
from pathlib import Path

import pytest

from bench import load
from tests.faults.servers import Arrival


def _seeded_stack():
    from bench.dispatch import launch_broadcast
    from bench.render.data import seed
    from mailings.models import Run

    seeded = seed(30)
    extras = load.seed_extras(seeded)
    broadcast = launch_broadcast(seeded)  # eager tasks: planned (and sent to the test backend) at commit
    run = Run.objects.get(mailing_id=broadcast.pk)
    return seeded, extras, broadcast, run


@pytest.mark.django_db(transaction=True)
def test_it_runs_every_kind_of_user_against_a_live_server_without_an_error(live_server, tmp_path, settings):
    from mailings.models import LedgerEntry

    settings.ALLOWED_HOSTS = ["*"]
    seeded, extras, broadcast, run = _seeded_stack()
    opens, clicks = load.tracking_paths(seeded, run)
    assert len(opens) == len(clicks) == 30 and all(p.startswith("/t/o/") for p in opens)
    config = {"token": extras.token, "database": seeded.database.slug, "emails": extras.emails,
              "trigger_mailing": extras.trigger.pk, "open_paths": opens, "click_paths": clicks,
              "session_cookie": f"{settings.SESSION_COOKIE_NAME}={extras.session_key}",
              "pages": load.pages(seeded, broadcast)}
    port = int(live_server.url.rsplit(":", 1)[1])
    knobs = load.Knobs(users=8, spawn=8, seconds=8, wait=(0.05, 0.2))
    data = load.run_locust(tmp_path, port, knobs, config)
    summary = load.summarise(data)

    names = {r[0] for r in data["records"]}
    assert {"events batch", "trigger", "open", "click", "healthz"} <= names, names
    assert {f"page {p}" for p in config["pages"]} & names, names  # the browser user read pages
    assert summary.errors == 0, "\n".join(summary.lines)
    assert summary.rate > 0 and summary.project_p95 > 0 and summary.healthz_p95 > 0
    triggered = LedgerEntry.objects.filter(mailing_id=extras.trigger.pk).count()
    assert triggered == sum(1 for r in data["records"] if r[0] == "trigger")  # one row a call


@pytest.mark.django_db(transaction=True)
def test_it_counts_a_wrong_answer_as_an_error(live_server, tmp_path, settings):
    settings.ALLOWED_HOSTS = ["*"]
    seeded, extras, _broadcast, run = _seeded_stack()
    opens, clicks = load.tracking_paths(seeded, run)
    config = {"token": "not-a-token", "database": seeded.database.slug, "emails": extras.emails,
              "trigger_mailing": extras.trigger.pk, "open_paths": opens, "click_paths": [c + "x" for c in clicks],
              "session_cookie": "sessionid=nobody", "pages": {"dashboard": "/"}}
    port = int(live_server.url.rsplit(":", 1)[1])
    data = load.run_locust(tmp_path, port, load.Knobs(users=6, spawn=6, seconds=6, wait=(0.05, 0.2)), config)
    summary = load.summarise(data)
    # A bad token is 401 on the API, a forged click is the dead-link page (404), the signed-out
    # dashboard is a redirect to the login page: a 3xx, and still an error for a page. (Which
    # tasks a short run picks is random: every request of these kinds failed, and some were made.)
    wrong = {"events batch", "trigger", "click", "page dashboard"}
    made = [r for r in data["records"] if r[0] in wrong]
    assert made and all(r[3] is not None for r in made), [(r[0], r[3]) for r in made if r[3] is None]
    fine = [r for r in data["records"] if r[0] in ("open", "healthz")]  # the pixel is always a GIF
    assert fine and all(r[3] is None for r in fine), [r for r in fine if r[3] is not None][:3]
    assert summary.errors == sum(1 for r in data["records"] if r[3] is not None)
    assert any("errors:" in line and "FAIL" in line for line in summary.lines)


def test_it_summarises_groups_and_refuses_a_run_without_a_baseline():
    records = [["events batch", 100.0, 120.0, None], ["trigger", 100.5, 80.0, None], ["open", 101.0, 5.0, None],
               ["click", 101.5, 7.0, "click to ''"], ["page dashboard", 102.0, 200.0, None], ["healthz", 102.5, 2.0, None]]
    summary = load.summarise({"records": records, "user_errors": []})
    assert summary.errors == 1
    assert summary.healthz_p95 == pytest.approx(0.002)
    assert summary.rate == pytest.approx(5 / 2.5)  # five project requests over the 2.5 s the test spanned
    text = "\n".join(summary.lines)
    for group in ("api events", "api trigger", "tracking", "pages", "healthz", "overall"):
        assert group in text
    assert [load.path_group(p) for p in ("/api/v1/events/batch", "/api/v1/mailings/7/trigger", "/t/o/abc.gif",
                                         "/t/c/abc", "/healthz", "/databases/shop/")] == [
        "api events", "api trigger", "tracking", "tracking", "healthz", "pages"]
    with pytest.raises(RuntimeError, match="too few requests"):
        load.summarise({"records": [r for r in records if r[0] != "healthz"], "user_errors": []})


@pytest.mark.skipif(not Path(load.SMTP_SINK).exists(), reason="Debian's smtp-sink (postfix) is not installed")
def test_it_reads_every_message_the_sink_accepted_with_its_ledger_ref():
    # smtp-sink writes as user nobody: a directory it can reach (pytest's tmp_path is 0700 deep).
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-test-"))
    tmp.chmod(0o755)
    sink = load.RecordingSink(tmp / "smtp" / "dump").start()
    try:
        try:
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
                for ref, rcpt in (("L7", "a@x.example"), ("L8", "B@y.example"), ("L7", "a@x.example")):
                    smtp.sendmail("bounce@shop.example", [rcpt], (
                        f"Message-ID: <{ref}.k3j2@shop.example>\r\nSubject: hi\r\n\r\n"
                        f"Message-ID: <L999.in-the-body@x>\r\n").encode())
                smtp.sendmail("bounce@shop.example", ["c@z.example"], b"Subject: no id\r\n\r\nMessage-ID: <L5.x@y>\r\n")
        finally:
            sink.stop()
        arrivals = sink.snapshot()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert [(a.ref, a.rcpt) for a in arrivals] == [("L7", "a@x.example"), ("L8", "b@y.example"),
                                                   ("L7", "a@x.example"), ("", "c@z.example")]
    assert all(isinstance(a, Arrival) and not a.dropped for a in arrivals)


def test_it_finds_the_exceptions_the_servers_logged(tmp_path):
    log = tmp_path / "trigger1.log"
    log.write_text(
        "[2026-11-29 07:00:00,000: WARNING/MainProcess] slow batch\n"
        "[2026-11-29 07:00:01,000: ERROR/MainProcess] Task mailings.send[1] raised unexpected: KeyError('x')\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "KeyError: 'x'\n"
        "[2026-11-29 07:00:02 +0000] [12] [ERROR] Error handling request /api/v1/events/batch\n")
    quiet = tmp_path / "bulk1.log"
    quiet.write_text("[2026-11-29 07:00:00,000: WARNING/MainProcess] celery@vm ready.\n")
    found = load.server_exceptions([log, quiet, tmp_path / "missing.log"], ["OperationalError('gone')"])
    assert found == ["trigger1: KeyError: 'x'", "trigger1: [2026-11-29 07:00:02 +0000] [12] [ERROR] Error handling "
                     "request /api/v1/events/batch", "tick: OperationalError('gone')"]
    assert load.server_exceptions([quiet], []) == []


def test_it_keeps_locust_and_its_gevent_patches_out_of_the_benchmark_process():
    from gevent import monkey

    from bench import harness

    harness.discover()  # imports every public bench module, as `python -m bench` does
    assert "load" in harness.BENCHMARKS and load.LOCUSTFILE.exists()
    assert not monkey.is_anything_patched()  # the locustfile was not imported here
