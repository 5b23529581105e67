"""Apply the mail that arrived at the bounce domain: DSNs, spam complaints (ARF) and mail to the
List-Unsubscribe address.

    manage.py process_bounces --maildir PATH [--once] [--interval 60]
    manage.py process_bounces --mbox PATH [--delete] [--once]
    manage.py process_bounces --listen HOST:PORT [--domain bounces.example.com ...] [--once]

A Maildir's applied messages move to cur/ with the Seen flag (the next run skips them); an mbox
is read whole each time (already applied messages are "duplicate"), `--delete` removes the
handled ones. Without `--once` a Maildir or mbox is processed again every `--interval` seconds;
the listener serves until Ctrl-C (`--once`: until it has received one message).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from mailings.services.feedback import bounces_process, inbound_apply_raw


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--listen takes HOST:PORT, e.g. 0.0.0.0:25 (got {value!r})")
    return host.strip("[]"), int(port)


class Command(BaseCommand):
    help = "Apply bounces, complaints and mailto unsubscribes from a Maildir, an mbox file, or an SMTP listener."

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--maildir", metavar="PATH", help="a Maildir (with cur/ and new/)")
        source.add_argument("--mbox", metavar="PATH", help="an mbox file")
        source.add_argument("--listen", metavar="HOST:PORT", help="receive the mail over SMTP")
        parser.add_argument("--once", action="store_true",
                            help="process once and exit (with --listen: exit after the first message)")
        parser.add_argument("--interval", type=float, default=60.0, help="seconds between two passes (default 60)")
        parser.add_argument("--delete", action="store_true", help="mbox: remove the handled messages")
        parser.add_argument("--domain", action="append", default=[],
                            help="--listen: accept mail only for this domain (repeatable; default: any)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["listen"]:
            self._listen(*_address(options["listen"]), domains=options["domain"], once=options["once"])
            return
        path, fmt = (options["maildir"], "maildir") if options["maildir"] else (options["mbox"], "mbox")
        while True:
            try:
                counts = bounces_process(path=path, fmt=fmt, delete=options["delete"])
            except FileNotFoundError as exc:
                raise CommandError(str(exc)) from None
            self._print(counts)
            if options["once"]:
                return
            close_old_connections()
            time.sleep(max(options["interval"], 1.0))

    def _print(self, counts: dict[str, int]) -> None:
        head = ", ".join(f"{k} {counts.get(k, 0)}" for k in ("seen", "failed", "moved", "deleted") if k in counts)
        rest = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k not in ("seen", "failed", "moved", "deleted"))
        self.stdout.write(head + (f" — {rest}" if rest else ""))

    def _listen(self, host: str, port: int, *, domains: list[str], once: bool) -> None:
        from mailings.bounces.listener import BounceListener

        def handle(raw: bytes) -> str:
            close_old_connections()  # a worker thread keeps its connection between messages
            try:
                return inbound_apply_raw(raw=raw, source="smtp")
            finally:
                close_old_connections()

        listener = BounceListener(handle, host=host, port=port, domains=domains)
        try:
            listener.start()
        except (OSError, RuntimeError) as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from None
        self.stdout.write(f"Listening for bounces on {host}:{port}" + (f" for {', '.join(domains)}" if domains else ""))
        seen = 0
        try:
            while True:
                if listener.wait(seen + 1, timeout=1.0):
                    for outcome in listener.outcomes[seen:listener.received]:
                        self.stdout.write(str(outcome))
                    seen = listener.received
                    if once:
                        listener.wait_quit(1, timeout=5.0)  # let the sender read its 250 before we close
                        return
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
        finally:
            listener.stop()
