"""Launch (or resume) a mailing and follow its progress on the terminal.

    manage.py send_mailing ID [--no-follow] [--interval 1.0] [--timeout SECONDS]

A draft is validated and launched, a paused mailing resumed; a mailing already scheduled or
sending is only followed. The sending itself is the workers' (Celery, and beat's tick): this
command watches the run's counters, once a second, until the run has drained. Ctrl-C stops the
following, never the mailing (pause it with the UI or the API).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.access import Actor
from mailings.models import Mailing, Run
from mailings.selectors import run_progress
from mailings.services.errors import MailingError
from mailings.services.lifecycle import mailing_launch, mailing_problems, mailing_resume

STALL_WARNING = 30.0  # seconds without progress before the command suggests checking the workers


def _line(p: dict[str, Any]) -> str:
    rate = f"{p['per_minute']:,.0f}/min" if p.get("per_minute") else "—/min"
    return (f"{p['percent']:5.1f}%  sent {p['sent']:,} · failed {p['failed']:,} · skipped {p['skipped']:,} · "
            f"unknown {p['ambiguous']:,} · queued {p['queued']:,} of {p['planned']:,} · {rate}")


class Command(BaseCommand):
    help = "Launch (or resume) a mailing and follow its progress until its run has gone out. Ctrl-C stops following only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("mailing", type=int, help="the mailing's id")
        parser.add_argument("--no-follow", action="store_true", help="launch or resume, then return at once")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between progress lines (default 1)")
        parser.add_argument("--timeout", type=float, default=None,
                            help="stop following after this many seconds (the mailing goes on)")

    def handle(self, *args: Any, **options: Any) -> None:
        mailing = Mailing.objects.select_related("account", "resource").filter(pk=options["mailing"]).first()
        if mailing is None:
            raise CommandError(f"There is no mailing {options['mailing']}.")
        mailing = self._start(mailing)
        if options["no_follow"]:
            return
        if mailing.kind == Mailing.Kind.TRIGGER:
            self.stdout.write("A trigger mailing sends as events and API calls arrive: nothing to follow. "
                              f"See its report: manage.py mailing_report {mailing.pk}")
            return
        try:
            self._follow(mailing, interval=max(0.05, options["interval"]), timeout=options["timeout"])
        except KeyboardInterrupt:
            self.stdout.write("")
            self.stdout.write(self.style.WARNING(
                f"Stopped following. The mailing goes on; pause it from the UI or POST /api/v1/mailings/{mailing.pk}/pause."))

    def _start(self, mailing: Mailing) -> Mailing:
        """Launch a draft, resume a paused mailing; refuse a finished one."""
        actor = Actor.system()
        try:
            if mailing.state == Mailing.State.DRAFT:
                problems = mailing_problems(mailing)
                if problems:
                    raise MailingError(problems)
                mailing = mailing_launch(mailing=mailing, actor=actor)
                self.stdout.write(self.style.SUCCESS(f"Launched “{mailing.name}” ({mailing.get_state_display().lower()})."))
            elif mailing.state == Mailing.State.PAUSED:
                mailing = mailing_resume(mailing=mailing, actor=actor)
                self.stdout.write(self.style.SUCCESS(f"Resumed “{mailing.name}”."))
            elif mailing.state in Mailing.FINISHED_STATES:
                raise CommandError(f"“{mailing.name}” is {mailing.get_state_display().lower()}: duplicate it to send "
                                   "it again.")
            else:
                self.stdout.write(f"“{mailing.name}” is {mailing.get_state_display().lower()} already: following it.")
        except MailingError as exc:
            lines = "\n".join(f"  {field}: {message}" if field != "__all__" else f"  {message}"
                              for field, message in exc.errors.items())
            raise CommandError(f"“{mailing.name}” cannot be sent:\n{lines}") from exc
        return mailing

    def _run(self, mailing: Mailing) -> Run | None:
        return Run.objects.filter(mailing=mailing).order_by("-created_at", "-id").first()

    def _follow(self, mailing: Mailing, *, interval: float, timeout: float | None) -> None:
        tty = self.stdout.isatty()  # a terminal: one line rewritten in place; a log: a line per change
        started = time.monotonic()
        last_line, last_change = "", time.monotonic()
        warned = False
        announced_wait = False
        while True:
            mailing.refresh_from_db(fields=["state", "next_run_at", "last_error"])
            run = self._run(mailing)
            if run is None or (mailing.state == Mailing.State.SCHEDULED and run.state in Run.FINISHED_STATES):
                if mailing.state in Mailing.FINISHED_STATES:
                    self.stdout.write(f"“{mailing.name}” is {mailing.get_state_display().lower()}.")
                    return
                if not announced_wait:
                    when = mailing.next_run_at.isoformat() if mailing.next_run_at else "its next slot"
                    self.stdout.write(f"Waiting for the run due at {when} (Ctrl-C stops following).")
                    announced_wait = True
            else:
                progress = run_progress(run=run)
                line = _line(progress)
                if line != last_line:
                    last_line, last_change = line, time.monotonic()
                    self.stdout.write(("\r" + line) if tty else line, ending="" if tty else "\n")
                    self.stdout.flush()
                drained = run.planned_at is not None and progress["queued"] == 0 and progress["done"] >= progress["planned"]
                if run.state in Run.FINISHED_STATES or drained:
                    if tty:
                        self.stdout.write("")
                    self._summary(run, progress)
                    return
                if not warned and time.monotonic() - last_change > STALL_WARNING:
                    self.stdout.write(("\n" if tty else "") + self.style.WARNING(
                        f"No progress for {STALL_WARNING:.0f} s: are the Celery workers and beat running?"))
                    warned = True
            if timeout is not None and time.monotonic() - started >= timeout:
                self.stdout.write(("\n" if tty else "") + self.style.WARNING(
                    "Stopped following (timeout). The mailing goes on."))
                return
            time.sleep(interval)

    def _summary(self, run: Run, progress: dict[str, Any]) -> None:
        run.refresh_from_db(fields=["state", "error"])
        if run.state == Run.State.FAILED:
            raise CommandError(f"The run failed: {run.error or 'see the mailing page'}")
        style = self.style.SUCCESS if run.state != Run.State.CANCELLED else self.style.WARNING
        self.stdout.write(style(
            f"Done: {progress['sent']:,} sent, {progress['failed']:,} failed, {progress['skipped']:,} skipped, "
            f"{progress['ambiguous']:,} unknown, of {progress['planned']:,} planned "
            f"(report: manage.py mailing_report {run.mailing_id})."))
