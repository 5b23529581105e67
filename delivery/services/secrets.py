"""Key rotation for secrets at rest (see cdp/secrets.py).

Put the new Fernet key FIRST in CDP_SECRETS_KEY and keep the old one after it, call
`secrets_reencrypt()` (every worker can keep running: both keys decrypt), then drop the old key.
"""

from __future__ import annotations

from django.db import transaction

from delivery.models import DkimKey, ProviderAccount


def secrets_reencrypt(*, batch_size: int = 500) -> int:
    """Re-encrypt every stored DKIM private key and provider secret with the first configured key.
    Returns how many rows were rewritten. Idempotent; raises cdp.secrets.SecretError when a row
    cannot be decrypted with any configured key (nothing after it is rewritten)."""
    count = 0
    for model, field in ((DkimKey, "private_key"), (ProviderAccount, "secrets")):
        ids = list(model.objects.order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), batch_size):
            with transaction.atomic():
                # Loading decrypts with any key; saving encrypts with the first (newest) one.
                for row in model.objects.filter(pk__in=ids[start : start + batch_size]).order_by("pk").select_for_update():
                    row.save(update_fields=[field])
                    count += 1
    return count
