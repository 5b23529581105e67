"""Where the server connects on an account's behalf (SSRF, RELIABILITY.md security baseline).

Provider options (api_base, the HTTP SMS url/check_url, an SMTP host) and web push endpoints are
typed in by tenants or by the public; in a multi-tenant service they must not make the server
reach loopback, private networks or the cloud metadata address (169.254.169.254). Every address
a name resolves to must be public, and the connection goes to the address that was checked (a
second DNS answer cannot swap in 127.0.0.1). settings.DELIVERY_ALLOW_PRIVATE_HOSTS lifts the
rule (self-hosting next to the relay, the loopback emulators of the tests).
"""

from __future__ import annotations

import ipaddress
import socket

from django.conf import settings

from delivery.backends.base import DeliveryError


def private_allowed() -> bool:
    return bool(getattr(settings, "DELIVERY_ALLOW_PRIVATE_HOSTS", False))


def is_public(ip: str) -> bool:
    """Whether an IP address is on the public internet (not loopback, private, link-local,
    shared, reserved or multicast; an IPv4 address mapped into IPv6 counts as itself)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


class PrivateAddress(DeliveryError):
    """A host that resolves to an address the server does not connect to (permanent)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, once each (an IP literal, bracketed or not: itself).
    Raises OSError."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    return list(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def checked_address(host: str, port: int, *, private_ok: bool | None = None) -> str:
    """The address to connect to for host:port: `host` itself when private addresses are allowed
    (`private_ok`; by default settings.DELIVERY_ALLOW_PRIVATE_HOSTS), else the first it resolves
    to, once every one of them is public. Raises PrivateAddress (a permanent DeliveryError) for a
    private one, OSError when the name does not resolve. The one check of every connection the
    server makes on a tenant's behalf: provider backends (SMTP, HTTP, web push) and the scenario
    webhook step."""
    if private_allowed() if private_ok is None else private_ok:
        return host
    addresses = _resolve(host, port)
    if not addresses:
        raise OSError(f"{host} does not resolve")
    for ip in addresses:
        if not is_public(ip):
            raise PrivateAddress(f"{host} is a private or reserved address ({ip}): the server does not connect there")
    return addresses[0]
