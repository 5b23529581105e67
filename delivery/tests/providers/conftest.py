"""Fixtures: start an emulator on loopback for one test; reset the per-worker token caches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from delivery.backends import apns, fcm
from delivery.tests.providers._server import App, H2Server, LoopbackServer, make_certificate


@pytest.fixture(autouse=True)
def _fresh_token_caches() -> Iterator[None]:
    fcm._TOKENS.clear()
    apns._TOKENS.clear()
    yield
    fcm._TOKENS.clear()
    apns._TOKENS.clear()


@pytest.fixture
def serve() -> Iterator[Callable[[App], LoopbackServer]]:
    """serve(app) -> a running LoopbackServer (stopped after the test)."""
    servers: list[LoopbackServer] = []

    def start(app: App) -> LoopbackServer:
        server = LoopbackServer(app).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """(cert.pem, key.pem) of a self-signed loopback certificate; cert.pem is also the CA."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def serve_h2(certificate) -> Iterator[Callable[[App], H2Server]]:
    """serve_h2(app) -> a running HTTP/2-over-TLS server (ALPN h2)."""
    servers: list[H2Server] = []

    def start(app: App) -> H2Server:
        server = H2Server(app, *certificate).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
