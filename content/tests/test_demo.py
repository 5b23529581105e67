"""Demo content: a footer fragment and a Welcome template on every channel, made once."""

from __future__ import annotations

from accounts.demo import DEMO_HOOKS
from content.demo import demo_content
from content.models import Fragment, Template
from content.rendering import compiled, context_for
from content.selectors import current_versions


def test_it_is_registered_and_idempotent(acme, olivia) -> None:
    assert demo_content in DEMO_HOOKS
    assert demo_content(acme, olivia) == "content: 1 fragment, 1 template"
    assert demo_content(acme, olivia) == "content: nothing new"
    assert Fragment.objects.filter(account=acme, key="footer").count() == 1
    welcome = Template.objects.get(account=acme, name="Welcome")
    versions = current_versions(welcome)
    assert list(versions) == ["email", "sms", "webpush", "telegram"]
    for v in versions.values():
        assert not v.lint_errors, v.lint


def test_every_demo_version_renders(acme, olivia) -> None:
    demo_content(acme, olivia)
    welcome = Template.objects.get(account=acme, name="Welcome")
    ctx = context_for(account=acme)
    ctx["profile"] = {"first_name": "Olivia", "loyalty_points": 1500, "tags": ["lamps", "desks"]}
    parts = {ch: compiled(v).render(ctx).parts for ch, v in current_versions(welcome).items()}
    assert parts["email"]["subject"] == "Welcome to Acme, Olivia!"
    assert "1,500 points" in parts["email"]["html"] and "<li>Lamps</li>" in parts["email"]["html"]
    assert "Unsubscribe: #unsubscribe" in parts["email"]["text"]  # the footer's own text version
    assert parts["sms"]["text"].startswith("Welcome to Acme, Olivia!")
    assert parts["webpush"]["title"] == "Welcome, Olivia!"
    assert parts["telegram"]["buttons"] == [[{"text": "Start shopping", "url": "https://shop.example/welcome"}]]
