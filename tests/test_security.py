"""Security in CI (issue 10, item 5): the Content-Security-Policy on every page, the sandbox policies
of the two views that show tenant HTML, secure cookies and HSTS in production, and secrets that never
reach the database in the clear.

Already proven elsewhere, and not repeated here: login lockout end to end through the login view
(accounts/tests/test_auth.py: five failures, the window, a success clearing it, IP spraying), the
API token's hash column (accounts/tests/test_api.py), the DKIM key column
(delivery/tests/test_models.py), a provider password's column (delivery/tests/test_views_providers.py),
the production settings' values (tests/test_ops_settings.py) and `check --deploy` (tests/test_settings.py).
What this file adds is the whole-database view: no column of any table, audit log included, holds
the raw token or secret.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.exceptions import Resolver404

from accounts.access import Actor
from accounts.demo import demo_create
from accounts.models import ApiToken, User
from content.views.preview import PREVIEW_CSP
from delivery.views.outbox import MESSAGE_CSP
from profiles.services import database_create, profile_create
from resources import tokens
from resources.services import Via, resource_create, subscription_create

ROOT = Path(__file__).resolve().parent.parent
HEADER = "Content-Security-Policy"

# The directives every page's policy must state exactly (cdp/settings.py, CONTENT_SECURITY_POLICY).
EXACT = {
    "default-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'self'"],
    "object-src": ["'none'"],
}
# Pages that show a sandboxed frame or a download are checked by their own tests below; these prefixes
# are not HTML pages of ours (the API answers JSON; the admin is Django's).
SKIP_PREFIXES = ("/api/", "/django-admin/", "/static/", "/media/", "/metrics")
APPS = {"accounts", "profiles", "resources", "history", "segments", "content", "delivery", "mailings", "scenarios"}
PAGES_PER_ROLE = 220  # the crawl's bound: every app's list and detail pages fit well inside it
SAME_SHAPE = 2  # at most this many URLs that differ only in their ids (/profiles/1/, /profiles/2/, ...)

# The policies of the views that show tenant HTML (content/views/preview.py, delivery/views/outbox.py).
SANDBOXES = {PREVIEW_CSP, MESSAGE_CSP}

_TAG = re.compile(r"<(script|style)\b([^>]*)>", re.I)
_ATTR = re.compile(r"""([a-zA-Z_:][-\w:.]*)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
_HANDLER = re.compile(r"<[a-zA-Z][^>]*?\son[a-z]+\s*=", re.S)
_JS_URL = re.compile(r"""(?:href|src|action|formaction)\s*=\s*["']?\s*javascript:""", re.I)
_LINK = re.compile(r"""(?:href|hx-get)\s*=\s*"(/[^"#]*)""")


def policy_of(header: str) -> dict[str, list[str]]:
    """'a b; c d e' -> {"a": ["b"], "c": ["d", "e"]}."""
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def _attrs(text: str) -> dict[str, str]:
    return {m.group(1).lower(): next((g for g in m.groups()[1:] if g is not None), "") for m in _ATTR.finditer(text)}


def assert_strict_policy(response, where: str) -> dict[str, list[str]]:
    """The response carries the site policy, and its HTML runs only what that policy allows: scripts
    are same-origin files or carry this response's nonce, <style> elements carry it too, no inline
    event handler and no javascript: URL (both would be refused by the browser: a broken button)."""
    header = response.headers.get(HEADER)
    assert header, f"{where}: no {HEADER} header"
    policy = policy_of(header)
    for name, value in EXACT.items():
        assert policy.get(name) == value, f"{where}: {name} is {policy.get(name)}, expected {value}"
    script, style = policy.get("script-src", []), policy.get("style-src", [])
    assert "'self'" in script, where
    for bad in ("'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"):
        assert bad not in script, f"{where}: script-src allows {bad}"
        assert bad not in style or bad == "'unsafe-eval'", f"{where}: style-src allows {bad}"
    nonces = {v[len("'nonce-"):-1] for v in script if v.startswith("'nonce-")}
    assert nonces == {v[len("'nonce-"):-1] for v in style if v.startswith("'nonce-")}, where
    html = response.content.decode(errors="replace")
    for tag in _TAG.finditer(html):
        kind, attrs = tag.group(1).lower(), _attrs(tag.group(2))
        if kind == "script" and attrs.get("type", "").lower() in ("application/json", "application/ld+json"):
            continue  # data, never run
        src = attrs.get("src")
        if kind == "script" and src is not None:
            assert src.startswith("/") and not src.startswith("//"), f"{where}: script from elsewhere: {src}"
            continue
        assert attrs.get("nonce") in nonces, f"{where}: inline <{kind}> without this response's nonce: {tag.group(0)}"
    policy["_document"] = ["yes"] if re.match(r"\s*(<!doctype|<html)", html, re.I) else []
    handler = _HANDLER.search(html)
    assert handler is None, f"{where}: inline event handler: {handler.group(0)[:200] if handler else ''}"
    assert _JS_URL.search(html) is None, f"{where}: javascript: URL"
    return policy


def _is_html(response) -> bool:
    return response.get("Content-Type", "").startswith("text/html")


def _parameterless_routes() -> list[str]:
    """Every GET-able path of the URLconf that takes no argument (the walk's starting points)."""
    found: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            text = str(p.pattern)
            if "<" in text or "(" in text or "[" in text or "\\" in text:
                continue  # takes arguments (path converters or regex groups)
            text = text.lstrip("^").rstrip("$")
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + text)
            elif isinstance(p, URLPattern):
                found.append("/" + prefix + text)

    walk(get_resolver().url_patterns, "")
    return sorted({p for p in found if not p.startswith(SKIP_PREFIXES)})


def _shape(path: str) -> str:
    return re.sub(r"\d+", "0", path)


def crawl(client: Client, starts: list[str], sandboxed: set[str]) -> dict[str, dict[str, list[str]]]:
    """GET the starting paths and every same-origin page they link to (breadth first, bounded);
    each HTML page is checked with assert_strict_policy. -> {path: policy}; pages served with one of
    the sandbox policies are added to `sandboxed` instead."""
    queue, seen, shapes = deque(starts), set(starts), {}
    checked: dict[str, dict[str, list[str]]] = {}
    while queue and len(checked) < PAGES_PER_ROLE:
        path = queue.popleft()
        response = client.get(path)
        if response.status_code in (301, 302, 303, 304, 405) or not _is_html(response):
            continue
        if response.get(HEADER) in SANDBOXES:
            sandboxed.add(path)  # tenant HTML: its own stricter policy (and nothing of ours to run)
            continue
        checked[path] = assert_strict_policy(response, f"GET {path} ({response.status_code})")
        for link in _LINK.findall(response.content.decode(errors="replace")):
            link = urlsplit(link).path
            if link in seen or link.startswith(SKIP_PREFIXES) or "logout" in link:
                continue
            shape = _shape(link)
            if shapes.get(shape, 0) >= SAME_SHAPE:
                continue
            seen.add(link)
            shapes[shape] = shapes.get(shape, 0) + 1
            queue.append(link)
    return checked


def _app_of(path: str) -> str:
    try:
        return resolve(path).app_name or resolve(path).func.__module__.split(".")[0]
    except Resolver404:
        return ""


@pytest.fixture
def demo(db):
    """The demo account (every app's demo data) with its owner and its marketer."""
    result = demo_create(email="demo@example.com", password="x-demo-password-1", new_password="unused")
    return result.account, User.objects.get(email="demo@example.com"), User.objects.get(email="mark@example.com")


def test_it_sends_a_strict_csp_with_a_nonce_on_every_page_of_every_app(demo):
    """Crawled as the owner and as a marketer (demo data is slow to make: one set for both)."""
    _account, owner, marketer = demo
    for user in (owner, marketer):
        client = Client()
        client.force_login(user)
        sandboxed: set[str] = set()
        checked = crawl(client, ["/", *_parameterless_routes()], sandboxed)
        # The template preview kept its own policy: the middleware neither replaced nor merged it.
        assert any(p.endswith("/preview/") for p in sandboxed), (user.email, sorted(sandboxed))
        assert len(checked) >= 40, (user.email, sorted(checked))
        covered = {_app_of(p) for p in checked}
        assert covered >= APPS, f"{user.email}: apps without a checked page: {APPS - covered}"
        # Every full page (the app shell, base.html) loads its scripts with a nonce of its own;
        # htmx fragments carry the policy and no script.
        pages = {p: policy for p, policy in checked.items() if policy["_document"]}
        without = [p for p, policy in pages.items() if not any(v.startswith("'nonce-") for v in policy["script-src"])]
        assert not without, (user.email, without)
        nonces = {policy["script-src"][-1] for policy in pages.values()}
        assert len(nonces) == len(pages), "a nonce was reused across responses"


@pytest.mark.parametrize("bad", [
    '<script>alert(1)</script>',
    '<script nonce="other">alert(1)</script>',
    '<script src="https://cdn.example/x.js"></script>',
    '<style>p{}</style>',
    '<button onclick="go()">x</button>',
    '<a href="javascript:history.back()">back</a>',
])
def test_the_page_check_refuses_what_the_browser_would_refuse(bad):
    from django.http import HttpResponse

    header = ("default-src 'self'; script-src 'self' 'nonce-N1'; style-src 'self' 'nonce-N1'; img-src 'self' data:; "
              "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; object-src 'none'")
    good = '<!doctype html><script src="/static/js/app.js" nonce="N1"></script><style nonce="N1">p{}</style>'
    response = HttpResponse(good, headers={HEADER: header})
    assert_strict_policy(response, "good")
    with pytest.raises(AssertionError):
        assert_strict_policy(HttpResponse(good + bad, headers={HEADER: header}), "bad")
    with pytest.raises(AssertionError):
        assert_strict_policy(HttpResponse(good, headers={HEADER: header.replace("'nonce-N1'", "'unsafe-inline'", 1)}), "x")


def test_it_sends_the_policy_on_the_sign_in_and_error_pages(client, login, bob, db):
    for path in ("/login/", "/password-reset/"):
        response = client.get(path)
        if response.status_code == 404:
            continue
        assert response.status_code == 200 and _is_html(response), path
        assert_strict_policy(response, path)
    assert_strict_policy(client.get("/no/such/page/"), "404")
    forbidden = login(bob).get("/settings/audit/")
    assert forbidden.status_code == 403
    assert_strict_policy(forbidden, "403")


def test_it_sends_the_policy_on_the_staff_pages(login, olivia, acme):
    """The system status page (cdp/ops) and Django's admin, as a superuser: the crawl's members never see them."""
    User.objects.filter(pk=olivia.pk).update(is_staff=True, is_superuser=True)
    client = login(User.objects.get(pk=olivia.pk), acme)
    for path in ("/ops/status", "/django-admin/", "/django-admin/accounts/account/", f"/django-admin/accounts/account/{acme.pk}/change/"):
        response = client.get(path)
        assert response.status_code == 200 and _is_html(response), (path, response.status_code)
        assert_strict_policy(response, path)


def test_it_keeps_the_policy_on_the_public_pages_and_tracking_links(client, acme):
    system = Actor.system()
    database = database_create(account=acme, name="Shop customers", actor=system)
    news = resource_create(account=acme, database=database, actor=system, values={
        "name": "Shop news", "channels": ["email"], "categories": ["news:News", "offers:Offers"]})
    anna = profile_create(database=database, values={"email": "anna@shop.example.com"}, actor=system)
    subscription = subscription_create(profile=anna, resource=news, channel="email", address=anna.email, actor=system,
                                       via=Via("test"), confirmed=True)
    for url in (tokens.unsubscribe_url(subscription), tokens.preferences_url(subscription)):
        path = urlsplit(url).path
        response = client.get(path)
        assert response.status_code == 200 and _is_html(response), path
        assert_strict_policy(response, path)
    dead = client.get("/t/c/not-a-real-token")
    assert dead.status_code == 404 and _is_html(dead)
    assert_strict_policy(dead, "/t/c/ dead link")
    unknown = client.get("/p/prefs/not-a-real-token/")
    assert _is_html(unknown)
    assert_strict_policy(unknown, "/p/prefs/ bad token")


def test_the_api_docs_have_the_policy_and_load_only_our_own_files(client, db):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert_strict_policy(response, "/api/v1/docs")
    html = response.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html and "cdn" not in html.lower()


# --- secrets at rest: the whole database, not one column ------------------------------------------


def _database_text() -> str:
    """Every row of every table of this database, as text (the test data is small)."""
    chunks: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 (names from introspection)
            for row in cursor.fetchall():
                chunks.append(" ".join(bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
                                       for v in row))
    return "\n".join(chunks)


def test_no_table_holds_a_raw_api_token_after_one_is_made_on_the_settings_page(login, olivia):
    response = login(olivia).post("/settings/api-tokens/", {"name": "CRM sync", "role": "analyst", "expires_in_days": ""})
    assert response.status_code == 200, response.content[:500]
    raw = response.context["new_token"]["raw"]
    assert len(raw) >= 32 and raw in response.content.decode()  # shown once, on that response
    text = _database_text()
    assert "CRM sync" in text  # the scan does see the token's row and its audit event
    assert raw not in text
    # Nor any long piece of it (a prefix kept "for display" would be a partial leak). The random part
    # is URL-safe base64, which has "_" in its alphabet, so it is what follows the prefix.
    assert raw.startswith(ApiToken.PREFIX)
    secret_part = raw.removeprefix(ApiToken.PREFIX)
    assert len(secret_part) >= 32
    assert secret_part[:16] not in text and secret_part[-16:] not in text


def test_no_table_holds_a_dkim_private_key_or_a_provider_password_in_the_clear(login, adam, acme):
    from delivery.models import DkimKey, ProviderAccount
    from delivery.services import sending_domain_create
    from delivery.tests.test_views_providers import SECRET, smtp_form

    domain = sending_domain_create(account=acme, domain="shop.example", actor=Actor.system())
    pem = DkimKey.objects.get(domain=domain).private_key
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert login(adam).post(reverse("delivery:provider_create"), smtp_form()).status_code in (200, 302)
    assert ProviderAccount.objects.get(account=acme).secrets["password"] == SECRET
    text = _database_text()
    assert "shop.example" in text and "Main relay" in text  # the rows are there...
    assert "PRIVATE KEY" not in text and pem.splitlines()[1] not in text  # ...their secrets are not
    assert SECRET not in text


# --- production: the headers a browser actually gets -------------------------------------------------

PRODUCTION_REQUESTS = """
import json, django
django.setup()
from django.test import Client
from django.test.utils import override_settings, setup_test_environment
setup_test_environment()  # the test client's host, not the DB
# Headers are what is checked; the hashed-name manifest needs collectstatic, which this test does not run.
with override_settings(STORAGES={"staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}},
                       ALLOWED_HOSTS=["cdp.example.com"]):
    client = Client(HTTP_HOST="cdp.example.com")
    plain = client.get("/login/")
    secure = client.get("/login/", secure=True)
    cookie = secure.cookies.get("csrftoken")
    print(json.dumps({
        "plain_status": plain.status_code, "plain_location": plain.get("Location", ""),
        "status": secure.status_code, "hsts": secure.get("Strict-Transport-Security", ""),
        "csp": secure.get("Content-Security-Policy", ""), "xfo": secure.get("X-Frame-Options", ""),
        "nosniff": secure.get("X-Content-Type-Options", ""), "referrer": secure.get("Referrer-Policy", ""),
        "cookie_secure": bool(cookie and cookie["secure"]), "cookie_samesite": cookie["samesite"] if cookie else "",
    }))
"""


def test_production_responses_redirect_to_https_and_carry_hsts_csp_and_secure_cookies(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "LOG_FORMAT")}
    env.update({"DJANGO_SETTINGS_MODULE": "cdp.settings", "CDP_VAR_DIR": str(tmp_path), "DEBUG": "0",
                "SECRET_KEY": "k" * 60, "ALLOWED_HOSTS": "cdp.example.com", "LOG_LEVEL": "ERROR"})
    done = subprocess.run([sys.executable, "-c", PRODUCTION_REQUESTS], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["plain_status"] == 301 and got["plain_location"].startswith("https://cdp.example.com/login/")
    assert got["status"] == 200
    assert got["hsts"].startswith("max-age=31536000") and "includeSubDomains" in got["hsts"]
    policy = policy_of(got["csp"])
    assert policy["frame-ancestors"] == ["'none'"] and "'unsafe-inline'" not in policy["script-src"]
    assert any(v.startswith("'nonce-") for v in policy["script-src"])
    assert got["xfo"] == "DENY" and got["nosniff"] == "nosniff" and got["referrer"] == "same-origin"
    assert got["cookie_secure"] is True and got["cookie_samesite"] == "Lax"
