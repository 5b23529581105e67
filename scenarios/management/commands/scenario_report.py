"""A scenario's report on the terminal: per step, how many are in it now, entered, passed, exited
and failed, and each send step's messages; then the totals.

    manage.py scenario_report ID [--of-version N] [--json]
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from scenarios.models import Scenario, ScenarioVersion
from scenarios.selectors import scenario_report

COLUMNS = (("Now", "in_now"), ("Entered", "entered"), ("Passed", "passed"), ("Exited", "exited"), ("Failed", "failed"))
MESSAGE_COLUMNS = (("sent", "sent"), ("delivered", "delivered"), ("opened", "opened_unique"),
                   ("clicked", "clicked_unique"), ("skipped", "skipped"), ("failed", "failed"), ("queued", "queued"))


class Command(BaseCommand):
    help = "Print a scenario's per-step figures (in it now, entered, passed, exited, failed, messages) and totals."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("scenario", type=int, help="the scenario's id")
        parser.add_argument("--of-version", dest="number", type=int, default=None,
                            help="draw this version's steps (its number; default: the live one)")
        parser.add_argument("--json", action="store_true", help="the report as JSON (what the API answers)")

    def handle(self, *args: Any, **options: Any) -> None:
        scenario = Scenario.objects.filter(pk=options["scenario"]).select_related("account", "database").first()
        if scenario is None:
            raise CommandError(f"No scenario with the id {options['scenario']}.")
        version = None
        if options["number"] is not None:
            version = ScenarioVersion.objects.filter(scenario=scenario, number=options["number"]).first()
            if version is None:
                raise CommandError(f"Scenario {scenario.pk} has no version {options['number']}.")
        report = scenario_report(scenario, version=version)
        out = self.stdout
        if options["json"]:
            out.write(json.dumps(report.as_dict(), cls=DjangoJSONEncoder, indent=2))
            return
        out.write(f"{scenario.name} (#{scenario.pk}, {scenario.get_state_display().lower()}, "
                  f"{scenario.account.name}, database {scenario.database.name})"
                  + (f" — version {report.version_number}" if report.version_number else " — no version"))
        width = max([len(f"{s.key} {s.title}") for s in report.steps] + [20]) + 2
        out.write(f"{'Step':<{width}}" + "".join(f"{label:>10}" for label, _ in COLUMNS))
        for s in report.steps:
            name = f"{s.key} {s.title}" + ("" if s.in_version else " (older version)")
            out.write(f"{name:<{width}}" + "".join(f"{getattr(s, key):>10,}" for _, key in COLUMNS))
            if s.messages is not None:
                figures = ", ".join(f"{label} {s.messages[key]:,}" for label, key in MESSAGE_COLUMNS)
                out.write(f"  messages: {figures}" + (f" (mailing {', '.join(map(str, s.mailing_ids))})"
                                                       if s.mailing_ids else ""))
                for reason, n in sorted(s.skipped.items(), key=lambda kv: -kv[1]):
                    out.write(f"    skipped: {reason} {n:,}")
            elif s.kind == "send":
                out.write("  messages: no mailing yet (publish the scenario)")
        t = report.totals
        out.write(f"Totals: entered {t['entered']:,}, in it now {t['in_now']:,} (active {t['active']:,}, waiting "
                  f"{t['waiting']:,}), completed {t['completed']:,}, exited {t['exited']:,}, failed {t['failed']:,}")
        for title, rows in (("Exited by reason", report.exited_by_reason), ("Failed by reason", report.failed_by_reason)):
            if rows:
                out.write(title + ": " + ", ".join(f"{reason} {n:,}" for reason, n in rows.items()))
        if len(report.versions) > 1:
            out.write("Versions: " + ", ".join(f"v{v['number']} {v['state']} ({v['in_now']:,} in it now)"
                                               for v in report.versions))
