from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand

from accounts.demo import demo_create


class Command(BaseCommand):
    help = "Create (or refresh) the demo account, its owner and demo data. Safe to run again."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", default="demo@example.com")
        parser.add_argument("--password", default="", help="Owner password; default: keep, or a new random one on first run.")

    def handle(self, *args: Any, email: str, password: str, **options: Any) -> None:
        result = demo_create(email=email, password=password or None, new_password=secrets.token_urlsafe(9))
        self.stdout.write(self.style.SUCCESS(f"Demo account “{result.account.name}” is ready ({result.summary})."))
        self.stdout.write(f"  Sign in as: {result.email}")
        if result.password:
            self.stdout.write(f"  Password:   {result.password}")
        else:
            self.stdout.write("  Password:   unchanged (pass --password to set one)")
