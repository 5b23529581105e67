"""A mailing's report on the terminal, or as CSV.

    manage.py mailing_report ID [--run RUN_ID] [--csv] [--links]
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailings.exports import links_csv, report_csv
from mailings.models import Mailing, Run
from mailings.selectors import mailing_report

LINES = (
    # "Delivered" is the report page's figure and the base of its rates: the provider's delivery
    # reports when it sends them, else sent less hard bounces (an SMTP relay reports no deliveries).
    ("Planned", "planned"), ("Queued", "queued"), ("Sent", "sent"), ("Delivered", "received"),
    ("  reported by the provider", "delivered"),
    ("Failed", "failed"), ("  hard", "failed_hard"), ("  soft", "failed_soft"), ("Unknown (connection lost)", "ambiguous"),
    ("Skipped", "skipped"), ("No address", "no_address"),
    ("Opens", "opened"), ("  unique", "opened_unique"), ("  human", "opened_human"), ("  machine", "opened_machine"),
    ("Clicks", "clicked"), ("  unique", "clicked_unique"), ("  human", "clicked_human"), ("  machine", "clicked_machine"),
    ("Unsubscribes", "unsubscribed"), ("Complaints", "complained"), ("Hard bounces", "bounced_hard"),
    ("Soft bounces", "bounced_soft"),
)
RATES = (("Delivery", "delivery"), ("Open", "open"), ("Click", "click"), ("Click-to-open", "click_to_open"),
         ("Unsubscribe", "unsubscribe"), ("Complaint", "complaint"), ("Bounce", "bounce"))


class Command(BaseCommand):
    help = "Print a mailing's report (figures, rates, skips and failures by reason, clicks per link), or write it as CSV."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("mailing", type=int, help="the mailing's id")
        parser.add_argument("--run", type=int, default=None, help="only this run (its id)")
        parser.add_argument("--csv", action="store_true", help="write CSV to standard output")
        parser.add_argument("--links", action="store_true", help="with --csv: the clicks per link instead of the figures")

    def handle(self, *args: Any, **options: Any) -> None:
        mailing = Mailing.objects.filter(pk=options["mailing"]).select_related("account").first()
        if mailing is None:
            raise CommandError(f"No mailing with the id {options['mailing']}.")
        run = None
        if options["run"] is not None:
            run = Run.objects.filter(mailing=mailing, pk=options["run"]).first()
            if run is None:
                raise CommandError(f"Mailing {mailing.pk} has no run {options['run']}.")
        if options["csv"]:
            lines = (links_csv if options["links"] else report_csv)(mailing=mailing, run=run)
            for i, line in enumerate(lines):
                self.stdout.write(line.lstrip("\ufeff") if i == 0 else line, ending="")
            return
        report = mailing_report(mailing=mailing, run=run)
        out = self.stdout
        out.write(f"{mailing.name} (#{mailing.pk}, {mailing.get_kind_display().lower()}, {mailing.get_state_display().lower()}, "
                  f"{mailing.account.name})" + (f" — run {run.pk} ({run.slot})" if run else ""))
        width = max(len(label) for label, _ in LINES) + 2
        for label, key in LINES:
            out.write(f"{label:<{width}}{report.figures[key]:>12,}")
        out.write("Rates")
        for label, key in RATES:
            rate = report.rates[key]
            out.write(f"  {label:<{width - 2}}{'—' if rate is None else f'{rate:.2f} %':>12}")
        for title, rows in (("Skipped by reason", report.skipped), ("Failed by reason", report.failed)):
            if rows:
                out.write(title)
                for r in rows:
                    out.write(f"  {r.label:<40}{r.count:>12,}")
        if report.links:
            out.write("Clicks per link (human)")
            for link in report.links[:50]:
                out.write(f"  {link.clicks:>8,}  {link.url}")
