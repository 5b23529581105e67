"""Loopback servers the provider emulators run on.

- `LoopbackServer`: HTTP/1.1 with keep-alive (http.server in a thread), calling
  `app(request) -> Reply` for each request and recording every request.
- `H2Server`: HTTP/2 over TLS (ALPN "h2") with the `h2` library, for APNs.
- `make_certificate()`: a self-signed P-256 certificate for 127.0.0.1/localhost that clients
  trust as its own CA (passed to the backends as the `verify` option).

Each request is recorded with its HTTP version, the client's port (so a test can prove a batch
used one connection) and, for TLS, the negotiated ALPN protocol.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    http_version: str
    client_port: int
    alpn: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class Reply:
    """status 0 = drop the connection without answering (the client cannot know the outcome)."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        return body, headers


App = Callable[[Request], Reply]


class LoopbackServer:
    """An HTTP/1.1 server on 127.0.0.1 for one test; use as a context manager."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    http_version=self.request_version,
                    client_port=self.client_address[1],
                )
                server.requests.append(request)
                reply = server.app(request)
                if reply.status == 0:
                    self.close_connection = True
                    return
                data, headers = reply.encoded()
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem): a self-signed certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class H2Server:
    """HTTP/2 over TLS on 127.0.0.1, ALPN "h2" only: an HTTP/1.1 client cannot talk to it."""

    def __init__(self, app: App, cert: Path, key: Path) -> None:
        self.app = app
        self.requests: list[Request] = []
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> H2Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, address = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, address[1]), daemon=True).start()

    def _serve(self, raw: socket.socket, port: int) -> None:
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        self.connections += 1
        alpn = conn.selected_alpn_protocol()
        h2conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        streams: dict[int, dict[str, Any]] = {}
        conn.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65535)
                except TimeoutError:
                    continue
                if not data:
                    break
                for event in h2conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = {"headers": dict(event.headers), "body": b""}
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id]["body"] += event.data
                        h2conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self._respond(h2conn, event.stream_id, streams.pop(event.stream_id), port, alpn)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        return
                conn.sendall(h2conn.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            # A client that does not speak HTTP/2 (or went away): drop the connection.
            return
        finally:
            conn.close()

    def _respond(
        self, h2conn: Any, stream_id: int, stream: dict[str, Any], port: int, alpn: str | None
    ) -> None:
        headers = stream["headers"]
        parts = urlsplit(headers[":path"])
        request = Request(
            method=headers[":method"],
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k: v for k, v in headers.items() if not k.startswith(":")},
            body=stream["body"],
            http_version="HTTP/2",
            client_port=port,
            alpn=alpn,
        )
        self.requests.append(request)
        reply = self.app(request)
        data, reply_headers = reply.encoded()
        h2conn.send_headers(
            stream_id,
            [(":status", str(reply.status)), ("content-length", str(len(data)))]
            + [(k.lower(), v) for k, v in reply_headers.items()],
            end_stream=not data,
        )
        if data:
            h2conn.send_data(stream_id, data, end_stream=True)
