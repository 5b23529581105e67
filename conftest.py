"""Shared fixtures: a fixed cast, logged-in clients, API tokens, a real SMTP server.

Cast (STYLE.md): in the account "Acme": olivia (owner), adam (admin), alice (marketer),
bob (analyst); in the account "Globex": charlie (owner).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message

import pytest
from django.test import Client

from accounts.access import Actor
from accounts.middleware import SESSION_KEY
from accounts.models import Account, User
from accounts.permissions import Role
from accounts.services import api_token_create
from accounts.tests.factories import AccountFactory, MembershipFactory, UserFactory
from cdp.celery import app as celery_app
from tests.ports import on_a_free_port

PASSWORD = "correct horse battery staple"


@pytest.fixture
def mid_window() -> Iterator[None]:
    """The clock moved to 30 min 30 s into the current hour, running on: rate limits count in
    wall-clock windows (a minute, an hour), and a test whose requests crossed a window's edge
    would see its count start again. This gives it 30 s before the next minute's edge."""
    import time

    import time_machine

    now = time.time()
    with time_machine.travel(now - now % 3600 + 1830, tick=True):
        yield


@pytest.fixture(autouse=True)
def _celery_eager() -> Iterator[None]:
    """Tasks run in-process, at commit time (tests that need a real worker start one)."""
    old = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = old


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    # Hashing cost is not what these tests measure.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    from django.core.cache import cache

    from cdp import confcache
    from history import tracking

    cache.clear()
    confcache.clear()
    # Process-level caches keyed by ids that repeat across tests (SQLite reuses them after a rollback).
    tracking._LINKS.clear()
    tracking._client = None
    yield


@pytest.fixture(autouse=True)
def _delivery_locmem(settings, tmp_path) -> Iterator[None]:
    """Every channel goes to the in-memory backend (tests that need SMTP or the file backend set
    their own), the outbox lives in tmp_path, and the per-process caches (compiled templates,
    DKIM signers, the SMTP pool) start empty: SQLite reuses ids after a rollback."""
    from content import rendering
    from delivery import dkim
    from delivery.backends import locmem, smtp

    backend = {"BACKEND": "delivery.backends.locmem.LocmemBackend", "OPTIONS": {}}
    settings.DELIVERY_BACKENDS = {"default": backend, "email": backend}
    settings.DELIVERY_OUTBOX_DIR = tmp_path / "outbox"
    settings.DELIVERY_DNS_RESOLVER = ""
    settings.DELIVERY_ALLOW_PRIVATE_HOSTS = True  # the emulators listen on loopback (delivery/tests/test_security.py: off)
    locmem.reset()
    dkim.clear_cache()
    rendering.clear_cache()
    yield
    locmem.reset()
    smtp.pool_clear()
    dkim.clear_cache()
    rendering.clear_cache()


@pytest.fixture
def acme(db) -> Account:
    return AccountFactory(name="Acme", slug="acme")


@pytest.fixture
def globex(db) -> Account:
    return AccountFactory(name="Globex", slug="globex")


def _member(account: Account, email: str, name: str, role: str) -> User:
    user = UserFactory(email=email, full_name=name)
    MembershipFactory(account=account, user=user, role=role)
    return user


@pytest.fixture
def olivia(acme) -> User:
    return _member(acme, "olivia@acme.test", "Olivia Owner", Role.OWNER)


@pytest.fixture
def adam(acme) -> User:
    return _member(acme, "adam@acme.test", "Adam Admin", Role.ADMIN)


@pytest.fixture
def alice(acme) -> User:
    return _member(acme, "alice@acme.test", "Alice Marketer", Role.MARKETER)


@pytest.fixture
def bob(acme) -> User:
    return _member(acme, "bob@acme.test", "Bob Analyst", Role.ANALYST)


@pytest.fixture
def charlie(globex) -> User:
    return _member(globex, "charlie@globex.test", "Charlie Other", Role.OWNER)


@pytest.fixture
def login():
    """login(user, account=None) -> a Client signed in as `user`, in `account` if given."""

    def _login(user: User, account: Account | None = None) -> Client:
        client = Client()
        client.force_login(user)
        if account is not None:
            session = client.session
            session[SESSION_KEY] = account.pk
            session.save()
        return client

    return _login


@pytest.fixture
def api_token():
    """api_token(account, role) -> raw bearer token for that account and role."""

    def _make(account: Account, role: str = Role.ADMIN, name: str = "test token") -> str:
        _, raw = api_token_create(account=account, name=name, role=role, actor=Actor.system())
        return raw

    return _make


@pytest.fixture
def api(client):
    """api(token).get/post(...) with the bearer header set."""

    class _Api:
        def __init__(self, token: str) -> None:
            self.headers = {"Authorization": f"Bearer {token}"}

        def get(self, path: str, **kw):
            return client.get(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

        def post(self, path: str, data=None, **kw):
            return client.post(path, data=data, content_type="application/json",
                               headers={**self.headers, **kw.pop("headers", {})}, **kw)

        def delete(self, path: str, **kw):
            return client.delete(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    return _Api


class Caller:
    """An API client for one token: get/post/patch/delete with JSON bodies (the `caller` fixture)."""

    USER_AGENT = "crm-sync/2.1"

    def __init__(self, client: Client, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}", "User-Agent": self.USER_AGENT}

    def get(self, path: str, params: dict | None = None, **kw):
        return self.client.get(path, params or {}, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, path: str, data=None, **kw):
        return self.client.post(path, json.dumps(data), content_type="application/json",
                                headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def patch(self, path: str, data=None, **kw):
        return self.client.patch(path, json.dumps(data), content_type="application/json",
                                 headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def delete(self, path: str, **kw):
        return self.client.delete(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)


@pytest.fixture
def caller(client, api_token):
    """caller(account, role=admin, name="crm sync") -> Caller with a new token of that role."""

    def _make(account: Account, role: str = Role.ADMIN, name: str = "crm sync") -> Caller:
        return Caller(client, api_token(account, role, name=name))

    return _make


# --- a real SMTP server ------------------------------------------------------------------------------


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Message]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
        assert len(self.messages) >= count, f"expected {count} e-mail(s), got {len(self.messages)}"
        return self.messages

    def text_of(self, message: Message) -> str:
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        return ""


@pytest.fixture
def smtp_server(settings) -> Iterator[SmtpSink]:
    """An aiosmtpd server on loopback; Django's e-mail goes to it over real SMTP."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink(host="127.0.0.1", port=0)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with sink.arrived:
                sink.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                sink.messages.append(message_from_bytes(envelope.original_content or envelope.content))
                sink.arrived.notify_all()
            return "250 Message accepted for delivery"

    def start(port: int) -> Controller:
        controller = Controller(Handler(), hostname=sink.host, port=port)
        controller.start()
        sink.port = port
        return controller

    controller = on_a_free_port(start)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = sink.host
    settings.EMAIL_PORT = sink.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 10
    try:
        yield sink
    finally:
        controller.stop()


def pytest_configure(config) -> None:
    # Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run
    # under one unless told it is fine (the browser tests touch the DB only between steps).
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
