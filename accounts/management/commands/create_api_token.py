from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.access import Actor
from accounts.models import Account
from accounts.permissions import Role
from accounts.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for an account. The token is printed alone on the last line, once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--account", required=True, help="The account's slug.")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--name", default="Created from the command line")
        parser.add_argument("--create-profiles", action="store_true",
                            help="Events naming an unknown profile create it (POST /api/v1/events/batch).")

    def handle(self, *args: Any, account: str, role: str, name: str, **options: Any) -> None:
        acc = Account.objects.filter(slug=account).first()
        if acc is None:
            raise CommandError(f"No account with slug {account!r}. Known: {', '.join(Account.objects.values_list('slug', flat=True)[:20])}")
        token, raw = api_token_create(account=acc, name=name, role=role, actor=Actor.system(),
                                      create_profiles=bool(options.get("create_profiles")))
        self.stderr.write(f"Created token “{token.name}” ({token.get_role_display()}) for {acc.name}. Store it now: it is not shown again.")
        self.stdout.write(raw)
