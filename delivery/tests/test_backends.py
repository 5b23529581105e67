"""The backend registry and the local backends (locmem, console, file)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import ValidationError

from delivery.backends import (
    DeliveryError,
    FieldSpec,
    KindSpec,
    OutboundMessage,
    backend_for_settings,
    get_backend,
    get_kind,
    kinds,
    kinds_for_channel,
    locmem,
)
from delivery.backends.console import ConsoleBackend
from delivery.backends.file import FileBackend
from delivery.mime import build_email


def email(to="olga@example.com", ref="L1", subject="Hello"):
    built = build_email(from_name="Shop", from_addr="news@shop.example", to=to, subject=subject,
                        html="<p>Hi</p>", text="Hi", message_id="<L1.x@shop.example>")
    return OutboundMessage(channel="email", to=to, ref=ref, raw=bytes(built), envelope_from=built.envelope_from)


def sms(to="+4915112345678", ref="L2", text="Your code is 1234"):
    return OutboundMessage(channel="sms", to=to, ref=ref, payload={"text": text})


def test_the_core_kinds_are_registered_with_their_fields():
    registry = kinds()

    assert {"smtp", "file", "console", "locmem"} <= set(registry)
    smtp = get_kind("smtp")
    assert smtp.channels == ("email",)
    assert [f.name for f in smtp.secret_fields] == ["password"]
    assert {"host", "port", "tls", "username", "pool_size", "rate_per_second"} <= {f.name for f in smtp.option_fields}
    assert smtp.backend_class().__name__ == "SmtpBackend"
    assert get_kind("file") in kinds_for_channel("sms")
    with pytest.raises(DeliveryError, match="Unknown provider kind"):
        get_kind("carrier-pigeon")


def test_a_kind_spec_cleans_values_by_type():
    spec = KindSpec(kind="x", label="X", channels=("sms",), backend="delivery.backends.locmem.LocmemBackend", fields=(
        FieldSpec("url", "URL", type="url", required=True),
        FieldSpec("rate", "Rate", type="float", default=1.0, min_value=0),
        FieldSpec("on", "On", type="bool", default=True),
        FieldSpec("extra", "Extra", type="json"),
        FieldSpec("token", "Token", secret=True, required=True),
    ))

    options, secrets = spec.clean({"url": "https://api.example", "rate": "2.5", "extra": '{"a": 1}', "token": "t"})
    assert options == {"url": "https://api.example", "rate": 2.5, "on": False, "extra": {"a": 1}}
    assert secrets == {"token": "t"}
    with pytest.raises(ValidationError) as info:
        spec.clean({"url": "ftp://x", "rate": "-1", "extra": "{", "token": ""})
    assert set(info.value.message_dict) == {"url", "rate", "extra", "token"}
    assert spec.clean({"url": "https://a.example"}, existing_secrets={"token": "old"})[1] == {"token": "old"}


def test_settings_choose_the_backend_per_channel_with_a_default(settings):
    settings.DELIVERY_BACKENDS = {
        "default": {"BACKEND": "delivery.backends.locmem.LocmemBackend"},
        "email": {"BACKEND": "delivery.backends.console.ConsoleBackend", "OPTIONS": {}},
    }

    assert isinstance(get_backend("email"), ConsoleBackend)
    assert get_backend("telegram").channel == "telegram"
    settings.DELIVERY_BACKENDS = {}
    with pytest.raises(DeliveryError, match="No delivery backend is configured for the sms channel"):
        backend_for_settings("sms")


def test_the_embedded_default_writes_every_channel_to_the_outbox():
    from cdp import settings as project_settings

    assert project_settings.DELIVERY_BACKENDS["email"]["BACKEND"] == "delivery.backends.file.FileBackend"
    assert project_settings.DELIVERY_BACKENDS["default"]["BACKEND"] == "delivery.backends.file.FileBackend"


def test_locmem_keeps_an_outbox_and_fails_on_request():
    locmem.fail("bounce@example.com", "550 5.1.1 no such user", permanent=True)
    with get_backend("email") as backend:
        results = backend.send_many([email(), email(to="bounce@example.com", ref="L9")])

    assert [r.ok for r in results] == [True, False]
    assert results[1].permanent and results[1].error == "550 5.1.1 no such user" and results[1].ref == "L9"
    assert [m.to for m in locmem.outbox] == ["olga@example.com"]
    locmem.open_error = DeliveryError("relay down")
    with pytest.raises(DeliveryError, match="relay down"):
        get_backend("email").open()


def test_console_prints_each_message():
    stream = io.StringIO()
    results = ConsoleBackend(stream=stream).send_many([email(subject="Printed"), sms()])

    out = stream.getvalue()
    assert all(r.ok for r in results)
    assert "RCPT TO:<olga@example.com>" in out and "Subject: Printed" in out
    assert json.loads(out.split("\n")[-3])["payload"] == {"text": "Your code is 1234"}


def test_the_file_backend_writes_one_file_per_message_under_the_account(tmp_path, acme):
    backend = FileBackend(directory=str(tmp_path))
    backend.account_id = acme.pk
    with backend:
        results = backend.send_many([email(subject="Ваш заказ"), sms()])

    base = tmp_path / str(acme.pk)
    eml = base / results[0].provider_id
    assert eml.suffix == ".eml" and eml.read_bytes().startswith(b"From: Shop <news@shop.example>")
    assert json.loads((base / results[1].provider_id).read_text())["payload"]["text"] == "Your code is 1234"
    index = [json.loads(line) for line in (base / "index.jsonl").read_text().splitlines()]
    assert [(e["channel"], e["subject"], e["ref"]) for e in index] == [
        ("email", "Ваш заказ", "L1"), ("sms", "Your code is 1234", "L2")]


def test_the_file_kind_offers_no_directory_field():
    assert get_kind("file").fields == ()


def test_every_kind_is_declared_by_the_module_the_registry_names_for_it():
    from delivery.backends import KIND_MODULES, _module_kinds

    declared = {kind: path for path in set(KIND_MODULES.values()) for kind in _module_kinds(path)}
    assert declared == KIND_MODULES


def test_looking_up_one_kind_imports_only_its_module():
    """A worker sending through an SMTP provider account looks its kind up for every batch: that
    must not load the push, SMS and Telegram clients (about 20 MB a worker process)."""
    import subprocess
    import sys

    code = (
        "import django, sys; django.setup()\n"
        "heavy = ('httpx', 'requests', 'pywebpush', 'delivery.backends.webpush', 'delivery.backends.fcm')\n"
        "before = [m for m in heavy if m in sys.modules]\n"
        "from delivery.backends import get_kind\n"
        "spec = get_kind('smtp'); spec.backend_class()(host='127.0.0.1')\n"
        "print(before, [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[] []", out.stdout + out.stderr
