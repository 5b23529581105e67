"""`manage.py rotate_secrets`: after putting a new key first in CDP_SECRETS_KEY (keep the old one
after it), re-encrypt every stored DKIM private key and provider secret with the new key; then the
old key can be dropped from the environment."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cdp.secrets import SecretError
from delivery.services import secrets_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt stored DKIM keys and provider secrets with the first key of CDP_SECRETS_KEY."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        try:
            count = secrets_reencrypt(batch_size=batch_size)
        except SecretError as e:
            raise CommandError(f"{e} (is the old key still listed in CDP_SECRETS_KEY?)") from e
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} stored secret(s) with the current key."))
