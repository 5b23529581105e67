"""Demo sending setup for `manage.py create_demo` (a DEMO_HOOKS entry): the domain shop.example
(pending: nobody can publish DNS for it, so the file backend and outbox are what the demo
uses), its DKIM key, and the sender "Northwind <news@shop.example>". Idempotent."""

from __future__ import annotations

from accounts.access import Actor
from accounts.models import Account, User
from delivery.models import Sender, SendingDomain
from delivery.services import sender_create, sending_domain_create

DEMO_DOMAIN = "shop.example"


def demo_delivery(account: Account, owner: User) -> str:
    system = Actor.system()
    domain = SendingDomain.objects.for_account(account).filter(domain=DEMO_DOMAIN).first()
    made = []
    if domain is None:
        domain = sending_domain_create(account=account, domain=DEMO_DOMAIN, actor=system)
        made.append("domain")
    if not Sender.objects.filter(domain=domain, local_part="news").exists():
        sender_create(account=account, domain=domain, local_part="news", from_name="Northwind",
                      reply_to="support@shop.example", is_default=True, actor=system)
        made.append("sender")
    return f"delivery: {', '.join(made) or 'nothing'} made"
